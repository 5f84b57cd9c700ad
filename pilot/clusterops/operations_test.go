package clusterops

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// opsappHarness has an active opsapp cluster (a lead and two members):
// its create job ran every task and ended.
func opsappHarness(t *testing.T) (*opsHarness, *pilotv1.Cluster) {
	t.Helper()
	h := newOpsHarnessWith(t, filepath.Join("..", "..", "tests", "e2e", "testdata", "opsapp"))
	r := h.create(t, nil)
	for _, task := range r.Job.Tasks {
		if err := h.run(t, r.Job, task); err != nil {
			t.Fatalf("create %s: %v", task.Id, err)
		}
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c, _ := h.cluster(t, r.Cluster.Id)
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after create: %v", c.Status)
	}
	return h, c
}

func (h *opsHarness) op(t *testing.T, id string) OpRequest {
	t.Helper()
	c, rev := h.cluster(t, id)
	return OpRequest{C: c, Rev: rev}
}

// Restart is AppCenter's restart by order: one step per order group, the
// lead's (order 1) before the members' (order 2), each node's restart
// command run once; a dry run shows that plan with every node's command
// and stores nothing.
func TestRestartByOrder(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()

	req := h.op(t, c.Id)
	req.DryRun = true
	dry, err := h.life.Restart(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Job.Id != DryRunJobID || len(dry.Job.Tasks) != 2 {
		t.Fatalf("dry run: job %s with %d tasks, want %s with 2", dry.Job.Id, len(dry.Job.Tasks), DryRunJobID)
	}
	if roles := dry.Job.Tasks[0].Input.Roles; len(roles) != 1 || roles[0] != "lead" || dry.Job.Tasks[1].Input.Roles[0] != "member" {
		t.Fatalf("dry run steps: %v then %v, want lead then member", dry.Job.Tasks[0].Input.Roles, dry.Job.Tasks[1].Input.Roles)
	}
	if n := len(dry.Job.Tasks[1].NodeResults); n != 2 || !strings.Contains(dry.Job.Tasks[1].NodeResults[0].Cmd, "restart") {
		t.Fatalf("dry run lists %d member commands (%v), want the 2 restart commands", n, dry.Job.Tasks[1].NodeResults)
	}
	after, _ := h.cluster(t, c.Id)
	if after.JobId != c.JobId || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("a dry run changed the cluster: job %s status %v", after.JobId, after.Status)
	}
	if _, err := h.st.Get(ctx, store.JobKey(DryRunJobID), &pilotv1.Job{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a dry run stored a job: %v", err)
	}

	r, err := h.life.Restart(ctx, h.op(t, c.Id))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Cluster.Status; got != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING {
		t.Fatalf("during the restart the cluster is %v, want updating", got)
	}
	if len(r.Job.Tasks) != 2 || len(r.Job.Tasks[1].DependsOn) != 1 || r.Job.Tasks[1].DependsOn[0] != r.Job.Tasks[0].Id {
		t.Fatalf("restart tasks %v: the members' step must depend on the lead's", r.Job.Tasks)
	}
	if _, err := h.life.Restart(ctx, h.op(t, c.Id)); err == nil || !strings.Contains(err.Error(), r.Job.Id) {
		t.Fatalf("a second operation while the restart runs: %v, want a refusal naming job %s", err, r.Job.Id)
	}
	for _, task := range r.Job.Tasks {
		if err := h.run(t, r.Job, task); err != nil {
			t.Fatalf("%s: %v", task.Id, err)
		}
	}
	h.fg.mu.Lock()
	restarts := 0
	for k, n := range h.fg.execs {
		if strings.Contains(k, "echo restart") {
			restarts += n
		}
	}
	h.fg.mu.Unlock()
	if restarts != 3 {
		t.Fatalf("restart ran %d times, want once on each of the 3 nodes", restarts)
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	if c, _ := h.cluster(t, c.Id); c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the restart: %v, want active", c.Status)
	}
}

// A custom service gets its parameters, checked against config.json, as
// one JSON argument quoted for the shell; anything else is refused naming
// what is wrong, and nothing is stored.
func TestRunServiceParameters(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()

	req := h.op(t, c.Id)
	req.DryRun = true
	dry, err := h.life.RunService(ctx, req, "greet", map[string]string{"name": "bob", "times": "2"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := dry.Job.Tasks[0].NodeResults[0].Cmd
	if want := `echo >> "$HANGAR_ROOT/greet.log" '{"name":"bob","times":2}'`; cmd != want {
		t.Fatalf("command %q, want %q", cmd, want)
	}

	for _, tc := range []struct {
		name    string
		service string
		roles   []string
		params  map[string]string
		want    string
	}{
		{"value outside its pattern", "greet", nil, map[string]string{"name": "Bob'; id"}, `parameter "name"`},
		{"value out of range", "greet", nil, map[string]string{"times": "9"}, `parameter "times"`},
		{"undeclared parameter", "greet", nil, map[string]string{"color": "red"}, `unknown parameter "color"`},
		{"unknown service", "fly", nil, nil, "its custom services: greet"},
		{"system service", "restart", nil, nil, "not a custom service"},
		{"role without it", "greet", []string{"ghost"}, nil, `roles: "ghost"`},
		{"no service", "", nil, nil, "service: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := h.op(t, c.Id)
			req.Roles = tc.roles
			_, err := h.life.RunService(ctx, req, tc.service, tc.params)
			var refused *RefusedError
			if !errors.As(err, &refused) || refused.Reason != Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid request naming %q", err, tc.want)
			}
			if after, _ := h.cluster(t, c.Id); after.JobId != c.JobId {
				t.Fatal("a refused request started a job")
			}
		})
	}

	// Run for real on the lead only: the command gets the argument and the
	// cluster's status stays as it is.
	req = h.op(t, c.Id)
	req.Roles = []string{"lead"}
	r, err := h.life.RunService(ctx, req, "greet", map[string]string{"name": "ann"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Job.Tasks) != 1 || r.Cluster.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("greet on the lead: %d tasks, cluster %v; want 1 task and the cluster still active", len(r.Job.Tasks), r.Cluster.Status)
	}
	if err := h.run(t, r.Job, r.Job.Tasks[0]); err != nil {
		t.Fatal(err)
	}
	h.fg.mu.Lock()
	defer h.fg.mu.Unlock()
	var ran []string
	for k := range h.fg.execs {
		if strings.Contains(k, "greet.log") {
			ran = append(ran, k)
		}
	}
	if len(ran) != 1 || !strings.Contains(ran[0], `'{"name":"ann","times":1}'`) {
		t.Fatalf("greet ran as %q, want once, on the lead, with its defaults filled in", ran)
	}
}

// titles are a job's step titles, in order.
func titles(j *pilotv1.Job) []string {
	out := make([]string, len(j.Tasks))
	for i, t := range j.Tasks {
		out[i] = t.Title
	}
	return out
}

// Scaling follows AppCenter's order of events step by step: a dry run
// shows it, for a scale-out and a scale-in.
func TestScalePlans(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	req := h.op(t, c.Id)
	req.DryRun = true
	out, err := h.life.Scale(ctx, req, "member", 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"scale_out pre_check on role lead (order 0)",
		"add 1 nodes to role member",
		"run instances for role member",
		"register metadata with the new nodes (adding-hosts)",
		"wait for the new nodes' drones",
		"deliver confd templates to the new nodes",
		"init on role member (order 0)",
		"custom_metadata on role member",
		"register metadata with the nodes' tokens",
		"start on role member (order 2)",
		"scale_out on role lead (order 0)",
		"scale_out on role member (order 1)",
		"register metadata (adding-hosts cleared)",
	}
	if got := titles(out.Job); !slices.Equal(got, want) {
		t.Fatalf("scale-out plan:\n %q\nwant\n %q", got, want)
	}
	// The new node's steps run on it alone; scale_out on the others only.
	added := out.Job.Tasks[1].Input.NodeIds
	if len(added) != 1 || !slices.Equal(out.Job.Tasks[9].Input.NodeIds, added) || slices.Contains(out.Job.Tasks[11].Input.NodeIds, added[0]) || !slices.Equal(out.Job.Tasks[8].Input.AddingNodeIds, added) {
		t.Fatalf("start on %v, scale_out on %v, tokens registered with adding-hosts %v; want start on the new node %v only, scale_out on the others, adding-hosts kept", out.Job.Tasks[9].Input.NodeIds, out.Job.Tasks[11].Input.NodeIds, out.Job.Tasks[8].Input.AddingNodeIds, added)
	}

	in, err := h.life.Scale(ctx, req, "member", 1)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"register metadata with the leaving nodes (deleting-hosts)",
		"wait for the staying nodes to render deleting-hosts (a load balancer drains the leaving nodes)",
		"scale_in pre_check on role lead (order 0)",
		"scale_in on role lead (order 0)",
		"scale_in on role member (order 1)",
		"stop on role member (order 1)",
		"destroy on role member (order 0)",
		"delete the 1 leaving instances",
		"remove 1 nodes from role member",
		"register metadata (deleting-hosts cleared)",
	}
	if got := titles(in.Job); !slices.Equal(got, want) {
		t.Fatalf("scale-in plan:\n %q\nwant\n %q", got, want)
	}
	// The member with the highest server id leaves.
	var highest *pilotv1.Node
	for _, nd := range c.Nodes {
		if nd.Role == "member" && (highest == nil || nd.Sid > highest.Sid) {
			highest = nd
		}
	}
	if got := in.Job.Tasks[0].Input.DeletingNodeIds; len(got) != 1 || got[0] != highest.Id {
		t.Fatalf("leaving %v, want the highest sid %s", got, highest.Id)
	}
	// The staying nodes, and they only, render deleting-hosts before the
	// leaving node's stop (a load balancer drains it first).
	if got := in.Job.Tasks[1].Input.NodeIds; len(got) != len(c.Nodes)-1 || slices.Contains(got, highest.Id) {
		t.Fatalf("rendered-deleting waits for %v; want every node but %s", got, highest.Id)
	}
	for _, tc := range []struct {
		role  string
		count int
		want  string
	}{
		{"member", 9, "cluster.member.count"},
		{"member", 2, "already has 2 nodes"},
		{"ghost", 1, `"ghost"`},
		{"lead", 2, "cluster.lead.count"},
	} {
		if _, err := h.life.Scale(ctx, req, tc.role, tc.count); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("scale %s to %d: %v, want a refusal naming %q", tc.role, tc.count, err, tc.want)
		}
	}
}

