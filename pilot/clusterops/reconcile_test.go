package clusterops

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/store"
)

// The reconciler marks a node whose drone is gone past the grace period
// LOST and its cluster DEGRADED, starts the instance the provider lost,
// and marks both ACTIVE once the drone is back; a node only briefly cut
// off is not lost, and a cluster a job works on is left alone.
func TestReconcilerMarksLostAndRevives(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	now := time.Unix(1000, 0)
	r := NewReconciler(h.ops, ReconcilerConfig{Grace: 5 * time.Second})
	r.now = func() time.Time { return now }
	pass := func(d time.Duration) *pilotv1.Cluster {
		t.Helper()
		now = now.Add(d)
		if err := r.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		got, _ := h.cluster(t, c.Id)
		return got
	}
	pass(0)
	victim := nodeBySid(c, 2)
	setState := func(st providerv1.InstanceState) {
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		h.prov.instances[victim.InstanceId].State = st
	}
	state := func() providerv1.InstanceState {
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		return h.prov.instances[victim.InstanceId].State
	}
	want := func(got *pilotv1.Cluster, cs pilotv1.ClusterStatus, ns pilotv1.NodeStatus, when string) {
		t.Helper()
		if got.Status != cs || nodeBySid(got, 2).Status != ns {
			t.Fatalf("%s: %v / %v, want %v / %v", when, got.Status, nodeBySid(got, 2).Status, cs, ns)
		}
	}

	// A drone cut off while its instance runs: lost only past the grace
	// period, and nothing is restarted.
	h.fg.mu.Lock()
	h.fg.cutOff = map[string]bool{victim.Id: true}
	h.fg.mu.Unlock()
	want(pass(3*time.Second), pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.NodeStatus_NODE_STATUS_ACTIVE, "cut off within the grace period")
	want(pass(3*time.Second), pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED, pilotv1.NodeStatus_NODE_STATUS_LOST, "cut off past the grace period")
	h.fg.mu.Lock()
	h.fg.cutOff = nil
	h.fg.mu.Unlock()
	want(pass(time.Second), pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.NodeStatus_NODE_STATUS_ACTIVE, "back")

	// An instance the provider lost: lost at once, and started again.
	setState(providerv1.InstanceState_INSTANCE_STATE_LOST)
	want(pass(time.Second), pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED, pilotv1.NodeStatus_NODE_STATUS_LOST, "instance lost")
	if st := state(); st != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("the lost instance is %v, want started again", st)
	}
	want(pass(time.Second), pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.NodeStatus_NODE_STATUS_ACTIVE, "after the revival")

	// A running job owns the cluster's status.
	if _, err := h.life.Restart(ctx, h.op(t, c.Id)); err != nil {
		t.Fatal(err)
	}
	setState(providerv1.InstanceState_INSTANCE_STATE_LOST)
	pass(0)
	if got := pass(10 * time.Second); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING || nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
		t.Fatalf("during a job: %v / %v; the reconciler must leave it alone", got.Status, nodeBySid(got, 2).Status)
	}
	// …but a lost agent is started again: the job may be waiting on it.
	if st := state(); st != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("during a job the reconciler left the lost instance %v, want it started again", st)
	}
	// A stopped cluster's instances are left stopped.
	h.finish(t, mustJob(t, h, c.Id), pilotv1.JobState_JOB_STATE_SUCCEEDED)
	stop, err := h.life.Stop(ctx, h.op(t, c.Id), false)
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, stop.Job)
	setState(providerv1.InstanceState_INSTANCE_STATE_LOST)
	pass(10 * time.Second)
	if st := state(); st != providerv1.InstanceState_INSTANCE_STATE_LOST {
		t.Fatalf("the reconciler started an instance of a stopped cluster (%v)", st)
	}
	// Nothing it no longer looks at stays in its memory.
	if len(r.seen) != 0 {
		t.Fatalf("after a pass over no running cluster the reconciler still keeps %d entries", len(r.seen))
	}
}

