package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
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

// nodeBySid finds a cluster's node by its server id.
func nodeBySid(c *pilotv1.Cluster, sid int32) *pilotv1.Node {
	for _, n := range c.Nodes {
		if n.Sid == sid {
			return n
		}
	}
	return nil
}

// latestEnd and earliestStart bound a set of node results in time.
func latestEnd(rs [][]*pilotv1.NodeResult) time.Time {
	var t time.Time
	for _, step := range rs {
		for _, nr := range step {
			if e := nr.FinishedAt.AsTime(); e.After(t) {
				t = e
			}
		}
	}
	return t
}

func earliestStart(rs [][]*pilotv1.NodeResult) time.Time {
	var t time.Time
	for _, step := range rs {
		for _, nr := range step {
			if s := nr.StartedAt.AsTime(); t.IsZero() || s.Before(t) {
				t = s
			}
		}
	}
	return t
}

// TestScaleOutAndIn scales a real cluster's members out and in, checking
// AppCenter's order of events from the drones' own times, a pre_check that
// refuses, and that a server id is never given twice.
func TestScaleOutAndIn(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)
	lead := nodeBySid(c, 1)
	dirsBefore := len(instanceDirs(t, p))

	// The lead's scale_out pre_check refuses: nothing changes, and the
	// user sees the check's output.
	refuse := filepath.Join(p.instanceRoot(lead.InstanceId), "refuse-scale")
	if err := os.WriteFile(refuse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := p.hangar("cluster", "scale", c.Id, "--role", "member", "--count", "3", "--wait")
	if err == nil || !strings.Contains(out, "the lead refuses to scale") || !strings.Contains(out, "exited with code 4") {
		t.Fatalf("a refused scale-out: %v\n%s\nwant a failure showing the pre_check's output and exit code", err, out)
	}
	after := p.cluster(c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || len(after.Nodes) != 3 || after.Params["cluster.member.count"] != "2" || len(instanceDirs(t, p)) != dirsBefore {
		t.Fatalf("after the refusal: %v, %d nodes, count %s, %d instances (was %d); want nothing changed",
			after.Status, len(after.Nodes), after.Params["cluster.member.count"], len(instanceDirs(t, p)), dirsBefore)
	}
	if err := os.Remove(refuse); err != nil {
		t.Fatal(err)
	}

	// Scale-out: the new node inits and starts, then scale_out runs on the
	// others.
	out = p.mustHangar("cluster", "scale", c.Id, "--role", "member", "--count", "3", "--wait")
	after = p.cluster(c.Id)
	added := nodeBySid(after, 4)
	if added == nil || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || after.Params["cluster.member.count"] != "3" {
		t.Fatalf("after the scale-out: %v, nodes %v\n%s", after.Status, after.Nodes, out)
	}
	if got := readTrace(p, added, "events.log"); got != "init\nstart\n" {
		t.Errorf("the new node ran %q, want init then start", got)
	}
	for _, sid := range []int32{1, 2, 3} {
		if got := readTrace(p, nodeBySid(after, sid), "events.log"); !strings.HasSuffix(got, "scale_out\n") {
			t.Errorf("node sid %d ran %q, want scale_out last", sid, got)
		}
	}
	if start, scaleOut := stepResults(t, p, after.JobId, "start"), stepResults(t, p, after.JobId, "scale_out on"); latestEnd(start).After(earliestStart(scaleOut)) {
		t.Fatalf("scale_out began at %v, before the new node's start ended at %v", earliestStart(scaleOut), latestEnd(start))
	}

	// Scale-in: the highest server ids leave, after scale_in ran on the
	// others; their processes and directories are gone.
	leaving := []*pilotv1.Node{nodeBySid(after, 3), nodeBySid(after, 4)}
	out = p.mustHangar("cluster", "scale", c.Id, "--role", "member", "--count", "1", "--wait")
	final := p.cluster(c.Id)
	if len(final.Nodes) != 2 || nodeBySid(final, 1) == nil || nodeBySid(final, 2) == nil || final.Params["cluster.member.count"] != "1" {
		t.Fatalf("after the scale-in: nodes %v, count %s\n%s", final.Nodes, final.Params["cluster.member.count"], out)
	}
	for _, n := range leaving {
		if pids := processesOf(n.InstanceId); len(pids) > 0 {
			t.Errorf("leaving node %s still runs %v", n.Id, pids)
		}
		if _, err := os.Stat(p.instanceDir(n.InstanceId)); err == nil {
			t.Errorf("leaving node %s's directory is left", n.Id)
		}
	}
	for _, sid := range []int32{1, 2} {
		if got := readTrace(p, nodeBySid(final, sid), "events.log"); !strings.HasSuffix(got, "scale_in\n") {
			t.Errorf("staying node sid %d ran %q, want scale_in last", sid, got)
		}
	}
	if scaleIn, stop := stepResults(t, p, final.JobId, "scale_in on"), stepResults(t, p, final.JobId, "stop"); latestEnd(scaleIn).After(earliestStart(stop)) {
		t.Fatalf("the leaving nodes stopped at %v, before scale_in ended at %v", earliestStart(stop), latestEnd(scaleIn))
	}

	// The next node gets a new server id, not a freed one.
	p.mustHangar("cluster", "scale", c.Id, "--role", "member", "--count", "2", "--wait")
	if again := p.cluster(c.Id); nodeBySid(again, 5) == nil || nodeBySid(again, 3) != nil {
		t.Fatalf("after scaling out again: %v; want sid 5, sid 3 never given again", again.Nodes)
	}
}

// TestCancelJob cancels a create whose init sleeps: the job ends cancelled
// within seconds, not when the command would have, and the cluster says it
// failed.
func TestCancelJob(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := createWithSleepingInit(ctx, t, p, 60)
	start := time.Now()
	out, err := p.hangar("job", "cancel", r.Job.Id, "--wait")
	if err == nil {
		t.Fatalf("job cancel --wait succeeded for a cancelled job:\n%s", out)
	}
	j, err := p.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: r.Job.Id})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != pilotv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("job %v after the cancel\n%s", j.State, out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the cancel took %v: it waited for the command", took)
	}
	if got := p.cluster(r.Cluster.Id).Status; got != pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED {
		t.Fatalf("cluster %v after its create was cancelled, want failed", got)
	}
	// The command was killed on its drone, and its result says so.
	steps := stepResults(t, p, r.Job.Id, "init")
	for _, nr := range steps[0] {
		if nr.State != streamv1.CommandState_COMMAND_STATE_CANCELLED {
			t.Errorf("node %s: init ended %v (%s), want CANCELLED", nr.NodeId, nr.State, nr.Error)
		}
	}
	c := p.cluster(r.Cluster.Id)
	waitFor(t, 15*time.Second, "the sleeping init to be gone from every instance", func() (bool, string) {
		var left []string
		for _, nd := range c.Nodes {
			for _, pid := range processesOf(nd.InstanceId) {
				cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
				if strings.Contains(string(cmdline), "sleep") {
					left = append(left, nd.Id+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
				}
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
}

// TestRecoverLostNode kills every process of a node, as a lost machine
// would, and recovers it: the node keeps its id, server id and data (its
// volume), gets a new instance that runs start (it was initialised), and
// the others are untouched.
func TestRecoverLostNode(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)
	lost := nodeBySid(c, 3)
	for _, pid := range processesOf(lost.InstanceId) {
		n, _ := strconv.Atoi(pid)
		_ = syscall.Kill(n, syscall.SIGKILL)
	}
	waitFor(t, 30*time.Second, "the node's processes to be gone", func() (bool, string) {
		left := processesOf(lost.InstanceId)
		return len(left) == 0, fmt.Sprint(left)
	})

	plan := p.mustHangar("cluster", "recover", c.Id, "--node", lost.Id, "--dry-run")
	if !strings.Contains(plan, "run new instances for role member") || !strings.Contains(plan, lost.Id) {
		t.Fatalf("recover plan:\n%s", plan)
	}
	out := p.mustHangar("cluster", "recover", c.Id, "--node", lost.Id, "--wait")
	after := p.cluster(c.Id)
	back := nodeBySid(after, 3)
	if back == nil || back.Id != lost.Id || back.InstanceId == "" || back.InstanceId == lost.InstanceId || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the recover: node %v, cluster %v (lost instance %s)\n%s", back, after.Status, lost.InstanceId, out)
	}
	// The local runtime keeps volumes: the new instance has the node's
	// data (its root), so it was not initialised again, only started.
	if back.VolumeId == "" || back.VolumeId != lost.VolumeId {
		t.Errorf("the node's volume %q is not the one it had (%q)", back.VolumeId, lost.VolumeId)
	}
	if got := readTrace(p, back, "events.log"); got != "init\nstart\nstart\n" {
		t.Errorf("the new instance's events.log is %q; want its old data and one more start (no init)", got)
	}
	for _, sid := range []int32{1, 2} {
		if got := readTrace(p, nodeBySid(after, sid), "events.log"); got != "init\nstart\n" {
			t.Errorf("untouched node sid %d ran %q since its create", sid, got)
		}
	}
	if _, err := os.Stat(p.instanceDir(lost.InstanceId)); err == nil {
		t.Error("the lost instance's directory is left")
	}
}

// TestUpgradeAndRollback upgrades a running cluster to the package's next
// version and back, on real drones: the old version's stop runs before the
// new version's upgrade and start (from the drones' own times and traces),
// the cluster keeps its nodes, and bad versions change nothing.
func TestUpgradeAndRollback(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	out, err := p.hangar("cluster", "upgrade", c.Id, "--version", "2.0.0")
	if err == nil || !strings.Contains(out, "app_version: opsapp 2.0.0 is not pushed") {
		t.Fatalf("upgrade to a version never pushed: %v\n%s", err, out)
	}
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp-2")
	plan := p.mustHangar("cluster", "upgrade", c.Id, "--version", "2.0.0", "--dry-run")
	for _, want := range []string{"nothing was changed", "stop on role member (order 1)", "upgrade-audit", "upgrade on role lead (order 1)", "echo upgrade v2", "start on role member (order 2)"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("upgrade plan lacks %q:\n%s", want, plan)
		}
	}

	out = p.mustHangar("cluster", "upgrade", c.Id, "--version", "2.0.0", "--wait")
	after := p.cluster(c.Id)
	if after.AppVersion != "2.0.0" || after.PreviousAppVersion != "1.0.0" || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || len(after.Nodes) != 3 {
		t.Fatalf("after the upgrade: %s (previous %q) %v, %d nodes\n%s", after.AppVersion, after.PreviousAppVersion, after.Status, len(after.Nodes), out)
	}
	for _, nd := range after.Nodes {
		if got := readTrace(p, nd, "events.log"); got != "init\nstart\nstop\nupgrade v2\nstart v2\n" {
			t.Errorf("node %s (%s) ran %q; want version 1's stop, then upgrade v2 and start v2", nd.Id, nd.Role, got)
		}
	}
	// §4's order, from the drones' times: the members stop (order 1)
	// before the lead (order 2); the lead starts (order 1) before them.
	stops, starts := stepResults(t, p, after.JobId, "stop"), stepResults(t, p, after.JobId, "start")
	if len(stops) != 2 || len(starts) != 2 {
		t.Fatalf("upgrade had %d stop and %d start steps, want 2 and 2", len(stops), len(starts))
	}
	if latestEnd(stops[:1]).After(earliestStart(stops[1:])) || latestEnd(starts[:1]).After(earliestStart(starts[1:])) {
		t.Fatal("an order group began before the previous one ended")
	}
	if latestEnd(stops).After(earliestStart(starts)) {
		t.Fatal("a node started before every node had stopped (parallel upgrade)")
	}

	p.mustHangar("cluster", "rollback", c.Id, "--wait")
	after = p.cluster(c.Id)
	if after.AppVersion != "1.0.0" || after.PreviousAppVersion != "" || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the rollback: %s (previous %q) %v", after.AppVersion, after.PreviousAppVersion, after.Status)
	}
	for _, nd := range after.Nodes {
		if got := readTrace(p, nd, "events.log"); !strings.HasSuffix(got, "start v2\nstop v2\nrollback v2\nstart\n") {
			t.Errorf("node %s rolled back with %q; want version 2's stop and rollback, then version 1's start", nd.Id, got)
		}
	}
	if out, err := p.hangar("cluster", "rollback", c.Id); err == nil || !strings.Contains(out, "no upgrade to roll back") {
		t.Fatalf("a second rollback: %v\n%s", err, out)
	}
}

