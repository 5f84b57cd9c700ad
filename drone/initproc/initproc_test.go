package initproc

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startChild starts script in its own process group, with this test
// process as the subreaper of whatever it orphans: init's position, without
// being PID 1.
func startChild(t *testing.T, script string) (pid int, kill func(syscall.Signal)) {
	t.Helper()
	if err := setSubreaper(); err != nil {
		t.Skipf("cannot become a child subreaper here: %v", err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	return cmd.Process.Pid, func(s syscall.Signal) { _ = syscall.Kill(-pgid, s) }
}

func setSubreaper() error {
	const prSetChildSubreaper = 36
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s was not written", path)
	return 0
}

func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestSupervise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string // $1: file for the orphan's pid
		signal os.Signal
		want   int
	}{
		{"drone exits on its own, orphan reaped", `sleep 300 & echo $! > "$PIDFILE"; exit 3`, nil, 3},
		{"signal forwarded to the drone", `trap 'exit 7' TERM; sleep 300 & echo $! > "$PIDFILE"; wait`, syscall.SIGTERM, 7},
		{"orphan that ignores SIGTERM is killed after grace", `(trap '' TERM; exec sleep 300) & echo $! > "$PIDFILE"; exit 0`, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "orphan.pid")
			t.Setenv("PIDFILE", pidfile)
			sigs := make(chan os.Signal, 16)
			signal.Notify(sigs, syscall.SIGCHLD)
			defer signal.Stop(sigs)
			child, kill := startChild(t, tc.script)
			orphan := readPID(t, pidfile)
			if tc.signal != nil {
				sigs <- tc.signal
			}
			got := supervise(child, sigs, 500*time.Millisecond, kill)
			if got != tc.want {
				t.Errorf("exit code = %d, want %d", got, tc.want)
			}
			if !gone(orphan) {
				t.Errorf("orphan %d still exists (not killed or not reaped)", orphan)
				_ = syscall.Kill(orphan, syscall.SIGKILL)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	cmd := exec.Command("sh", "-c", "kill -9 $$")
	_ = cmd.Run()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if got := exitCode(ws); got != 137 {
		t.Errorf("exitCode of a SIGKILLed process = %d, want 137", got)
	}
}
