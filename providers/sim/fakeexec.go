package sim

import (
	"bytes"
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// fakeExec stands in for drone/executor in a simulated instance: it keeps
// the executor's contract pilot relies on — a command id runs at most once
// and a second Run of it answers the first result; Cancel ends one that
// runs — but runs nothing. Each command takes the runtime's exec_latency
// and exits 0, or exec_exit_code for the exec_failure_rate share of them,
// with exec_output_bytes of output. Results live in memory, as the
// instance does.
type fakeExec struct {
	// life is the parent of every command's context: the provider's, so
	// that its Close ends them.
	life   context.Context
	nodeID string
	cfg    execConfig
	// fail decides, once per command, whether it fails.
	fail func() bool

	mu   sync.Mutex
	runs map[string]*fakeRun
	// running counts the execute goroutines, which Close waits for.
	running sync.WaitGroup
}

type fakeRun struct {
	done   chan struct{}
	cancel context.CancelFunc
	result *streamv1.CommandResult
}

func newFakeExec(life context.Context, nodeID string, cfg execConfig, fail func() bool) *fakeExec {
	return &fakeExec{life: life, nodeID: nodeID, cfg: cfg, fail: fail, runs: map[string]*fakeRun{}}
}

// Run runs the command once, waiting for its result; a command id seen
// before waits for (or answers) that first run.
func (e *fakeExec) Run(ctx context.Context, req *streamv1.RunCommand) (*streamv1.CommandResult, error) {
	e.mu.Lock()
	r, seen := e.runs[req.GetCommandId()]
	if !seen {
		// The command's own context: it ends at Cancel or at its
		// timeout, not when this caller gives up waiting.
		rctx, cancel := context.WithCancel(e.life)
		r = &fakeRun{done: make(chan struct{}), cancel: cancel}
		e.runs[req.GetCommandId()] = r
		e.running.Add(1)
		go e.execute(rctx, r, req)
	}
	e.mu.Unlock()
	return e.wait(ctx, r, req.GetCommandId())
}

// wait answers r's result, or a RUNNING one when ctx ends first (as
// drone/executor does: the command keeps running).
func (e *fakeExec) wait(ctx context.Context, r *fakeRun, commandID string) (*streamv1.CommandResult, error) {
	select {
	case <-r.done:
		return r.result, nil
	case <-ctx.Done():
		return &streamv1.CommandResult{CommandId: commandID, NodeId: e.nodeID, State: streamv1.CommandState_COMMAND_STATE_RUNNING}, nil
	}
}

// execute plays one command: its latency (cut short by Cancel or its
// timeout), then its exit.
func (e *fakeExec) execute(ctx context.Context, r *fakeRun, req *streamv1.RunCommand) {
	defer e.running.Done()
	defer r.cancel()
	res := &streamv1.CommandResult{CommandId: req.GetCommandId(), NodeId: e.nodeID, StartedAt: timestamppb.Now()}
	timeout := time.Duration(req.GetTimeoutSeconds()) * time.Second
	if timeout <= 0 {
		timeout = 600 * time.Second
	}
	timer := time.NewTimer(min(e.cfg.latency, timeout))
	defer timer.Stop()
	select {
	case <-timer.C:
		switch {
		case e.cfg.latency > timeout:
			res.State, res.ExitCode, res.Error = streamv1.CommandState_COMMAND_STATE_TIMED_OUT, -1, "killed at its timeout"
		case e.fail():
			res.State, res.ExitCode = streamv1.CommandState_COMMAND_STATE_EXITED, int32(e.cfg.exitCode)
		default:
			res.State = streamv1.CommandState_COMMAND_STATE_EXITED
		}
	case <-ctx.Done():
		res.State, res.ExitCode, res.Error = streamv1.CommandState_COMMAND_STATE_CANCELLED, -1, "cancelled"
	}
	if e.cfg.outputBytes > 0 {
		res.Output = bytes.Repeat([]byte("x"), e.cfg.outputBytes)
	}
	res.FinishedAt = timestamppb.Now()
	r.result = res
	close(r.done)
}

// hook plays a confd check_cmd or reload_cmd: its latency, then success
// (a failing hook fails the render, which is not what a benchmark of
// commands wants to inject).
func (e *fakeExec) hook(ctx context.Context, _ string) error {
	if e.cfg.latency <= 0 {
		return nil
	}
	t := time.NewTimer(e.cfg.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Cancel ends a running command and answers its result; an unknown id is
// cancelled before it ran, and will not run.
func (e *fakeExec) Cancel(ctx context.Context, commandID, reason string) (*streamv1.CommandResult, error) {
	e.mu.Lock()
	r, ok := e.runs[commandID]
	if !ok {
		r = &fakeRun{done: make(chan struct{}), cancel: func() {}}
		r.result = &streamv1.CommandResult{CommandId: commandID, NodeId: e.nodeID, State: streamv1.CommandState_COMMAND_STATE_CANCELLED, ExitCode: -1, Error: "cancelled before it ran: " + reason}
		close(r.done)
		e.runs[commandID] = r
	}
	e.mu.Unlock()
	r.cancel()
	return e.wait(ctx, r, commandID)
}

// Close cancels every command still running and waits for them.
func (e *fakeExec) Close() {
	e.mu.Lock()
	for _, r := range e.runs {
		r.cancel()
	}
	e.mu.Unlock()
	e.running.Wait()
}
