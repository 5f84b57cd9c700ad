package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// pilotBinaryName is the file `hangar up` starts.
func pilotBinaryName() string {
	if runtime.GOOS == "windows" {
		return "pilot.exe"
	}
	return "pilot"
}

// findPilotBinary finds the pilot executable: first next to the hangar
// executable (also through a symlink to it), since release archives ship both
// side by side and that copy matches this hangar's version; then on PATH.
func findPilotBinary(executable func() (string, error), lookPath func(string) (string, error)) (string, error) {
	name := pilotBinaryName()
	var tried []string
	if exe, err := executable(); err == nil {
		dirs := []string{filepath.Dir(exe)}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil && filepath.Dir(resolved) != dirs[0] {
			dirs = append(dirs, filepath.Dir(resolved))
		}
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if isExecutableFile(p) {
				return p, nil
			}
			tried = append(tried, p)
		}
	}
	p, err := lookPath(name)
	if err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return p, nil
	}
	where, build := "on PATH", "go build -o <folder> ./cmd/pilot"
	if len(tried) > 0 {
		where = strings.Join(tried, ", ") + " and on PATH"
		build = "go build -o " + tried[0] + " ./cmd/pilot"
	}
	return "", fmt.Errorf("pilot binary not found: looked at %s; build it from the hangar source tree (%s) or add the folder holding pilot to PATH", where, build)
}

func isExecutableFile(p string) bool {
	info, err := os.Stat(p)
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	return runtime.GOOS == "windows" || info.Mode().Perm()&0o111 != 0
}

// readPIDFile reads the pid `hangar up` wrote.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds %q, not a process id; remove the file if pilot is not running", path, s)
	}
	return pid, nil
}

func writePIDFile(path string, pid int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// tailFile returns the last n lines written to path after offset, so a
// failed start shows this start's output and not an older run's.
func tailFile(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if info, err := f.Stat(); err == nil && info.Size()-offset > maxRead {
		offset = info.Size() - maxRead
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRead))
	if err != nil {
		return ""
	}
	return strings.Join(tailLines(string(b), n), "\n")
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// dialableAddr turns a listen address into one a client can dial: a
// wildcard host (":7400", "0.0.0.0:7400", "[::]:7400") means this machine.
func dialableAddr(flag, listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%s %q: want HOST:PORT, e.g. 127.0.0.1:7400: %w", flag, listen, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("%s %q: give a fixed port, e.g. 127.0.0.1:7400, so hangar can find pilot again", flag, listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%s %q: the port must be a number from 1 to 65535", flag, listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// isPilotProcess reports whether pid may be a pilot: its name is pilot, or
// the system cannot tell. Pids are reused, so a pid file can outlive its
// pilot and point at an unrelated process.
func isPilotProcess(pid int) bool {
	name := processName(pid)
	return name == "" || name == pilotBinaryName()
}