// TestStopAndStart stops a cluster (stop by order, then its instances:
// no process of it is left) and starts it again (start by order, no
// init), on the same instances with their data.
func TestStopAndStart(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	// custom_metadata ran after init on the members: its output is their
	// token.
	for _, nd := range c.Nodes {
		if want := map[bool]string{true: "key-of-" + nd.InstanceId}[nd.Role == "member"]; nd.Token != want {
			t.Errorf("node %s (%s) has token %q, want %q", nd.Id, nd.Role, nd.Token, want)
		}
	}
	plan := p.mustHangar("cluster", "stop", c.Id, "--dry-run")
	for _, want := range []string{"1. stop on role member (order 1)", "2. stop on role lead (order 2)", "3. stop the instances"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("stop plan lacks %q:\n%s", want, plan)
		}
	}
	p.mustHangar("cluster", "stop", c.Id, "--wait")
	stopped := p.cluster(c.Id)
	if stopped.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED {
		t.Fatalf("after stop the cluster is %v", stopped.Status)
	}
	for _, nd := range stopped.Nodes {
		if nd.Status != pilotv1.NodeStatus_NODE_STATUS_STOPPED || len(processesOf(nd.InstanceId)) != 0 {
			t.Errorf("node %s after stop: %v with processes %v", nd.Id, nd.Status, processesOf(nd.InstanceId))
		}
	}
	if out, err := p.hangar("cluster", "restart", c.Id); err == nil || !strings.Contains(out, "STOPPED") {
		t.Fatalf("restart of a stopped cluster: %v\n%s", err, out)
	}

	p.mustHangar("cluster", "start", c.Id, "--wait")
	after := p.cluster(c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after start the cluster is %v", after.Status)
	}
	for _, nd := range after.Nodes {
		if nd.InstanceId != nodeBySid(c, nd.Sid).InstanceId || len(processesOf(nd.InstanceId)) == 0 {
			t.Errorf("node %s after start: instance %s (was %s), processes %v", nd.Id, nd.InstanceId, nodeBySid(c, nd.Sid).InstanceId, processesOf(nd.InstanceId))
		}
		if got := readTrace(p, nd, "events.log"); got != "init\nstart\nstop\nstart\n" {
			t.Errorf("node %s ran %q; want stop then start, and no second init", nd.Id, got)
		}
	}
	starts := stepResults(t, p, after.JobId, "start on")
	if len(starts) != 2 || latestEnd(starts[:1]).After(earliestStart(starts[1:])) {
		t.Fatalf("start steps %v: the lead's (order 1) must end before the members' (order 2) begin", starts)
	}
	// The drones are back and take commands.
	p.mustHangar("cluster", "run", c.Id, "greet", "--param", "name=ann", "--param", "times=1", "--wait")
}

