package metastore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/limits"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dump returns the tree of a cluster and the store's current revision.
func dump(t *testing.T, c *clientv3.Client, clusterID string) (map[string]string, int64) {
	t.Helper()
	resp, err := c.Get(testCtx(t), Prefix(clusterID), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[strings.TrimPrefix(string(kv.Key), Prefix(clusterID))] = string(kv.Value)
	}
	return m, resp.Header.Revision
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestApplyOneRevisionPerChange(t *testing.T) {
	c := etcdtest.Client(t)
	s := New(c, Options{})
	ctx := testCtx(t)

	first := map[string]string{
		"hosts/master/i-1/ip":  "10.0.0.1",
		"hosts/replica/i-2/ip": "10.0.0.2",
		"hosts/replica/i-3/ip": "10.0.0.3",
		"env/port":             "6379",
	}
	// A neighbour whose prefix extends ours must stay untouched.
	if _, err := c.Put(ctx, Root+"c-10/env/port", "1"); err != nil {
		t.Fatal(err)
	}
	_, before := dump(t, c, "c-1")
	res, err := s.Apply(ctx, "c-1", first)
	if err != nil {
		t.Fatal(err)
	}
	if res.Puts != 4 || res.Deletes != 0 || res.Revision != before+1 {
		t.Fatalf("first apply = %+v, want 4 puts at revision %d", res, before+1)
	}

	second := map[string]string{
		"hosts/master/i-1/ip":  "10.0.0.1", // unchanged
		"hosts/replica/i-2/ip": "10.0.0.9", // changed
		"hosts/replica/i-4/ip": "10.0.0.4", // new
		"env/port":             "6379",     // unchanged; i-3 removed
	}
	res, err = s.Apply(ctx, "c-1", second)
	if err != nil {
		t.Fatal(err)
	}
	got, rev := dump(t, c, "c-1")
	if !equal(got, second) {
		t.Fatalf("tree = %v, want %v", got, second)
	}
	if res.Puts != 2 || res.Deletes != 1 {
		t.Fatalf("second apply = %+v, want 2 puts and 1 delete", res)
	}
	if res.Revision != before+2 || rev != before+2 {
		t.Fatalf("revision after second apply = %d (store %d), want %d: the change was not one transaction", res.Revision, rev, before+2)
	}

	// Unchanged: nothing written, revision stays.
	res, err = s.Apply(ctx, "c-1", second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || res.Revision != rev {
		t.Fatalf("unchanged apply = %+v, want no writes at revision %d", res, rev)
	}
	if _, now := dump(t, c, "c-1"); now != rev {
		t.Fatalf("unchanged apply moved the revision from %d to %d", rev, now)
	}

	if n, _ := dump(t, c, "c-10"); n["env/port"] != "1" {
		t.Fatalf("cluster c-10 was touched: %v", n)
	}
}

func TestWatcherSeesOneBatch(t *testing.T) {
	c := etcdtest.Client(t)
	s := New(c, Options{})
	ctx := testCtx(t)

	if _, err := s.Apply(ctx, "c-1", map[string]string{"hosts/a/ip": "1", "hosts/b/ip": "2", "hosts/c/ip": "3"}); err != nil {
		t.Fatal(err)
	}
	_, rev := dump(t, c, "c-1")
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := c.Watch(wctx, Prefix("c-1"), clientv3.WithPrefix(), clientv3.WithRev(rev+1))

	// Scale-out shape: two hosts added, one changed, one removed.
	next := map[string]string{"hosts/a/ip": "1", "hosts/b/ip": "20", "hosts/d/ip": "4", "hosts/e/ip": "5", "adding-hosts/d/ip": "4"}
	if _, err := s.Apply(ctx, "c-1", next); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wch:
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		var puts, dels int
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision != rev+1 {
				t.Errorf("event %s at revision %d, want %d", ev.Kv.Key, ev.Kv.ModRevision, rev+1)
			}
			if ev.Type == clientv3.EventTypeDelete {
				dels++
			} else {
				puts++
			}
		}
		if puts != 4 || dels != 1 {
			t.Fatalf("first watch batch has %d puts and %d deletes, want the whole change: 4 puts and 1 delete", puts, dels)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
}

func TestApplyConcurrentWritersConverge(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := testCtx(t)
	// Two stores stand for two writers that share no lock, so only the
	// transaction guard keeps them consistent.
	stores := []*Store{New(c, Options{}), New(c, Options{})}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tree := map[string]string{"env/n": fmt.Sprint(i), fmt.Sprintf("hosts/h%d/ip", i%5): "x"}
			if _, err := stores[i%2].Apply(ctx, "c-1", tree); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
	}
	got, _ := dump(t, c, "c-1")
	// Whatever Apply won last, the tree is exactly one of the trees asked for.
	if len(got) != 2 || got["env/n"] == "" {
		t.Fatalf("tree after racing applies = %v, want exactly one writer's two keys", got)
	}
}

func TestDelete(t *testing.T) {
	c := etcdtest.Client(t)
	s := New(c, Options{})
	ctx := testCtx(t)
	if _, err := s.Apply(ctx, "c-1", map[string]string{"a": "1", "b/c": "2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "c-10", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Delete(ctx, "c-1")
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2 keys", n, err)
	}
	if got, _ := dump(t, c, "c-1"); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	if got, _ := dump(t, c, "c-10"); len(got) != 1 {
		t.Fatalf("deleting c-1 touched c-10: %v", got)
	}
	if n, err := s.Delete(ctx, "c-1"); err != nil || n != 0 {
		t.Fatalf("repeated Delete = %d, %v; want 0, nil", n, err)
	}
}

func TestTooManyOps(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := testCtx(t)
	big := map[string]string{}
	for i := range DefaultMaxTxnOps + 1 {
		big[fmt.Sprintf("k/%d", i)] = "v"
	}
	// Checked before sending with the configured limit...
	if _, err := New(c, Options{}).Apply(ctx, "c-1", big); !errors.Is(err, ErrTooManyOps) {
		t.Fatalf("Apply of %d keys = %v, want ErrTooManyOps", len(big), err)
	}
	// ...and recognised when the member refuses it.
	if _, err := New(c, Options{MaxTxnOps: 1000}).Apply(ctx, "c-1", big); !errors.Is(err, ErrTooManyOps) {
		t.Fatalf("Apply of %d keys past the member's limit = %v, want ErrTooManyOps", len(big), err)
	}
	if got, _ := dump(t, c, "c-1"); len(got) != 0 {
		t.Fatalf("a refused change left %d keys", len(got))
	}
}

func TestTooLarge(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := testCtx(t)
	const max = 1000
	s := New(c, Options{MaxBytes: max})
	fits := map[string]string{"k": strings.Repeat("v", max-len(Prefix("c-1"))-1)}
	if _, err := s.Apply(ctx, "c-1", fits); err != nil {
		t.Fatalf("Apply of exactly %d bytes: %v", max, err)
	}
	over := map[string]string{"k": fits["k"], "l": ""}
	_, err := s.Apply(ctx, "c-1", over)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "c-1") {
		t.Fatalf("Apply over the limit = %v, want ErrTooLarge (an ErrInvalid) naming the cluster", err)
	}
	if got, _ := dump(t, c, "c-1"); !equal(got, fits) {
		t.Fatalf("a refused change altered the tree: %v", got)
	}
	// The default is limits.MaxMetadataBytes.
	huge := map[string]string{"k": strings.Repeat("v", limits.MaxMetadataBytes)}
	if _, err := New(c, Options{}).Apply(ctx, "c-2", huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Apply of %d bytes with the default limit = %v, want ErrTooLarge", limits.MaxMetadataBytes, err)
	}
}

func TestValidation(t *testing.T) {
	c := etcdtest.Client(t)
	s := New(c, Options{})
	ctx := testCtx(t)
	tests := []struct {
		name, cluster, key, want string
	}{
		{"empty cluster", "", "a", "cluster_id is required"},
		{"upper-case cluster", "Cl-1", "a", `cluster_id "Cl-1"`},
		{"slash in cluster", "c/1", "a", `cluster_id "c/1"`},
		{"dot-dot segment", "c-1", "hosts/../x", `key "hosts/../x"`},
		{"dot segment", "c-1", "./x", `key "./x"`},
		{"leading slash", "c-1", "/hosts/x", `key "/hosts/x" starts with "/"`},
		{"empty segment", "c-1", "hosts//x", `key "hosts//x" has an empty segment`},
		{"trailing slash", "c-1", "hosts/", `key "hosts/" has an empty segment`},
		{"empty key", "c-1", "", "empty key"},
		{"newline", "c-1", "env/a\nb", `key "env/a\nb" has control character U+000A at byte 5`},
		{"nul", "c-1", "env/\x00", "control character U+0000"},
		{"delete char", "c-1", "env/\x7f", "control character U+007F"},
		{"not utf-8", "c-1", "env/\xff", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(ctx, tt.cluster, map[string]string{"ok": "1", tt.key: "v"})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want ErrInvalid naming %s", err, tt.want)
			}
		})
	}
	if _, err := s.Delete(ctx, "../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Delete(../x) = %v, want ErrInvalid", err)
	}
	// Keys with dots inside a segment are ordinary env keys.
	if _, err := s.Apply(ctx, "c-1", map[string]string{"env/autopurge.snapRetainCount": "3", "env/a..b": "1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := dump(t, c, "c-1"); len(got) != 2 {
		t.Fatalf("tree = %v", got)
	}
}

