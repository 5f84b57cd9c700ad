package clusterops

import (
	"context"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
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
	h.prov.mu.Lock()
	h.prov.instances[victim.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_LOST
	h.prov.mu.Unlock()

	if got := pass(3 * time.Second); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
		t.Fatalf("within the grace period: %v / %v, want both active", got.Status, nodeBySid(got, 2).Status)
	}
	got := pass(3 * time.Second)
	if got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED || nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_LOST {
		t.Fatalf("past the grace period: %v / %v, want degraded / lost", got.Status, nodeBySid(got, 2).Status)
	}
	h.prov.mu.Lock()
	revived := h.prov.instances[victim.InstanceId].State
	h.prov.mu.Unlock()
	if revived != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("the lost instance is %v, want started again", revived)
	}
	if got := pass(time.Second); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
		t.Fatalf("after the revival: %v / %v, want both active", got.Status, nodeBySid(got, 2).Status)
	}

	// A running job owns the cluster's status.
	if _, err := h.life.Restart(ctx, h.op(t, c.Id)); err != nil {
		t.Fatal(err)
	}
	h.prov.mu.Lock()
	h.prov.instances[victim.InstanceId].State = providerv1.InstanceState_INSTANCE_STATE_STOPPED
	h.prov.mu.Unlock()
	pass(0)
	if got := pass(10 * time.Second); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING || nodeBySid(got, 2).Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
		t.Fatalf("during a job: %v / %v; the reconciler must leave it alone", got.Status, nodeBySid(got, 2).Status)
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