// TestResize scales a role vertically on real drones: the role's nodes
// stop (by order), their instances are stopped, resized and started, they
// start again, and the new sizes are in the node records and the
// instances; the other role is untouched.
func TestResize(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	plan := p.mustHangar("cluster", "resize", c.Id, "--role", "member", "--cpu", "2", "--memory", "256", "--dry-run")
	for _, want := range []string{"vertical-scaling-roles", "stop on role member", "resize the instances of role member", "start on role member"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("resize plan lacks %q:\n%s", want, plan)
		}
	}
	p.mustHangar("cluster", "resize", c.Id, "--role", "member", "--cpu", "2", "--memory", "256", "--wait")
	after := p.cluster(c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the resize: %v", after.Status)
	}
	for _, nd := range after.Nodes {
		got := readTrace(p, nd, "events.log")
		switch nd.Role {
		case "member":
			if nd.Cpu != 2 || nd.MemoryMib != 256 || got != "init\nstart\nstop\nstart\n" {
				t.Errorf("member %s: cpu %d memory %d, ran %q; want 2, 256, stop then start", nd.Id, nd.Cpu, nd.MemoryMib, got)
			}
			st := readInstanceState(t, p, nd.InstanceId)
			if st.CPU != 2 || st.MemoryMiB != 256 {
				t.Errorf("member %s: the provider holds cpu %d memory %d", nd.Id, st.CPU, st.MemoryMiB)
			}
		default:
			if nd.Cpu != 0 || got != "init\nstart\n" {
				t.Errorf("%s %s was touched: cpu %d, ran %q", nd.Role, nd.Id, nd.Cpu, got)
			}
		}
	}
	if out, err := p.hangar("cluster", "resize", c.Id, "--role", "nobody", "--cpu", "2"); err == nil || !strings.Contains(out, `role: "nobody"`) {
		t.Fatalf("resize of an unknown role: %v\n%s", err, out)
	}
}

