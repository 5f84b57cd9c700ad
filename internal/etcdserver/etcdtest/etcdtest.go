// Package etcdtest starts a real embedded etcd for a test: tests of code
// that keeps state in etcd run against the same server as production, not
// a fake, and each gets its own empty member.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/etcdserver"
)

// Client starts a single-member etcd in a test directory and returns a
// client of it. Both are closed when the test ends.
func Client(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A 1 MiB WAL segment instead of etcd's 64 MiB keeps a test's data
	// dir small.
	srv, err := etcdserver.Start(ctx, etcdserver.Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	c, err := srv.Client()
	if err != nil {
		srv.Close()
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c
}
