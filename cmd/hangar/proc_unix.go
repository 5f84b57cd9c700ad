//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hangarhq/hangar/internal/procstat"
)

// startDetached starts bin in its own session, with stdin from /dev/null and
// stdout and stderr appended to logFile (nil: /dev/null), so it outlives this hangar process
// and ignores the terminal's Ctrl-C. It returns the pid; the caller checks
// on the process with childExited.
func startDetached(bin string, args []string, dir string, logFile *os.File) (int, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if logFile != nil {
		cmd.Stdout = logFile
		cmd.Stderr = logFile
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	// Release frees the handle without waiting: the process lives on, and
	// childExited reaps it with a non-blocking wait if it dies early.
	_ = cmd.Process.Release()
	return pid, nil
}

// childExited reaps our child pid if it has exited, describing how it ended.
// It never blocks; for a process that is not our child it reports false.
func childExited(pid int) (bool, string) {
	var ws syscall.WaitStatus
	wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err != nil || wpid != pid {
		return false, ""
	}
	switch {
	case ws.Exited():
		return true, fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return true, "killed by signal " + ws.Signal().String()
	}
	return true, "ended"
}

// processAlive reports whether pid runs. Our own exited child is reaped
// first, and a zombie some other parent has not reaped yet (a crashed
// pilot whose parent is a slow init) does not count: it runs nothing.
func processAlive(pid int) bool {
	if exited, _ := childExited(pid); exited {
		return false
	}
	if state, _, err := procstat.Stat(pid); err == nil && (state == 'Z' || state == 'X') {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func terminateProcess(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }
func killProcess(pid int) error      { return syscall.Kill(pid, syscall.SIGKILL) }

// processName is the base name of pid's argv[0], or "" where /proc cannot
// tell (no procfs, or the process is gone).
func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return ""
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0)
}
