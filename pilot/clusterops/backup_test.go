package clusterops

import (
	"context"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// A custom backup runs the app's backup service with the backup's id as
// snapshot_id and is available once its job succeeded; restore runs the
// restore service by order with the same id; a failed backup cannot be
// restored.
func TestBackupAndRestore(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	cj, b, err := h.life.Backup(ctx, h.op(t, c.Id), "nightly", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "nightly" || b.Policy != "custom" || b.State != pilotv1.BackupState_BACKUP_STATE_PENDING || b.JobId != cj.Job.Id {
		t.Fatalf("backup record %v", b)
	}
	before := h.ranCount()
	h.runJob(t, cj.Job)
	ran := h.ranSince(before)
	if len(ran) != 1 || !strings.Contains(ran[0], `"snapshot_id":"`+b.Id+`"`) || !strings.HasPrefix(ran[0], leadOf(c)+": ") {
		t.Fatalf("backup ran %q; want the lead's backup with snapshot_id %s", ran, b.Id)
	}
	list, err := h.life.ListBackups(ctx, c)
	if err != nil || len(list) != 1 || list[0].State != pilotv1.BackupState_BACKUP_STATE_AVAILABLE {
		t.Fatalf("backups after the job: %v, %v", list, err)
	}

	r, err := h.life.Restore(ctx, h.op(t, c.Id), b.Id)
	if err != nil {
		t.Fatal(err)
	}
	before = h.ranCount()
	h.runJob(t, r.Job)
	ran = h.ranSince(before)
	if len(ran) != 3 || !strings.HasPrefix(ran[0], leadOf(c)+": ") || !strings.Contains(strings.Join(ran, "\n"), "restore") {
		t.Fatalf("restore ran %q; want the lead's restore, then the members'", ran)
	}

	// A failed backup is not restored; an unknown one is refused.
	fj, fb, err := h.life.Backup(ctx, h.op(t, c.Id), "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	h.finish(t, fj.Job, pilotv1.JobState_JOB_STATE_FAILED)
	got := &pilotv1.Backup{}
	if _, err := h.st.Get(ctx, store.BackupKey(c.Id, fb.Id), got); err != nil || got.State != pilotv1.BackupState_BACKUP_STATE_FAILED || got.Name != fb.Id {
		t.Fatalf("failed backup: %v, %v", got, err)
	}
	for _, tc := range []struct{ id, want string }{{fb.Id, "only an available backup"}, {"bk-none", `backup_id: "bk-none"`}} {
		if _, err := h.life.Restore(ctx, h.op(t, c.Id), tc.id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("restore %s: %v; want %q", tc.id, err, tc.want)
		}
	}
	// A package without backup_policy cannot be backed up.
	h2 := newOpsHarness(t)
	r2 := h2.create(t, nil)
	h2.runJob(t, r2.Job)
	if _, _, err := h2.life.Backup(ctx, h2.op(t, r2.Cluster.Id), "", nil, false); err == nil || !strings.Contains(err.Error(), "declares no backup_policy") {
		t.Fatalf("backup of kv: %v", err)
	}
}

// A device backup needs a provider with snapshots: refused, naming the
// capability, before anything changes.
func TestDeviceBackupNeedsSnapshots(t *testing.T) {
	h, _ := opsappHarness(t)
	h.push(t, copyDir(t, "../../tests/e2e/testdata/opsapp", "1.0.2", func(s string) string {
		return strings.Replace(s, `"backup_policy": "custom"`, `"backup_policy": "device"`, 1)
	}))
	cr, err := h.life.Create(context.Background(), CreateRequest{Tenant: harnessTenant, App: "opsapp", AppVersion: "1.0.2", Runtime: harnessRuntime})
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, cr.Job)
	h.prov.mu.Lock()
	h.prov.caps = []string{"stop_start"}
	h.prov.mu.Unlock()
	c, _ := h.cluster(t, cr.Cluster.Id)
	if _, _, err := h.life.Backup(context.Background(), h.op(t, c.Id), "", nil, false); err == nil || !strings.Contains(err.Error(), `lacks capability "snapshots"`) {
		t.Fatalf("device backup without snapshots: %v", err)
	}
	if after, _ := h.cluster(t, c.Id); after.JobId != c.JobId {
		t.Fatal("a refused backup started a job")
	}
}

// custom_metadata runs after init on the roles that have it; what it
// printed is the node's token, in its record and in the metadata before
// start runs.
func TestCustomMetadata(t *testing.T) {
	h, c := opsappHarness(t)
	h.fg.mu.Lock()
	tree := h.fg.metadata[c.Id]
	h.fg.mu.Unlock()
	for _, nd := range c.Nodes {
		key := "hosts/" + nd.Role + "/" + nd.InstanceId + "/token"
		switch nd.Role {
		case "member":
			// The fake drone answers "ran <cmd>".
			if !strings.Contains(nd.Token, "key-of-") || tree[key] != nd.Token {
				t.Errorf("member %s: token %q, metadata %q", nd.Id, nd.Token, tree[key])
			}
		default:
			if nd.Token != "" || tree[key] != "" {
				t.Errorf("lead %s has a token %q (metadata %q) without custom_metadata", nd.Id, nd.Token, tree[key])
			}
		}
	}
	// Its step comes after init and before start.
	r := h.create(t, nil)
	var order []string
	for _, task := range r.Job.Tasks {
		order = append(order, task.Kind+":"+task.Input.Service)
	}
	got := strings.Join(order, " ")
	if i, j, k := strings.Index(got, "run_service:init"), strings.Index(got, "custom_metadata:"), strings.Index(got, "run_service:start"); !(i >= 0 && i < j && j < k) {
		t.Fatalf("create plan %s: custom_metadata must come after init and before start", got)
	}
}

// An incremental backup is taken only where the app supports one, and its
// backup command is told.
func TestIncrementalBackup(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	if _, _, err := h.life.Backup(ctx, h.op(t, c.Id), "", nil, true); err == nil || !strings.Contains(err.Error(), "incremental_backup_supported") {
		t.Fatalf("incremental backup of an app without support: %v", err)
	}

	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"backup_policy": "custom",`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp's backup_policy changed: %q not found", old)
		}
		return strings.Replace(s, old, old+` "incremental_backup_supported": true,`, 1)
	})
	h = newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	cj, b, err := h.life.Backup(ctx, h.op(t, r.Cluster.Id), "", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Incremental {
		t.Fatal("the backup record does not say it is incremental")
	}
	before := h.ranCount()
	h.runJob(t, cj.Job)
	if ran := h.ranSince(before); len(ran) != 1 || !strings.Contains(ran[0], `"incremental":true`) {
		t.Fatalf("backup ran %q; want its argument to say incremental", ran)
	}
}

// A backup service's selector picks the node that backs up: it runs on
// the role's first node and prints a node id; a node that is not the
// role's fails the backup.
func TestBackupSelector(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"restore": {"cmd": "printf 'restore %s\\n' >> \"$HANGAR_ROOT/backups.log\"", "order": 2, "timeout": 30},`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp's member restore changed: %q not found", old)
		}
		return strings.Replace(s, old, old+` "backup": {"cmd": "member-backup", "order": 2, "timeout": 30, "selector": "pick-member"},`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	c, _ := h.cluster(t, r.Cluster.Id)
	var members []*pilotv1.Node
	for _, n := range c.Nodes {
		if n.Role == "member" {
			members = append(members, n)
		}
	}
	if len(members) < 2 {
		t.Fatalf("opsapp has %d members; the test needs two", len(members))
	}
	pick := members[len(members)-1].Id
	h.fg.mu.Lock()
	h.fg.output = func(nodeID, cmd string) string {
		if cmd == "pick-member" {
			return pick + "\n"
		}
		return "ok\n"
	}
	h.fg.mu.Unlock()
	ctx := context.Background()
	cj, _, err := h.life.Backup(ctx, h.op(t, c.Id), "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	before := h.ranCount()
	h.runJob(t, cj.Job)
	var memberRuns []string
	for _, r := range h.ranSince(before) {
		if strings.Contains(r, "member-backup") || strings.Contains(r, "pick-member") {
			memberRuns = append(memberRuns, r)
		}
	}
	want := []string{members[0].Id + ": pick-member", pick + ": member-backup '{\"snapshot_id\":"}
	if len(memberRuns) != 2 || !strings.HasPrefix(memberRuns[0], want[0]) || !strings.HasPrefix(memberRuns[1], want[1]) {
		t.Fatalf("member runs %q, want the selector on %s then the backup on %s only", memberRuns, members[0].Id, pick)
	}

	h.fg.mu.Lock()
	h.fg.output = func(string, string) string { return "cln-nobody\n" }
	h.fg.mu.Unlock()
	cj, _, err = h.life.Backup(ctx, h.op(t, c.Id), "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	err = nil
	for _, task := range cj.Job.Tasks {
		if e := h.run(t, cj.Job, task); e != nil {
			err = e
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), `printed "cln-nobody", which is not a node of the role`) {
		t.Fatalf("a selector naming no node of the role: %v", err)
	}
}
