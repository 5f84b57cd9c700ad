// Package initproc lets the drone be a container's PID 1. A container's
// first process inherits init's duties: every orphan (a daemon the app
// double-forked, a command's supervisor whose drone restarted) is
// re-parented to it and stays a zombie until it reaps it, signals sent to
// the container (docker stop) reach only it, and when it exits the kernel
// kills whatever is left without a chance to shut down.
//
// Reaping cannot live in the drone itself: a reaper waiting on any child
// would steal the exit statuses of the commands the drone waits on. So PID
// 1 runs the drone again as its only direct child and does nothing else:
// it forwards signals to it, reaps every process that lands on it, and
// when the drone exits it asks every remaining process to terminate,
// waits a grace period, kills the rest, and exits with the drone's status.
package initproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
)

// ChildEnv marks the drone that PID 1 started, so that it does not act as
// init again.
const ChildEnv = "HANGAR_DRONE_INIT_CHILD"

// Needed reports whether this process must act as init: it is PID 1 of
// its PID namespace and not already the drone that init started.
func Needed() bool {
	return os.Getpid() == 1 && os.Getenv(ChildEnv) == ""
}

// forwarded are the signals passed on to the drone. SIGCHLD is handled
// here; SIGKILL and SIGSTOP cannot be caught.
var forwarded = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPWR,
}

// Run starts this executable again (same arguments, ChildEnv set) and
// serves as init until it exits; it returns the exit code for os.Exit:
// the drone's own, or 128+signal when a signal ended it. grace bounds how
// long the other processes get to exit after SIGTERM once the drone is
// gone.
func Run(grace time.Duration, stderr io.Writer) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	defer signal.Stop(sigs)

	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "drone init: start the drone: %v\n", err)
		return 127
	}
	// Init only waits from here on: give back what the drone's package
	// initialisation allocated, in every instance.
	debug.FreeOSMemory()
	return supervise(cmd.Process.Pid, sigs, grace, killAll)
}

// killAll signals every process of the namespace but the caller (PID 1).
func killAll(sig syscall.Signal) { _ = syscall.Kill(-1, sig) }

// supervise is init's loop once the drone runs as child: it forwards the
// signals that arrive on sigs, reaps on SIGCHLD, and once child is reaped
// ends every other process (through kill) and returns child's exit code.
func supervise(child int, sigs <-chan os.Signal, grace time.Duration, kill func(syscall.Signal)) int {
	code := -1
	for code < 0 {
		sig := <-sigs
		if sig == syscall.SIGCHLD {
			code = reap(child)
			continue
		}
		if s, ok := sig.(syscall.Signal); ok {
			_ = syscall.Kill(child, s)
		}
	}
	// The drone is gone: whatever it left (the app's servers, commands'
	// supervisors) gets SIGTERM and grace to exit, then SIGKILL.
	kill(syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for !allReaped() {
		select {
		case <-sigs: // SIGCHLD, or a late signal meant for the drone
		case <-deadline.C:
			kill(syscall.SIGKILL)
			for !allReaped() {
				time.Sleep(10 * time.Millisecond)
			}
			return code
		}
	}
	return code
}

// reap collects every exited child; it returns child's exit code once
// child is among them, else -1.
func reap(child int) int {
	code := -1
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return code
		}
		if pid == child {
			code = exitCode(ws)
		}
	}
}

// allReaped reaps what has exited and reports whether no child is left.
func allReaped() bool {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.ECHILD) {
			return true
		}
		if pid <= 0 {
			return false
		}
	}
}

func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 1
}