// With every drone of a network out of sight (its frontgate cut off, or
// pilot just restarted), a pass asks the provider once for the network's
// instances, not once per node: at 10,000 nodes that was 10,000 calls a
// second, and a restarted pilot did not serve for 26 s.
func TestReconcilerListsANetworkOncePerPass(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	r := NewReconciler(h.ops, ReconcilerConfig{Grace: 5 * time.Second})
	cut := map[string]bool{}
	for _, nd := range c.Nodes {
		cut[nd.Id] = true
	}
	h.fg.mu.Lock()
	h.fg.cutOff = cut
	h.fg.mu.Unlock()
	victim := nodeBySid(c, 2)
	h.prov.mu.Lock()
	h.prov.instances[victim.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_LOST
	h.prov.reads = map[string]int{}
	h.prov.mu.Unlock()
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	h.prov.mu.Lock()
	reads, state := maps.Clone(h.prov.reads), h.prov.instances[victim.InstanceId].State
	h.prov.mu.Unlock()
	if len(c.Nodes) < 2 || reads["ListInstances"] != 1 || reads["GetInstance"] != 0 {
		t.Errorf("a pass over %d disconnected nodes read the provider %v; want one ListInstances", len(c.Nodes), reads)
	}
	if state != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Errorf("the lost instance is %v after the pass; want it started again", state)
	}
}

// TestReconcilerRecordsHealth: what drones report of their nodes' health is
// kept on the nodes, and a pass that finds nothing new writes nothing.
func TestReconcilerRecordsHealth(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	evlog := events.New(h.st.Client(), nil)
	r := NewReconciler(h.ops, ReconcilerConfig{Grace: 5 * time.Second, Events: evlog})
	victim := nodeBySid(c, 2)
	report := &streamv1.HealthReport{Status: "unhealthy", Failures: 3, Check: &streamv1.CommandRun{ExitCode: 7, Output: "refused"},
		Action: &streamv1.CommandRun{ExitCode: 0, Output: "restarted"}}
	h.fg.mu.Lock()
	h.fg.health = map[string]*streamv1.HealthReport{victim.Id: report}
	h.fg.mu.Unlock()
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	got, rev := h.cluster(t, c.Id)
	for _, nd := range got.Nodes {
		hl := nd.GetHealth()
		switch {
		case nd.Id == victim.Id && (hl.GetStatus() != "unhealthy" || hl.GetFailures() != 3 || hl.GetCheck().GetExitCode() != 7 || hl.GetAction().GetOutput() != "restarted"):
			t.Errorf("node %s health %v, want the drone's report", nd.Id, hl)
		case nd.Id != victim.Id && hl != nil:
			t.Errorf("node %s has health %v without a report", nd.Id, hl)
		}
	}
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, again := h.cluster(t, c.Id); again != rev {
		t.Errorf("a pass with the same reports rewrote the cluster (revision %d, then %d)", rev, again)
	}

	// Its drone lost (the provider lost its instance): nobody checks the
	// node, and its health says so until the drone reports again.
	h.fg.mu.Lock()
	h.fg.cutOff = map[string]bool{victim.Id: true}
	h.fg.mu.Unlock()
	h.prov.mu.Lock()
	h.prov.instances[victim.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_LOST
	h.prov.mu.Unlock()
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = h.cluster(t, c.Id)
	if nd := nodeBySid(got, 2); nd.Status != pilotv1.NodeStatus_NODE_STATUS_LOST || nd.GetHealth().GetStatus() != "lost" {
		t.Errorf("a lost node: status %v, health %v; want LOST and health lost", nd.Status, nd.GetHealth())
	}
	h.fg.mu.Lock()
	h.fg.cutOff = nil
	h.fg.mu.Unlock()
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = h.cluster(t, c.Id)
	if nd := nodeBySid(got, 2); nd.GetHealth().GetStatus() != "unhealthy" {
		t.Errorf("the node's drone back: health %v, want its report again", nd.GetHealth())
	}

	// Each change is an event of the cluster, in order.
	evs, err := evlog.List(ctx, c.Id, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got2 []string
	for _, ev := range evs {
		got2 = append(got2, ev.Kind+" "+ev.NodeId+" "+ev.Message)
	}
	want := []string{
		"health " + victim.Id + " " + victim.Id + " (role " + victim.Role + "): none -> unhealthy; check exit 7: refused; action_cmd exit 0",
		"health " + victim.Id + " " + victim.Id + " (role " + victim.Role + "): unhealthy -> lost",
		"node " + victim.Id + " " + victim.Id + " (role " + victim.Role + "): ACTIVE -> LOST",
		"health " + victim.Id + " " + victim.Id + " (role " + victim.Role + "): lost -> unhealthy; check exit 7: refused; action_cmd exit 0",
		"node " + victim.Id + " " + victim.Id + " (role " + victim.Role + "): LOST -> ACTIVE",
	}
	if !slices.Equal(got2, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got2, "\n"), strings.Join(want, "\n"))
	}
}

