// Package jobs is pilot's job engine. A job is a DAG of tasks stored in etcd
// before anything runs; the engine claims a job with an etcd lease (so one
// replica runs it at a time), runs each task whose dependencies succeeded
// through the handler registered for its kind, and records every state
// change in the job record, and node results in records of their own
// (results.go). It is level-triggered: on start and on every change it
// looks at what is stored and carries on from there, so a pilot that
// crashed mid-job resumes it — handlers are idempotent, and a task found
// RUNNING is simply run again.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/pilot/store"
)

// Handler runs one task. It must be idempotent: it may run again after a
// crash or a retry, and must then converge instead of repeating effects.
type Handler func(ctx context.Context, t *Task) error

// Finalizer is called once a job's outcome is known, before the job is
// marked terminal (so a crash in between runs it again). It brings the
// job's subject (the cluster) to the matching state.
type Finalizer func(ctx context.Context, job *pilotv1.Job) error

// Config configures an Engine.
type Config struct {
	Store    *store.Store
	Logger   *slog.Logger
	Handlers map[string]Handler
	// Finalizers by job kind; optional.
	Finalizers map[string]Finalizer
	// Ended, when set, is told of every job once it is terminal (after
	// its finalizer and its stored state): the cluster's event log. A
	// crash in between loses the call, not the job's state.
	Ended func(ctx context.Context, job *pilotv1.Job)
	// ClaimTTL is the lease TTL of a job claim in seconds (default 10).
	ClaimTTL int
	// MaxAttempts per task for retryable errors (default 5).
	MaxAttempts int
	// TaskTimeout bounds one attempt of a task (default 30 min).
	TaskTimeout time.Duration
	// Rescan is how often stored jobs are looked at again (default 2 s).
	Rescan time.Duration
	// RetryBase is the first retry delay (default 500 ms).
	RetryBase time.Duration
}

