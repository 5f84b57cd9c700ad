// Package executor runs the lifecycle commands pilot sends to a drone: each
// command id at most once, under a timeout the drone enforces itself, with
// its combined output captured. Every command is recorded on disk before it
// starts, so a repeated request (a retry after a lost connection, or after a
// drone restart) is answered from the record instead of running it again.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor/supervise"
	"github.com/hangarhq/hangar/internal/procstat"
)

// Limits of a command request.
const (
	DefaultTimeout   = 600 * time.Second
	MaxTimeout       = 86400 * time.Second
	MaxOutputBytes   = supervise.MaxOutputBytes
	MaxCommandIDLen  = supervise.MaxCommandIDLen
	defaultKillGrace = 10 * time.Second
	defaultRetention = 30 * 24 * time.Hour
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("executor closed")

// ErrInvalid matches (errors.Is) the errors Run returns for a malformed
// request: nothing was recorded or run, and a retry cannot succeed.
var ErrInvalid = errors.New("invalid command request")

type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// Config describes an Executor.
type Config struct {
	// DataDir holds commands/<command_id>.json and cmd.log.
	DataDir string
	// RootDir is the working directory of commands ("/" when empty).
	RootDir string
	// NodeID is copied into every result.
	NodeID string
	// Env is the commands' environment (default: the drone's own).
	Env []string
	// KillGrace is the time between SIGTERM and SIGKILL when a command is
	// killed (default 10s).
	KillGrace time.Duration
	// Retention is how long finished records are kept; older ones are
	// removed when the executor starts (default 30 days). Pilot never
	// retries a command that long after it was sent.
	Retention time.Duration
	// Supervisor, when set, is the command line (the drone binary and
	// SuperviseArg) of a small process started per command, in a session
	// of its own, that runs the command, enforces its timeout and writes
	// its result into the command's record: a drone killed meanwhile finds
	// the real result when it comes back, as container runtimes' shims
	// do. Empty: commands run as the drone's children, and one running
	// when the drone dies is recorded LOST.
	Supervisor []string
	Logger     *slog.Logger
}

// Executor runs commands. It is safe for concurrent use.
type Executor struct {
	cfg    Config
	log    *slog.Logger
	cmdDir string

	logMu sync.Mutex // serialises appends to cmd.log

	mu      sync.Mutex
	running map[string]*execution
	closed  bool
	stop    chan struct{} // closed by Close: running commands are killed
	wg      sync.WaitGroup
}

// execution is one command in flight.
type execution struct {
	rec  record
	done chan struct{} // closed once result is set
	res  *streamv1.CommandResult
	// kill is closed (once, under Executor.mu) to cancel the command;
	// reason says why.
	kill   chan struct{}
	killed bool
	reason string
}

// New prepares the data dir and marks every command that was still running
// when a previous drone process stopped as LOST: it is never run again.
func New(cfg Config) (*Executor, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("executor: DataDir is required")
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = defaultKillGrace
	}
	if cfg.Retention <= 0 {
		cfg.Retention = defaultRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Executor{
		cfg:     cfg,
		log:     cfg.Logger,
		cmdDir:  filepath.Join(cfg.DataDir, "commands"),
		running: map[string]*execution{},
		stop:    make(chan struct{}),
	}
	if err := os.MkdirAll(e.cmdDir, 0o700); err != nil {
		return nil, fmt.Errorf("executor: create %s: %w", e.cmdDir, err)
	}
	if err := e.recover(); err != nil {
		return nil, err
	}
	return e, nil
}

// recover turns RUNNING records left by a previous process into LOST and
// drops expired records and half-written temp files.
func (e *Executor) recover() error {
	entries, err := os.ReadDir(e.cmdDir)
	if err != nil {
		return fmt.Errorf("executor: read %s: %w", e.cmdDir, err)
	}
	now := time.Now()
	for _, ent := range entries {
		name := ent.Name()
		full := filepath.Join(e.cmdDir, name)
		if strings.Contains(name, ".tmp-") || (strings.HasSuffix(name, ".out") && !supervisedOutput(e.cmdDir, name)) {
			// A write that never reached its rename (the record it was
			// replacing, if any, is intact), or the output of a command
			// that was running.
			_ = os.Remove(full)
			continue
		}
		if strings.HasSuffix(name, ".spec.json") || strings.HasSuffix(name, ".cancel") {
			// A supervisor's inputs: removed when its command settles,
			// or below with the record of a command lost with its
			// supervisor.
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		rec, err := supervise.ReadRecord(full)
		if err != nil {
			// Keep the file: deleting it would allow the id to run again.
			e.log.Warn("unreadable command record", "path", full, "err", err)
			continue
		}
		switch {
		case rec.State == stateName(streamv1.CommandState_COMMAND_STATE_RUNNING) && procstat.Alive(rec.SupervisorPID, rec.SupervisorStart):
			// Its supervisor outlived the previous drone process: follow
			// it to the real result.
			ex := &execution{rec: rec, done: make(chan struct{}), kill: make(chan struct{})}
			e.running[id] = ex
			e.wg.Add(1)
			go e.reattach(ex)
		case rec.State == stateName(streamv1.CommandState_COMMAND_STATE_RUNNING):
			rec.State = stateName(streamv1.CommandState_COMMAND_STATE_LOST)
			rec.ExitCode = -1
			rec.FinishedAt = now
			rec.Error = "the drone restarted while the command ran; it was not run again"
			_ = os.Remove(supervise.SpecPath(e.cmdDir, id))
			_ = os.Remove(supervise.CancelPath(e.cmdDir, id))
			if err := supervise.WriteRecord(e.cmdDir, id, rec); err != nil {
				return fmt.Errorf("executor: mark command %s lost: %w", id, err)
			}
			e.appendLog(id, "[failed-1]")
			e.log.Warn("command lost by a drone restart", "command_id", id)
		case !rec.FinishedAt.IsZero() && now.Sub(rec.FinishedAt) > e.cfg.Retention:
			_ = os.Remove(full)
		}
	}
	return nil
}

// supervisedOutput: the output file of a command whose supervisor still
// runs is still being written.
func supervisedOutput(dir, name string) bool {
	rec, err := supervise.ReadRecord(filepath.Join(dir, strings.TrimSuffix(name, ".out")+".json"))
	return err == nil && procstat.Alive(rec.SupervisorPID, rec.SupervisorStart)
}

// ValidateCommandID checks an id before it is used as a file name.
func ValidateCommandID(id string) error { return supervise.ValidateCommandID(id) }

func timeoutOf(req *streamv1.RunCommand) (time.Duration, error) {
	s := req.GetTimeoutSeconds()
	switch {
	case s == 0:
		return DefaultTimeout, nil
	case s < 0 || time.Duration(s)*time.Second > MaxTimeout:
		return 0, fmt.Errorf("timeout_seconds %d is out of range: allowed 0..%d (0 means %d)", s, int(MaxTimeout/time.Second), int(DefaultTimeout/time.Second))
	}
	return time.Duration(s) * time.Second, nil
}

// Run executes req at most once per command id and returns its result.
//
// A request for an id already finished returns the recorded result; one for
// an id still running waits for that same execution. When ctx ends before
// the command does, Run returns a RUNNING result: the command itself keeps
// running until it exits, reaches its timeout, or Close kills it. An error
// means the request was invalid or could not be recorded, and nothing ran.
func (e *Executor) Run(ctx context.Context, req *streamv1.RunCommand) (*streamv1.CommandResult, error) {
	id := req.GetCommandId()
	if err := ValidateCommandID(id); err != nil {
		return nil, invalidError{fmt.Errorf("run command: %w", err)}
	}
	timeout, err := timeoutOf(req)
	if err != nil {
		return nil, invalidError{fmt.Errorf("run command %s: %w", id, err)}
	}
	if strings.TrimSpace(req.GetCmd()) == "" {
		return nil, invalidError{fmt.Errorf("run command %s: cmd is required", id)}
	}

	ex, res, err := e.claim(id, req, timeout)
	if err != nil {
		return nil, err
	}
	if res != nil {
		return res, nil
	}
	select {
	case <-ex.done:
		return ex.res, nil
	case <-ctx.Done():
		return resultOf(ex.rec, e.cfg.NodeID), nil
	}
}

// claim returns the recorded result of id, or the execution of id, starting
// it when id was never seen. The record is written before the process
// starts, under e.mu, so two requests for one id can never both start it.
func (e *Executor) claim(id string, req *streamv1.RunCommand, timeout time.Duration) (*execution, *streamv1.CommandResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil, fmt.Errorf("run command %s: %w", id, ErrClosed)
	}
	if ex, ok := e.running[id]; ok {
		e.warnIfDifferent(ex.rec, req)
		return ex, nil, nil
	}
	rec, err := supervise.ReadRecord(e.recordPath(id))
	switch {
	case err == nil:
		e.warnIfDifferent(rec, req)
		return nil, resultOf(rec, e.cfg.NodeID), nil
	case !errors.Is(err, os.ErrNotExist):
		// Without its record we cannot tell whether id already ran.
		return nil, nil, fmt.Errorf("run command %s: read its record: %w", id, err)
	}
	rec = record{
		CommandID:      id,
		Cmd:            req.GetCmd(),
		User:           req.GetUser(),
		TimeoutSeconds: int32(timeout / time.Second),
		State:          stateName(streamv1.CommandState_COMMAND_STATE_RUNNING),
		StartedAt:      time.Now().UTC(),
	}
	if err := supervise.WriteRecord(e.cmdDir, id, rec); err != nil {
		return nil, nil, fmt.Errorf("run command %s: record it: %w", id, err)
	}
	ex := &execution{rec: rec, done: make(chan struct{}), kill: make(chan struct{})}
	e.running[id] = ex
	e.wg.Add(1)
	go e.execute(ex, timeout)
	return ex, nil, nil
}

func (e *Executor) warnIfDifferent(rec record, req *streamv1.RunCommand) {
	if rec.Cmd != req.GetCmd() {
		e.log.Warn("repeated command id with a different cmd; answering with the first one's result", "command_id", rec.CommandID)
	}
}

// execute runs ex to its end and publishes the result.
func (e *Executor) execute(ex *execution, timeout time.Duration) {
	defer e.wg.Done()
	id := ex.rec.CommandID
	e.appendLog(id, "[executing]: "+oneLine(ex.rec.Cmd))
	e.log.Info("command started", "command_id", id, "timeout", timeout, "user", ex.rec.User, "supervised", len(e.cfg.Supervisor) > 0)
	var final record
	if len(e.cfg.Supervisor) > 0 {
		final = e.supervised(ex, timeout)
	} else {
		final = e.direct(ex, timeout)
	}
	e.finish(ex, final)
}

// direct runs ex as the drone's own child.
func (e *Executor) direct(ex *execution, timeout time.Duration) record {
	id := ex.rec.CommandID
	final := ex.rec
	outPath := filepath.Join(e.cmdDir, id+".out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	var c *exec.Cmd
	if err == nil {
		c, err = supervise.Build(ex.rec, e.cfg.RootDir, e.cfg.Env, out)
	}
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		final.State = stateName(streamv1.CommandState_COMMAND_STATE_FAILED_TO_START)
		final.ExitCode = -1
		final.Error = err.Error()
	} else {
		state, code, msg := e.wait(c, timeout, ex)
		final.State, final.ExitCode, final.Error = stateName(state), code, msg
	}
	if out != nil {
		_ = out.Close()
		e.keepOutput(&final, outPath)
	}
	final.FinishedAt = time.Now().UTC()
	return final
}

// keepOutput puts the tail of the command's output file into rec and
// removes the file.
func (e *Executor) keepOutput(rec *record, outPath string) {
	var err error
	rec.Output, rec.OutputTruncated, err = supervise.ReadTail(outPath, MaxOutputBytes)
	if err != nil {
		e.log.Warn("read command output", "command_id", rec.CommandID, "err", err)
	}
	// A daemon the command started may still hold the file open; it
	// keeps writing to it unharmed, but its output is no longer kept.
	_ = os.Remove(outPath)
}

// finish records ex's final result and answers those waiting for it.
func (e *Executor) finish(ex *execution, final record) {
	id := final.CommandID
	log := e.log.With("command_id", id)
	persisted := true
	if err := supervise.WriteRecord(e.cmdDir, id, final); err != nil {
		// The RUNNING record stays on disk (a restarted drone reports the
		// command LOST); this process still answers with the real result.
		persisted = false
		log.Error("record command result", "err", err)
	}
	if final.State == stateName(streamv1.CommandState_COMMAND_STATE_EXITED) && final.ExitCode == 0 {
		e.appendLog(id, "[successful]")
	} else {
		e.appendLog(id, fmt.Sprintf("[failed%d]", final.ExitCode))
	}
	log.Info("command finished", "state", final.State, "exit_code", final.ExitCode, "error", final.Error)

	e.mu.Lock()
	ex.res = resultOf(final, e.cfg.NodeID)
	close(ex.done)
	if persisted {
		delete(e.running, id)
	}
	e.mu.Unlock()
}

// wait waits for the started command, killing its process group at the
// timeout, on a cancel, or when the executor closes.
func (e *Executor) wait(c *exec.Cmd, timeout time.Duration, ex *execution) (streamv1.CommandState, int32, string) {
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	state := streamv1.CommandState_COMMAND_STATE_TIMED_OUT
	msg := fmt.Sprintf("killed at its timeout of %v", timeout)
	select {
	case <-waitErr:
		return streamv1.CommandState_COMMAND_STATE_EXITED, supervise.ExitCode(c.ProcessState), ""
	case <-timer.C:
	case <-ex.kill:
		state = streamv1.CommandState_COMMAND_STATE_CANCELLED
		e.mu.Lock()
		msg = "cancelled: " + ex.reason
		e.mu.Unlock()
	case <-e.stop:
		state = streamv1.CommandState_COMMAND_STATE_LOST
		msg = "killed because the drone stopped; it was not run again"
	}
	supervise.KillGroup(c.Process.Pid, waitErr, e.cfg.KillGrace)
	return state, supervise.ExitCode(c.ProcessState), msg
}

// Cancel kills command id if it runs (its process group gets SIGTERM, then
// SIGKILL after the grace period) and returns its result, state CANCELLED;
// a command that already ended keeps its result. An id never seen is
// recorded CANCELLED, so a request for it arriving later (one still in
// flight when its job was cancelled) never runs it. When ctx ends before
// the command does, the answer is its RUNNING result.
func (e *Executor) Cancel(ctx context.Context, id, reason string) (*streamv1.CommandResult, error) {
	if err := ValidateCommandID(id); err != nil {
		return nil, invalidError{fmt.Errorf("cancel command: %w", err)}
	}
	e.mu.Lock()
	ex, ok := e.running[id]
	if !ok {
		defer e.mu.Unlock()
		rec, err := supervise.ReadRecord(e.recordPath(id))
		switch {
		case err == nil:
			return resultOf(rec, e.cfg.NodeID), nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("cancel command %s: read its record: %w", id, err)
		}
		now := time.Now().UTC()
		rec = record{CommandID: id, State: stateName(streamv1.CommandState_COMMAND_STATE_CANCELLED), ExitCode: -1,
			StartedAt: now, FinishedAt: now, Error: "cancelled before it ran: " + reason}
		if err := supervise.WriteRecord(e.cmdDir, id, rec); err != nil {
			return nil, fmt.Errorf("cancel command %s: %w", id, err)
		}
		e.appendLog(id, "[cancelled]")
		e.log.Info("command cancelled before it ran", "command_id", id, "reason", reason)
		return resultOf(rec, e.cfg.NodeID), nil
	}
	if !ex.killed {
		ex.killed, ex.reason = true, reason
		close(ex.kill)
		e.log.Info("cancelling command", "command_id", id, "reason", reason)
	}
	e.mu.Unlock()
	select {
	case <-ex.done:
		return ex.res, nil
	case <-ctx.Done():
		return resultOf(ex.rec, e.cfg.NodeID), nil
	}
}

// Close kills the running commands (recorded as LOST) and waits for them.
func (e *Executor) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

func (e *Executor) recordPath(id string) string {
	return filepath.Join(e.cmdDir, id+".json")
}

// appendLog writes an AppCenter-style status line to cmd.log, which tools
// written for AppCenter agents tail.
func (e *Executor) appendLog(id, status string) {
	line := fmt.Sprintf("%s %s %s\n", time.Now().Format("2006-01-02 15:04:05"), id, status)
	e.logMu.Lock()
	defer e.logMu.Unlock()
	path := filepath.Join(e.cfg.DataDir, "cmd.log")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		e.log.Warn("open cmd.log", "err", err)
		return
	}
	if _, err := f.WriteString(line); err != nil {
		e.log.Warn("write cmd.log", "err", err)
	}
	_ = f.Close()
}

// oneLine keeps one status line per event in cmd.log.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// resultOf converts a record into the protocol's message.
func resultOf(r record, nodeID string) *streamv1.CommandResult {
	res := &streamv1.CommandResult{
		CommandId:       r.CommandID,
		NodeId:          nodeID,
		State:           parseState(r.State),
		ExitCode:        r.ExitCode,
		Output:          r.Output,
		OutputTruncated: r.OutputTruncated,
		Error:           r.Error,
	}
	if !r.StartedAt.IsZero() {
		res.StartedAt = timestamppb.New(r.StartedAt)
	}
	if !r.FinishedAt.IsZero() {
		res.FinishedAt = timestamppb.New(r.FinishedAt)
	}
	return res
}
