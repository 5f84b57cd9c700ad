package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// redisCLI runs redis-cli against a node.
func redisCLI(n *pilotv1.Node, port string, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-h", n.Address, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("redis-cli %v on %s: %v: %s", args, n.Address, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// waitForKey polls a node until key has want.
func waitForKey(t *testing.T, n *pilotv1.Node, port, key, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("node %s (%s) to have %s=%s", n.Id, n.Address, key, want), func() (bool, string) {
		got, err := redisCLI(n, port, "get", key)
		if err != nil {
			return false, err.Error()
		}
		return got == want, fmt.Sprintf("got %q", got)
	})
}

func nodeIDs(ns []*pilotv1.Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.Id)
	}
	return ids
}

// TestRedisScale deploys examples/redis through pilot on the local runtime
// and scales its replicas out and in: a replica added later has the keys
// written before it, the replicas removed leave no process, directory or
// metadata behind, and the ones that stay still replicate.
func TestRedisScale(t *testing.T) {
	requireTools(t, "HANGAR_REQUIRE_REDIS", "redis-server", "redis-cli")
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/redis")
	port := freePortNumber(t)
	c, job := createCluster(t, p, "redis", map[string]string{"cluster.replica.count": "2", "env.port": port})
	mustSucceed(t, job)
	primary := byRole(c, "primary")[0]
	replicas := byRole(c, "replica")
	if got, err := redisCLI(primary, port, "set", "before", "written before the scale-out"); err != nil || got != "OK" {
		t.Fatalf("SET on the primary: %q %v", got, err)
	}
	for _, n := range replicas {
		waitForKey(t, n, port, "before", "written before the scale-out")
	}

	// Scale-out: the new replica gets what was written before it.
	out := p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "3", "--wait")
	grown := p.cluster(c.Id)
	var added *pilotv1.Node
	for _, n := range byRole(grown, "replica") {
		if !slices.Contains(nodeIDs(replicas), n.Id) {
			added = n
		}
	}
	if added == nil || len(byRole(grown, "replica")) != 3 || grown.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the scale-out: %v, nodes %v\n%s", grown.Status, grown.Nodes, out)
	}
	waitForKey(t, added, port, "before", "written before the scale-out")

	// Scale-in to one replica: the two that leave are gone entirely.
	out = p.mustHangar("cluster", "scale", c.Id, "--role", "replica", "--count", "1", "--wait")
	final := p.cluster(c.Id)
	staying := byRole(final, "replica")
	if len(staying) != 1 || final.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || final.Params["cluster.replica.count"] != "1" {
		t.Fatalf("after the scale-in: %v, nodes %v, count %s\n%s", final.Status, final.Nodes, final.Params["cluster.replica.count"], out)
	}
	var leaving []*pilotv1.Node
	for _, n := range byRole(grown, "replica") {
		if n.Id != staying[0].Id {
			leaving = append(leaving, n)
		}
	}
	for _, n := range leaving {
		if pids := processesOf(n.InstanceId); len(pids) > 0 {
			t.Errorf("removed replica %s still runs %v", n.Id, pids)
		}
		if _, err := os.Stat(p.instanceDir(n.InstanceId)); err == nil {
			t.Errorf("removed replica %s's directory %s is left", n.Id, p.instanceDir(n.InstanceId))
		}
		if showsNode(t, p, c.Id, n) {
			t.Errorf("hangar cluster show still names removed replica %s (%s, %s)", n.Id, n.InstanceId, n.Address)
		}
		if _, err := redisCLI(n, port, "ping"); err == nil {
			t.Errorf("removed replica %s still answers on %s", n.Id, n.Address)
		}
	}

	// What stays still replicates, and the primary counts one replica.
	if got, err := redisCLI(primary, port, "set", "after", "written after the scale-in"); err != nil || got != "OK" {
		t.Fatalf("SET on the primary: %q %v", got, err)
	}
	waitForKey(t, staying[0], port, "after", "written after the scale-in")
	waitFor(t, 30*time.Second, "the primary to count one connected replica", func() (bool, string) {
		info, err := redisCLI(primary, port, "info", "replication")
		return err == nil && strings.Contains(info, "connected_slaves:1\r"), info
	})
}

// TestRedisUpgrade upgrades a Redis cluster to a package version whose
// rendered config differs (hz 20): every node runs with the new file, and
// the data written before the upgrade is still there and replicated.
func TestRedisUpgrade(t *testing.T) {
	requireTools(t, "HANGAR_REQUIRE_REDIS", "redis-server", "redis-cli")
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/redis")
	port := freePortNumber(t)
	c, job := createCluster(t, p, "redis", map[string]string{"cluster.replica.count": "1", "env.port": port})
	mustSucceed(t, job)
	primary, replica := byRole(c, "primary")[0], byRole(c, "replica")[0]
	if got, err := redisCLI(primary, port, "set", "kept", "across the upgrade"); err != nil || got != "OK" {
		t.Fatalf("SET on the primary: %q %v", got, err)
	}
	waitForKey(t, replica, port, "kept", "across the upgrade")

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/redis", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	v2 := copyPackage(t, "examples/redis", map[string]string{
		"package.json":                    strings.Replace(read("package.json"), `"version": "1.0.0"`, `"version": "1.1.0"`, 1),
		"cluster.json.mustache":           strings.Replace(read("cluster.json.mustache"), "{\n", "{\n  \"upgrade_policy\": [\"1.0.0\"],\n", 1),
		"confd/templates/redis.conf.tmpl": read("confd/templates/redis.conf.tmpl") + "hz 20\n",
	})
	p.mustHangar("app", "push", v2)
	p.mustHangar("cluster", "upgrade", c.Id, "--version", "1.1.0", "--wait")
	after := p.cluster(c.Id)
	if after.AppVersion != "1.1.0" || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the upgrade: %s %v", after.AppVersion, after.Status)
	}
	for _, n := range after.Nodes {
		conf, err := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), "opt", "redis", "redis.conf"))
		if err != nil || !strings.Contains(string(conf), "hz 20") {
			t.Errorf("node %s's redis.conf lacks the new version's line: %v\n%s", n.Id, err, conf)
		}
		if got, err := redisCLI(n, port, "config", "get", "hz"); err != nil || !strings.Contains(got, "20") {
			t.Errorf("node %s's redis runs with hz %q (%v), want the new config's 20", n.Id, got, err)
		}
		waitForKey(t, n, port, "kept", "across the upgrade")
	}
	if got, err := redisCLI(primary, port, "set", "after", "the upgrade"); err != nil || got != "OK" {
		t.Fatalf("SET on the primary after the upgrade: %q %v", got, err)
	}
	waitForKey(t, replica, port, "after", "the upgrade")
}
