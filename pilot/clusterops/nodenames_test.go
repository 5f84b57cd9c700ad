package clusterops

import (
	"strings"
	"testing"
)

// update_nodes_names runs after create on one node; the names it prints
// are kept on the nodes; naming a node the cluster lacks fails the step.
func TestUpdateNodesNames(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"backup_policy": "custom",`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp changed: %q not found", old)
		}
		return strings.Replace(s, old, old+` "advanced_services": {"update_nodes_names": {"cmd": "name-them", "timeout": 10}},`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	last := r.Job.Tasks[len(r.Job.Tasks)-1]
	if last.Kind != taskUpdateNodeNames {
		t.Fatalf("create's last step is %s, want the node names", last.Kind)
	}
	names := map[string]string{}
	for i, n := range r.Cluster.Nodes {
		names[n.Id] = "node-" + string(rune('a'+i))
	}
	h.fg.mu.Lock()
	h.fg.output = func(_, cmd string) string {
		if cmd != "name-them" {
			return "ok\n"
		}
		var b strings.Builder
		b.WriteString("{")
		first := true
		for id, name := range names {
			if !first {
				b.WriteString(",")
			}
			first = false
			b.WriteString(`"` + id + `":"` + name + `"`)
		}
		b.WriteString("}")
		return b.String()
	}
	h.fg.mu.Unlock()
	h.runJob(t, r.Job)
	c, _ := h.cluster(t, r.Cluster.Id)
	for _, n := range c.Nodes {
		if n.Name != names[n.Id] {
			t.Fatalf("node %s name %q, want %q", n.Id, n.Name, names[n.Id])
		}
	}

	h2 := newOpsHarnessWith(t, dir)
	r2 := h2.create(t, nil)
	h2.fg.mu.Lock()
	h2.fg.output = func(_, cmd string) string {
		if cmd == "name-them" {
			return `{"cln-nobody": "x"}`
		}
		return "ok\n"
	}
	h2.fg.mu.Unlock()
	var err error
	for _, task := range r2.Job.Tasks {
		if err = h2.run(t, r2.Job, task); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "named nodes the cluster does not have: cln-nobody") {
		t.Fatalf("naming a node the cluster lacks: %v", err)
	}
}
