package clusterops

import (
	"context"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/pilot/events"
)

// recoveryRig is a reconciler over opsapp (lead 1, members 2) with
// recovery on, on a clock the test moves.
type recoveryRig struct {
	t     *testing.T
	h     *opsHarness
	c     *pilotv1.Cluster
	r     *Reconciler
	ev    *events.Log
	clock time.Time
}

func newRecoveryRig(t *testing.T, p *pilotv1.RecoveryPolicy, cfg ReconcilerConfig) *recoveryRig {
	t.Helper()
	h, c := opsappHarness(t)
	if _, err := h.life.SetRecovery(context.Background(), c, p); err != nil {
		t.Fatal(err)
	}
	g := &recoveryRig{t: t, h: h, c: c, ev: events.New(h.st.Client(), nil), clock: time.Unix(1000, 0)}
	cfg.Grace, cfg.Events, cfg.Lifecycle = 5*time.Second, g.ev, h.life
	g.r = NewReconciler(h.ops, cfg)
	g.r.now = func() time.Time { return g.clock }
	g.pass(0)
	return g
}

func (g *recoveryRig) pass(d time.Duration) *pilotv1.Cluster {
	g.t.Helper()
	g.clock = g.clock.Add(d)
	if err := g.r.Pass(context.Background()); err != nil {
		g.t.Fatal(err)
	}
	got, _ := g.h.cluster(g.t, g.c.Id)
	return got
}

// kill makes the nodes' drones disconnected and their instances dead.
func (g *recoveryRig) kill(nodes ...*pilotv1.Node) {
	g.h.fg.mu.Lock()
	g.h.fg.cutOff = map[string]bool{}
	for _, nd := range nodes {
		g.h.fg.cutOff[nd.Id] = true
	}
	g.h.fg.mu.Unlock()
	g.h.prov.mu.Lock()
	defer g.h.prov.mu.Unlock()
	for _, nd := range nodes {
		g.h.prov.instances[nd.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_LOST
	}
}

func (g *recoveryRig) state(nd *pilotv1.Node) providerv1.InstanceState {
	g.h.prov.mu.Lock()
	defer g.h.prov.mu.Unlock()
	return g.h.prov.instances[nd.InstanceId].State
}

// recoveryEvents are the cluster's recovery events' messages.
func (g *recoveryRig) recoveryEvents() []string {
	g.t.Helper()
	evs, err := g.ev.List(context.Background(), g.c.Id, "", 0)
	if err != nil {
		g.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Kind == "recovery" {
			out = append(out, ev.Message)
		}
	}
	return out
}

// A node whose instance died is replaced by a recover job once past the
// grace period, not restarted in place; a failed replacement waits out
// its backoff before the next.
func TestReconcilerReplacesDeadNode(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: true}, ReconcilerConfig{})
	victim := nodeBySid(g.c, 2)
	g.kill(victim)
	got := g.pass(time.Second)
	if nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_LOST || got.JobId != g.c.JobId {
		t.Fatalf("within the grace period: node %v, job %q; want LOST and no job yet", nodeBySid(got, 2).Status, got.JobId)
	}
	if st := g.state(victim); st != providerv1.InstanceState_INSTANCE_STATE_LOST {
		t.Fatalf("with recovery on the dead instance was %v; want it left for the replacement", st)
	}
	got = g.pass(5 * time.Second)
	j := mustJob(t, g.h, g.c.Id)
	if j.Kind != KindRecover || j.Id == g.c.JobId || !strings.Contains(strings.Join(g.recoveryEvents(), "\n"), "replacing "+victim.Id+" (lost, its instance dead") {
		t.Fatalf("past the grace period: job %s (%s), events %q; want a recover job of %s and an event", j.Id, j.Kind, g.recoveryEvents(), victim.Id)
	}
	if got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING {
		t.Errorf("cluster %v during its recover job", got.Status)
	}

	// The job fails: the node waits its backoff (30 s), then is tried again.
	g.h.finish(t, j, pilotv1.JobState_JOB_STATE_FAILED)
	g.pass(time.Second)
	if again := mustJob(t, g.h, g.c.Id); again.Id != j.Id {
		t.Fatalf("a new recover job %s right after the failed one", again.Id)
	}
	if evs := g.recoveryEvents(); !strings.Contains(evs[len(evs)-1], "ended FAILED") {
		t.Errorf("last recovery event %q; want the job's failure", evs[len(evs)-1])
	}
	g.pass(20 * time.Second)
	if again := mustJob(t, g.h, g.c.Id); again.Id != j.Id {
		t.Fatalf("a new recover job %s within the backoff", again.Id)
	}
	g.pass(15 * time.Second)
	second := mustJob(t, g.h, g.c.Id)
	if second.Id == j.Id || second.Kind != KindRecover {
		t.Fatalf("after the backoff the job is still %s; want a second recover job", second.Id)
	}
	// Passes while it runs do not forget the node's failures: when it
	// fails too, the backoff has doubled (60 s).
	g.pass(time.Second)
	g.h.finish(t, second, pilotv1.JobState_JOB_STATE_FAILED)
	g.pass(time.Second)
	g.pass(40 * time.Second)
	if again := mustJob(t, g.h, g.c.Id); again.Id != second.Id {
		t.Fatalf("a third recover job %s 41 s after the second failed; want the doubled backoff (60 s)", again.Id)
	}
	g.pass(20 * time.Second)
	if again := mustJob(t, g.h, g.c.Id); again.Id == second.Id {
		t.Fatal("no third recover job after the doubled backoff")
	}
}

