package clusterops

import (
	"context"
	"errors"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

// A display tab runs its command on the first node of each of its roles,
// as a job that leaves the cluster as it was; what the node printed must
// be a table; an unknown tab is refused, naming the app's.
func TestDisplayTab(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"backup_policy": "custom",`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp changed: %q not found", old)
		}
		return strings.Replace(s, old, old+` "display_tabs": {"members": {"cmd": "tab-members", "roles_to_execute_on": ["member"], "description": "who is in", "timeout": 5}},`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	ctx := context.Background()
	c, _ := h.cluster(t, r.Cluster.Id)
	var first *pilotv1.Node
	for _, n := range c.Nodes {
		if n.Role == "member" && (first == nil || n.Sid < first.Sid) {
			first = n
		}
	}
	table := `{"labels": ["node", "lag"], "data": [["a", 1], ["b", 2]]}`
	h.fg.mu.Lock()
	h.fg.output = func(_, cmd string) string {
		if cmd == "tab-members" {
			return table
		}
		return "ok\n"
	}
	h.fg.mu.Unlock()

	_, err := h.life.DisplayTab(ctx, h.op(t, c.Id), "nope")
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), `tab "nope"`) || !strings.Contains(err.Error(), "its tabs: members") {
		t.Fatalf("unknown tab: %v", err)
	}
	cj, err := h.life.DisplayTab(ctx, h.op(t, c.Id), "members")
	if err != nil {
		t.Fatal(err)
	}
	before := h.ranCount()
	h.runJob(t, cj.Job)
	if ran := h.ranSince(before); len(ran) != 1 || ran[0] != first.Id+": tab-members" {
		t.Fatalf("tab ran %q, want once on the first member %s", ran, first.Id)
	}
	tab, err := apppkg.ParseTab(table)
	if err != nil || len(tab.Data) != 2 {
		t.Fatalf("parse: %v, %v", tab, err)
	}
	if after, _ := h.cluster(t, c.Id); after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("cluster %v after a tab", after.Status)
	}

	for _, bad := range []string{`not json`, `{"labels": [], "data": []}`, `{"labels": ["a","b"], "data": [["x"]]}`, `{"labels": ["a","b","c","d","e","f"], "data": []}`} {
		h.fg.mu.Lock()
		h.fg.output = func(string, string) string { return bad }
		h.fg.results = map[string]*streamv1.CommandResult{}
		h.fg.mu.Unlock()
		cj, err := h.life.DisplayTab(ctx, h.op(t, c.Id), "members")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.run(t, cj.Job, cj.Job.Tasks[0]); err == nil || !strings.Contains(err.Error(), "display tab members") {
			t.Fatalf("output %q: %v", bad, err)
		}
		h.finish(t, cj.Job, pilotv1.JobState_JOB_STATE_FAILED)
		if after, _ := h.cluster(t, c.Id); after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
			t.Fatalf("cluster %v after a failed tab", after.Status)
		}
	}
}
