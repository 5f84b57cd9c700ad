package e2e

import (
	"context"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// BenchmarkKVCreateDelete measures a full create (network join, instances,
// metadata, drones, confd, init, start by order) and delete of a 3-node kv
// cluster through the real binaries on the local runtime. The network and
// its frontgate are created once, by a cluster kept for the whole run, so
// the numbers are for one cluster's own work.
func BenchmarkKVCreateDelete(b *testing.B) {
	p := startPilot(b)
	createLocalRuntime(b, p)
	p.mustHangar("app", "push", "examples/kv")
	keep, job := createCluster(b, p, "kv", map[string]string{"cluster.replica.count": "0", "env.port": "6390"})
	mustSucceed(b, job)
	_ = keep
	ctx := context.Background()
	var create, del time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		c, job := createCluster(b, p, "kv", map[string]string{"cluster.replica.count": "2"})
		mustSucceed(b, job)
		t1 := time.Now()
		r, err := p.clusters.DeleteCluster(ctx, &pilotv1.DeleteClusterRequest{Id: c.Id})
		if err != nil {
			b.Fatal(err)
		}
		mustSucceed(b, p.waitJob(ctx, r.Job.Id))
		create += t1.Sub(t0)
		del += time.Since(t1)
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-ms/op")
	b.ReportMetric(float64(del.Milliseconds())/float64(b.N), "delete-ms/op")
}
