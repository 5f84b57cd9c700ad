package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// TestAppInitDeploys: the package `hangar app init` writes pushes, deploys on
// the local runtime and renders on the node what `hangar app render` shows,
// but for the node's real address; its version cannot be deleted while the
// cluster uses it.
func TestAppInitDeploys(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	dir := filepath.Join(t.TempDir(), "hello")
	p.mustHangar("app", "init", dir, "--roles", "server,worker")
	rendered := p.mustHangar("app", "render", dir, "--role", "worker")
	p.mustHangar("app", "push", dir)

	c, job := createCluster(t, p, "hello", map[string]string{"env.greeting": "hi there"})
	mustSucceed(t, job)
	if len(c.Nodes) != 2 {
		t.Fatalf("%d nodes, want one per role", len(c.Nodes))
	}
	var server, worker *pilotv1.Node
	for _, n := range c.Nodes {
		switch n.Role {
		case "server":
			server = n
		case "worker":
			worker = n
		}
	}
	b, err := os.ReadFile(filepath.Join(p.instanceRoot(worker.InstanceId), "etc", "hello", "hello.conf"))
	if err != nil {
		t.Fatalf("the worker's rendered config: %v", err)
	}
	got := string(b)
	// render's synthetic cluster, with the addresses and values of this one.
	want := rendered[strings.Index(rendered, "# hello config of"):]
	want = strings.NewReplacer(
		"i-2", worker.InstanceId,
		"192.0.2.1", server.Address, "192.0.2.2", worker.Address,
		"greeting = hello", "greeting = hi there",
	).Replace(want)
	if got != want {
		t.Fatalf("the worker rendered\n%s\nwant (from hangar app render)\n%s", got, want)
	}

	out, err := p.hangar("app", "delete", "hello", "0.1.0")
	if err == nil || !strings.Contains(out, c.Id) {
		t.Fatalf("delete of the version the cluster uses: %v\n%s", err, out)
	}
	if list := p.mustHangar("app", "list"); !strings.Contains(list, c.Id) {
		t.Fatalf("app list does not name the cluster using hello 0.1.0:\n%s", list)
	}
	p.mustHangar("cluster", "delete", c.Id, "--wait")
	p.mustHangar("app", "delete", "hello", "0.1.0")
	if list := p.mustHangar("app", "list"); strings.Contains(list, "hello") {
		t.Fatalf("app list after the delete still shows hello:\n%s", list)
	}
}
