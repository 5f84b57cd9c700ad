package store

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T) *Store {
	t.Helper()
	c := etcdtest.Client(t)
	return New(c)
}

func newNet() *pilotv1.Network { return &pilotv1.Network{} }

func TestUpdateNeverLosesAConcurrentWrite(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	key := NetworkKey("default", "local", "default")
	if err := s.Create(ctx, key, &pilotv1.Network{Id: "n"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := Update(ctx, s, key, newNet, func(n *pilotv1.Network) error {
				n.ClusterIds = append(n.ClusterIds, string(rune('a'+i)))
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	n := &pilotv1.Network{}
	if _, err := s.Get(ctx, key, n); err != nil {
		t.Fatal(err)
	}
	if len(n.ClusterIds) != 20 {
		t.Fatalf("%d of 20 concurrent appends survived", len(n.ClusterIds))
	}
}

func TestCreateCommitAndMoveAreGuarded(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, b := ClusterKey("a"), ClusterKey("b")
	if err := s.Create(ctx, a, &pilotv1.Cluster{Id: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, a, &pilotv1.Cluster{Id: "a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	rev, err := s.Get(ctx, a, &pilotv1.Cluster{})
	if err != nil {
		t.Fatal(err)
	}
	// A stale guard writes nothing at all.
	err = s.Commit(ctx, map[string]int64{a: rev - 1, b: 0}, map[string]proto.Message{a: &pilotv1.Cluster{Id: "a", Name: "x"}, b: &pilotv1.Cluster{Id: "b"}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit with a stale guard: %v, want ErrConflict", err)
	}
	if _, err := s.Get(ctx, b, &pilotv1.Cluster{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed Commit wrote %s: %v", b, err)
	}
	if err := s.Commit(ctx, map[string]int64{a: rev, b: 0}, map[string]proto.Message{a: &pilotv1.Cluster{Id: "a", Name: "x"}, b: &pilotv1.Cluster{Id: "b"}}); err != nil {
		t.Fatal(err)
	}
	// Move only from the revision read, and only onto a free key.
	rev, _ = s.Get(ctx, a, &pilotv1.Cluster{})
	if ok, err := s.Move(ctx, a, rev, b, &pilotv1.Cluster{}); err != nil || ok {
		t.Fatalf("Move onto an existing key: ok=%v err=%v", ok, err)
	}
	to := ClusterKey("c")
	if ok, err := s.Move(ctx, a, rev, to, &pilotv1.Cluster{Id: "a"}); err != nil || !ok {
		t.Fatalf("Move: ok=%v err=%v", ok, err)
	}
	if _, err := s.Get(ctx, a, &pilotv1.Cluster{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("moved key still there: %v", err)
	}
}

// TestDeleteGuardedSeesAConcurrentWrite: a record written under the
// guarded prefix between the check and the delete fails the delete, and
// the check that follows sees it.
func TestDeleteGuardedSeesAConcurrentWrite(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	app, archive := AppKey("t", "kv", "1.0.0"), ArchiveKey("t", "kv", "1.0.0")
	put := func() {
		if err := s.CreateAll(ctx, map[string]proto.Message{app: &pilotv1.App{Name: "kv"}}, map[string][]byte{archive: []byte("tgz")}); err != nil {
			t.Fatal(err)
		}
	}
	put()
	errUsed := errors.New("used")
	used := func(vals map[string][]byte) error {
		for k, v := range vals {
			c := &pilotv1.Cluster{}
			if err := Decode(k, v, c); err != nil {
				return err
			}
			if c.App == "kv" {
				return errUsed
			}
		}
		return nil
	}

	calls := 0
	err := s.DeleteGuarded(ctx, []string{app, archive}, ClustersPrefix, func(vals map[string][]byte) error {
		calls++
		if calls == 1 {
			// A create commits after this check read the clusters.
			if err := s.Create(ctx, ClusterKey("cl-1"), &pilotv1.Cluster{Id: "cl-1", App: "kv"}); err != nil {
				t.Fatal(err)
			}
		}
		return used(vals)
	})
	if !errors.Is(err, errUsed) || calls != 2 {
		t.Fatalf("delete with a cluster created concurrently: %v after %d checks, want the second check to refuse", err, calls)
	}
	if _, err := s.GetRaw(ctx, archive); err != nil {
		t.Fatalf("the archive is gone: %v", err)
	}

	if err := s.Delete(ctx, ClusterKey("cl-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGuarded(ctx, []string{app, archive}, ClustersPrefix, used); err != nil {
		t.Fatalf("delete of an unused version: %v", err)
	}
	for _, k := range []string{app, archive} {
		if _, err := s.GetRaw(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s after the delete: %v", k, err)
		}
	}
	if err := s.DeleteGuarded(ctx, []string{app, archive}, ClustersPrefix, used); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a deleted version: %v, want ErrNotFound", err)
	}
}