// Engine runs jobs. Create with New, run with Run.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	wake    chan struct{}
}

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = 10
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.TaskTimeout <= 0 {
		cfg.TaskTimeout = 30 * time.Minute
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = 2 * time.Second
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 500 * time.Millisecond
	}
	return &Engine{cfg: cfg, log: cfg.Logger, running: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Retryable marks an error as worth another attempt (a peer not yet
// connected, a provider call that timed out). Other errors fail the task.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryable{err}
}

type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// IsRetryable reports whether err was marked with Retryable.
func IsRetryable(err error) bool {
	var r *retryable
	return errors.As(err, &r)
}

// Terminal reports whether a job state is final.
func Terminal(s pilotv1.JobState) bool {
	return s == pilotv1.JobState_JOB_STATE_SUCCEEDED || s == pilotv1.JobState_JOB_STATE_FAILED || s == pilotv1.JobState_JOB_STATE_CANCELLED
}

// NewJob returns a pending job record for the given tasks.
func NewJob(id, kind, clusterID string, tasks []*pilotv1.Task) *pilotv1.Job {
	now := timestamppb.Now()
	for _, t := range tasks {
		t.State = pilotv1.TaskState_TASK_STATE_PENDING
	}
	return &pilotv1.Job{Id: id, Kind: kind, ClusterId: clusterID, State: pilotv1.JobState_JOB_STATE_PENDING, Tasks: tasks, CreatedAt: now, UpdatedAt: now}
}

// Records are the keys a new job is written as: the job and its entry in
// the active index. Callers add them to the transaction that makes the
// change the job carries out, guarded on the keys not existing.
func Records(job *pilotv1.Job) map[string]proto.Message {
	return map[string]proto.Message{store.JobKey(job.Id): job, store.ActiveJobKey(job.Id): &emptypb.Empty{}}
}

// RetryableState reports whether a job in state s may run again (Retry): it ended failed or
// cancelled.
func RetryableState(s pilotv1.JobState) bool {
	return s == pilotv1.JobState_JOB_STATE_FAILED || s == pilotv1.JobState_JOB_STATE_CANCELLED
}

// Retry makes a failed or cancelled job pending again: the tasks that did
// not succeed are pending with no attempts (those that succeeded stay
// done), and Retries counts up, so the commands of the tasks that run again
// get new ids (a drone would answer an old id with its recorded failure).
// It returns the records to write, as Records does.
func Retry(job *pilotv1.Job) map[string]proto.Message {
	job.State, job.Error, job.CancelRequested = pilotv1.JobState_JOB_STATE_PENDING, "", false
	job.Retries++
	job.UpdatedAt = timestamppb.Now()
	for _, t := range job.Tasks {
		if t.State == pilotv1.TaskState_TASK_STATE_SUCCEEDED {
			continue
		}
		t.State, t.Attempts, t.Error, t.StartedAt, t.FinishedAt = pilotv1.TaskState_TASK_STATE_PENDING, 0, "", nil, nil
	}
	return Records(job)
}

// Validate checks a job's task graph: unique ids, known kinds, known deps,
// no cycles.
func (e *Engine) Validate(job *pilotv1.Job) error {
	ids := map[string]*pilotv1.Task{}
	for _, t := range job.Tasks {
		if _, dup := ids[t.Id]; dup {
			return fmt.Errorf("job %s: duplicate task id %s", job.Id, t.Id)
		}
		if _, ok := e.cfg.Handlers[t.Kind]; !ok {
			return fmt.Errorf("job %s: task %s: no handler for kind %q", job.Id, t.Id, t.Kind)
		}
		ids[t.Id] = t
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(id string) error
	visit = func(id string) error {
		switch state[id] {
		case 1:
			return fmt.Errorf("job %s: dependency cycle through task %s", job.Id, id)
		case 2:
			return nil
		}
		state[id] = 1
		for _, d := range ids[id].DependsOn {
			if _, ok := ids[d]; !ok {
				return fmt.Errorf("job %s: task %s depends on unknown task %s", job.Id, id, d)
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		state[id] = 2
		return nil
	}
	for id := range ids {
		if err := visit(id); err != nil {
			return err
		}
	}
	return nil
}

// Wake makes the engine look at stored jobs now (after a Submit).
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs stored jobs until ctx ends, then waits for the jobs it
// is running to stop.
func (e *Engine) Run(ctx context.Context) error {
	sess, err := concurrency.NewSession(e.cfg.Store.Client(), concurrency.WithTTL(e.cfg.ClaimTTL), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("job engine: open etcd session: %w", err)
	}
	defer sess.Close()

	var wg sync.WaitGroup
	defer wg.Wait()

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := e.cfg.Store.Client().Watch(clientv3.WithRequireLeader(wctx), store.ActiveJobsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	tick := time.NewTicker(e.cfg.Rescan)
	defer tick.Stop()

	for {
		e.scan(ctx, sess, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("job engine: etcd session lost")
		case <-e.wake:
		case <-tick.C:
		case _, ok := <-watch:
			if !ok {
				watch = e.cfg.Store.Client().Watch(clientv3.WithRequireLeader(wctx), store.ActiveJobsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
			}
		}
	}
}

func (e *Engine) scan(ctx context.Context, sess *concurrency.Session, wg *sync.WaitGroup) {
	resp, err := e.cfg.Store.Client().Get(ctx, store.ActiveJobsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("list active jobs", "err", err)
		}
		return
	}
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), store.ActiveJobsPrefix)
		e.mu.Lock()
		busy := e.running[id]
		e.mu.Unlock()
		if busy {
			continue
		}
		j := &pilotv1.Job{}
		if _, err := e.cfg.Store.Get(ctx, store.JobKey(id), j); err != nil || Terminal(j.State) {
			// Finished (or gone) but still indexed: a crash came between the
			// job's last write and the index update.
			if err == nil || errors.Is(err, store.ErrNotFound) {
				_ = e.cfg.Store.Delete(ctx, store.ActiveJobKey(id))
			}
			continue
		}
		ok, err := e.claim(ctx, sess, j.Id)
		if err != nil || !ok {
			continue
		}
		e.mu.Lock()
		e.running[j.Id] = true
		e.mu.Unlock()
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() {
				e.release(context.WithoutCancel(ctx), id)
				e.mu.Lock()
				delete(e.running, id)
				e.mu.Unlock()
			}()
			if err := e.runJob(ctx, id); err != nil && ctx.Err() == nil {
				e.log.Error("job stopped", "job_id", id, "err", err)
			}
		}(j.Id)
	}
}

// claim takes the job for this session's lease. A claim left by a crashed
// pilot expires with its lease, after which any replica takes the job over.
func (e *Engine) claim(ctx context.Context, sess *concurrency.Session, id string) (bool, error) {
	key := store.ClaimsPrefix + id
	resp, err := e.cfg.Store.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, fmt.Sprintf("%x", sess.Lease()), clientv3.WithLease(sess.Lease()))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func (e *Engine) release(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.cfg.Store.Client().Delete(ctx, store.ClaimsPrefix+id); err != nil {
		e.log.Warn("release job claim", "job_id", id, "err", err)
	}
}

func (e *Engine) update(ctx context.Context, id string, fn func(*pilotv1.Job) error) (*pilotv1.Job, error) {
	return store.Update(ctx, e.cfg.Store, store.JobKey(id), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
		if err := fn(j); err != nil {
			return err
		}
		j.UpdatedAt = timestamppb.Now()
		return nil
	})
}

