package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// TestRecoveryReplacesLostNode: with recovery on, a node whose drone is
// killed outright is marked LOST and replaced by a recover job (a new
// instance, the same node id); killing half of the cluster's ten nodes at
// once makes the meltdown guard (BOSH's defaults: more than 20 % and at
// least 5 down) hold: an event, no replacement, and the dead instances
// restarted in place. On the local runtime.
func TestRecoveryReplacesLostNode(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	recoveryScenario(t, p, "local", func(instanceID string) { killAgent(t, instanceID, "drone") })
}

// TestDockerRecoveryReplacesLostNode is the same on the docker runtime,
// where killing a node's drone kills its container (the drone is its
// PID 1).
func TestDockerRecoveryReplacesLostNode(t *testing.T) {
	p, dc, rt := dockerPilot(t, "kv")
	recoveryScenario(t, p, rt, func(instanceID string) {
		if _, err := dc.ContainerKill(context.Background(), instanceID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
			t.Fatalf("kill container %s: %v", instanceID, err)
		}
	})
}

func recoveryScenario(t *testing.T, p *pilot, runtime string, kill func(instanceID string)) {
	p.mustHangar("app", "push", healthKV(t))
	c, job := createClusterOn(t, p, runtime, "kv", map[string]string{"cluster.replica.count": "9"})
	mustSucceed(t, job)
	if n := len(c.Nodes); n != 10 {
		t.Fatalf("%d nodes, want 10", n)
	}
	out := p.mustHangar("cluster", "recovery", c.Id, "--enable")
	if !strings.Contains(out, "recovery on") {
		t.Fatalf("cluster recovery --enable said:\n%s", out)
	}

	// One drone killed: 1 of 10 down, under the guard.
	replicas := byRole(c, "replica")
	victim := replicas[0]
	killed := time.Now()
	kill(victim.InstanceId)
	var lostAfter time.Duration
	waitFor(t, 2*time.Minute, "the node replaced and active again", func() (bool, string) {
		got := p.cluster(c.Id)
		nd := nodeByID(got, victim.Id)
		if nd.GetStatus() == pilotv1.NodeStatus_NODE_STATUS_LOST && lostAfter == 0 {
			lostAfter = time.Since(killed)
		}
		return nd.GetInstanceId() != victim.InstanceId && nd.GetStatus() == pilotv1.NodeStatus_NODE_STATUS_ACTIVE && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE,
			fmt.Sprintf("cluster %s, node %s on %s", got.Status, nd.GetStatus(), nd.GetInstanceId())
	})
	t.Logf("drone killed → node seen LOST in %.1f s, replaced and ACTIVE in %.1f s", lostAfter.Seconds(), time.Since(killed).Seconds())
	got := p.cluster(c.Id)
	j, err := p.jobs.GetJob(context.Background(), &pilotv1.GetJobRequest{Id: got.JobId})
	if err != nil {
		t.Fatal(err)
	}
	if j.Kind != "recover" || j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("the cluster's last job is %s (%s, %v); want the recover job, succeeded", j.Id, j.Kind, j.State)
	}
	evs := p.mustHangar("cluster", "events", c.Id, "--limit", "1000")
	for _, want := range []string{"replacing " + victim.Id + " (lost, its instance dead", "job " + j.Id + " (recover) ended SUCCEEDED"} {
		if !strings.Contains(evs, want) {
			t.Errorf("events lack %q:\n%s", want, evs)
		}
	}

	// Half the cluster killed at once: the guard holds.
	before := map[string]string{}
	for _, nd := range byRole(got, "replica")[1:6] {
		before[nd.Id] = nd.InstanceId
	}
	for _, id := range before {
		kill(id)
	}
	waitFor(t, 2*time.Minute, "the meltdown guard's event", func() (bool, string) {
		evs := p.mustHangar("cluster", "events", c.Id, "--limit", "1000")
		return strings.Contains(evs, "meltdown guard holds: 5 of 10 nodes of the cluster down"), lastLines(evs, 3)
	})
	waitFor(t, 2*time.Minute, "the killed nodes back in place and the guard released", func() (bool, string) {
		got := p.cluster(c.Id)
		var waiting []string
		for id := range before {
			if nd := nodeByID(got, id); nd.GetStatus() != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
				waiting = append(waiting, id+"="+nd.GetStatus().String())
			}
		}
		evs := p.mustHangar("cluster", "events", c.Id, "--limit", "1000")
		return len(waiting) == 0 && strings.Contains(evs, "meltdown guard released"), strings.Join(waiting, " ")
	})
	got = p.cluster(c.Id)
	for id, inst := range before {
		if nd := nodeByID(got, id); nd.GetInstanceId() != inst {
			t.Errorf("node %s was replaced (instance %s, was %s) while the guard held", id, nd.GetInstanceId(), inst)
		}
	}
	evs = p.mustHangar("cluster", "events", c.Id, "--limit", "1000")
	if n := strings.Count(evs, "): recover job "); n != 1 {
		t.Errorf("%d replacements in the events, want only the first node's:\n%s", n, evs)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
