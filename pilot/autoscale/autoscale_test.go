package autoscale

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// load is a role's metric as the test sets it.
type load struct {
	mu sync.Mutex
	v  float64
	ok bool
}

func (l *load) set(v float64) { l.mu.Lock(); l.v, l.ok = v, true; l.mu.Unlock() }

func (l *load) RoleAverage(_, _, _ string, _ time.Time) (float64, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v, 1, l.ok
}

// scaler stands in for the lifecycle: a scale job is stored RUNNING and
// made the cluster's, and the test ends it (done).
type scaler struct {
	t     *testing.T
	st    *store.Store
	calls []int
	n     int
}

func (s *scaler) Scale(ctx context.Context, r clusterops.OpRequest, role string, count int) (*pilotv1.ClusterJob, error) {
	s.n++
	s.calls = append(s.calls, count)
	j := &pilotv1.Job{Id: fmt.Sprintf("job-%d", s.n), Kind: "scale", ClusterId: r.C.Id, State: pilotv1.JobState_JOB_STATE_RUNNING}
	if err := s.st.Put(ctx, store.JobKey(j.Id), j); err != nil {
		return nil, err
	}
	c, err := store.Update(ctx, s.st, store.ClusterKey(r.C.Id), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		c.JobId, c.Status = j.Id, pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
		return nil
	})
	return &pilotv1.ClusterJob{Cluster: c, Job: j}, err
}

func (s *scaler) RecordAutoscale(ctx context.Context, clusterID, role, decision, jobID string) error {
	_, err := store.Update(ctx, s.st, store.ClusterKey(clusterID), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		for _, p := range c.Autoscale {
			if p.Role == role {
				p.LastDecision = decision
				if jobID != "" {
					p.LastJobId = jobID
				}
			}
		}
		return nil
	})
	return err
}

type rig struct {
	t     *testing.T
	st    *store.Store
	ev    *events.Log
	load  *load
	sc    *scaler
	a     *Autoscaler
	clock time.Time
	start time.Time
	jobs  []string // "at: count" of each scale job, for the log
}

func newRig(t *testing.T, nodes int, p *pilotv1.AutoscalePolicy) *rig {
	t.Helper()
	cli := etcdtest.Client(t)
	st := store.New(cli)
	g := &rig{t: t, st: st, ev: events.New(cli, nil), load: &load{}, clock: time.Unix(10_000, 0)}
	g.start = g.clock
	g.sc = &scaler{t: t, st: st}
	c := &pilotv1.Cluster{Id: "cl-1", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, Autoscale: []*pilotv1.AutoscalePolicy{p}}
	for i := range nodes {
		c.Nodes = append(c.Nodes, &pilotv1.Node{Id: fmt.Sprintf("cln-%d", i), Role: p.Role})
	}
	if err := st.Put(context.Background(), store.ClusterKey(c.Id), c); err != nil {
		t.Fatal(err)
	}
	g.a = New(Config{Store: st, Scaler: g.sc, Metrics: g.load, Events: g.ev, Interval: time.Second, Now: func() time.Time { return g.clock }})
	return g
}

// step moves the clock a second and passes; a job started 2 s earlier
// ends then with the count it asked for.
func (g *rig) step() {
	g.t.Helper()
	g.clock = g.clock.Add(time.Second)
	ctx := context.Background()
	c := g.cluster()
	if c.JobId != "" {
		j := &pilotv1.Job{}
		if _, err := g.st.Get(ctx, store.JobKey(c.JobId), j); err == nil && j.State == pilotv1.JobState_JOB_STATE_RUNNING && g.sc.n > 0 && c.JobId == fmt.Sprintf("job-%d", g.sc.n) {
			started := g.clock.Add(-2 * time.Second)
			if j.CreatedAt == nil {
				j.CreatedAt = timestamppb.New(g.clock)
				if err := g.st.Put(ctx, store.JobKey(j.Id), j); err != nil {
					g.t.Fatal(err)
				}
			} else if !j.CreatedAt.AsTime().After(started) {
				g.finish(j, g.sc.calls[len(g.sc.calls)-1])
			}
		}
	}
	if err := g.a.Pass(ctx); err != nil {
		g.t.Fatal(err)
	}
}

