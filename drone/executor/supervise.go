package executor

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
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

// SuperviseArg is the drone's first argument that makes it a supervisor.
const SuperviseArg = "__supervise"

// spec is what the supervisor needs besides the record: <id>.spec.json.
type spec struct {
	Dir       string        `json:"dir"`
	Env       []string      `json:"env"`
	Timeout   time.Duration `json:"timeout"`
	KillGrace time.Duration `json:"kill_grace"`
}

func specPath(dir, id string) string   { return filepath.Join(dir, id+".spec.json") }
func cancelPath(dir, id string) string { return filepath.Join(dir, id+".cancel") }

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
	b, err := json.Marshal(spec{Dir: e.cfg.RootDir, Env: e.cfg.Env, Timeout: timeout, KillGrace: e.cfg.KillGrace})
	if err == nil {
		err = os.WriteFile(specPath(e.cmdDir, id), b, 0o600)
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
			_ = os.WriteFile(cancelPath(e.cmdDir, ex.rec.CommandID), []byte(reason), 0o600)
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
	_ = os.Remove(specPath(e.cmdDir, id))
	_ = os.Remove(cancelPath(e.cmdDir, id))
	rec, err := readRecord(e.recordPath(id))
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
			rec, err := readRecord(e.recordPath(ex.rec.CommandID))
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

// Supervise is the supervisor's main: args are the commands directory and
// the command id. It returns the process's exit status.
func Supervise(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: drone %s COMMANDS-DIR COMMAND-ID (started by the drone, one per command)\n", SuperviseArg)
		return 2
	}
	if err := supervise(args[0], args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "supervise command %s: %v\n", args[1], err)
		return 1
	}
	return 0
}

func supervise(dir, id string) error {
	if err := ValidateCommandID(id); err != nil {
		return err
	}
	// Signals first: the drone may cancel as soon as it started us.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	defer signal.Stop(sigs)

	b, err := os.ReadFile(specPath(dir, id))
	if err != nil {
		return err
	}
	var sp spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("parse %s: %w", specPath(dir, id), err)
	}
	rec, err := readRecord(filepath.Join(dir, id+".json"))
	if err != nil {
		return err
	}
	if rec.State != stateName(streamv1.CommandState_COMMAND_STATE_RUNNING) {
		return fmt.Errorf("the record is %s: nothing to run", rec.State)
	}
	// Who runs it, before it runs: a restarted drone tells by this pid
	// and start time whether the command is still followed.
	_, start, err := procstat.Stat(os.Getpid())
	if err != nil {
		return err
	}
	rec.SupervisorPID, rec.SupervisorStart = os.Getpid(), start
	if err := writeRecord(dir, id, rec); err != nil {
		return err
	}

	outPath := filepath.Join(dir, id+".out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	var c *exec.Cmd
	if err == nil {
		c, err = buildCommand(rec, sp.Dir, sp.Env, out)
	}
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		rec.State, rec.ExitCode, rec.Error = stateName(streamv1.CommandState_COMMAND_STATE_FAILED_TO_START), -1, err.Error()
	} else {
		state, code, msg := superviseWait(c, sp, sigs, dir, id)
		rec.State, rec.ExitCode, rec.Error = stateName(state), code, msg
	}
	if out != nil {
		_ = out.Close()
		var terr error
		if rec.Output, rec.OutputTruncated, terr = readTail(outPath, MaxOutputBytes); terr != nil {
			rec.Error = joinMsg(rec.Error, "output unreadable: "+terr.Error())
		}
		_ = os.Remove(outPath)
	}
	rec.FinishedAt = time.Now().UTC()
	return writeRecord(dir, id, rec)
}

func joinMsg(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// superviseWait waits for the command, killing its group at the timeout,
// on a cancel (SIGUSR1) or when the drone stops (SIGTERM).
func superviseWait(c *exec.Cmd, sp spec, sigs <-chan os.Signal, dir, id string) (streamv1.CommandState, int32, string) {
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	timer := time.NewTimer(sp.Timeout)
	defer timer.Stop()
	state := streamv1.CommandState_COMMAND_STATE_TIMED_OUT
	msg := fmt.Sprintf("killed at its timeout of %v", sp.Timeout)
	select {
	case <-waitErr:
		return streamv1.CommandState_COMMAND_STATE_EXITED, exitCode(c.ProcessState), ""
	case <-timer.C:
	case s := <-sigs:
		if s == syscall.SIGUSR1 {
			reason, _ := os.ReadFile(cancelPath(dir, id))
			state, msg = streamv1.CommandState_COMMAND_STATE_CANCELLED, "cancelled: "+string(reason)
		} else {
			state, msg = streamv1.CommandState_COMMAND_STATE_LOST, "killed because the drone stopped; it was not run again"
		}
	}
	killGroup(c.Process.Pid, waitErr, sp.KillGrace)
	return state, exitCode(c.ProcessState), msg
}
