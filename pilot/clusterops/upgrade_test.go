package clusterops

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

const opsappV2 = "../../tests/e2e/testdata/opsapp-2"

// copyDir copies the package in src to a temporary directory, with its
// cluster.json.mustache passed through edit and its version set to
// version (empty: kept).
func copyDir(t *testing.T, src, version string, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "cluster.json.mustache" && edit != nil:
			b = []byte(edit(string(b)))
		case rel == "package.json" && version != "":
			b = regexp.MustCompile(`"version": *"[^"]*"`).ReplaceAll(b, []byte(`"version": "`+version+`"`))
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runJob runs every task of job in order and ends it as the engine would.
func (h *opsHarness) runJob(t *testing.T, job *pilotv1.Job) {
	t.Helper()
	for _, task := range job.Tasks {
		if err := h.run(t, job, task); err != nil {
			t.Fatalf("%s %s: %v", job.Kind, task.Id, err)
		}
	}
	h.finish(t, job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
}

// ranSince is what the fake drones ran after the first n commands.
func (h *opsHarness) ranSince(n int) []string {
	h.fg.mu.Lock()
	defer h.fg.mu.Unlock()
	return slices.Clone(h.fg.ran[n:])
}

func (h *opsHarness) ranCount() int {
	h.fg.mu.Lock()
	defer h.fg.mu.Unlock()
	return len(h.fg.ran)
}

// A parallel upgrade stops the cluster with the old version's commands,
// publishes upgrade-audit while it runs, gives the nodes the new version's
// metadata, runs upgrade then start by order, and leaves the cluster
// active on the new version with the old one to roll back to. Rollback
// runs the left version's rollback and the old version's start.
func TestUpgradeAndRollback(t *testing.T) {
	h, c := opsappHarness(t)
	ctx := context.Background()
	h.push(t, opsappV2)

	dry, err := h.life.Upgrade(ctx, OpRequest{C: c, Rev: h.op(t, c.Id).Rev, DryRun: true}, "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var stopCmds []string
	for _, task := range dry.Job.Tasks {
		if task.Input.Service == "stop" {
			for _, nr := range task.NodeResults {
				stopCmds = append(stopCmds, nr.Cmd)
			}
		}
	}
	if len(stopCmds) != 3 || strings.Contains(strings.Join(stopCmds, "\n"), "v2") {
		t.Fatalf("the dry run's stop commands are %q; want the 3 nodes' version 1 commands", stopCmds)
	}
	if after, _ := h.cluster(t, c.Id); after.AppVersion != "1.0.0" || after.JobId != c.JobId {
		t.Fatalf("a dry run changed the cluster: %s, job %s", after.AppVersion, after.JobId)
	}

	before := h.ranCount()
	up, err := h.life.Upgrade(ctx, h.op(t, c.Id), "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if up.Cluster.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING || up.Cluster.UpgradingFrom != "1.0.0" {
		t.Fatalf("during the upgrade: %v, upgrading from %q", up.Cluster.Status, up.Cluster.UpgradingFrom)
	}
	var kinds []string
	for _, task := range up.Job.Tasks {
		k := task.Kind
		if task.Input.Service != "" {
			k = task.Input.Service
		}
		if len(kinds) == 0 || kinds[len(kinds)-1] != k {
			kinds = append(kinds, k)
		}
		if task.Kind == taskRegister {
			// Run up to here, then look at the metadata mid-upgrade.
			break
		}
	}
	if want := []string{"stop", taskRegister}; !slices.Equal(kinds, want) {
		t.Fatalf("upgrade starts with %v, want %v", kinds, want)
	}
	for _, task := range up.Job.Tasks {
		if err := h.run(t, up.Job, task); err != nil {
			t.Fatal(err)
		}
		if task.Kind == taskRegister {
			h.fg.mu.Lock()
			from, to := h.fg.metadata[c.Id]["upgrade-audit/from_app_version"], h.fg.metadata[c.Id]["cluster/upgrade-audit/to_app_version"]
			h.fg.mu.Unlock()
			if from != "1.0.0" || to != "2.0.0" {
				t.Fatalf("mid-upgrade metadata upgrade-audit %q → %q, want 1.0.0 → 2.0.0", from, to)
			}
		}
	}
	h.finish(t, up.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	h.fg.mu.Lock()
	_, audit := h.fg.metadata[c.Id]["upgrade-audit/from_app_version"]
	version := h.fg.metadata[c.Id]["cluster/app_version"]
	h.fg.mu.Unlock()
	if audit || version != "2.0.0" {
		t.Fatalf("after the upgrade the metadata says version %q, upgrade-audit still there: %v", version, audit)
	}
	ran := h.ranSince(before)
	// Per node: stop (v1), then upgrade (v2), then start (v2).
	for _, nd := range c.Nodes {
		var seq []string
		for _, r := range ran {
			if strings.HasPrefix(r, nd.Id+": ") {
				seq = append(seq, strings.Fields(strings.TrimPrefix(r, nd.Id+": "))[1:3]...)
			}
		}
		if got := strings.Join(seq, " "); got != `stop >> upgrade v2 start v2` {
			t.Errorf("node %s (%s) ran %q; want stop (version 1), upgrade v2, start v2", nd.Id, nd.Role, got)
		}
	}
	// The lead (start order 1) started before the members (order 2).
	firstStart := slices.IndexFunc(ran, func(s string) bool { return strings.Contains(s, "start v2") })
	if !strings.HasPrefix(ran[firstStart], leadOf(c)+": ") {
		t.Errorf("first start ran on %q, want the lead", ran[firstStart])
	}
	after, _ := h.cluster(t, c.Id)
	if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || after.AppVersion != "2.0.0" || after.PreviousAppVersion != "1.0.0" || after.UpgradingFrom != "" {
		t.Fatalf("after the upgrade: %v %s (previous %q, upgrading from %q)", after.Status, after.AppVersion, after.PreviousAppVersion, after.UpgradingFrom)
	}

	before = h.ranCount()
	back, err := h.life.Rollback(ctx, h.op(t, c.Id))
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, back.Job)
	joined := strings.Join(h.ranSince(before), "\n")
	for _, want := range []string{"stop v2", "rollback v2", "echo start >>"} {
		if !strings.Contains(joined, want) {
			t.Errorf("rollback did not run %q:\n%s", want, joined)
		}
	}
	after, _ = h.cluster(t, c.Id)
	if after.AppVersion != "1.0.0" || after.PreviousAppVersion != "" || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("after the rollback: %v %s (previous %q)", after.Status, after.AppVersion, after.PreviousAppVersion)
	}
	if _, err := h.life.Rollback(ctx, h.op(t, c.Id)); !isRefusal(err, Precondition) {
		t.Fatalf("a second rollback: %v; want refused", err)
	}
}

func leadOf(c *pilotv1.Cluster) string {
	for _, nd := range c.Nodes {
		if nd.Role == "lead" {
			return nd.Id
		}
	}
	return ""
}

// A sequential upgrade takes one node at a time: each node's stop,
// confd, upgrade and start before the next node's stop.
func TestUpgradeSequential(t *testing.T) {
	h, c := opsappHarness(t)
	h.push(t, copyDir(t, opsappV2, "", func(s string) string {
		return strings.Replace(s, `"upgrading_policy": "parallel"`, `"upgrading_policy": "sequential"`, 1)
	}))
	before := h.ranCount()
	up, err := h.life.Upgrade(context.Background(), h.op(t, c.Id), "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, up.Job)
	ran := h.ranSince(before)
	if len(ran) != 9 {
		t.Fatalf("ran %d commands, want stop, upgrade and start on 3 nodes:\n%s", len(ran), strings.Join(ran, "\n"))
	}
	for i := 0; i < len(ran); i += 3 {
		node := strings.SplitN(ran[i], ":", 2)[0]
		for j, want := range []string{"echo stop >>", "upgrade v2", "start v2"} {
			if !strings.HasPrefix(ran[i+j], node+": ") || !strings.Contains(ran[i+j], want) {
				t.Fatalf("command %d is %q; want %q on %s (one node at a time):\n%s", i+j, ran[i+j], want, node, strings.Join(ran, "\n"))
			}
		}
	}
	if !strings.HasPrefix(ran[0], leadOf(c)+": ") {
		t.Fatalf("the upgrade began on %q, want the lead (start order 1)", ran[0])
	}
}

// Bad upgrades are refused, naming the field, and change nothing.
func TestUpgradeRefusals(t *testing.T) {
	h, c := opsappHarness(t)
	h.push(t, copyDir(t, opsappV2, "", func(s string) string {
		s = strings.Replace(s, `"upgrade_policy": ["1.0.0"]`, `"upgrade_policy": ["0.9.0"]`, 1)
		return s
	}))
	noLead := copyDir(t, opsappV2, "3.0.0", func(s string) string {
		return strings.NewReplacer(`"role": "lead"`, `"role": "leader"`, "cluster.lead.", "cluster.leader.").Replace(s)
	})
	// config.json names the role's count by role: keep it consistent.
	cfg, _ := os.ReadFile(filepath.Join(noLead, "config.json"))
	if err := os.WriteFile(filepath.Join(noLead, "config.json"), []byte(strings.ReplaceAll(string(cfg), `"lead"`, `"leader"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.push(t, noLead)
	for _, tc := range []struct {
		version, want string
	}{
		{"", "app_version: required"},
		{"1.0.0", "already runs"},
		{"7.0.0", "app_version: opsapp 7.0.0 is not pushed"},
		{"2.0.0", "upgrade_policy does not list 1.0.0"},
		{"3.0.0", "app_version"},
	} {
		_, err := h.life.Upgrade(context.Background(), h.op(t, c.Id), tc.version)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("upgrade to %q: %v; want an error saying %q", tc.version, err, tc.want)
		}
	}
	after, _ := h.cluster(t, c.Id)
	if after.AppVersion != "1.0.0" || after.JobId != c.JobId || after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("refused upgrades changed the cluster: %s job %s %v", after.AppVersion, after.JobId, after.Status)
	}
	if _, err := h.life.Rollback(context.Background(), h.op(t, c.Id)); err == nil || !strings.Contains(err.Error(), "no upgrade to roll back") {
		t.Fatalf("rollback of a cluster never upgraded: %v", err)
	}
}

func isRefusal(err error, r Reason) bool {
	var re *RefusedError
	return errors.As(err, &re) && re.Reason == r
}
