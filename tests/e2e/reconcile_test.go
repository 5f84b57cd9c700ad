package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// killAgent SIGKILLs the agent (drone or frontgate binary) of an instance,
// leaving the processes it started alone, and returns its pid.
func killAgent(t *testing.T, instanceID, binary string) int {
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
	var lostAfter time.Duration
	waitFor(t, 10*time.Second, "the node to show lost and its cluster degraded", func() (bool, string) {
		got := p.cluster(c.Id)
		nd := nodeBySid(got, 2)
		lostAfter = time.Since(killed)
		return nd.Status == pilotv1.NodeStatus_NODE_STATUS_LOST && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED, got.Status.String() + " " + nd.Status.String()
	})
	t.Logf("drone killed → node shown lost in %v", lostAfter.Round(100*time.Millisecond))
	waitFor(t, 30*time.Second, "the drone back and the cluster active", func() (bool, string) {
		got := p.cluster(c.Id)
		nd := nodeBySid(got, 2)
		return nd.Status == pilotv1.NodeStatus_NODE_STATUS_ACTIVE && got.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, got.Status.String() + " " + nd.Status.String()
	})
	p.mustHangar("cluster", "run", c.Id, "greet", "--param", "name=again", "--param", "times=1", "--wait")
}