// readInstanceState reads what the local provider recorded of an instance.
func readInstanceState(t *testing.T, p *pilot, id string) struct {
	CPU       int32 `json:"cpu"`
	MemoryMiB int32 `json:"memory_mib"`
} {
	t.Helper()
	var st struct {
		Instances map[string]struct {
			CPU       int32 `json:"cpu"`
			MemoryMiB int32 `json:"memory_mib"`
		} `json:"instances"`
	}
	b, err := os.ReadFile(filepath.Join(p.runtimeRoot(), "state.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Instances[id]
}

// TestBackupAndRestore takes a custom backup and restores it on real
// drones: the app's backup and restore commands get the backup's id as
// snapshot_id, restore runs by order, and the backup is listed.
func TestBackupAndRestore(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/opsapp")
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "2"})
	mustSucceed(t, job)

	p.mustHangar("cluster", "backup", c.Id, "--name", "nightly", "--wait")
	var list pilotv1.ListBackupsResponse
	if err := protojson.Unmarshal([]byte(p.mustHangar("cluster", "backups", c.Id, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 1 || list.Backups[0].Name != "nightly" || list.Backups[0].State != pilotv1.BackupState_BACKUP_STATE_AVAILABLE {
		t.Fatalf("backups: %v", list.Backups)
	}
	bk := list.Backups[0].Id
	lead := nodeBySid(c, 1)
	if got := readTrace(p, lead, "backups.log"); got != `backup {"snapshot_id":"`+bk+`"}`+"\n" {
		t.Fatalf("the lead's backup command got %q", got)
	}
	p.mustHangar("cluster", "restore", c.Id, "--backup", bk, "--wait")
	for _, nd := range p.cluster(c.Id).Nodes {
		if got := readTrace(p, nd, "backups.log"); !strings.HasSuffix(got, `restore {"snapshot_id":"`+bk+`"}`+"\n") {
			t.Errorf("node %s (%s): backups.log %q; want its restore with the backup's id", nd.Id, nd.Role, got)
		}
	}
	after := p.cluster(c.Id)
	restores := stepResults(t, p, after.JobId, "restore")
	if len(restores) != 2 || latestEnd(restores[:1]).After(earliestStart(restores[1:])) {
		t.Fatalf("restore steps %v: the lead's (order 1) must end before the members' (order 2) begin", restores)
	}
	if out, err := p.hangar("cluster", "restore", c.Id, "--backup", "bk-none"); err == nil || !strings.Contains(out, "backup_id") {
		t.Fatalf("restore of an unknown backup: %v\n%s", err, out)
	}
}

// TestDeviceBackup backs a cluster up with backup_policy device (the local
// runtime snapshots the instances' volumes) and restores it: the nodes
// are stopped, their volumes put back as they were at the backup, and the
// app's restore runs by order.
func TestDeviceBackup(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "tests/e2e/testdata/opsapp/cluster.json.mustache"))
	if err != nil {
		t.Fatal(err)
	}
	dir := copyPackage(t, "tests/e2e/testdata/opsapp", map[string]string{
		"cluster.json.mustache": strings.Replace(string(src), `"backup_policy": "custom"`, `"backup_policy": "device"`, 1),
	})
	p.mustHangar("app", "push", dir)
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "1"})
	mustSucceed(t, job)
	lead := nodeBySid(c, 1)
	data := filepath.Join(p.instanceRoot(lead.InstanceId), "data.txt")
	if err := os.WriteFile(data, []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}

	p.mustHangar("cluster", "backup", c.Id, "--wait")
	var list pilotv1.ListBackupsResponse
	if err := protojson.Unmarshal([]byte(p.mustHangar("cluster", "backups", c.Id, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 1 || list.Backups[0].Policy != "device" || len(list.Backups[0].Snapshots) != 2 {
		t.Fatalf("backups: %v; want one device backup with a snapshot per node", list.Backups)
	}
	bk := list.Backups[0].Id
	if err := os.WriteFile(data, []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := p.mustHangar("cluster", "restore", c.Id, "--backup", bk, "--dry-run")
	for _, want := range []string{"stop on role", "stop the instances", "put every node's volume back", "restore on role lead (order 1)"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("restore plan lacks %q:\n%s", want, plan)
		}
	}
	p.mustHangar("cluster", "restore", c.Id, "--backup", bk, "--wait")
	if b, _ := os.ReadFile(data); string(b) != "before" {
		t.Fatalf("after the restore data.txt holds %q, want the backup's %q", b, "before")
	}
	after := p.cluster(c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the restore: %v", after.Status)
	}
	if got := readTrace(p, lead, "backups.log"); got != `restore {"snapshot_id":"`+bk+`"}`+"\n" {
		t.Fatalf("the lead's restore got %q", got)
	}
}

// TestDryRuns: create, update-env and delete take --dry-run, print their
// plan (update-env: what the metadata would gain, lose or change) and
// change nothing.
func TestDryRuns(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	out := p.mustHangar("cluster", "create", "kv", "--dry-run")
	for _, want := range []string{"nothing was changed", "run instances for role primary", "start on role replica"} {
		if !strings.Contains(out, want) {
			t.Fatalf("create --dry-run lacks %q:\n%s", want, out)
		}
	}
	if list := p.mustHangar("cluster", "list", "-o", "json"); strings.Contains(list, `"id"`) {
		t.Fatalf("create --dry-run made a cluster:\n%s", list)
	}
	c, job := createCluster(t, p, "kv", nil)
	mustSucceed(t, job)
	out = p.mustHangar("cluster", "update-env", c.Id, "motd=planned", "--dry-run")
	if !strings.Contains(out, "Metadata changes") || !strings.Contains(out, "~env/motd: ") || !strings.Contains(out, "→ planned") {
		t.Fatalf("update-env --dry-run:\n%s", out)
	}
	out = p.mustHangar("cluster", "delete", c.Id, "--dry-run")
	if !strings.Contains(out, "delete instances") || !strings.Contains(out, "hangar-kv stop") {
		t.Fatalf("delete --dry-run:\n%s", out)
	}
	after := p.cluster(c.Id)
	if after.JobId != c.JobId || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("dry runs changed the cluster: job %s, %v", after.JobId, after.Status)
	}
	for _, n := range after.Nodes {
		if strings.Contains(kvConf(t, p, n), "planned") {
			t.Fatalf("an update-env dry run reached node %s", n.Id)
		}
	}
}

// TestCanaryFailureStops: a role with "canary": 1 restarts its first node
// alone; when that fails, the job fails naming it and the role's other
// nodes are untouched (BOSH's canaries). Retried once the cause is fixed,
// the job runs its failed step again, and only that.
func TestCanaryFailureStops(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "tests/e2e/testdata/opsapp/cluster.json.mustache"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), `"role": "member",`, `"role": "member", "canary": 1,`, 1)
	edited = strings.Replace(edited, `"restart": {"cmd": "sleep 0.3; echo restart >> \"$HANGAR_ROOT/events.log\"", "order": 2`,
		`"restart": {"cmd": "if [ -e \"$HANGAR_ROOT/fail-restart\" ]; then echo canary says no; exit 3; fi; echo restart >> \"$HANGAR_ROOT/events.log\"", "order": 2`, 1)
	if edited == string(src) || !strings.Contains(edited, "canary says no") {
		t.Fatal("the test's package edit did not apply")
	}
	p.mustHangar("app", "push", copyPackage(t, "tests/e2e/testdata/opsapp", map[string]string{"cluster.json.mustache": edited}))
	c, job := createCluster(t, p, "opsapp", map[string]string{"cluster.member.count": "3"})
	mustSucceed(t, job)
	canary := nodeBySid(c, 2) // the members' lowest server id
	if err := os.WriteFile(filepath.Join(p.instanceRoot(canary.InstanceId), "fail-restart"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := p.hangar("cluster", "restart", c.Id, "--wait")
	if err == nil || !strings.Contains(out, "canary failed") || !strings.Contains(out, "canary says no") {
		t.Fatalf("restart with a failing canary: %v\n%s", err, out)
	}
	for _, sid := range []int32{3, 4} {
		if got := readTrace(p, nodeBySid(c, sid), "events.log"); strings.Contains(got, "restart") {
			t.Errorf("member sid %d restarted although the canary failed: %q", sid, got)
		}
	}

	// The cause fixed, the job is retried from its failed step: every
	// member restarts once, the lead (whose step succeeded) not again.
	if err := os.Remove(filepath.Join(p.instanceRoot(canary.InstanceId), "fail-restart")); err != nil {
		t.Fatal(err)
	}
	failed := p.cluster(c.Id)
	if failed.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED {
		t.Fatalf("after the failed restart the cluster is %v", failed.Status)
	}
	p.mustHangar("job", "retry", failed.JobId, "--wait")
	if after := p.cluster(c.Id); after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || after.JobId != failed.JobId {
		t.Fatalf("after the retry: %v, job %s", after.Status, after.JobId)
	}
	for _, nd := range c.Nodes {
		if got := strings.Count(readTrace(p, nd, "events.log"), "restart"); got != 1 {
			t.Errorf("%s sid %d restarted %d times after the retry, want once", nd.Role, nd.Sid, got)
		}
	}
	if out, err := p.hangar("job", "retry", failed.JobId); err == nil || !strings.Contains(out, "only a failed or cancelled job") {
		t.Fatalf("retry of a succeeded job: %v\n%s", err, out)
	}
}