func nodeBySid(c *pilotv1.Cluster, sid int32) *pilotv1.Node {
	for _, nd := range c.Nodes {
		if nd.Sid == sid {
			return nd
		}
	}
	return nil
}

// mustJob is the cluster's current job.
func mustJob(t *testing.T, h *opsHarness, id string) *pilotv1.Job {
	t.Helper()
	c, _ := h.cluster(t, id)
	j := &pilotv1.Job{}
	if _, err := h.st.Get(context.Background(), store.JobKey(c.JobId), j); err != nil {
		t.Fatal(err)
	}
	return j
}

// A pass works from the clusters as it read them, which takes a while on
// large ones: an instance whose cluster began to be deleted since is not
// started again (that left a drone running behind its deleted record).
func TestReconcilerDoesNotReviveWhatIsBeingDeleted(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	r := NewReconciler(h.ops, ReconcilerConfig{Grace: 5 * time.Second})
	victim := nodeBySid(c, 2)
	state := func() providerv1.InstanceState {
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		return h.prov.instances[victim.InstanceId].State
	}
	h.prov.mu.Lock()
	h.prov.instances[victim.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_LOST
	h.prov.mu.Unlock()
	setStatus := func(st pilotv1.ClusterStatus) {
		t.Helper()
		if _, err := h.ops.updateCluster(ctx, c.Id, func(x *pilotv1.Cluster) error { x.Status = st; return nil }); err != nil {
			t.Fatal(err)
		}
	}

	setStatus(pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING) // c, as the pass read it, is still active
	if lost, _ := r.reviveIfLost(ctx, c, victim.InstanceId, "drone"); lost || state() != providerv1.InstanceState_INSTANCE_STATE_LOST {
		t.Fatalf("an instance of a cluster being deleted was revived (lost %v, now %v)", lost, state())
	}
	setStatus(pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE)
	if lost, _ := r.reviveIfLost(ctx, c, victim.InstanceId, "drone"); !lost || state() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("an instance of an active cluster was not revived (lost %v, now %v)", lost, state())
	}
}

// TestHealthCheckOf: a role's own block replaces the cluster's whole; a
// disabled one, or one without check_cmd, is no check.
func TestHealthCheckOf(t *testing.T) {
	cluster := &apppkg.HealthCheck{Enable: true, CheckCmd: "cluster-check", IntervalSec: 60, TimeoutSec: 10, HealthyThreshold: 2, UnhealthyThreshold: 3}
	role := &apppkg.HealthCheck{Enable: true, CheckCmd: "role-check", ActionCmd: "fix", IntervalSec: 5, TimeoutSec: 2, ActionTimeoutSec: 30, HealthyThreshold: 2, UnhealthyThreshold: 2}
	off := &apppkg.HealthCheck{Enable: false, CheckCmd: "x", IntervalSec: 60, TimeoutSec: 10, HealthyThreshold: 2, UnhealthyThreshold: 2}
	spec := &apppkg.ClusterSpec{HealthCheck: cluster, Nodes: []apppkg.NodeSpec{{Role: "a"}, {Role: "b", HealthCheck: role}, {Role: "c", HealthCheck: off}}}
	for _, tc := range []struct {
		role, want string
	}{{"a", "cluster-check"}, {"b", "role-check"}, {"c", ""}} {
		got := healthCheckOf(spec, tc.role)
		if got.GetCheckCmd() != tc.want {
			t.Errorf("role %s: %v, want check %q", tc.role, got, tc.want)
		}
	}
	if got := healthCheckOf(spec, "b"); got.GetIntervalSec() != 5 || got.GetActionCmd() != "fix" || got.GetUnhealthyThreshold() != 2 {
		t.Errorf("role b's check %v, want its own block whole", got)
	}
	if anyHealthCheck(&apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{{Role: "a", HealthCheck: off}}}) {
		t.Error("a spec whose only check is disabled has a health check")
	}
}