func findTask(j *pilotv1.Job, id string) *pilotv1.Task {
	for _, t := range j.Tasks {
		if t.Id == id {
			return t
		}
	}
	return nil
}

// runJob drives one job to a terminal state, one wave of ready tasks at a
// time.
func (e *Engine) runJob(ctx context.Context, id string) error {
	log := e.log.With("job_id", id)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		job := &pilotv1.Job{}
		if _, err := e.cfg.Store.Get(ctx, store.JobKey(id), job); err != nil {
			return err
		}
		if Terminal(job.State) {
			return nil
		}
		if job.State == pilotv1.JobState_JOB_STATE_PENDING {
			if _, err := e.update(ctx, id, func(j *pilotv1.Job) error {
				j.State = pilotv1.JobState_JOB_STATE_RUNNING
				return nil
			}); err != nil {
				return err
			}
			log.Info("job started", "kind", job.Kind, "cluster_id", job.ClusterId)
		}

		outcome, ready := plan(job)
		if outcome != pilotv1.JobState_JOB_STATE_UNSPECIFIED {
			return e.finish(ctx, job, outcome)
		}
		e.runWave(ctx, job, ready)
	}
}

// plan decides what to do next: a terminal outcome, or the tasks to run.
func plan(job *pilotv1.Job) (pilotv1.JobState, []*pilotv1.Task) {
	if job.CancelRequested {
		return pilotv1.JobState_JOB_STATE_CANCELLED, nil
	}
	done := map[string]bool{}
	allDone := true
	for _, t := range job.Tasks {
		switch t.State {
		case pilotv1.TaskState_TASK_STATE_SUCCEEDED:
			done[t.Id] = true
		case pilotv1.TaskState_TASK_STATE_FAILED:
			return pilotv1.JobState_JOB_STATE_FAILED, nil
		default:
			allDone = false
		}
	}
	if allDone {
		return pilotv1.JobState_JOB_STATE_SUCCEEDED, nil
	}
	var ready []*pilotv1.Task
	for _, t := range job.Tasks {
		if t.State != pilotv1.TaskState_TASK_STATE_PENDING && t.State != pilotv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		ok := true
		for _, d := range t.DependsOn {
			ok = ok && done[d]
		}
		if ok {
			ready = append(ready, t)
		}
	}
	if len(ready) == 0 {
		// Remaining tasks wait on skipped ones: nothing can make progress.
		return pilotv1.JobState_JOB_STATE_FAILED, nil
	}
	return pilotv1.JobState_JOB_STATE_UNSPECIFIED, ready
}

