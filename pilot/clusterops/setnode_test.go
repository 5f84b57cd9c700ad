package clusterops

import (
	"context"
	"fmt"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// Concurrent setNode calls on one cluster are all stored, in fewer writes
// than calls (they share them), and a caller whose context ends early does
// not fail the others' changes.
func TestSetNodeSharesWrites(t *testing.T) {
	h := newOpsHarness(t)
	const n = 64
	c := &pilotv1.Cluster{Id: "cl-setnode", Tenant: harnessTenant}
	for i := range n {
		c.Nodes = append(c.Nodes, &pilotv1.Node{Id: fmt.Sprintf("cln-%02d", i)})
	}
	ctx := context.Background()
	if err := h.st.Create(ctx, store.ClusterKey(c.Id), c); err != nil {
		t.Fatal(err)
	}
	version := func() int64 {
		resp, err := h.st.Client().Get(ctx, store.ClusterKey(c.Id), clientv3.WithKeysOnly())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read the cluster's key: %v", err)
		}
		return resp.Kvs[0].Version
	}
	before := version()

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx := ctx
			if i == 0 {
				cctx = cancelled // may lead the first write, or wait for none
			}
			errs[i] = h.ops.setNode(cctx, c.Id, fmt.Sprintf("cln-%02d", i), func(nd *pilotv1.Node) { nd.InstanceId = fmt.Sprintf("i-%02d", i) })
		}()
	}
	wg.Wait()
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("setNode of cln-%02d: %v", i+1, err)
		}
	}
	got, _ := h.cluster(t, c.Id)
	for i, nd := range got.Nodes[1:] {
		if want := fmt.Sprintf("i-%02d", i+1); nd.InstanceId != want {
			t.Errorf("node %s: instance %q, want %q", nd.Id, nd.InstanceId, want)
		}
	}
	writes := version() - before
	t.Logf("%d concurrent setNode calls: %d writes", n, writes)
	if writes < 1 || writes >= n {
		t.Errorf("%d concurrent setNode calls made %d writes, want fewer than %d", n, writes, n)
	}
}