func (g *rig) finish(j *pilotv1.Job, count int) {
	g.t.Helper()
	ctx := context.Background()
	j.State, j.UpdatedAt = pilotv1.JobState_JOB_STATE_SUCCEEDED, timestamppb.New(g.clock)
	if err := g.st.Put(ctx, store.JobKey(j.Id), j); err != nil {
		g.t.Fatal(err)
	}
	if _, err := store.Update(ctx, g.st, store.ClusterKey("cl-1"), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		role := c.Autoscale[0].Role
		c.Nodes = nil
		for i := range count {
			c.Nodes = append(c.Nodes, &pilotv1.Node{Id: fmt.Sprintf("cln-%d", i), Role: role})
		}
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
		return nil
	}); err != nil {
		g.t.Fatal(err)
	}
	g.jobs = append(g.jobs, fmt.Sprintf("t+%s: %s ended with %d nodes", g.clock.Sub(g.start), j.Id, count))
}

func (g *rig) cluster() *pilotv1.Cluster {
	g.t.Helper()
	c := &pilotv1.Cluster{}
	if _, err := g.st.Get(context.Background(), store.ClusterKey("cl-1"), c); err != nil {
		g.t.Fatal(err)
	}
	return c
}

func (g *rig) count() int { return len(g.cluster().Nodes) }

// until steps until cond or limit seconds, and returns the seconds taken.
func (g *rig) until(limit int, what string, cond func() bool) int {
	g.t.Helper()
	for i := 1; i <= limit; i++ {
		g.step()
		if cond() {
			return i
		}
	}
	g.t.Fatalf("%s: not within %d s; scale calls %v, events:\n%s", what, limit, g.sc.calls, g.events())
	return 0
}

func (g *rig) events() string {
	evs, err := g.ev.List(context.Background(), "cl-1", "", 1000)
	if err != nil {
		g.t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s\n", e.Kind, e.Message)
	}
	return b.String()
}

// A load above target scales the role out once the window saw it
// throughout, again after the cooldown, up to max; with the load gone it
// scales in, step by step, back to min, and says it stays there.
func TestScalesOutAndBackToMin(t *testing.T) {
	p := &pilotv1.AutoscalePolicy{Role: "web", Metric: "requests", Target: 10, Min: 1, Max: 3, WindowSec: 10, CooldownSec: 20, Step: 1}
	g := newRig(t, 1, p)
	g.load.set(25)
	took := g.until(30, "the first scale-out", func() bool { return len(g.sc.calls) == 1 })
	if took < 10 || took > 10+1 {
		t.Errorf("first scale-out after %d s; want once the 10 s window is full (10-11 s)", took)
	}
	if g.sc.calls[0] != 2 {
		t.Fatalf("scaled to %d, want 2 (step 1)", g.sc.calls[0])
	}
	took = g.until(60, "the second scale-out", func() bool { return len(g.sc.calls) == 2 })
	// The job ends 2 s in; the cooldown (20 s) runs from there.
	if took < 22 || took > 22+1 {
		t.Errorf("second scale-out %d s after the first; want job (2 s) + cooldown (20 s)", took)
	}
	g.until(5, "the job to end", func() bool { return g.count() == 3 })
	for range 40 {
		g.step()
	}
	if len(g.sc.calls) != 2 || !strings.Contains(g.events(), "at the policy's max, 3") {
		t.Fatalf("at max: scale calls %v; want none more and the reason said; events:\n%s", g.sc.calls, g.events())
	}
	g.load.set(0)
	g.until(60, "scale in to 2", func() bool { return g.count() == 2 })
	g.until(60, "scale in to 1", func() bool { return g.count() == 1 })
	for range 40 {
		g.step()
	}
	if len(g.sc.calls) != 4 || !strings.Contains(g.events(), "at the policy's min, 1") {
		t.Fatalf("at min: scale calls %v; want 4 in all and the reason said; events:\n%s", g.sc.calls, g.events())
	}
	for _, j := range g.jobs {
		t.Log(j)
	}
	// The policy keeps its last word.
	if last := g.cluster().Autoscale[0].LastDecision; !strings.Contains(last, "min") {
		t.Errorf("last_decision %q; want the at-min reason", last)
	}
}

