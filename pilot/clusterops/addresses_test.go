package clusterops

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hangarhq/hangar/pilot/store"
)

// A cluster that reserves addresses is refused, before anything is made,
// on a runtime whose provider cannot reserve them; elsewhere its create
// reserves them and publishes them in the metadata.
func TestReservedIPs(t *testing.T) {
	dir := copyDir(t, filepath.Join("..", "..", "examples", "kv"), "", func(s string) string {
		return strings.Replace(s, `"role": "replica",`, `"role": "replica", "reserved_ips": {"vip": {"value": ""}},`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	ctx := context.Background()
	h.prov.mu.Lock()
	h.prov.caps = slices.DeleteFunc(h.prov.caps, func(c string) bool { return c == "reserved_addresses" })
	h.prov.mu.Unlock()
	_, err := h.life.Create(ctx, CreateRequest{Tenant: harnessTenant, App: h.pkg.Meta.Name, AppVersion: h.pkg.Meta.Version, Runtime: harnessRuntime})
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "reserved_ips") || !strings.Contains(err.Error(), `"reserved_addresses"`) {
		t.Fatalf("create on a runtime without reserved_addresses: %v", err)
	}
	if list, _ := store.List(ctx, h.st, store.ClustersPrefix, newCluster); len(list) != 0 {
		t.Fatalf("a refused create stored %d clusters", len(list))
	}

	h.prov.mu.Lock()
	h.prov.caps = append(h.prov.caps, "reserved_addresses")
	h.prov.mu.Unlock()
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	c, _ := h.cluster(t, r.Cluster.Id)
	h.fg.mu.Lock()
	tree := h.fg.metadata[c.Id]
	h.fg.mu.Unlock()
	for _, n := range c.Nodes {
		got := tree["hosts/"+n.Role+"/"+n.InstanceId+"/reserved_ips/vip/value"]
		if n.Role == "replica" && (got == "" || got != n.ReservedIps["vip"] || got == n.Address) {
			t.Fatalf("replica %s: metadata vip %q, node's %q, address %s", n.Id, got, n.ReservedIps["vip"], n.Address)
		}
		if n.Role != "replica" && got != "" {
			t.Fatalf("%s %s has a vip %q", n.Role, n.Id, got)
		}
	}
}
