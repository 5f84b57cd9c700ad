package clusterops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// A link must name a cluster of the tenant that is not being deleted, of
// an app and version the service parameter allows; refused links create
// nothing.
func TestLinksAreCheckedBeforeAnythingIsCreated(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/mq", "", nil)
	cfg := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `"limits": {}`, `"limits": {"zkens": ["3.4.13"]}`, 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newOpsHarnessWith(t, dir)
	ctx := context.Background()
	put := func(c *pilotv1.Cluster) {
		t.Helper()
		if err := h.st.Create(ctx, store.ClusterKey(c.Id), c); err != nil {
			t.Fatal(err)
		}
	}
	put(&pilotv1.Cluster{Id: "cl-zk", Tenant: harnessTenant, App: "zkens", AppVersion: "3.4.13", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE})
	put(&pilotv1.Cluster{Id: "cl-old", Tenant: harnessTenant, App: "zkens", AppVersion: "3.4.6", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE})
	put(&pilotv1.Cluster{Id: "cl-redis", Tenant: harnessTenant, App: "redis", AppVersion: "7", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE})
	put(&pilotv1.Cluster{Id: "cl-theirs", Tenant: "other", App: "zkens", AppVersion: "3.4.13", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE})
	put(&pilotv1.Cluster{Id: "cl-going", Tenant: harnessTenant, App: "zkens", AppVersion: "3.4.13", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING})

	for _, tc := range []struct{ link, want string }{
		{"cl-nope", `links.zk: cluster "cl-nope" does not exist`},
		{"cl-theirs", `links.zk: cluster "cl-theirs" does not exist`},
		{"cl-going", "links.zk: cluster cl-going is being deleted"},
		{"cl-redis", "cluster.zk_service: cluster cl-redis runs app redis; this parameter takes a cluster of: zkens"},
		{"cl-old", "cluster.zk_service: cluster cl-old runs zkens 3.4.6; this parameter takes versions: 3.4.13"},
	} {
		_, err := h.life.Create(ctx, CreateRequest{Tenant: harnessTenant, App: h.pkg.Meta.Name, AppVersion: h.pkg.Meta.Version, Runtime: harnessRuntime,
			Params: map[string]string{"cluster.zk_service": tc.link}})
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != Invalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("link to %s: %v, want a refusal with %q", tc.link, err, tc.want)
		}
	}
	list, err := store.List(ctx, h.st, store.ClustersPrefix, newCluster)
	if err != nil || len(list) != 5 {
		t.Fatalf("refused creates left %d clusters (%v), want the 5 put here", len(list), err)
	}
	r := h.create(t, map[string]string{"cluster.zk_service": "cl-zk"})
	if r.Cluster.Id == "" {
		t.Fatal("a link to a running cluster of the allowed app and version was refused")
	}
}