// A scale_out pre_check that exits non-zero refuses the scale-out before
// anything changes: no node record, instance or metadata change, and the
// cluster is active again with its count as it was. A server id is never
// given twice, even after a scale-in freed it.
func TestScaleOutPreCheckAndSids(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	h.fg.exitCode = func(cmd string) int32 {
		if strings.Contains(cmd, "refuse-scale") {
			return 4
		}
		return 0
	}
	instances := h.prov.instancesLabelled("hangar/cluster", c.Id)
	h.fg.mu.Lock()
	applies := h.fg.applies
	h.fg.mu.Unlock()
	r, err := h.life.Scale(ctx, h.op(t, c.Id), "member", 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.run(t, r.Job, r.Job.Tasks[0]); err == nil || !strings.Contains(err.Error(), "exited with code 4") {
		t.Fatalf("pre_check: %v, want the failure with its exit code", err)
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_FAILED)
	after, _ := h.cluster(t, c.Id)
	h.fg.mu.Lock()
	applied := h.fg.applies
	h.fg.mu.Unlock()
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || len(after.Nodes) != len(c.Nodes) || after.Params["cluster.member.count"] != "2" ||
		h.prov.instancesLabelled("hangar/cluster", c.Id) != instances || applied != applies {
		t.Fatalf("after a refused scale-out: %v, %d nodes, count %s, %d instances, %d metadata applies; want it all as before",
			after.Status, len(after.Nodes), after.Params["cluster.member.count"], h.prov.instancesLabelled("hangar/cluster", c.Id), applied-applies)
	}

	h.fg.exitCode = nil
	runAll := func(r *pilotv1.ClusterJob) {
		t.Helper()
		for _, task := range r.Job.Tasks {
			if err := h.run(t, r.Job, task); err != nil {
				t.Fatalf("%s: %v", task.Title, err)
			}
		}
		h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	}
	r, err = h.life.Scale(ctx, h.op(t, c.Id), "member", 1)
	if err != nil {
		t.Fatal(err)
	}
	runAll(r)
	r, err = h.life.Scale(ctx, h.op(t, c.Id), "member", 2)
	if err != nil {
		t.Fatal(err)
	}
	runAll(r)
	final, _ := h.cluster(t, c.Id)
	var sids []int32
	for _, nd := range final.Nodes {
		sids = append(sids, nd.Sid)
	}
	// lead 1, members 2 and 3; the scale-in removed 3; the new member is 4.
	if !slices.Equal(sids, []int32{1, 2, 4}) || final.LastSid != 4 {
		t.Fatalf("sids %v (last %d), want [1 2 4]: a freed sid is never given again", sids, final.LastSid)
	}
}

// An env update ends only once every drone reported rendering the new
// metadata: a drone behind fails the step after the wait, naming it, and
// one whose render failed fails it with its error.
func TestUpdateEnvWaitsForRenders(t *testing.T) {
	h := newOpsHarness(t)
	ctx := context.Background()
	r := h.create(t, map[string]string{"cluster.replica.count": "1"})
	for _, task := range r.Job.Tasks {
		if err := h.run(t, r.Job, task); err != nil {
			t.Fatalf("create %s: %v", task.Id, err)
		}
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	h.ops.cfg.DroneWait = 300 * time.Millisecond
	c, rev := h.cluster(t, r.Cluster.Id)
	u, err := h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev}, map[string]string{"motd": "new"})
	if err != nil {
		t.Fatal(err)
	}
	register, rendered := u.Job.Tasks[0], u.Job.Tasks[1]
	if rendered.Kind != taskWaitRendered {
		t.Fatalf("update-env steps %v, want the wait for renders after the register", titles(u.Job))
	}
	if err := h.run(t, u.Job, register); err != nil {
		t.Fatal(err)
	}
	h.fg.mu.Lock()
	h.fg.renderLag = 1
	h.fg.mu.Unlock()
	if err := h.run(t, u.Job, rendered); err == nil || !strings.Contains(err.Error(), "did not render metadata revision") {
		t.Fatalf("with drones behind: %v, want a failure naming the revision", err)
	}
	node := c.Nodes[0].Id
	h.fg.mu.Lock()
	h.fg.renderLag, h.fg.renderErr = 0, map[string]string{node: "render conf.d/motd.toml: reload_cmd exited 1"}
	h.fg.mu.Unlock()
	if err := h.run(t, u.Job, rendered); err == nil || !strings.Contains(err.Error(), node) || !strings.Contains(err.Error(), "reload_cmd exited 1") {
		t.Fatalf("with a failed render: %v, want the node and its error", err)
	}
	h.fg.mu.Lock()
	h.fg.renderErr = nil
	h.fg.mu.Unlock()
	if err := h.run(t, u.Job, rendered); err != nil {
		t.Fatalf("once every drone rendered: %v", err)
	}
}

