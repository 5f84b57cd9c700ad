package e2e

import (
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// A command that exits non-zero fails the job, and the job says which node,
// with which exit code and what it printed.
func TestFailingCommandFailsJob(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/testapp")

	c, job := createCluster(t, p, "testapp", nil)
	if job.State != pilotv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("job ended %v, want FAILED", job.State)
	}
	node := c.Nodes[0]
	for _, want := range []string{node.Id, "exited with code 3", "boom-on-purpose"} {
		if !strings.Contains(job.Error, want) {
			t.Errorf("job error does not contain %q:\n%s", want, job.Error)
		}
	}
	var found *pilotv1.NodeResult
	for _, task := range job.Tasks {
		for _, r := range task.NodeResults {
			if r.NodeId == node.Id && strings.HasPrefix(task.Title, "init ") {
				found = r
			}
		}
		if strings.HasPrefix(task.Title, "start ") && task.State != pilotv1.TaskState_TASK_STATE_SKIPPED {
			t.Errorf("start task %s is %v after init failed, want SKIPPED", task.Id, task.State)
		}
	}
	if found == nil || found.ExitCode != 3 || !strings.Contains(found.Output, "boom-on-purpose") {
		t.Fatalf("init result of %s: %+v, want exit code 3 with the output", node.Id, found)
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED {
		t.Errorf("cluster status %v, want FAILED", c.Status)
	}
	out, err := p.hangar("job", "show", job.Id)
	if err != nil && !strings.Contains(out, "boom-on-purpose") {
		t.Errorf("hangar job show: %v\n%s", err, out)
	}
	for _, want := range []string{node.Id, "3", "boom-on-purpose"} {
		if !strings.Contains(out, want) {
			t.Errorf("hangar job show does not show %q:\n%s", want, out)
		}
	}
	// A failed cluster can still be deleted, leaving nothing behind.
	p.mustHangar("cluster", "delete", c.Id, "--force", "--wait")
	if left := instanceDirs(t, p); len(left) > 0 {
		t.Errorf("instances left after deleting the failed cluster: %v", left)
	}
}
