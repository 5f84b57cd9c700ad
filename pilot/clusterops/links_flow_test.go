package clusterops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
)

// linkHarness is the harness over a copy of the mq package whose link is
// given by an env parameter (so update-env changes it), with the
// standalone package (a password among its env) pushed beside it.
func linkHarness(t *testing.T) (*opsHarness, *apppkg.Package) {
	t.Helper()
	dir := copyDir(t, "../../tests/e2e/testdata/mq", "", func(s string) string {
		old := `"links": {"zk": {{cluster.zk_service}}}`
		if !strings.Contains(s, old) {
			t.Fatalf("mq's links changed: %q not found", old)
		}
		return strings.Replace(s, old, `"links": {"zk": {{env.zk}}}`, 1)
	})
	cfg := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"key": "amqp_port",`
	if !strings.Contains(string(b), old) {
		t.Fatalf("mq's config.json changed: %q not found", old)
	}
	b = []byte(strings.Replace(string(b), old, `{"key": "zk", "label": "ZooKeeper", "type": "service", "default": "", "required": "no"}, `+old, 1))
	// The cluster-level parameter no longer gives the link.
	req := `"limits": {}, "default": "", "required": "yes"`
	if !strings.Contains(string(b), req) {
		t.Fatalf("mq's config.json changed: %q not found", req)
	}
	b = []byte(strings.Replace(string(b), req, `"limits": {}, "default": "", "required": "no"`, 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newOpsHarnessWith(t, dir)
	return h, h.push(t, "../../tests/e2e/testdata/standalone")
}

// createRun creates a cluster of pkg and runs its job to the end.
func (h *opsHarness) createRun(t *testing.T, pkg *apppkg.Package, params map[string]string) *pilotv1.Cluster {
	t.Helper()
	r, err := h.life.Create(context.Background(), CreateRequest{Tenant: harnessTenant, App: pkg.Meta.Name, AppVersion: pkg.Meta.Version, Runtime: harnessRuntime, Params: params})
	if err != nil {
		t.Fatalf("create %s: %v", pkg.Meta.Name, err)
	}
	h.runJob(t, r.Job)
	c, _ := h.cluster(t, r.Cluster.Id)
	return c
}

func (h *opsHarness) tree(id string) map[string]string {
	h.fg.mu.Lock()
	defer h.fg.mu.Unlock()
	out := map[string]string{}
	for k, v := range h.fg.metadata[id] {
		out[k] = v
	}
	return out
}

// wantLinkCopy checks that tree holds under links/zk/ exactly the linked
// tree's keys but its links and sealed (password) values.
func wantLinkCopy(t *testing.T, tree, linked map[string]string, when string) {
	t.Helper()
	want := 0
	for k, v := range linked {
		if strings.HasPrefix(k, "links/") || secretbox.IsSealed(v) {
			if _, ok := tree["links/zk/"+k]; ok {
				t.Errorf("%s: links/zk/%s was copied", when, k)
			}
			continue
		}
		want++
		if got, ok := tree["links/zk/"+k]; !ok || got != v {
			t.Errorf("%s: links/zk/%s = %q (%v), want %q", when, k, got, ok, v)
		}
	}
	got := 0
	for k := range tree {
		if strings.HasPrefix(k, "links/") {
			got++
		}
	}
	if got != want || want == 0 {
		t.Errorf("%s: %d keys under links/, want %d", when, got, want)
	}
}

// A link given by an env parameter is checked by update-env, copied into
// the linking cluster's tree without the linked cluster's passwords, kept
// current by the reconciler under links/ alone, and emptied when the linked
// cluster is deleted, the linking cluster left running.
func TestLinkedTreeIsCopiedFollowedAndEmptied(t *testing.T) {
	h, stPkg := linkHarness(t)
	ctx := context.Background()
	st := h.createRun(t, stPkg, map[string]string{"env.requirepass": "s3cret"})
	mq := h.createRun(t, h.pkg, nil)
	if tree := h.tree(mq.Id); len(tree) == 0 || strings.Contains(strings.Join(keys(tree), " "), "links/") {
		t.Fatalf("an empty link copied something: %v", keys(tree))
	}
	stTree := h.tree(st.Id)
	if v := stTree["env/requirepass"]; !secretbox.IsSealed(v) {
		t.Fatalf("the linked cluster's password is %q in its own tree, want sealed (else this test checks nothing)", v)
	}

	for _, tc := range []struct{ link, want string }{
		{"cl-nope", `links.zk: cluster "cl-nope" does not exist`},
		{mq.Id, "links.zk: cluster " + mq.Id + " cannot link to itself"},
	} {
		c, rev := h.cluster(t, mq.Id)
		_, err := h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev}, map[string]string{"zk": tc.link})
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != Invalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("update-env zk=%s: %v, want a refusal with %q", tc.link, err, tc.want)
		}
		if after, _ := h.cluster(t, mq.Id); after.JobId != c.JobId {
			t.Errorf("update-env zk=%s was refused and yet started job %s", tc.link, after.JobId)
		}
	}
	c, rev := h.cluster(t, mq.Id)
	u, err := h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev}, map[string]string{"zk": st.Id})
	if err != nil {
		t.Fatalf("update-env to link a running cluster: %v", err)
	}
	h.runJob(t, u.Job)
	wantLinkCopy(t, h.tree(mq.Id), stTree, "after update-env")

	r := NewReconciler(h.ops, ReconcilerConfig{})
	pass := func() int {
		t.Helper()
		if err := r.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		h.fg.mu.Lock()
		defer h.fg.mu.Unlock()
		return h.fg.subtreeApplies
	}
	// A pilot that just started copies once; then nothing while nothing
	// changes.
	first := pass()
	if again := pass(); again != first {
		t.Fatalf("a pass with nothing changed copied again (%d subtree applies, then %d)", first, again)
	}

	// What a job applied outside links/ stays: the reconciler writes the
	// links/ subtree alone.
	h.fg.mu.Lock()
	h.fg.metadata[mq.Id]["adding-hosts/job-marker"] = "kept"
	h.fg.mu.Unlock()
	c, rev = h.cluster(t, st.Id)
	u, err = h.life.UpdateEnv(ctx, OpRequest{C: c, Rev: rev}, map[string]string{"maxmemory-policy": "allkeys-lru"})
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, u.Job)
	stTree = h.tree(st.Id)
	if stTree["env/maxmemory-policy"] != "allkeys-lru" {
		t.Fatalf("the linked cluster's env did not change: %q", stTree["env/maxmemory-policy"])
	}
	if n := pass(); n != first+1 {
		t.Fatalf("after the linked cluster changed: %d subtree applies, want %d", n, first+1)
	}
	tree := h.tree(mq.Id)
	wantLinkCopy(t, tree, stTree, "after the linked cluster's update-env")
	if tree["adding-hosts/job-marker"] != "kept" {
		t.Fatal("the reconciler's copy overwrote keys outside links/")
	}

	// The linked cluster goes: its subtree is emptied, the rest stays, and
	// the linking cluster keeps running.
	c, rev = h.cluster(t, st.Id)
	if _, err := h.life.Delete(ctx, OpRequest{C: c, Rev: rev}, false, false); err != nil {
		t.Fatal(err)
	}
	pass()
	tree = h.tree(mq.Id)
	for k := range tree {
		if strings.HasPrefix(k, "links/") {
			t.Errorf("after the linked cluster's delete: %s is left", k)
		}
	}
	if tree["adding-hosts/job-marker"] != "kept" || tree["cluster/cluster_id"] != mq.Id {
		t.Fatalf("emptying links/ touched the rest of the tree: %v", keys(tree))
	}
	if got, _ := h.cluster(t, mq.Id); got.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		t.Fatalf("the linking cluster is %v after its link went, want active", got.Status)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
