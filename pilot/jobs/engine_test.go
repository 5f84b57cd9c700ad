package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/pilot/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T) *store.Store {
	t.Helper()
	c := etcdtest.Client(t)
	return store.New(c)
}

// recorder is a set of handlers that log the order tasks ran in.
type recorder struct {
	mu   sync.Mutex
	runs []string
}

func (r *recorder) handler(fail map[string]error) Handler {
	return func(ctx context.Context, t *Task) error {
		r.mu.Lock()
		r.runs = append(r.runs, t.Task.Id)
		r.mu.Unlock()
		return fail[t.Task.Id]
	}
}

func (r *recorder) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs...)
}

func startEngine(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	cfg.Rescan = 50 * time.Millisecond
	cfg.RetryBase = 10 * time.Millisecond
	cfg.ClaimTTL = 2
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitJob(t *testing.T, s *store.Store, id string, timeout time.Duration) *pilotv1.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *pilotv1.Job
	err := Watch(ctx, s, id, func(j *pilotv1.Job) error { last = j; return nil })
	if err != nil {
		t.Fatalf("watch job %s: %v (last state %v)", id, err, last.GetState())
	}
	return last
}

func task(id string, deps ...string) *pilotv1.Task {
	return &pilotv1.Task{Id: id, Kind: "step", Title: id, DependsOn: deps}
}

func submit(t *testing.T, s *store.Store, j *pilotv1.Job) {
	t.Helper()
	guards := map[string]int64{}
	for k := range Records(j) {
		guards[k] = 0
	}
	if err := s.Commit(context.Background(), guards, Records(j)); err != nil {
		t.Fatal(err)
	}
}

func TestRunsInDependencyOrder(t *testing.T) {
	s := newStore(t)
	rec := &recorder{}
	var finalized []pilotv1.JobState
	startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": rec.handler(nil)},
		Finalizers: map[string]Finalizer{"k": func(_ context.Context, j *pilotv1.Job) error {
			finalized = append(finalized, j.State)
			return nil
		}}})
	// a -> (b, c) -> d
	submit(t, s, NewJob("j1", "k", "c1", []*pilotv1.Task{task("d", "b", "c"), task("b", "a"), task("c", "a"), task("a")}))
	j := waitJob(t, s, "j1", 20*time.Second)
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job state %v (%s)", j.State, j.Error)
	}
	order := rec.order()
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	if len(order) != 4 || pos["a"] != 0 || pos["d"] != 3 {
		t.Fatalf("run order %v, want a first, d last, each once", order)
	}
	for _, tk := range j.Tasks {
		if tk.State != pilotv1.TaskState_TASK_STATE_SUCCEEDED || tk.StartedAt == nil || tk.FinishedAt == nil {
			t.Errorf("task %s: state %v started %v finished %v", tk.Id, tk.State, tk.StartedAt, tk.FinishedAt)
		}
	}
	if len(finalized) != 1 || finalized[0] != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("finalizer calls %v, want one with SUCCEEDED", finalized)
	}
	waitActive(t, s, 0)
}

// waitActive waits until the active-job index holds n entries.
func waitActive(t *testing.T, s *store.Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.Client().Get(context.Background(), store.ActiveJobsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("active-job index holds %d entries, want %d", resp.Count, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailureSkipsDependents(t *testing.T) {
	s := newStore(t)
	rec := &recorder{}
	ended := make(chan *pilotv1.Job, 2)
	startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": rec.handler(map[string]error{"b": errors.New("exit 3 on cln-1")})},
		Ended: func(_ context.Context, j *pilotv1.Job) { ended <- j }})
	submit(t, s, NewJob("j2", "k", "c1", []*pilotv1.Task{task("a"), task("b", "a"), task("c", "b")}))
	j := waitJob(t, s, "j2", 20*time.Second)
	if j.State != pilotv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("job state %v, want FAILED", j.State)
	}
	select {
	case e := <-ended:
		if e.Id != "j2" || e.State != pilotv1.JobState_JOB_STATE_FAILED || !strings.Contains(e.Error, "task b") {
			t.Errorf("Ended told of %s %v %q; want j2 FAILED with its error", e.Id, e.State, e.Error)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ended was not called for the failed job")
	}
	if !strings.Contains(j.Error, "exit 3 on cln-1") || !strings.Contains(j.Error, "task b") {
		t.Fatalf("job error %q does not name the task and its error", j.Error)
	}
	states := map[string]pilotv1.TaskState{}
	for _, tk := range j.Tasks {
		states[tk.Id] = tk.State
	}
	want := map[string]pilotv1.TaskState{"a": pilotv1.TaskState_TASK_STATE_SUCCEEDED, "b": pilotv1.TaskState_TASK_STATE_FAILED, "c": pilotv1.TaskState_TASK_STATE_SKIPPED}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("task %s: %v, want %v", id, states[id], st)
		}
	}
	for _, id := range rec.order() {
		if id == "c" {
			t.Fatal("task c ran although its dependency failed")
		}
	}
}

