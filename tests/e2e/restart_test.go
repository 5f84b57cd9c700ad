package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Pilot killed while a lifecycle command runs: the restarted pilot resumes
// the job, asks the drone for the same command id, gets the recorded
// result, and the command has run exactly once.
func TestPilotCrashMidJobResumes(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := createWithSleepingInit(ctx, t, p, 3)
	p.kill()
	// The provider plugin must not outlive the pilot that started it.
	waitFor(t, 15*time.Second, "the orphaned provider plugin to exit", func() (bool, string) {
		pids := processesRunning(filepath.Join(p.bin, "hangar-provider-local"))
		return len(pids) == 0, strings.Join(pids, ",")
	})
	p.start()
	waitFor(t, time.Minute, "the restarted pilot to answer", func() (bool, string) {
		_, err := p.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
		return err == nil, ""
	})
	job := p.waitJob(ctx, r.Job.Id)
	mustSucceed(t, job)
	c := p.cluster(r.Cluster.Id)
	marker, err := os.ReadFile(filepath.Join(p.instanceRoot(c.Nodes[0].InstanceId), "init.marker"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(marker), "ran"); got != 1 {
		t.Fatalf("init ran %d times across the pilot crash, want exactly once", got)
	}
}

// createWithSleepingInit pushes testapp and starts a create whose init
// sleeps for seconds, and returns once the init runs on the node.
func createWithSleepingInit(ctx context.Context, t *testing.T, p *pilot, seconds int) *pilotv1.ClusterJob {
	t.Helper()
	p.mustHangar("app", "push", "tests/e2e/testdata/testapp")
	r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "testapp", Runtime: "local",
		Params: map[string]string{"env.exit_code": "0", "env.init_sleep": strconv.Itoa(seconds)}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "init to be running on the node", func() (bool, string) {
		j, err := p.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: r.Job.Id})
		if err != nil {
			return false, err.Error()
		}
		for _, task := range j.Tasks {
			for _, nr := range task.NodeResults {
				if strings.HasPrefix(task.Title, "init ") && nr.State == streamv1.CommandState_COMMAND_STATE_RUNNING {
					return true, ""
				}
			}
		}
		return false, j.State.String()
	})
	return r
}
