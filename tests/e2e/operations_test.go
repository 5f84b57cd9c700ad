package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// readTrace reads a file an app command wrote in an instance ("" when it
// is missing).
func readTrace(p *pilot, n *pilotv1.Node, name string) string {
	b, _ := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), name))
	return string(b)
}

// stepResults returns the node results of the job's steps whose title
// starts with prefix, in the job's order.
func stepResults(t *testing.T, p *pilot, jobID, prefix string) [][]*pilotv1.NodeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := p.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: jobID})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]*pilotv1.NodeResult
	for _, task := range j.Tasks {
		if strings.HasPrefix(task.Title, prefix) {
			out = append(out, task.NodeResults)
		}
	}
	return out
}

// TestRestartAndCustomService runs AppCenter's restart by order and a
// custom service with parameters on a real cluster: the order is read from
// the drones' own start and end times, the commands' effects from the
// instances, and bad requests change nothing.
func TestRestartAndCustomService(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	// The plan first: two steps, lead then members, each node's command.
	plan := p.mustHangar("cluster", "restart", c.Id, "--dry-run")
	for _, want := range []string{"nothing was changed", "1. restart on role lead (order 1)", "2. restart on role member (order 2)", "echo restart"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, plan)
		}
	}
	if got := p.cluster(c.Id); got.JobId != c.JobId {
		t.Fatalf("a dry run started job %s", got.JobId)
	}

	out := p.mustHangar("cluster", "restart", c.Id, "--wait")
	after := p.cluster(c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || after.JobId == c.JobId {
		t.Fatalf("after the restart: %v, job %s\n%s", after.Status, after.JobId, out)
	}
	steps := stepResults(t, p, after.JobId, "restart")
	if len(steps) != 2 || len(steps[0]) != 1 || len(steps[1]) != 2 {
		t.Fatalf("restart steps %v, want the lead's then the two members'", steps)
	}
	leadEnd := steps[0][0].FinishedAt.AsTime()
	for _, nr := range steps[1] {
		if nr.StartedAt.AsTime().Before(leadEnd) {
			t.Fatalf("member %s began its restart at %v, before the lead's ended at %v", nr.NodeId, nr.StartedAt.AsTime(), leadEnd)
		}
	}
	for _, n := range after.Nodes {
		if got := strings.Count(readTrace(p, n, "events.log"), "restart"); got != 1 {
			t.Errorf("node %s (%s) restarted %d times, want once", n.Id, n.Role, got)
		}
	}

	// A custom service gets its parameters as one JSON argument.
	out = p.mustHangar("cluster", "run", c.Id, "greet", "--param", "name=ann", "--param", "times=2", "--wait")
	for _, n := range after.Nodes {
		if got := readTrace(p, n, "greet.log"); strings.TrimSpace(got) != `{"name":"ann","times":2}` {
			t.Errorf("node %s got %q, want the JSON argument\n%s", n.Id, got, out)
		}
	}
	if got := p.cluster(c.Id).Status; got != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after a custom service the cluster is %v", got)
	}

	// Bad requests are refused by name and change nothing.
	before := p.cluster(c.Id).JobId
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "run", c.Id, "greet", "--param", "name=Bob!"}, `parameter "name"`},
		{[]string{"cluster", "run", c.Id, "greet", "--param", "color=red"}, `unknown parameter "color"`},
		{[]string{"cluster", "run", c.Id, "fly"}, "its custom services: greet"},
		{[]string{"cluster", "restart", c.Id, "--role", "ghost"}, `"ghost"`},
	} {
		out, err := p.hangar(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("hangar %v: %v\n%s\nwant a refusal naming %q", tc.args, err, out, tc.want)
		}
	}
	if got := p.cluster(c.Id).JobId; got != before {
		t.Fatalf("a refused request started job %s", got)
	}

	// The same over REST, planned only.
	code, body, err := p.rest(http.MethodPost, "/v1/clusters/"+c.Id+"/services/greet", p.token, strings.NewReader(`{"params":{"name":"rest"},"dryRun":true}`))
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"id":"dry-run"`) || !strings.Contains(body, `'{\"name\":\"rest\",\"times\":1}'`) {
		t.Fatalf("REST dry run: %d %v\n%s", code, err, body)
	}
}
