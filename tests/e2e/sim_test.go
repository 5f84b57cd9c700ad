package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// createSimRuntime makes runtime "sim" of the sim provider: its instances
// are drones and frontgates inside the plugin, commands played by its
// fake executor with the given settings.
func createSimRuntime(t testing.TB, p *pilot, settings map[string]string) string {
	t.Helper()
	root := t.TempDir()
	config := map[string]string{"root_dir": root}
	for k, v := range settings {
		config[k] = v
	}
	if _, err := p.runtimes.CreateRuntime(context.Background(), &pilotv1.CreateRuntimeRequest{Id: "sim", Provider: "sim", Zone: "sim-1", Config: config}); err != nil {
		t.Fatalf("create the sim runtime: %v", err)
	}
	return root
}

// TestSimCluster: the kv app on the sim provider is a real cluster for
// pilot — frontgate, enrolled drones, metadata, rendered config files —
// whose commands are played, not run: create, scale out and in, and
// delete, with every drone's kv.conf rendered in its own directory.
func TestSimCluster(t *testing.T) {
	p := startPilot(t)
	root := createSimRuntime(t, p, map[string]string{"exec_latency": "10ms"})
	p.mustHangar("app", "push", "examples/kv")
	c, job := createClusterOn(t, p, "sim", "kv", map[string]string{"cluster.replica.count": "4"})
	mustSucceed(t, job)
	if len(c.Nodes) != 5 {
		t.Fatalf("nodes: %d, want 5 (a primary and 4 replicas)", len(c.Nodes))
	}
	conf := func(n *pilotv1.Node) string {
		b, _ := os.ReadFile(filepath.Join(root, "instances", n.InstanceId, "root", "opt", "kv", "kv.conf"))
		return string(b)
	}
	primary := byRole(c, "primary")[0]
	for _, n := range c.Nodes {
		got := conf(n)
		if !strings.Contains(got, "role = "+n.Role) || !strings.Contains(got, "listen = "+n.Address+":") || !strings.Contains(got, "primary = "+primary.Address+":") {
			t.Errorf("node %s (%s) kv.conf:\n%s\nwant its role, its address %s and the primary's %s", n.Id, n.Role, got, n.Address, primary.Address)
		}
	}

	// A change of metadata reaches every drone's file.
	p.mustHangar("cluster", "update-env", c.Id, "motd=simulated", "--wait")
	for _, n := range c.Nodes {
		if got := conf(n); !strings.Contains(got, "motd = simulated") {
			t.Errorf("node %s kv.conf after update-env:\n%s", n.Id, got)
		}
	}

	p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "6", "--wait")
	c = p.cluster(c.Id)
	if n := len(byRole(c, "replica")); n != 6 {
		t.Fatalf("replicas after scale out: %d, want 6", n)
	}
	for _, n := range c.Nodes {
		waitFor(t, time.Minute, "node "+n.Id+"'s kv.conf", func() (bool, string) {
			got := conf(n)
			return strings.Contains(got, "primary = "+primary.Address+":"), got
		})
	}
	p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "2", "--wait")
	if n := len(byRole(p.cluster(c.Id), "replica")); n != 2 {
		t.Fatalf("replicas after scale in: %d, want 2", n)
	}

	p.mustHangar("cluster", "delete", c.Id, "--wait")
	waitFor(t, time.Minute, "the instances' directories to go", func() (bool, string) {
		left, _ := os.ReadDir(filepath.Join(root, "instances"))
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		return len(left) == 0, strings.Join(names, " ")
	})
}