// A load that alternates faster than the window (5 s high, 5 s low,
// window 20 s) starts no scale job over ten minutes, and says why once,
// not at each turn.
func TestFlappingLoadDoesNotScale(t *testing.T) {
	p := &pilotv1.AutoscalePolicy{Role: "web", Metric: "cpu", Target: 60, Min: 1, Max: 5, WindowSec: 20, CooldownSec: 30}
	g := newRig(t, 2, p)
	for i := range 600 {
		if i/5%2 == 0 {
			g.load.set(95)
		} else {
			g.load.set(5)
		}
		g.step()
	}
	evs := strings.Count(g.events(), "\n")
	t.Logf("10 min of load alternating every 5 s (window 20 s): %d scale jobs, %d events", len(g.sc.calls), evs)
	if len(g.sc.calls) != 0 {
		t.Fatalf("scale jobs %v under a load that alternates faster than the window", g.sc.calls)
	}
	if evs > 3 {
		t.Errorf("%d events; want the reasons said once each:\n%s", evs, g.events())
	}
}

// No decision while another job runs on the cluster; a role below the
// policy's min is brought to it whatever the metric.
func TestBusyAndBounds(t *testing.T) {
	p := &pilotv1.AutoscalePolicy{Role: "web", Metric: "cpu", Target: 50, Min: 2, Max: 4, WindowSec: 5}
	g := newRig(t, 1, p)
	ctx := context.Background()
	other := &pilotv1.Job{Id: "job-user", Kind: "restart_cluster", ClusterId: "cl-1", State: pilotv1.JobState_JOB_STATE_RUNNING}
	if err := g.st.Put(ctx, store.JobKey(other.Id), other); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, g.st, store.ClusterKey("cl-1"), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		c.JobId = other.Id
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	g.load.set(10)
	for range 10 {
		g.step()
	}
	if len(g.sc.calls) != 0 || !strings.Contains(g.events(), "job job-user (restart_cluster) runs on the cluster") {
		t.Fatalf("while a job runs: scale calls %v, events:\n%s", g.sc.calls, g.events())
	}
	other.State = pilotv1.JobState_JOB_STATE_SUCCEEDED
	if err := g.st.Put(ctx, store.JobKey(other.Id), other); err != nil {
		t.Fatal(err)
	}
	g.step()
	if len(g.sc.calls) != 1 || g.sc.calls[0] != 2 {
		t.Fatalf("1 node under min 2: scale calls %v, want one to 2", g.sc.calls)
	}
}

// Two policies of one cluster due in the same pass: one scale job starts,
// the other policy waits for the next pass (no refused job, no event
// saying so).
func TestOneJobAPass(t *testing.T) {
	p := &pilotv1.AutoscalePolicy{Role: "web", Metric: "cpu", Target: 50, Min: 2, Max: 4}
	g := newRig(t, 1, p)
	ctx := context.Background()
	if _, err := store.Update(ctx, g.st, store.ClusterKey("cl-1"), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		c.Autoscale = append(c.Autoscale, &pilotv1.AutoscalePolicy{Role: "db", Metric: "cpu", Target: 50, Min: 1, Max: 2})
		return nil // db has no node: below its min too
	}); err != nil {
		t.Fatal(err)
	}
	g.step()
	if len(g.sc.calls) != 1 {
		t.Fatalf("scale calls %v in one pass, want one", g.sc.calls)
	}
	if evs := g.events(); strings.Contains(evs, "refused") {
		t.Errorf("events:\n%s", evs)
	}
}
