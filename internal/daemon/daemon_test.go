//go:build unix

package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// self is a Server that this test process is one of: its first argument
// is the test binary's own.
func self(t *testing.T) Server {
	t.Helper()
	if len(os.Args) < 2 {
		t.Skip("the test binary runs without arguments")
	}
	return Server{Tool: "daemon-test", Subcommand: os.Args[1]}
}

// exitedChild starts `sh -c script`, lets it end and returns its pid
// unreaped: a zombie until Reap.
func exitedChild(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Track it by pid, as the tools do.
	_ = cmd.Process.Release()
	t.Cleanup(func() { Reap(pid) })
	if procfs() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil {
				t.Fatal(err)
			}
			if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d did not exit", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	} else {
		time.Sleep(200 * time.Millisecond)
	}
	return pid
}

// runningChild starts a child that runs until the test ends.
func runningChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// deadPID returns the pid of a child that has ended and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestAlive(t *testing.T) {
	s := self(t)
	tests := []struct {
		name     string
		server   Server
		pid      int
		want     bool
		procOnly bool // needs /proc to tell
	}{
		{name: "self", server: s, pid: os.Getpid(), want: true},
		{name: "dead pid", server: s, pid: deadPID(t), want: false},
		{name: "zero pid", server: s, pid: 0, want: false},
		{name: "negative pid", server: s, pid: -1, want: false},
		{name: "zombie", server: Server{Subcommand: "-c"}, pid: exitedChild(t, "exit 0"), want: false, procOnly: true},
		{name: "another program", server: Server{Subcommand: "serve"}, pid: os.Getpid(), want: false, procOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.procOnly && !procfs() {
				t.Skip("no /proc")
			}
			if got := tt.server.Alive(tt.pid); got != tt.want {
				t.Errorf("Alive(%d) = %v, want %v", tt.pid, got, tt.want)
			}
		})
	}
}

func TestPIDFile(t *testing.T) {
	s := self(t)
	dead := deadPID(t)
	tests := []struct {
		name    string
		write   func(t *testing.T, pidfile string)
		wantPID int
		wantOK  bool
	}{
		{
			name: "round trip",
			write: func(t *testing.T, pidfile string) {
				if err := WritePIDFile(pidfile, os.Getpid()); err != nil {
					t.Fatal(err)
				}
			},
			wantPID: os.Getpid(), wantOK: true,
		},
		{
			name: "replaced",
			write: func(t *testing.T, pidfile string) {
				for _, pid := range []int{dead, os.Getpid()} {
					if err := WritePIDFile(pidfile, pid); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantPID: os.Getpid(), wantOK: true,
		},
		{
			name: "dead pid",
			write: func(t *testing.T, pidfile string) {
				if err := WritePIDFile(pidfile, dead); err != nil {
					t.Fatal(err)
				}
			},
		},
		{name: "missing", write: func(*testing.T, string) {}},
		{
			name: "garbage",
			write: func(t *testing.T, pidfile string) {
				if err := os.WriteFile(pidfile, []byte("not a pid\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "x.pid")
			tt.write(t, pidfile)
			pid, ok := s.RunningPID(pidfile)
			if pid != tt.wantPID || ok != tt.wantOK {
				t.Errorf("RunningPID = %d, %v; want %d, %v", pid, ok, tt.wantPID, tt.wantOK)
			}
			if _, err := os.Stat(pidfile + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary pidfile left behind: %v", err)
			}
		})
	}
	// The file holds the pid and a newline, nothing else.
	pidfile := filepath.Join(t.TempDir(), "x.pid")
	if err := WritePIDFile(pidfile, 4242); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(pidfile); err != nil || string(b) != "4242\n" {
		t.Errorf("pidfile holds %q, %v; want %q", b, err, "4242\n")
	}
	if err := WritePIDFile(filepath.Join(t.TempDir(), "missing", "x.pid"), 1); err == nil {
		t.Error("wrote a pidfile into a directory that does not exist")
	}
}

func TestLock(t *testing.T) {
	s := Server{Tool: "daemon-test", LockWait: 150 * time.Millisecond}
	tests := []struct {
		name    string
		held    bool // another holder has the lock
		wantErr bool
	}{
		{name: "free", held: false, wantErr: false},
		{name: "held", held: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "x.pid")
			if tt.held {
				unlock, err := s.Lock(context.Background(), pidfile)
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
			}
			begin := time.Now()
			unlock, err := s.Lock(context.Background(), pidfile)
			took := time.Since(begin)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Lock: %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil {
				unlock()
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another daemon-test control command holds it") {
				t.Errorf("Lock: %v, want the holder named and the deadline", err)
			}
			if took < s.LockWait || took > s.LockWait+5*time.Second {
				t.Errorf("Lock gave up after %s, want about %s", took, s.LockWait)
			}
		})
	}

	// The lock is free again once its holder unlocks.
	pidfile := filepath.Join(t.TempDir(), "x.pid")
	unlock, err := s.Lock(context.Background(), pidfile)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	unlock, err = s.Lock(context.Background(), pidfile)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock()
}

func TestReap(t *testing.T) {
	tests := []struct {
		name       string
		pid        func(t *testing.T) int
		wantExited bool
		wantStatus string
	}{
		{name: "exit 0", pid: func(t *testing.T) int { return exitedChild(t, "exit 0") }, wantExited: true, wantStatus: "exit status 0"},
		{name: "exit 3", pid: func(t *testing.T) int { return exitedChild(t, "exit 3") }, wantExited: true, wantStatus: "exit status 3"},
		{name: "killed", pid: func(t *testing.T) int { return exitedChild(t, "kill -9 $$") }, wantExited: true, wantStatus: "killed by killed"},
		{name: "not our child", pid: func(*testing.T) int { return os.Getppid() }},
		{name: "running child", pid: runningChild},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid := tt.pid(t)
			exited, status := Reap(pid)
			if exited != tt.wantExited || status != tt.wantStatus {
				t.Errorf("Reap(%d) = %v, %q; want %v, %q", pid, exited, status, tt.wantExited, tt.wantStatus)
			}
			if exited {
				if again, _ := Reap(pid); again {
					t.Errorf("Reap(%d) reaped it twice", pid)
				}
			}
		})
	}
}

func TestWaitGone(t *testing.T) {
	s := self(t)
	tests := []struct {
		name string
		pid  func(t *testing.T) int
		want bool
	}{
		{name: "exited child", pid: func(t *testing.T) int { return exitedChild(t, "exit 0") }, want: true},
		{name: "dead pid", pid: deadPID, want: true},
		{name: "self", pid: func(*testing.T) int { return os.Getpid() }, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.WaitGone(context.Background(), tt.pid(t), 200*time.Millisecond); got != tt.want {
				t.Errorf("WaitGone = %v, want %v", got, tt.want)
			}
		})
	}
}