// An apply that changes nothing reports the revision of the tree's last
// change, not the store's current one: a retried apply, and a caller
// waiting for drones to render it, get the same revision whatever other
// clusters wrote since, also after a change that only deleted keys.
func TestUnchangedApplyReportsTheLastChange(t *testing.T) {
	c := etcdtest.Client(t)
	s := New(c, Options{})
	ctx := testCtx(t)
	first, err := s.Apply(ctx, "c-1", map[string]string{"env/a": "1", "env/b": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "c-2", map[string]string{"env/a": "1"}); err != nil {
		t.Fatal(err)
	}
	again, err := s.Apply(ctx, "c-1", map[string]string{"env/a": "1", "env/b": "2"})
	if err != nil || again.Changed() || again.Revision != first.Revision {
		t.Fatalf("re-apply = %+v, %v; want unchanged at revision %d", again, err, first.Revision)
	}
	deleted, err := s.Apply(ctx, "c-1", map[string]string{"env/a": "1"})
	if err != nil || deleted.Deletes != 1 {
		t.Fatalf("delete-only apply = %+v, %v", deleted, err)
	}
	if _, err := c.Put(ctx, "/elsewhere", "x"); err != nil {
		t.Fatal(err)
	}
	again, err = s.Apply(ctx, "c-1", map[string]string{"env/a": "1"})
	if err != nil || again.Revision != deleted.Revision {
		t.Fatalf("re-apply after a delete-only change = %+v, %v; want its revision %d", again, err, deleted.Revision)
	}
	if _, err := s.Delete(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Get(ctx, ChangesPrefix+"c-1"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the change marker outlives its cluster: %v %v", resp, err)
	}
}

// ApplyUnder replaces one subtree and leaves the rest of the tree as it
// is; what it is given must lie under that subtree, and the size limit
// counts the whole tree.
func TestApplyUnderReplacesOnlyItsSubtree(t *testing.T) {
	c := etcdtest.Client(t)
	const max = 400
	s := New(c, Options{MaxBytes: max})
	ctx := testCtx(t)
	base := map[string]string{"env/a": "1", "hosts/i-1/ip": "10.0.0.1", "links/zk/hosts/i-9/ip": "10.1.0.9", "links/zk/env/x": "old", "linksx/k": "kept"}
	if _, err := s.Apply(ctx, "c-1", base); err != nil {
		t.Fatal(err)
	}
	res, err := s.ApplyUnder(ctx, "c-1", "links/", map[string]string{"links/zk/hosts/i-9/ip": "10.1.0.9", "links/zk/hosts/i-8/ip": "10.1.0.8"})
	if err != nil || res.Puts != 1 || res.Deletes != 1 {
		t.Fatalf("ApplyUnder = %+v, %v; want 1 put (i-8) and 1 delete (env/x)", res, err)
	}
	want := map[string]string{"env/a": "1", "hosts/i-1/ip": "10.0.0.1", "links/zk/hosts/i-9/ip": "10.1.0.9", "links/zk/hosts/i-8/ip": "10.1.0.8", "linksx/k": "kept"}
	if got, _ := dump(t, c, "c-1"); !equal(got, want) {
		t.Fatalf("tree = %v, want %v", got, want)
	}
	again, err := s.ApplyUnder(ctx, "c-1", "links/", map[string]string{"links/zk/hosts/i-9/ip": "10.1.0.9", "links/zk/hosts/i-8/ip": "10.1.0.8"})
	if err != nil || again.Changed() || again.Revision != res.Revision {
		t.Fatalf("repeated ApplyUnder = %+v, %v; want unchanged at revision %d", again, err, res.Revision)
	}
	// An empty subtree empties it, and only it.
	if _, err := s.ApplyUnder(ctx, "c-1", "links/", nil); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"env/a": "1", "hosts/i-1/ip": "10.0.0.1", "linksx/k": "kept"}
	if got, _ := dump(t, c, "c-1"); !equal(got, want) {
		t.Fatalf("tree after emptying links/ = %v, want %v", got, want)
	}

	if _, err := s.ApplyUnder(ctx, "c-gone", "links/", map[string]string{"links/zk/x": "1"}); !errors.Is(err, ErrNoTree) {
		t.Fatalf("ApplyUnder to a cluster without a tree = %v, want ErrNoTree", err)
	}
	if got, _ := dump(t, c, "c-gone"); len(got) != 0 {
		t.Fatalf("a refused ApplyUnder created a tree: %v", got)
	}

	for _, tc := range []struct {
		name, under string
		kvs         map[string]string
		want        string
	}{
		{"key outside", "links/", map[string]string{"env/a": "2"}, `key "env/a" lies outside the subtree "links/"`},
		{"no trailing slash", "links", map[string]string{"links/x": "1"}, `subtree "links"`},
		{"dot-dot", "../", map[string]string{"../x": "1"}, `subtree "../"`},
		// 323 bytes alone, over 400 with the 80 of the rest of the tree.
		{"whole tree too large", "links/", map[string]string{"links/big": strings.Repeat("v", 300)}, "the tree would take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ApplyUnder(ctx, "c-1", tc.under, tc.kvs)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ApplyUnder = %v, want ErrInvalid with %q", err, tc.want)
			}
			if got, _ := dump(t, c, "c-1"); !equal(got, want) {
				t.Fatalf("a refused ApplyUnder altered the tree: %v", got)
			}
		})
	}
}
