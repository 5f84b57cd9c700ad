package clusterops

import (
	"bytes"
	"context"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Every task handler, run twice in a row (as the engine does after a crash
// or a retry), converges: the second run creates, runs and deletes
// nothing more, and leaves the same state. The handlers run in their
// plans' order — create, update env, delete — against a fake provider and
// a fake frontgate link that keep the real ones' contracts.
func TestHandlersConvergeWhenRunTwice(t *testing.T) {
	// kv, with a custom_metadata on its replicas, a display tab and node
	// names.
	h := newOpsHarnessWith(t, copyDir(t, filepath.Join("..", "..", "examples", "kv"), "", func(s string) string {
		s = strings.Replace(s, "{\n", "{\n  \"display_tabs\": {\"t\": {\"cmd\": \"tab-cmd\", \"timeout\": 5}},\n  \"advanced_services\": {\"update_nodes_names\": {\"cmd\": \"names-cmd\"}},\n", 1)
		return strings.Replace(s, `"role": "replica",`, `"role": "replica", "custom_metadata": {"cmd": "echo token"}, "reserved_ips": {"vip": {"value": ""}},`, 1)
	}))
	h.fg.output = func(_, cmd string) string {
		switch cmd {
		case "tab-cmd":
			return `{"labels": ["k"], "data": [["v"]]}`
		case "names-cmd":
			return `{}`
		}
		return "ran " + cmd + "\n"
	}
	ctx := context.Background()
	created := h.create(t, map[string]string{"cluster.replica.count": "2"})
	id := created.Cluster.Id
	ran := map[string]bool{}
	var networkID string // once the network exists
	removed := 0         // instances deleted by scale-ins, whose nodes are gone
	var lastSid int32    // the highest sid given before a scale-out

	// checks says, after a task ran twice, what must hold once.
	checks := map[string]func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task){
		taskCreateNetwork: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			n := h.network(t)
			c, _ := h.cluster(t, id)
			if got := h.prov.count(h.prov.creates, "CreateNetwork"); got != 1 {
				t.Errorf("CreateNetwork created %d networks, want 1", got)
			}
			if !reflect.DeepEqual(n.ClusterIds, []string{id}) || c.NetworkId != n.Id {
				t.Errorf("network %s holds clusters %v, cluster's network %q; want the cluster in it once", n.Id, n.ClusterIds, c.NetworkId)
			}
		},
		taskEnsureFrontgate: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			n := h.network(t)
			if got := h.prov.instancesLabelled("hangar/role", "frontgate"); got != 1 || n.FrontgateInstanceId == "" {
				t.Errorf("%d frontgate instances, network records %q; want one, recorded", got, n.FrontgateInstanceId)
			}
		},
		taskRunInstances: func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			want := 0
			for _, nd := range c.Nodes {
				if nd.Role != task.Input.Role {
					continue
				}
				want++
				if nd.InstanceId == "" || nd.Address == "" {
					t.Errorf("node %s has no instance recorded: %v", nd.Id, nd)
				}
			}
			if got := h.prov.instancesLabelled("hangar/role", task.Input.Role); got != want || want == 0 {
				t.Errorf("role %s: %d instances for %d nodes", task.Input.Role, got, want)
			}
		},
		taskRegister: func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			spec, _, err := h.pkgs.JobSpec(ctx, job.Id)
			if err != nil {
				t.Fatal(err)
			}
			want, err := metadataTree(c, h.network(t), h.pkg, spec, h.pkgs.Box, task.Input, nil)
			if err != nil {
				t.Fatal(err)
			}
			withInstance := 0
			for _, nd := range c.Nodes {
				if nd.InstanceId != "" {
					withInstance++
				}
			}
			h.fg.mu.Lock()
			got, readers := h.fg.metadata[id], h.fg.readers[id]
			h.fg.mu.Unlock()
			if !sameTree(got, want) || len(readers) != withInstance {
				t.Errorf("frontgate holds %d keys read by %v; want the cluster's %d-key tree read by its %d nodes", len(got), readers, len(want), withInstance)
			}
			for _, part := range []struct {
				dir string
				ids []string
			}{{"adding-hosts/", task.Input.AddingNodeIds}, {"deleting-hosts/", task.Input.DeletingNodeIds}} {
				listed := 0
				for k := range got {
					if strings.HasPrefix(k, part.dir) && strings.HasSuffix(k, "/node_id") {
						listed++
					}
				}
				if listed != len(part.ids) {
					t.Errorf("%s lists %d hosts, want %d", part.dir, listed, len(part.ids))
				}
			}
		},
		taskResizeInstances: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			for _, nd := range onlyNodes(c.Nodes, task.Input.NodeIds) {
				if nd.Cpu != task.Input.Cpu {
					t.Errorf("node %s has cpu %d after the resize, want %d", nd.Id, nd.Cpu, task.Input.Cpu)
				}
			}
		},
		taskCustomMetadata: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			for _, nd := range onlyNodes(c.Nodes, task.Input.NodeIds) {
				if want := nd.Role == "replica"; want != strings.Contains(nd.Token, "echo token") {
					t.Errorf("node %s (%s) has token %q", nd.Id, nd.Role, nd.Token)
				}
			}
		},
		taskSnapshotVolumes: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			b := &pilotv1.Backup{}
			if _, err := h.st.Get(ctx, store.BackupKey(id, task.Input.BackupId), b); err != nil {
				t.Fatal(err)
			}
			c, _ := h.cluster(t, id)
			if len(b.Snapshots) != len(c.Nodes) {
				t.Errorf("backup holds %d snapshots for %d nodes", len(b.Snapshots), len(c.Nodes))
			}
			h.prov.mu.Lock()
			defer h.prov.mu.Unlock()
			if len(h.prov.snapshots) != len(c.Nodes) {
				t.Errorf("the provider made %d snapshots for %d nodes", len(h.prov.snapshots), len(c.Nodes))
			}
		},
		taskRestoreVolumes: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			h.prov.mu.Lock()
			defer h.prov.mu.Unlock()
			for _, nd := range c.Nodes {
				if n := h.prov.restores[nd.InstanceId]; n != 2 {
					t.Errorf("node %s: volume restored %d times by two runs, want 2 (a restore repeats harmlessly)", nd.Id, n)
				}
			}
		},
		taskStopInstances: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			h.checkPower(t, id, task.Input.NodeIds, providerv1.InstanceState_INSTANCE_STATE_STOPPED, pilotv1.NodeStatus_NODE_STATUS_STOPPED)
		},
		taskStartInstances: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			h.checkPower(t, id, task.Input.NodeIds, providerv1.InstanceState_INSTANCE_STATE_RUNNING, pilotv1.NodeStatus_NODE_STATUS_PENDING)
		},
		taskFinishUpgrade: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			h.fg.mu.Lock()
			_, audit := h.fg.metadata[id]["upgrade-audit/from_app_version"]
			h.fg.mu.Unlock()
			if c.UpgradingFrom != "" || audit {
				t.Errorf("after the upgrade: upgrading from %q, upgrade-audit in the metadata: %v", c.UpgradingFrom, audit)
			}
		},
		taskAddNodes: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			role := 0
			for _, nd := range c.Nodes {
				if nd.Role == task.Input.Role {
					role++
				}
			}
			for _, want := range task.Input.NodeIds {
				n := 0
				for _, nd := range c.Nodes {
					if nd.Id == want {
						n++
						if nd.Sid <= lastSid {
							t.Errorf("new node %s got sid %d, not above the last given (%d)", nd.Id, nd.Sid, lastSid)
						}
					}
				}
				if n != 1 {
					t.Errorf("node %s recorded %d times, want once", want, n)
				}
			}
			if got := c.Params["cluster."+task.Input.Role+".count"]; got != strconv.Itoa(role) {
				t.Errorf("count parameter %q, want %d", got, role)
			}
		},
		taskRemoveNodes: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			role := 0
			for _, nd := range c.Nodes {
				if slices.Contains(task.Input.NodeIds, nd.Id) {
					t.Errorf("removed node %s is still recorded", nd.Id)
				}
				if nd.Role == task.Input.Role {
					role++
				}
			}
			if got := c.Params["cluster."+task.Input.Role+".count"]; got != strconv.Itoa(role) {
				t.Errorf("count parameter %q, want %d", got, role)
			}
			removed += len(task.Input.NodeIds)
		},
		taskWaitDrones: func(*testing.T, *pilotv1.Job, *pilotv1.Task) {}, // it returned nil, twice
		taskWaitRendered: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			if c.MetadataRevision == 0 {
				t.Fatal("no metadata revision recorded")
			}
			for _, nd := range c.Nodes {
				if nd.RenderedRevision != c.MetadataRevision {
					t.Errorf("node %s rendered revision %d recorded, want %d", nd.Id, nd.RenderedRevision, c.MetadataRevision)
				}
			}
		},
		taskDeliverConfd: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			mbox, err := h.pkgs.Box.Metadata(id)
			if err != nil {
				t.Fatal(err)
			}
			h.fg.mu.Lock()
			defer h.fg.mu.Unlock()
			for _, nd := range c.Nodes {
				cr := h.fg.renderers[nd.Id]
				if cr == nil || !reflect.DeepEqual(cr.Files, h.pkg.Confd) || !bytes.Equal(h.fg.keys[nd.Id], mbox.Key()) {
					t.Errorf("node %s: renderer configured %v, metadata key opened %v; want the package's confd files and the cluster's key", nd.Id, cr != nil, h.fg.keys[nd.Id] != nil)
				}
			}
		},
		taskRunService: func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) {
			var results []*pilotv1.NodeResult
			if err := jobs.ForEachResult(ctx, h.st, job.Id, 0, func(nr jobs.NodeResult) error {
				if nr.TaskID == task.Id {
					results = append(results, nr.Result)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(results) == 0 {
				t.Fatalf("%s: no node result recorded", task.Title)
			}
			h.fg.mu.Lock()
			defer h.fg.mu.Unlock()
			for _, r := range results {
				// By command id: an upgrade runs the same start command
				// line again, under a command id of its own.
				if runs := h.fg.runs[r.CommandId]; runs != 1 || r.State != streamv1.CommandState_COMMAND_STATE_EXITED || !strings.Contains(r.Output, "ran ") {
					t.Errorf("%s on node %s: ran %d times, recorded %v %q; want once, exited with its output", task.Title, r.NodeId, runs, r.State, r.Output)
				}
			}
		},
		taskDeleteInstances: func(t *testing.T, _ *pilotv1.Job, task *pilotv1.Task) {
			c, _ := h.cluster(t, id)
			deleted, left := 0, 0
			for _, nd := range c.Nodes {
				if len(task.Input.NodeIds) == 0 || slices.Contains(task.Input.NodeIds, nd.Id) {
					if nd.InstanceId != "" || nd.Status != pilotv1.NodeStatus_NODE_STATUS_DELETED {
						t.Errorf("node %s after delete: instance %q, status %v", nd.Id, nd.InstanceId, nd.Status)
					}
				}
				if nd.Status == pilotv1.NodeStatus_NODE_STATUS_DELETED {
					deleted++
				} else {
					left++
				}
			}
			if got, want := h.prov.count(h.prov.deletes, "DeleteInstance"), deleted+removed; got != want {
				t.Errorf("%d instances deleted, want %d", got, want)
			}
			if n := h.prov.instancesLabelled("hangar/cluster", id); n != left {
				t.Errorf("%d instances of the cluster left, want %d", n, left)
			}
		},
		taskDeleteMetadata: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			h.fg.mu.Lock()
			defer h.fg.mu.Unlock()
			if _, ok := h.fg.metadata[id]; ok {
				t.Error("the frontgate still holds the cluster's metadata")
			}
		},
		taskReleaseNetwork: func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
			if n := len(h.prov.networks) + len(h.prov.instances); n != 0 {
				t.Errorf("%d networks and instances left at the provider", n)
			}
			if got := h.prov.count(h.prov.deletes, "DeleteNetwork"); got != 1 {
				t.Errorf("DeleteNetwork deleted %d networks, want 1", got)
			}
			for _, k := range []string{defaultNetwork, "retired/" + networkID} {
				if _, err := h.st.GetRaw(ctx, store.NetworkKey(harnessTenant, harnessRuntime, k)); err == nil {
					t.Errorf("network record %s is left", k)
				}
			}
		},
	}
	// A task's commands each ran once, on a node each.
	ranOnce := func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) {
		h.fg.mu.Lock()
		defer h.fg.mu.Unlock()
		n := 0
		for id, runs := range h.fg.runs {
			if strings.HasPrefix(id, safeID(job.Id+"."+task.Id+".")) {
				n++
				if runs != 1 {
					t.Errorf("%s: command %s ran %d times, want once", task.Id, id, runs)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s ran no command", task.Id)
		}
	}
	// Each node that reserves an address holds one, and the provider
	// holds exactly the nodes' addresses.
	addressesAgree := func(t *testing.T, _ *pilotv1.Job, _ *pilotv1.Task) {
		c, _ := h.cluster(t, id)
		held := map[string]bool{}
		for _, n := range c.Nodes {
			if a := n.ReservedIps["vip"]; a != "" {
				held[a] = true
			} else if n.Role == "replica" {
				t.Errorf("replica %s has no reserved address", n.Id)
			}
		}
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		if len(h.prov.reserved) != len(held) {
			t.Errorf("provider holds %d addresses, the nodes %d", len(h.prov.reserved), len(held))
		}
		for _, a := range h.prov.reserved {
			if !held[a] {
				t.Errorf("provider holds %s, which no node has", a)
			}
		}
	}
	checks[taskReserveAddresses] = addressesAgree
	checks[taskReleaseAddresses] = func(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) {
		if job.Kind == KindDelete {
			h.prov.mu.Lock()
			defer h.prov.mu.Unlock()
			if len(h.prov.reserved) != 0 {
				t.Errorf("after delete the provider still holds %v", h.prov.reserved)
			}
			return
		}
		c, _ := h.cluster(t, id)
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		for _, n := range c.Nodes {
			if slices.Contains(task.Input.NodeIds, n.Id) {
				for _, a := range h.prov.reserved {
					if a == n.ReservedIps["vip"] {
						t.Errorf("leaving node %s's address %s is still reserved", n.Id, a)
					}
				}
			}
		}
	}
	checks[taskDisplayTab] = ranOnce
	checks[taskUpdateNodeNames] = ranOnce
	runTwice := func(job *pilotv1.Job) {
		for _, task := range job.Tasks {
			for attempt := range 2 {
				if err := h.run(t, job, task); err != nil {
					t.Fatalf("%s (%s), run %d: %v", task.Id, task.Kind, attempt+1, err)
				}
			}
			t.Run(job.Kind+"/"+task.Id, func(t *testing.T) { checks[task.Kind](t, job, task) })
			ran[task.Kind] = true
		}
	}

	runTwice(created.Job)
	h.finish(t, created.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	c, rev := h.cluster(t, id)
	tab, err := h.life.DisplayTab(ctx, OpRequest{C: c, Rev: rev}, "t")
	if err != nil {
		t.Fatal(err)
	}
	runTwice(tab.Job)
	h.finish(t, tab.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	c, rev = h.cluster(t, id)
	updated, err := h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev}, map[string]string{"motd": "changed twice"})
	if err != nil {
		t.Fatal(err)
	}
	runTwice(updated.Job)
	h.fg.mu.Lock()
	motd := h.fg.metadata[id]["env/motd"]
	h.fg.mu.Unlock()
	if motd != "changed twice" {
		t.Fatalf("after the env update the frontgate holds motd %q: the handler did not read the update's spec", motd)
	}
	h.finish(t, updated.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	// Scale the replicas out by one, then in by two.
	c, rev = h.cluster(t, id)
	lastSid = c.LastSid
	out, err := h.life.Scale(ctx, OpRequest{C: c, Rev: rev}, "replica", 3)
	if err != nil {
		t.Fatal(err)
	}
	runTwice(out.Job)
	h.finish(t, out.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c, rev = h.cluster(t, id)
	in, err := h.life.Scale(ctx, OpRequest{C: c, Rev: rev}, "replica", 1)
	if err != nil {
		t.Fatal(err)
	}
	runTwice(in.Job)
	h.finish(t, in.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	// Resize the replicas.
	c, rev = h.cluster(t, id)
	rz, err := h.life.Resize(ctx, OpRequest{C: c, Rev: rev}, "replica", Sizes{CPU: 2})
	if err != nil {
		t.Fatal(err)
	}
	runTwice(rz.Job)
	h.finish(t, rz.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	// Stop, then start.
	for _, op := range []func(OpRequest) (*pilotv1.ClusterJob, error){
		func(r OpRequest) (*pilotv1.ClusterJob, error) { return h.life.Stop(ctx, r, false) },
		func(r OpRequest) (*pilotv1.ClusterJob, error) { return h.life.Start(ctx, r) },
	} {
		c, rev = h.cluster(t, id)
		r, err := op(OpRequest{C: c, Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		runTwice(r.Job)
		h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	}
	if c, _ := h.cluster(t, id); c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after stop and start the cluster is %v", c.Status)
	}

	// Upgrade to a copy of the package that takes upgrades from it.
	kvDir := filepath.Join("..", "..", "examples", "kv")
	h.push(t, copyDir(t, kvDir, "1.0.1", func(s string) string {
		return strings.Replace(s, "{\n", "{\n  \"upgrade_policy\": [\"1.0.0\"],\n  \"backup_policy\": \"device\",\n", 1)
	}))
	c, rev = h.cluster(t, id)
	up, err := h.life.Upgrade(ctx, OpRequest{C: c, Rev: rev}, "1.0.1")
	if err != nil {
		t.Fatal(err)
	}
	runTwice(up.Job)
	h.finish(t, up.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	// A device backup, restored.
	c, rev = h.cluster(t, id)
	bk, _, err := h.life.Backup(ctx, OpRequest{C: c, Rev: rev}, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	runTwice(bk.Job)
	h.finish(t, bk.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c, rev = h.cluster(t, id)
	rs, err := h.life.Restore(ctx, OpRequest{C: c, Rev: rev}, bk.Job.Tasks[0].Input.BackupId)
	if err != nil {
		t.Fatal(err)
	}
	runTwice(rs.Job)
	h.finish(t, rs.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)

	c, rev = h.cluster(t, id)
	networkID = c.NetworkId
	deleted, err := h.life.Delete(ctx, OpRequest{C: c, Rev: rev}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	runTwice(deleted.Job)

	if missing := slices.DeleteFunc(slices.Sorted(maps.Keys(h.ops.Handlers())), func(k string) bool { return ran[k] }); len(missing) > 0 {
		t.Errorf("handlers never run by this test: %v", missing)
	}
}

// checkPower checks that every node of cluster id (or of nodes) has an
// instance in state want, and the node status st.
func (h *opsHarness) checkPower(t *testing.T, id string, nodes []string, want providerv1.InstanceState, st pilotv1.NodeStatus) {
	t.Helper()
	c, _ := h.cluster(t, id)
	h.prov.mu.Lock()
	defer h.prov.mu.Unlock()
	for _, nd := range onlyNodes(c.Nodes, nodes) {
		if in := h.prov.instances[nd.InstanceId]; in == nil || in.State != want || nd.Status != st {
			t.Errorf("node %s: instance %v, status %v; want %v and %v", nd.Id, in, nd.Status, want, st)
		}
	}
}

// A create renders the package once, when it is accepted: every handler
// of the create reads the spec stored with the job, and so do the
// cluster's endpoints and the delete that follows.
func TestCreateRendersThePackageOnce(t *testing.T) {
	h := newOpsHarness(t)
	ctx := context.Background()
	r := h.create(t, map[string]string{"cluster.replica.count": "3"})
	if got := h.pkgs.renders.Load(); got != 1 {
		t.Fatalf("accepting the create rendered %d times, want 1", got)
	}
	for _, task := range r.Job.Tasks {
		if err := h.run(t, r.Job, task); err != nil {
			t.Fatalf("%s: %v", task.Id, err)
		}
	}
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c, rev := h.cluster(t, r.Cluster.Id)
	if _, err := h.life.Spec(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := h.life.Delete(ctx, OpRequest{C: c, Rev: rev}, false, false); err != nil {
		t.Fatal(err)
	}
	if got := h.pkgs.renders.Load(); got != 1 {
		t.Fatalf("a create, its %d tasks, reading the spec and accepting the delete rendered %d times, want 1", len(r.Job.Tasks), got)
	}
}

// A failing command fails its step naming the node, its exit code and
// output, records the result, and fails the cluster's node when the job
// ends; a re-run asks the drone again rather than running it twice.
func TestRunServiceFailureIsRecordedOnce(t *testing.T) {
	h := newOpsHarness(t)
	h.fg.exitCode = func(cmd string) int32 {
		if strings.HasPrefix(cmd, "mkdir") { // init
			return 3
		}
		return 0
	}
	r := h.create(t, map[string]string{"cluster.replica.count": "0"})
	for _, task := range r.Job.Tasks {
		err := h.run(t, r.Job, task)
		if !strings.HasPrefix(task.Title, "init ") {
			if err != nil {
				t.Fatalf("%s: %v", task.Id, err)
			}
			continue
		}
		again := h.run(t, r.Job, task)
		for _, e := range []error{err, again} {
			if e == nil || !strings.Contains(e.Error(), "exited with code 3") || !strings.Contains(e.Error(), "ran mkdir") || jobs.IsRetryable(e) {
				t.Fatalf("init: %v; want a final error with the exit code and output, at every run", e)
			}
		}
		break
	}
	h.fg.mu.Lock()
	if len(h.fg.runs) != 1 {
		t.Errorf("commands run: %v; want the one init", h.fg.runs)
	}
	for cmdID, n := range h.fg.runs {
		if n != 1 {
			t.Errorf("command %s ran %d times", cmdID, n)
		}
	}
	h.fg.mu.Unlock()
	h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_FAILED)
	c, _ := h.cluster(t, r.Cluster.Id)
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED || c.Nodes[0].Status != pilotv1.NodeStatus_NODE_STATUS_FAILED {
		t.Fatalf("after the failed init: cluster %v, node %v; want both failed", c.Status, c.Nodes[0].Status)
	}
}

// A command's result is pushed: pilot asks its frontgate once per run of
// the step and takes the answer. One still running at the deadline is not
// polled for; the step is retried, asking again under the same command id.
func TestRunServiceAsksOnceAndRetriesWhatIsStillRunning(t *testing.T) {
	h := newOpsHarness(t)
	running := true
	h.fg.stillRunning = func(cmd string) bool { return running && strings.HasPrefix(cmd, "mkdir") }
	r := h.create(t, map[string]string{"cluster.replica.count": "0"})
	for _, task := range r.Job.Tasks {
		if !strings.HasPrefix(task.Title, "init ") {
			if err := h.run(t, r.Job, task); err != nil {
				t.Fatalf("%s: %v", task.Id, err)
			}
			continue
		}
		err := h.run(t, r.Job, task)
		if err == nil || !jobs.IsRetryable(err) || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("init still running: %v; want a retryable error saying so", err)
		}
		h.fg.mu.Lock()
		asked := maps.Clone(h.fg.asked)
		h.fg.mu.Unlock()
		if len(asked) != 1 {
			t.Fatalf("asked about %v, want one command", asked)
		}
		for id, n := range asked {
			if n != 1 {
				t.Fatalf("command %s asked %d times in one run, want once", id, n)
			}
		}
		running = false
		if err := h.run(t, r.Job, task); err != nil {
			t.Fatalf("init once it ended: %v", err)
		}
		h.fg.mu.Lock()
		defer h.fg.mu.Unlock()
		for id, n := range h.fg.asked {
			if n != 2 || h.fg.runs[id] != 1 {
				t.Fatalf("command %s: asked %d times, run %d; want asked twice (once per run of the step) and run once", id, n, h.fg.runs[id])
			}
		}
		return
	}
	t.Fatal("no init step")
}

// sameTree compares metadata trees; sealed values differ at every seal, so
// for those only that both are sealed.
func sameTree(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	keys := slices.Collect(maps.Keys(want))
	sort.Strings(keys)
	for _, k := range keys {
		g, w := got[k], want[k]
		if g != w && !(secretbox.IsSealed(g) && secretbox.IsSealed(w)) {
			return false
		}
	}
	return true
}
