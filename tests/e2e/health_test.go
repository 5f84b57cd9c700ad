package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// healthKV is examples/kv with its health check every second (the example
// checks every 60 s, as AppCenter requires).
func healthKV(t *testing.T) string {
	return kvCopy(t, `"interval_sec": 60`, `"interval_sec": 1`, `"timeout_sec": 10`, `"timeout_sec": 1`)
}

// kvCopy is examples/kv in a copy under the test's temp dir, each old
// string of its cluster.json.mustache (pairs: old, new, ...) replaced by
// the new one; an old string the example lacks fails the test, so that a
// change of the example cannot quietly undo what a test relies on.
func kvCopy(t *testing.T, pairs ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kv")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot(t), "examples", "kv"))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cluster.json.mustache")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(string(b), pairs[i]) {
			t.Fatalf("examples/kv's cluster.json.mustache has no %s to replace", pairs[i])
		}
	}
	if err := os.WriteFile(path, []byte(strings.NewReplacer(pairs...).Replace(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// nodeHealth is the node's health status as pilot shows it, and the node.
func nodeHealth(p *pilot, clusterID, nodeID string) (string, *pilotv1.Node) {
	for _, n := range p.cluster(clusterID).Nodes {
		if n.Id == nodeID {
			return n.GetHealth().GetStatus(), n
		}
	}
	return "", nil
}

// TestHealthCheckRepairsNode: every node of kv turns healthy; the kv server
// killed on one node makes it unhealthy after unhealthy_threshold failed
// checks, its action_cmd (restart) runs, and it turns healthy again with a
// new server; `hangar cluster show` says so. On the local runtime.
func TestHealthCheckRepairsNode(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	healthRepair(t, p, "local", func(victim *pilotv1.Node) int {
		b, _ := os.ReadFile(filepath.Join(p.instanceRoot(victim.InstanceId), "var", "run", "kv.pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && syscall.Kill(pid, 0) != nil {
			return 0 // the file names a server that is gone
		}
		return pid
	}, func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) })
}

// TestDockerHealthCheckRepairsNode is the same on the docker runtime: the
// drone checks from inside the node's container, where the kv server is
// killed.
func TestDockerHealthCheckRepairsNode(t *testing.T) {
	p, _, rt := dockerPilot(t, "kv")
	var victimID string
	healthRepair(t, p, rt, func(victim *pilotv1.Node) int {
		victimID = victim.InstanceId
		out, err := dockerExec(victim.InstanceId, "sh", "-c", `pid=$(cat /var/run/kv.pid) && kill -0 "$pid" && echo "$pid"`)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(out))
		return pid
	}, func(pid int) error {
		out, err := dockerExec(victimID, "kill", "-9", strconv.Itoa(pid))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// healthRepair runs the health check scenario on runtime: serverPID is
// the running kv server's pid on a node (0: none runs), kill kills it.
func healthRepair(t *testing.T, p *pilot, runtime string, serverPID func(*pilotv1.Node) int, kill func(pid int) error) {
	p.mustHangar("app", "push", healthKV(t))
	c, job := createClusterOn(t, p, runtime, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	waitFor(t, time.Minute, "every node healthy", func() (bool, string) {
		var states []string
		ok := true
		for _, n := range p.cluster(c.Id).Nodes {
			states = append(states, n.Id+"="+n.GetHealth().GetStatus())
			ok = ok && n.GetHealth().GetStatus() == "healthy"
		}
		return ok, strings.Join(states, " ")
	})

	victim := byRole(c, "replica")[0]
	old := serverPID(victim)
	if old <= 0 {
		t.Fatalf("no kv server runs on node %s", victim.Id)
	}
	killed := time.Now()
	if err := kill(old); err != nil {
		t.Fatalf("kill the kv server (pid %d): %v", old, err)
	}

	var unhealthy *pilotv1.Node
	waitFor(t, time.Minute, "the node unhealthy", func() (bool, string) {
		st, n := nodeHealth(p, c.Id, victim.Id)
		unhealthy = n
		// It may have been repaired already when the pass that saw it
		// unhealthy came after the action: the action's result says so.
		return st == "unhealthy" || n.GetHealth().GetAction() != nil, st
	})
	// interval 1 s × unhealthy_threshold 3, plus one interval, plus the
	// reconciler's pass (1 s): printed, not asserted (a loaded machine
	// is slower).
	t.Logf("node %s unhealthy (or repaired) %.1f s after its server was killed (checks every 1 s, unhealthy after 3)", victim.Id, time.Since(killed).Seconds())
	waitFor(t, time.Minute, "action_cmd to have run", func() (bool, string) {
		_, n := nodeHealth(p, c.Id, victim.Id)
		unhealthy = n
		return n.GetHealth().GetAction() != nil, fmt.Sprint(n.GetHealth())
	})
	if a := unhealthy.GetHealth().GetAction(); a.GetExitCode() != 0 {
		t.Errorf("action_cmd exit %d: %s %s", a.GetExitCode(), a.GetError(), a.GetOutput())
	}
	waitFor(t, time.Minute, "the node healthy again", func() (bool, string) {
		st, _ := nodeHealth(p, c.Id, victim.Id)
		return st == "healthy", st
	})
	if pid := serverPID(victim); pid == old || pid <= 0 {
		t.Errorf("kv server pid %d after the repair (was %d): want a new, running one", pid, old)
	}
	for _, n := range p.cluster(c.Id).Nodes {
		if n.Id != victim.Id && n.GetHealth().GetAction() != nil {
			t.Errorf("node %s, never broken, ran its action_cmd: %v", n.Id, n.GetHealth())
		}
	}
	out := p.mustHangar("cluster", "show", c.Id)
	if !strings.Contains(out, "HEALTH") || !strings.Contains(out, "healthy") {
		t.Errorf("cluster show has no HEALTH column with healthy nodes:\n%s", out)
	}
	// The changes are the cluster's events: every node's first report,
	// and the victim's turn and its return.
	out = p.mustHangar("cluster", "events", c.Id)
	want := []string{
		victim.Id + " (role replica): unhealthy -> healthy",
		victim.Id + " (role replica): healthy -> unhealthy; check exit",
	}
	for _, n := range c.Nodes {
		want = append(want, n.Id+" (role "+n.Role+"): none -> ")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("cluster events lack %q:\n%s", w, out)
		}
	}
}