// Create, delete and update-env plan without changing anything on a dry
// run; update-env's says what the metadata would gain, lose or change,
// with password values redacted.
func TestDryRunsOfCreateDeleteUpdateEnv(t *testing.T) {
	h := newOpsHarness(t)
	ctx := context.Background()
	dry, err := h.life.Create(ctx, CreateRequest{Tenant: harnessTenant, App: h.pkg.Meta.Name, AppVersion: h.pkg.Meta.Version, Runtime: harnessRuntime, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Job.Id != DryRunJobID || len(dry.Job.Tasks) == 0 {
		t.Fatalf("create dry run: %v", dry.Job)
	}
	if list, _ := store.List(ctx, h.st, store.ClustersPrefix, newCluster); len(list) != 0 {
		t.Fatalf("a create dry run stored %d clusters", len(list))
	}

	r := h.create(t, nil)
	h.runJob(t, r.Job)
	c, rev := h.cluster(t, r.Cluster.Id)
	up, err := h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev, DryRun: true}, map[string]string{"motd": "dry"})
	if err != nil {
		t.Fatal(err)
	}
	changes := strings.Join(up.Job.MetadataChanges, "\n")
	if !strings.Contains(changes, "~env/motd: ") || !strings.HasSuffix(strings.TrimSpace(up.Job.MetadataChanges[0]), "→ dry") {
		t.Fatalf("update-env dry run metadata changes:\n%s", changes)
	}
	del, err := h.life.Delete(ctx, OpRequest{C: c, Rev: rev, DryRun: true}, false, false)
	if err != nil || del.Job.Id != DryRunJobID {
		t.Fatalf("delete dry run: %v, %v", del, err)
	}
	after, _ := h.cluster(t, c.Id)
	if after.JobId != c.JobId || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("dry runs changed the cluster: job %s, %v", after.JobId, after.Status)
	}
}