// While a job runs on a cluster with recovery on, no replacement can
// start: a dead instance is restarted in place, as without recovery, so
// that the job does not wait on a drone nothing brings back.
func TestReconcilerRevivesDuringAJob(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: true}, ReconcilerConfig{})
	if _, err := g.h.life.Restart(context.Background(), g.h.op(t, g.c.Id)); err != nil {
		t.Fatal(err)
	}
	victim := nodeBySid(g.c, 2)
	g.kill(victim)
	g.pass(time.Second)
	if st := g.state(victim); st != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("during a job the dead instance is %v; want it restarted in place", st)
	}
}

// An unhealthy node is replaced after unhealthy_after_sec; a lost node
// whose instance runs (only its drone cut off) after lost_after_sec.
func TestReconcilerReplacesAfterTheirDelays(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: true, LostAfterSec: 30, UnhealthyAfterSec: 20}, ReconcilerConfig{})
	victim := nodeBySid(g.c, 2)
	g.h.fg.mu.Lock()
	g.h.fg.cutOff = map[string]bool{victim.Id: true}
	g.h.fg.mu.Unlock()
	g.pass(6 * time.Second) // lost: past the grace period
	g.pass(20 * time.Second)
	if j := mustJob(t, g.h, g.c.Id); j.Id != g.c.JobId {
		t.Fatalf("a cut-off node replaced before lost_after_sec: job %s", j.Id)
	}
	g.pass(11 * time.Second)
	if j := mustJob(t, g.h, g.c.Id); j.Kind != KindRecover {
		t.Fatalf("a node lost 31 s with lost_after_sec 30: job %s (%s), want a recover job", j.Id, j.Kind)
	}
}

// Killing two of three nodes with a guard of 50 %: the guard holds, says
// so once, replaces nothing and restarts the dead instances in place;
// when they are back it lets go and says so.
func TestReconcilerMeltdownGuard(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: true, MaxDownPercent: 50, MinDown: 2}, ReconcilerConfig{})
	a, b := nodeBySid(g.c, 2), nodeBySid(g.c, 3)
	g.kill(a, b)
	g.pass(time.Second)
	g.pass(10 * time.Second)
	if j := mustJob(t, g.h, g.c.Id); j.Id != g.c.JobId {
		t.Fatalf("the guard let job %s (%s) start", j.Id, j.Kind)
	}
	evs := g.recoveryEvents()
	if len(evs) != 1 || !strings.Contains(evs[0], "meltdown guard holds: 2 of 3 nodes of the cluster down") {
		t.Fatalf("recovery events %q; want the guard's, once", evs)
	}
	// Held: dead instances are restarted in place meanwhile.
	if g.state(a) != providerv1.InstanceState_INSTANCE_STATE_RUNNING || g.state(b) != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("instances %v %v while the guard holds; want them restarted in place", g.state(a), g.state(b))
	}
	g.h.fg.mu.Lock()
	g.h.fg.cutOff = nil
	g.h.fg.mu.Unlock()
	g.pass(time.Second)
	got := g.pass(time.Second)
	if got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("cluster %v once the nodes are back", got.Status)
	}
	evs = g.recoveryEvents()
	if len(evs) != 2 || !strings.Contains(evs[1], "meltdown guard released") {
		t.Fatalf("recovery events %q; want the guard released", evs)
	}
}

// The runtime's guard counts every cluster on the runtime: with its
// limits at 30 % / 1, one dead node of three holds it.
func TestReconcilerRuntimeGuard(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: true}, ReconcilerConfig{RuntimeMaxDownPercent: 30, RuntimeMinDown: 1})
	g.kill(nodeBySid(g.c, 2))
	g.pass(time.Second)
	g.pass(10 * time.Second)
	if j := mustJob(t, g.h, g.c.Id); j.Id != g.c.JobId {
		t.Fatalf("the runtime's guard let job %s start", j.Id)
	}
	if evs := g.recoveryEvents(); len(evs) != 1 || !strings.Contains(evs[0], "meltdown guard holds: runtime ") {
		t.Fatalf("recovery events %q; want the runtime's guard", evs)
	}
}

// Without recovery nothing is replaced: the dead instance is restarted in
// place, as before.
func TestReconcilerWithoutRecoveryRevives(t *testing.T) {
	g := newRecoveryRig(t, &pilotv1.RecoveryPolicy{Enabled: false}, ReconcilerConfig{})
	victim := nodeBySid(g.c, 2)
	g.kill(victim)
	g.pass(time.Second)
	g.pass(120 * time.Second)
	if j := mustJob(t, g.h, g.c.Id); j.Id != g.c.JobId {
		t.Fatalf("recovery off, yet job %s (%s) started", j.Id, j.Kind)
	}
	if st := g.state(victim); st != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("recovery off: instance %v, want restarted in place", st)
	}
}