func (e *Engine) finish(ctx context.Context, job *pilotv1.Job, outcome pilotv1.JobState) error {
	log := e.log.With("job_id", job.Id)
	final := job
	final.State = outcome
	if outcome != pilotv1.JobState_JOB_STATE_SUCCEEDED && final.Error == "" {
		final.Error = jobError(job, outcome)
	}
	if f := e.cfg.Finalizers[job.Kind]; f != nil {
		b := backoff.New(e.cfg.RetryBase, 30*time.Second)
		for {
			err := f(ctx, final)
			if err == nil {
				break
			}
			log.Warn("job finalizer failed; retrying", "err", err)
			if err := backoff.Sleep(ctx, b.Next()); err != nil {
				return err
			}
		}
	}
	_, err := e.update(ctx, job.Id, func(j *pilotv1.Job) error {
		j.State = outcome
		j.Error = final.Error
		now := timestamppb.Now()
		for _, t := range j.Tasks {
			if t.State == pilotv1.TaskState_TASK_STATE_PENDING || t.State == pilotv1.TaskState_TASK_STATE_RUNNING {
				t.State = pilotv1.TaskState_TASK_STATE_SKIPPED
				t.FinishedAt = now
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	log.Info("job finished", "state", outcome.String(), "error", final.Error)
	if e.cfg.Ended != nil {
		e.cfg.Ended(ctx, final)
	}
	return e.cfg.Store.Delete(ctx, store.ActiveJobKey(job.Id))
}

func jobError(job *pilotv1.Job, outcome pilotv1.JobState) string {
	if outcome == pilotv1.JobState_JOB_STATE_CANCELLED {
		return "cancelled by request"
	}
	for _, t := range job.Tasks {
		if t.State == pilotv1.TaskState_TASK_STATE_FAILED {
			return fmt.Sprintf("task %s (%s) failed: %s", t.Id, t.Title, t.Error)
		}
	}
	return "no task can run: a dependency did not succeed"
}

// runWave runs the ready tasks in parallel and returns when all have
// stopped. A cancel request on the job cancels them.
func (e *Engine) runWave(ctx context.Context, job *pilotv1.Job, ready []*pilotv1.Task) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.watchCancel(wctx, job.Id, func() { cancel(ErrCancelRequested) })
	}()
	var tasks sync.WaitGroup
	for _, t := range ready {
		tasks.Add(1)
		go func(taskID string) {
			defer tasks.Done()
			e.runTask(wctx, job.Id, taskID)
		}(t.Id)
	}
	tasks.Wait()
	cancel(nil)
	wg.Wait()
}

// ErrCancelRequested is the cause (context.Cause) of a task context
// cancelled because its job was: a handler then stops what it started on
// nodes, which it must not do when pilot merely stops (the job resumes).
var ErrCancelRequested = errors.New("the job was cancelled")

func (e *Engine) watchCancel(ctx context.Context, id string, cancel func()) {
	w := e.cfg.Store.Client().Watch(clientv3.WithRequireLeader(ctx), store.JobKey(id))
	for range w {
		j := &pilotv1.Job{}
		if _, err := e.cfg.Store.Get(ctx, store.JobKey(id), j); err == nil && j.CancelRequested {
			cancel()
			return
		}
	}
}

func (e *Engine) runTask(ctx context.Context, jobID, taskID string) {
	log := e.log.With("job_id", jobID, "task_id", taskID)
	b := backoff.New(e.cfg.RetryBase, 30*time.Second)
	for {
		job, err := e.update(ctx, jobID, func(j *pilotv1.Job) error {
			t := findTask(j, taskID)
			t.State = pilotv1.TaskState_TASK_STATE_RUNNING
			t.Attempts++
			t.Error = ""
			if t.StartedAt == nil {
				t.StartedAt = timestamppb.Now()
			}
			return nil
		})
		if err != nil {
			log.Warn("mark task running", "err", err)
			return
		}
		t := findTask(job, taskID)
		h := e.cfg.Handlers[t.Kind]
		log.Info("task started", "kind", t.Kind, "title", t.Title, "attempt", t.Attempts)

		tctx, cancel := context.WithTimeout(ctx, e.cfg.TaskTimeout)
		err = runHandler(tctx, h, NewTask(e.cfg.Store, job, t))
		cancel()

		if err != nil && ctx.Err() != nil {
			// Pilot is stopping or the job was cancelled: leave the task
			// RUNNING so a resumed engine runs it again, unless cancelled.
			e.markCancelledIfRequested(jobID, taskID)
			return
		}
		if err != nil && IsRetryable(err) && int(t.Attempts) < e.cfg.MaxAttempts {
			log.Warn("task attempt failed; retrying", "err", err, "attempt", t.Attempts)
			if _, uerr := e.update(ctx, jobID, func(j *pilotv1.Job) error {
				findTask(j, taskID).Error = boundError(err.Error())
				return nil
			}); uerr != nil {
				return
			}
			if backoff.Sleep(ctx, b.Next()) != nil {
				return
			}
			continue
		}
		// The result is recorded even when pilot is stopping, so a finished
		// task is never run again for want of a write.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, uerr := e.update(rctx, jobID, func(j *pilotv1.Job) error {
			t := findTask(j, taskID)
			t.FinishedAt = timestamppb.Now()
			if err != nil {
				t.State = pilotv1.TaskState_TASK_STATE_FAILED
				t.Error = boundError(err.Error())
			} else {
				t.State = pilotv1.TaskState_TASK_STATE_SUCCEEDED
				t.Error = ""
			}
			return nil
		})
		rcancel()
		if uerr != nil {
			log.Warn("record task result", "err", uerr)
		}
		if err != nil {
			log.Warn("task failed", "err", err)
		} else {
			log.Info("task succeeded")
		}
		return
	}
}

