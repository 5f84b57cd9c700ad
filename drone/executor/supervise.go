package executor

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor/supervise"
	"github.com/hangarhq/hangar/internal/procstat"
)

// Supervised commands. The drone starts, per command, its own binary with
// SuperviseArg, in a session of its own; that supervisor runs the command
// in a process group, enforces its timeout and writes the final result
// into the command's record. The drone waits for it and reads the record.
// A drone killed meanwhile (SIGKILL, OOM) leaves the supervisor running;
// the restarted drone finds it alive by the pid and start time it wrote
// into the record and waits for the record to be final, so the command's
// real exit code is reported and the command never runs twice.
//
// Signals from the drone: SIGUSR1 cancels (the reason is in
// <id>.cancel), SIGTERM means the drone is stopping cleanly (the command is
// killed and recorded LOST, as without a supervisor).

// SuperviseArg is the drone's first argument that makes it a supervisor
// (supervise.Main).
const SuperviseArg = supervise.Arg

// supervised runs ex through a supervisor and returns the result it
// recorded.
func (e *Executor) supervised(ex *execution, timeout time.Duration) record {
	id := ex.rec.CommandID
	fail := func(err error) record {
		r := ex.rec
		r.State, r.ExitCode, r.Error = stateName(streamv1.CommandState_COMMAND_STATE_FAILED_TO_START), -1, err.Error()
		r.FinishedAt = time.Now().UTC()
		return r
	}
	b, err := json.Marshal(supervise.Spec{Dir: e.cfg.RootDir, Env: e.cfg.Env, Timeout: timeout, KillGrace: e.cfg.KillGrace})
	if err == nil {
		err = os.WriteFile(supervise.SpecPath(e.cmdDir, id), b, 0o600)
	}
	if err != nil {
		return fail(fmt.Errorf("write the supervisor's spec: %w", err))
	}
	args := append(append([]string{}, e.cfg.Supervisor[1:]...), e.cmdDir, id)
	c := exec.Command(e.cfg.Supervisor[0], args...)
	// Its own session: whatever kills the drone, or the drone's group,
	// leaves it running.
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return fail(fmt.Errorf("start the supervisor %s: %w", e.cfg.Supervisor[0], err))
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	e.follow(ex, waitErr, func(sig syscall.Signal) { _ = c.Process.Signal(sig) })
	return e.settle(ex)
}

// follow waits until done delivers, passing a cancel or the executor's
// stop on to the supervisor through signal.
func (e *Executor) follow(ex *execution, done <-chan error, signal func(syscall.Signal)) {
	kill, stop := ex.kill, e.stop
	for {
		select {
		case <-done:
			return
		case <-kill:
			e.mu.Lock()
			reason := ex.reason
			e.mu.Unlock()
			_ = os.WriteFile(supervise.CancelPath(e.cmdDir, ex.rec.CommandID), []byte(reason), 0o600)
			signal(syscall.SIGUSR1)
			kill = nil
		case <-stop:
			signal(syscall.SIGTERM)
			stop = nil
		}
	}
}

// settle reads the result a supervisor recorded; one that ended without
// recording any lost the command.
func (e *Executor) settle(ex *execution) record {
	id := ex.rec.CommandID
	_ = os.Remove(supervise.SpecPath(e.cmdDir, id))
	_ = os.Remove(supervise.CancelPath(e.cmdDir, id))
	rec, err := supervise.ReadRecord(e.recordPath(id))
	if err == nil && rec.State != stateName(streamv1.CommandState_COMMAND_STATE_RUNNING) {
		return rec
	}
	r := ex.rec
	r.State, r.ExitCode = stateName(streamv1.CommandState_COMMAND_STATE_LOST), -1
	r.Error = "its supervisor ended without recording a result; it was not run again"
	if err != nil {
		r.Error += fmt.Sprintf(" (%v)", err)
	}
	r.FinishedAt = time.Now().UTC()
	return r
}

// reattach follows a command whose supervisor outlived a previous drone
// process: the supervisor is not this process's child, so its end is seen
// by polling.
func (e *Executor) reattach(ex *execution) {
	defer e.wg.Done()
	pid, start := ex.rec.SupervisorPID, ex.rec.SupervisorStart
	done := make(chan error, 1)
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			rec, err := supervise.ReadRecord(e.recordPath(ex.rec.CommandID))
			if (err == nil && rec.State != stateName(streamv1.CommandState_COMMAND_STATE_RUNNING)) || !procstat.Alive(pid, start) {
				done <- nil
				return
			}
		}
	}()
	e.log.Info("command still running under its supervisor; following it", "command_id", ex.rec.CommandID, "supervisor_pid", pid)
	e.follow(ex, done, func(sig syscall.Signal) {
		if procstat.Alive(pid, start) {
			_ = syscall.Kill(pid, sig)
		}
	})
	close(quit)
	e.finish(ex, e.settle(ex))
}