// A failed job retried runs its steps that did not succeed again, with new
// command ids (the drones would answer the old ones with the failure),
// and leaves the others alone; only the cluster's last job is retried.
func TestRetryJob(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	h.fg.exitCode = func(cmd string) int32 {
		if strings.Contains(cmd, "restart") {
			return 1
		}
		return 0
	}
	r, err := h.life.Restart(ctx, h.op(t, c.Id))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.run(t, r.Job, r.Job.Tasks[0]); err == nil {
		t.Fatal("the failing restart succeeded")
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_FAILED)
	h.fg.exitCode = nil

	j, err := h.life.Retry(ctx, harnessTenant, r.Job.Id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != pilotv1.JobState_JOB_STATE_PENDING || j.Retries != 1 || j.Tasks[0].State != pilotv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("retried job: %v, retries %d, first task %v", j.State, j.Retries, j.Tasks[0].State)
	}
	if got, _ := h.cluster(t, c.Id); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING {
		t.Fatalf("cluster during the retry: %v", got.Status)
	}
	before := h.ranCount()
	h.runJob(t, j)
	if ran := h.ranSince(before); len(ran) != 3 {
		t.Fatalf("the retry ran %q; want the 3 restarts again, under new ids", ran)
	}
	for _, tc := range []struct{ id, want string }{
		{r.Job.Id, "only a failed or cancelled job"},
		{"job-none", `no job "job-none"`},
	} {
		if _, err := h.life.Retry(ctx, harnessTenant, tc.id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("retry %s: %v; want %q", tc.id, err, tc.want)
		}
	}
	if _, err := h.life.Retry(ctx, "other-tenant", r.Job.Id); err == nil || !strings.Contains(err.Error(), "no job") {
		t.Errorf("another tenant's retry: %v", err)
	}
}