// MaxErrorBytes bounds a task's error in the job record (and so the job's,
// which quotes it): an error naming every failed node of a thousand must
// not make the record grow with the cluster. The node results keep each
// node's own.
const MaxErrorBytes = 4 << 10

func boundError(s string) string {
	if len(s) <= MaxErrorBytes {
		return s
	}
	cut := MaxErrorBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes; the node results have each node's error)", s[:cut], len(s)-cut)
}

// runHandler turns a handler panic into a task failure: one bad task must
// not take pilot down with every other job.
func runHandler(ctx context.Context, h Handler, t *Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, t)
}

func (e *Engine) markCancelledIfRequested(jobID, taskID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = e.update(ctx, jobID, func(j *pilotv1.Job) error {
		if !j.CancelRequested {
			return store.ErrNoChange
		}
		t := findTask(j, taskID)
		t.State = pilotv1.TaskState_TASK_STATE_FAILED
		t.Error = "cancelled"
		t.FinishedAt = timestamppb.Now()
		return nil
	})
}

// Task is what a handler gets: the job and task as stored when the attempt
// began, and a way to record node results as they arrive.
type Task struct {
	Job   *pilotv1.Job
	Task  *pilotv1.Task
	store *store.Store
}

// NewTask is the Task the engine hands a handler for task t of job j;
// tests of handlers build theirs with it.
func NewTask(s *store.Store, j *pilotv1.Job, t *pilotv1.Task) *Task {
	return &Task{Job: j, Task: t, store: s}
}

// Record stores (or replaces) a node's result in the task, under the
// result's own key, so progress is visible while the task runs and the job
// record does not grow with it.
func (t *Task) Record(ctx context.Context, r *pilotv1.NodeResult) error {
	return t.store.Put(ctx, store.NodeResultKey(t.Job.Id, t.Task.Id, r.NodeId), r)
}