func TestRetryableErrorsRetry(t *testing.T) {
	s := newStore(t)
	var mu sync.Mutex
	calls := 0
	startEngine(t, Config{Store: s, MaxAttempts: 5, Handlers: map[string]Handler{"step": func(context.Context, *Task) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			return Retryable(errors.New("frontgate not connected yet"))
		}
		return nil
	}}})
	submit(t, s, NewJob("j3", "k", "c1", []*pilotv1.Task{task("a")}))
	j := waitJob(t, s, "j3", 20*time.Second)
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED || j.Tasks[0].Attempts != 3 {
		t.Fatalf("state %v attempts %d, want SUCCEEDED after 3 attempts", j.State, j.Tasks[0].Attempts)
	}
}

func TestResumeAfterCrash(t *testing.T) {
	s := newStore(t)
	started := make(chan struct{})
	block := func(ctx context.Context, t *Task) error {
		if t.Task.Id == "b" {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	stop := startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": block}})
	submit(t, s, NewJob("j4", "k", "c1", []*pilotv1.Task{task("a"), task("b", "a"), task("c", "b")}))
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("task b never started")
	}
	stop() // pilot "crashes" while b runs

	j := &pilotv1.Job{}
	if _, err := s.Get(context.Background(), store.JobKey("j4"), j); err != nil {
		t.Fatal(err)
	}
	if Terminal(j.State) {
		t.Fatalf("job is %v after the crash; it must stay resumable", j.State)
	}

	rec := &recorder{}
	startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": rec.handler(nil)}})
	j = waitJob(t, s, "j4", 30*time.Second)
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("resumed job: %v (%s)", j.State, j.Error)
	}
	if got := strings.Join(rec.order(), ","); got != "b,c" {
		t.Fatalf("resumed engine ran %q, want b,c (a had already succeeded)", got)
	}
}

func TestCancel(t *testing.T) {
	s := newStore(t)
	started := make(chan struct{})
	startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": func(ctx context.Context, t *Task) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}})
	submit(t, s, NewJob("j5", "k", "c1", []*pilotv1.Task{task("a"), task("b", "a")}))
	<-started
	if _, err := store.Update(context.Background(), s, store.JobKey("j5"), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
		j.CancelRequested = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, "j5", 20*time.Second)
	if j.State != pilotv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("state %v, want CANCELLED", j.State)
	}
	if j.Tasks[1].State != pilotv1.TaskState_TASK_STATE_SKIPPED {
		t.Fatalf("task b %v, want SKIPPED", j.Tasks[1].State)
	}
}

func TestValidateRejectsBadGraphs(t *testing.T) {
	e := New(Config{Handlers: map[string]Handler{"step": func(context.Context, *Task) error { return nil }}})
	for _, tc := range []struct {
		name  string
		tasks []*pilotv1.Task
		want  string
	}{
		{"cycle", []*pilotv1.Task{task("a", "b"), task("b", "a")}, "cycle"},
		{"unknown dep", []*pilotv1.Task{task("a", "zz")}, "unknown task zz"},
		{"duplicate", []*pilotv1.Task{task("a"), task("a")}, "duplicate task id a"},
		{"unknown kind", []*pilotv1.Task{{Id: "a", Kind: "nope"}}, `no handler for kind "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Validate(NewJob("j", "k", "c", tc.tasks))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}