// A second change on a busy cluster is refused, naming the running job,
// whatever the operation; nothing is stored.
func TestSecondChangeNamesTheRunningJob(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	first, err := h.life.Restart(ctx, h.op(t, c.Id))
	if err != nil {
		t.Fatal(err)
	}
	busy, _ := h.cluster(t, c.Id)
	busy.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE // only the job makes it busy
	for name, op := range map[string]func(OpRequest) error{
		"restart": func(r OpRequest) error { _, err := h.life.Restart(ctx, r); return err },
		"scale":   func(r OpRequest) error { _, err := h.life.Scale(ctx, r, "member", 3); return err },
		"stop":    func(r OpRequest) error { _, err := h.life.Stop(ctx, r, false); return err },
		"upgrade": func(r OpRequest) error { _, err := h.life.Upgrade(ctx, r, "2.0.0"); return err },
		"resize":  func(r OpRequest) error { _, err := h.life.Resize(ctx, r, "member", Sizes{CPU: 2}); return err },
		"backup":  func(r OpRequest) error { _, _, err := h.life.Backup(ctx, r, "", nil, false); return err },
		"delete":  func(r OpRequest) error { _, err := h.life.Delete(ctx, r, false, false); return err },
	} {
		_, rev := h.cluster(t, c.Id)
		err := op(OpRequest{C: proto.Clone(busy).(*pilotv1.Cluster), Rev: rev})
		if !isRefusal(err, Precondition) || !strings.Contains(err.Error(), first.Job.Id) || !strings.Contains(err.Error(), "still running") {
			t.Errorf("%s on a busy cluster: %v; want a refusal naming job %s", name, err, first.Job.Id)
		}
	}
	if after, _ := h.cluster(t, c.Id); after.JobId != first.Job.Id {
		t.Fatalf("a refused change replaced the cluster's job: %s", after.JobId)
	}
}

// A cluster whose env update failed (a value its check_cmd refused) takes
// another env update, the way out; one that failed otherwise does not.
func TestUpdateEnvAfterAFailedUpdate(t *testing.T) {
	h := newOpsHarness(t) // examples/kv, which has env
	ctx := context.Background()
	created := h.create(t, nil)
	for _, task := range created.Job.Tasks {
		if err := h.run(t, created.Job, task); err != nil {
			t.Fatalf("create %s: %v", task.Id, err)
		}
	}
	h.finish(t, created.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c := created.Cluster
	u, err := h.life.UpdateEnv(ctx, h.op(t, c.Id), map[string]string{"motd": "refused by a check"})
	if err != nil {
		t.Fatal(err)
	}
	h.finish(t, u.Job, pilotv1.JobState_JOB_STATE_FAILED)
	if got, _ := h.cluster(t, c.Id); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED {
		t.Fatalf("after a failed env update the cluster is %v, want FAILED", got.Status)
	}
	again, err := h.life.UpdateEnv(ctx, h.op(t, c.Id), map[string]string{"motd": "corrected"})
	if err != nil {
		t.Fatalf("an env update after a failed one: %v", err)
	}
	h.finish(t, again.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	r, err := h.life.Restart(ctx, h.op(t, c.Id))
	if err != nil {
		t.Fatal(err)
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_FAILED)
	if _, err := h.life.UpdateEnv(ctx, h.op(t, c.Id), map[string]string{"motd": "x"}); err == nil || !strings.Contains(err.Error(), "only on an active cluster") {
		t.Fatalf("an env update after a failed restart: %v, want refused", err)
	}
}
