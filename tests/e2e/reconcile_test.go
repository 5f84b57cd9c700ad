package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// killAgent SIGKILLs the agent (drone or frontgate binary) of an instance,
// leaving the processes it started alone, and returns its pid.
func killAgent(t testing.TB, instanceID, binary string) int {
	t.Helper()
	for _, pid := range processesOf(instanceID) {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]) != binary {
			continue
		}
		n, _ := strconv.Atoi(pid)
		if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("no %s process in instance %s", binary, instanceID)
	return 0
}

// TestLostAgentsComeBack: pilot's reconciler notices a frontgate and a
// drone killed with SIGKILL, says so in the node's and cluster's status,
// and starts them again through the provider with no user action; the
// cluster then takes commands again.
func TestLostAgentsComeBack(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	fgInstance, _ := frontgateInstance(t, p)
	killed := time.Now()
	old := killAgent(t, fgInstance, "frontgate")
	waitFor(t, 30*time.Second, "the frontgate to be started again", func() (bool, string) {
		for _, pid := range processesOf(fgInstance) {
			if pid != strconv.Itoa(old) {
				return true, ""
			}
		}
		return false, "no new frontgate process"
	})
	p.mustHangar("cluster", "run", c.Id, "greet", "--param", "name=back", "--param", "times=1", "--wait")
	t.Logf("frontgate killed → back and a command ran on every node in %v", time.Since(killed).Round(100*time.Millisecond))
	if d := time.Since(killed); d > 30*time.Second {
		t.Errorf("the cluster took commands again only after %v, want within 30s", d)
	}

	member := nodeBySid(c, 2)
	killed = time.Now()
	killAgent(t, member.InstanceId, "drone")
	// The drone is back within a second or so: poll fast enough to see
	// the node lost meanwhile.
	var lostAfter time.Duration
	for last := ""; ; time.Sleep(20 * time.Millisecond) {
		got := p.cluster(c.Id)
		nd := nodeBySid(got, 2)
		lostAfter = time.Since(killed)
		// Lost; or, as opsapp runs nothing of its own between commands,
		// an instance with nothing left that is started again
		// (starting) and gets its services started.
		gone := nd.Status == pilotv1.NodeStatus_NODE_STATUS_LOST || nd.Status == pilotv1.NodeStatus_NODE_STATUS_STARTING
		if gone && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED {
			break
		}
		last = got.Status.String() + " " + nd.Status.String()
		if lostAfter > 10*time.Second {
			t.Fatalf("the node was not shown lost within 10s of its drone's SIGKILL (last: %s)", last)
		}
	}
	t.Logf("drone killed → node shown lost in %v", lostAfter.Round(100*time.Millisecond))
	waitFor(t, 30*time.Second, "the drone back and the cluster active", func() (bool, string) {
		got := p.cluster(c.Id)
		nd := nodeBySid(got, 2)
		return nd.Status == pilotv1.NodeStatus_NODE_STATUS_ACTIVE && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, got.Status.String() + " " + nd.Status.String()
	})
	p.mustHangar("cluster", "run", c.Id, "greet", "--param", "name=again", "--param", "times=1", "--wait")
}

// TestDroneKilledMidCommand: a drone killed with SIGKILL while a command
// runs comes back (pilot's reconciler starts it again), finds the command
// still running under its supervisor, and reports its real exit code: the
// job succeeds, and the command ran once.
func TestDroneKilledMidCommand(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := createWithSleepingInit(ctx, t, p, 6)
	c := p.cluster(r.Cluster.Id)
	nd := c.Nodes[0]
	killAgent(t, nd.InstanceId, "drone")
	j := p.waitJob(ctx, r.Job.Id)
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("the create ended %v (%s) after its drone was killed mid-init", j.State, j.Error)
	}
	for _, nr := range stepResults(t, p, r.Job.Id, "init")[0] {
		if nr.State != streamv1.CommandState_COMMAND_STATE_EXITED || nr.ExitCode != 0 {
			t.Errorf("node %s: init reported %v %d (%s); want the real EXITED 0", nr.NodeId, nr.State, nr.ExitCode, nr.Error)
		}
	}
	if got := readTrace(p, nd, "init.marker"); got != "ran\n" {
		t.Fatalf("init.marker = %q: init must have run once, to its end", got)
	}
}

// TestMachineRestart kills every process of a cluster and pilot, as a
// machine restart would, then starts pilot again (what `hangar up` does):
// the frontgate, the drones and the app come back with no user action, and
// from pilot's first answer on the cluster never says active while its
// service does not answer.
func TestMachineRestart(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	c, job := createCluster(t, p, "kv", nil)
	mustSucceed(t, job)
	serving := func() (bool, string) {
		for _, n := range c.Nodes {
			if _, err := httpGet("http://" + n.Address + ":6380/status"); err != nil {
				return false, n.Id + ": " + err.Error()
			}
		}
		return true, ""
	}
	waitFor(t, 30*time.Second, "the service to answer on every node", serving)

	fgInstance, _ := frontgateInstance(t, p)
	ids := []string{fgInstance}
	for _, n := range c.Nodes {
		ids = append(ids, n.InstanceId)
	}
	p.kill()
	for _, pid := range processesOf(ids...) {
		n, _ := strconv.Atoi(pid)
		_ = syscall.Kill(n, syscall.SIGKILL)
	}
	waitFor(t, 15*time.Second, "every process of the cluster to be gone", func() (bool, string) {
		left := processesOf(ids...)
		return len(left) == 0, strings.Join(left, ",")
	})

	p.start()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var statuses []string
	waitFor(t, 90*time.Second, "the cluster to serve again and say so", func() (bool, string) {
		got, err := p.clusters.GetCluster(ctx, &pilotv1.GetClusterRequest{Id: c.Id})
		if err != nil {
			return false, err.Error()
		}
		if len(statuses) == 0 || statuses[len(statuses)-1] != got.Status.String() {
			statuses = append(statuses, got.Status.String())
		}
		up, why := serving()
		if got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE && !up {
			t.Fatalf("pilot says the cluster is active while its service is down (%s); statuses seen: %v", why, statuses)
		}
		return up && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, got.Status.String() + " " + why
	})
	t.Logf("statuses seen after the restart: %v", statuses)
	p.mustHangar("cluster", "update-env", c.Id, "motd=after the restart", "--wait")
}
