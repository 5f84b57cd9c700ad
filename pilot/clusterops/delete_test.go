package clusterops

import (
	"context"
	"errors"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// A forced delete of an app whose destroy says allow_force: false is
// refused, naming the role and the admin's escape; with the override the
// job's destroy steps may pass over a failure.
func TestDeleteForceAndAllowForce(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"post_stop_service": true, "timeout": 30}`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp's destroy changed: %q not found", old)
		}
		return strings.Replace(s, old, `"post_stop_service": true, "timeout": 30, "allow_force": false}`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	ctx := context.Background()

	_, err := h.life.Delete(ctx, h.op(t, r.Cluster.Id), true, false)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != Precondition || !strings.Contains(err.Error(), "allow_force: false") || !strings.Contains(err.Error(), "--override-allow-force") {
		t.Fatalf("forced delete: %v, want a refusal naming allow_force and the override", err)
	}
	if _, err := h.life.Delete(ctx, h.op(t, r.Cluster.Id), false, true); err == nil {
		t.Fatal("override without force was accepted")
	}

	del, err := h.life.Delete(ctx, h.op(t, r.Cluster.Id), true, true)
	if err != nil {
		t.Fatal(err)
	}
	destroys := 0
	for _, task := range del.Job.Tasks {
		if !task.Input.Force || !task.Input.OverrideAllowForce {
			t.Errorf("task %s: force %v, override %v", task.Id, task.Input.Force, task.Input.OverrideAllowForce)
		}
		if task.Input.Service == "destroy" {
			destroys++
		}
	}
	if destroys == 0 {
		t.Fatal("the delete runs no destroy")
	}
	if c, _ := h.cluster(t, r.Cluster.Id); c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING {
		t.Fatalf("cluster is %v", c.Status)
	}
}

// An instance the provider made for a node whose run never recorded it (a
// RunInstance that created it and then failed, or whose answer was lost)
// is found by its labels and deleted with the cluster: nothing outlives it.
func TestDeleteRemovesStrayInstances(t *testing.T) {
	h := newOpsHarness(t)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	ctx := context.Background()
	c, _ := h.cluster(t, r.Cluster.Id)
	stray := c.Nodes[0]
	if err := h.ops.setNode(ctx, c.Id, stray.Id, func(nd *pilotv1.Node) { nd.InstanceId = "" }); err != nil {
		t.Fatal(err)
	}
	del, err := h.life.Delete(ctx, h.op(t, r.Cluster.Id), true, false)
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, del.Job)
	h.prov.mu.Lock()
	defer h.prov.mu.Unlock()
	if in := h.prov.instances[stray.InstanceId]; in != nil {
		t.Errorf("node %s's unrecorded instance %s outlived the cluster", stray.Id, in.Id)
	}
	if n := len(h.prov.instances); n != 0 {
		t.Errorf("%d instances left after the delete", n)
	}
}
