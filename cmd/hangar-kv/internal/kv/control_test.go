//go:build unix

package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type instance struct {
	dir, config, pidfile, log, addr string
}

// newInstance lays out an instance directory with a primary config on a
// free port.
func newInstance(t *testing.T, motd string) instance {
	t.Helper()
	// Start launches this test binary, which acts as hangar-kv when told.
	t.Setenv(runMainEnv, "1")
	dir := t.TempDir()
	in := instance{
		dir:     dir,
		config:  filepath.Join(dir, "opt/kv/kv.conf"),
		pidfile: filepath.Join(dir, "var/run/kv.pid"),
		log:     filepath.Join(dir, "var/log/kv/kv.log"),
		addr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	if err := os.MkdirAll(filepath.Dir(in.config), 0o755); err != nil {
		t.Fatal(err)
	}
	in.writeConfig(t, motd)
	// Never leave a server behind, whatever the test did.
	t.Cleanup(func() {
		if pid, ok := background.RunningPID(in.pidfile); ok {
			killAndReap(pid)
		}
	})
	return in
}

func (in instance) writeConfig(t *testing.T, motd string) {
	writeFile(t, in.config, fmt.Sprintf("role = primary\nlisten = %s\nmotd = %s\n", in.addr, motd))
}

func (in instance) start(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return Start(ctx, StartOptions{ConfigFile: in.config, PIDFile: in.pidfile, LogFile: in.log, Wait: 15 * time.Second, Executable: exe})
}

func readPID(t *testing.T, pidfile string) int {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStartReloadStop(t *testing.T) {
	ctx := context.Background()
	c := testClient(t)
	in := newInstance(t, "first")

	if err := in.start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := readPID(t, in.pidfile)
	st, err := getStatus(c, in.addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.MOTD != "first" || st.Role != RolePrimary || st.ConfigFile != in.config {
		t.Fatalf("status after start = %+v", st)
	}

	// start again: the running server is kept.
	if err := in.start(ctx); err != nil {
		t.Fatal(err)
	}
	if again := readPID(t, in.pidfile); again != pid {
		t.Fatalf("second start replaced pid %d by %d", pid, again)
	}

	// reload delivers SIGHUP: the server survives it and picks up motd.
	in.writeConfig(t, "second")
	if err := Reload(ctx, ReloadOptions{PIDFile: in.pidfile}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		st, err := getStatus(c, in.addr)
		if err != nil {
			return err
		}
		if st.MOTD != "second" {
			return fmt.Errorf("motd = %q, want second", st.MOTD)
		}
		return nil
	})
	rl, err := os.ReadFile(filepath.Join(filepath.Dir(in.pidfile), ReloadLogName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(rl)), "\n")
	if len(lines) != 1 || !strings.HasSuffix(lines[0], " reloaded") {
		t.Fatalf("reload.log = %q, want one \"<time> reloaded\" line", rl)
	}
	if _, err := time.Parse(time.RFC3339, strings.TrimSuffix(lines[0], " reloaded")); err != nil {
		t.Fatalf("reload.log timestamp: %v", err)
	}

	if err := Stop(ctx, StopOptions{PIDFile: in.pidfile, Wait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// Stop returns once the server has exited; the exited process may
	// still await reaping for a moment (a zombie), so wait for it to go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) || isZombie(pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running 5s after stop (kill 0: %v)", pid, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(in.pidfile); !os.IsNotExist(err) {
		t.Fatalf("pidfile left after stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", in.addr, time.Second); err == nil {
		t.Fatalf("%s still accepts connections after stop", in.addr)
	}
	logText, _ := os.ReadFile(in.log)
	if !bytes.Contains(logText, []byte("config reloaded")) || !bytes.Contains(logText, []byte("msg=stopped")) {
		t.Fatalf("server log lacks the reload or the graceful stop:\n%s", logText)
	}

	// stop and reload when nothing runs are not errors.
	if err := Stop(ctx, StopOptions{PIDFile: in.pidfile}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := Reload(ctx, ReloadOptions{PIDFile: in.pidfile}); err != nil {
		t.Fatalf("reload when stopped: %v", err)
	}
	rl, _ = os.ReadFile(filepath.Join(filepath.Dir(in.pidfile), ReloadLogName))
	if !strings.HasSuffix(strings.TrimSpace(string(rl)), " reloaded (not running)") {
		t.Fatalf("reload.log = %q, want a last line for a reload with no server", rl)
	}
}

func TestStartFailsClearly(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, "m")
	// Someone else holds the port: serve exits and start says why.
	ln, err := net.Listen("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = in.start(ctx)
	if err == nil {
		t.Fatal("start succeeded on a taken port")
	}
	for _, want := range []string{"exited", "address already in use", in.log} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(in.pidfile); !os.IsNotExist(err) {
		t.Fatalf("pidfile left after a failed start: %v", err)
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, "m")
	writeFile(t, in.config, "role = primary\nlisten = 127.0.0.1:0\n")
	if err := in.start(ctx); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Fatalf("start with listen port 0: %v", err)
	}
	writeFile(t, in.config, "role = leader\nlisten = 127.0.0.1:1\n")
	if err := in.start(ctx); err == nil || !strings.Contains(err.Error(), "role") {
		t.Fatalf("start with a bad role: %v", err)
	}
	if err := Start(ctx, StartOptions{ConfigFile: in.config, LogFile: in.log}); err == nil || !strings.Contains(err.Error(), "--pidfile") {
		t.Fatalf("start without pidfile: %v", err)
	}
}

// A pidfile naming a process that is not a hangar-kv server (the pid was
// reused) neither blocks start nor gets signalled by stop.
func TestStalePIDFile(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, "m")
	if err := os.MkdirAll(filepath.Dir(in.pidfile), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, in.pidfile, strconv.Itoa(os.Getpid())+"\n")
	if err := Stop(ctx, StopOptions{PIDFile: in.pidfile}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, in.pidfile, strconv.Itoa(os.Getpid())+"\n")
	if err := in.start(ctx); err != nil {
		t.Fatal(err)
	}
	if pid := readPID(t, in.pidfile); pid == os.Getpid() {
		t.Fatal("start trusted a stale pidfile")
	}
	if err := Stop(ctx, StopOptions{PIDFile: in.pidfile}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckAndMonitor(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, "m")
	if err := Check(ctx, in.config, time.Second); err == nil {
		t.Fatal("check passed with no server")
	}
	if err := in.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer Stop(ctx, StopOptions{PIDFile: in.pidfile})
	if err := Check(ctx, in.config, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	do(t, testClient(t), "PUT", "http://"+in.addr+"/kv/a", "1")
	if _, err := Monitor(ctx, in.config, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	do(t, testClient(t), "GET", "http://"+in.addr+"/kv/a", "")
	if err := Check(ctx, in.config, 5*time.Second); err != nil { // a probe: not counted
		t.Fatal(err)
	}
	items, err := Monitor(ctx, in.config, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if items["keys"] != 1 || items["version"] != 1 || items["requests"] != 2 {
		t.Fatalf("monitor = %v, want keys 1 version 1 requests 2", items)
	}
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"stop", "--config", "x"}, 2, "flag --config does not apply"},
		{[]string{"stop", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"start", "--pidfile", "p", "--log", "l"}, 1, "--config is required"},
		{[]string{"help"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(tt.args, &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.err) {
				t.Fatalf("stderr %q lacks %q", errOut.String(), tt.err)
			}
		})
	}
}

// isZombie reports whether pid has exited and awaits reaping.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
