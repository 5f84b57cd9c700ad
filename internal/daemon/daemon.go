//go:build unix

package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// DefaultLockWait bounds the wait for another control command on the
	// same pidfile; a start may hold the lock for its whole wait for the
	// server.
	DefaultLockWait = 60 * time.Second
	pollEvery       = 50 * time.Millisecond
)

// Server is one tool's background server: a process that runs as
// `<tool> <Subcommand> ...` and whose pid a pidfile records.
type Server struct {
	// Tool names the tool in messages, e.g. "hangar-kv".
	Tool string
	// Subcommand is the server's first argument (args[1]), e.g. "serve":
	// Alive tells the server from a program that reused its pid by it.
	Subcommand string
	// LockWait bounds Lock's wait; 0 means DefaultLockWait.
	LockWait time.Duration
}

// Alive reports whether pid is a live server of s. Where /proc exists it
// also rules out zombies and pids reused by other programs, so a stale
// pidfile never makes start skip or stop signal a stranger.
func (s Server) Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No procfs (macOS): the signal check is all there is.
		return !errors.Is(err, os.ErrNotExist) || !procfs()
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces or parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return len(args) > 1 && args[1] == s.Subcommand
}

func procfs() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// RunningPID returns the pid in pidfile if that process is a live server
// of s.
func (s Server) RunningPID(pidfile string) (int, bool) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !s.Alive(pid) {
		return 0, false
	}
	return pid, true
}

// WritePIDFile replaces pidfile atomically, so a reader never sees it half
// written.
func WritePIDFile(pidfile string, pid int) error {
	tmp := pidfile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := os.Rename(tmp, pidfile); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// Lock serialises the control commands (start, stop, reload, restart) on
// one pidfile through an flock on <pidfile>.lock, which the kernel drops if
// the holder dies. It waits at most s.LockWait for another holder, and
// returns the unlock.
func (s Server) Lock(ctx context.Context, pidfile string) (func(), error) {
	name := pidfile + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	wait := s.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another %s control command holds it: %w", name, s.Tool, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// Reap collects pid's exit status if it is our exited child, and says how
// it ended. When start and stop run in one process (tests, embedders)
// nobody else would, and a zombie still answers kill(pid, 0).
func Reap(pid int) (bool, string) {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err != nil || got != pid {
		return false, ""
	}
	switch {
	case ws.Exited():
		return true, fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return true, "killed by " + ws.Signal().String()
	}
	return true, "exited"
}

// WaitGone polls until pid is no longer a live server of s, reaping it if
// it is our child, for at most wait.
func (s Server) WaitGone(ctx context.Context, pid int, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		Reap(pid)
		if !s.Alive(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pollEvery):
		}
	}
}
