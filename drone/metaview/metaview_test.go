package metaview

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/secretbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// put writes kvs under prefix in one transaction and returns its revision.
func put(t *testing.T, c *clientv3.Client, prefix string, kvs map[string]string) int64 {
	t.Helper()
	ops := make([]clientv3.Op, 0, len(kvs))
	for k, v := range kvs {
		ops = append(ops, clientv3.OpPut(prefix+k, v))
	}
	resp, err := c.Txn(context.Background()).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// run runs v until the test ends.
func run(t *testing.T, v *View) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run ended with %v, want context.Canceled", err)
		}
	})
}

// seen waits until v's copy reflects revision rev.
func seen(t *testing.T, v *View, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := v.WaitChange(ctx, rev-1); err != nil || got < rev {
		t.Fatalf("view at revision %d (%v), want %d", got, err, rev)
	}
}

func host(role, iid, nodeID, ip string) map[string]string {
	p := "hosts/" + iid + "/"
	if role != "" {
		p = "hosts/" + role + "/" + iid + "/"
	}
	return map[string]string{p + "node_id": nodeID, p + "instance_id": iid, p + "ip": ip, p + "role": role}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

func TestView(t *testing.T) {
	c := etcdtest.Client(t)
	roled := merge(
		host("master", "i-1", "cln-1", "10.0.0.1"),
		host("replica", "i-2", "cln-2", "10.0.0.2"),
		host("replica", "i-3", "cln-3", "10.0.0.3"),
		map[string]string{
			"hosts/replica/i-2/reserved_ips/vip/value": "10.0.0.100",
			"cluster/cluster_id":                       "cl-a",
			"cluster/endpoints/redis/port":             "6379",
			"env/maxmemory":                            "100mb",
			"env/appendonly":                           "yes",
			"env/key/access_key_id":                    "AK",
			"roles/replica/env/maxmemory":              "200mb",
			"roles/replica/env/replica-only":           "r",
			"roles/master/env/master-only":             "m",
			"links/db/hosts/i-9/ip":                    "10.1.0.9",
			"adding-hosts/replica/i-3/ip":              "10.0.0.3",
		})
	roleless := merge(
		host("", "i-1", "cln-1", "10.0.0.1"),
		host("", "i-2", "cln-2", "10.0.0.2"),
		map[string]string{"env/port": "2181", "cluster/zone": "z1"},
	)

	for _, tc := range []struct {
		name    string
		tree    map[string]string
		nodeID  string
		keys    []string
		want    map[string]string
		absent  []string
		wantLen int // when > 0, the exact number of entries
	}{
		{
			name: "own host entry found by node id", tree: roled, nodeID: "cln-2", keys: []string{"/self/host/"},
			want: map[string]string{
				"/self/host/ip": "10.0.0.2", "/self/host/node_id": "cln-2", "/self/host/instance_id": "i-2",
				"/self/host/role": "replica", "/self/host/reserved_ips/vip/value": "10.0.0.100",
			},
			wantLen: 5,
		},
		{
			name: "role env wins over cluster env", tree: roled, nodeID: "cln-2", keys: []string{"/self/env"},
			want: map[string]string{
				"/self/env/maxmemory": "200mb", "/self/env/appendonly": "yes", "/self/env/replica-only": "r",
				"/self/env/key/access_key_id": "AK",
			},
			absent:  []string{"/self/env/master-only"},
			wantLen: 4,
		},
		{
			name: "another role sees its own env", tree: roled, nodeID: "cln-1", keys: []string{"/self/env/"},
			want:   map[string]string{"/self/env/maxmemory": "100mb", "/self/env/master-only": "m"},
			absent: []string{"/self/env/replica-only"},
		},
		{
			name: "whole view maps the cluster tree and hides roles", tree: roled, nodeID: "cln-1", keys: []string{"/self"},
			want: map[string]string{
				"/self/hosts/replica/i-3/ip":         "10.0.0.3",
				"/self/cluster/cluster_id":           "cl-a",
				"/self/cluster/endpoints/redis/port": "6379",
				"/self/links/db/hosts/i-9/ip":        "10.1.0.9",
				"/self/adding-hosts/replica/i-3/ip":  "10.0.0.3",
				"/self/host/ip":                      "10.0.0.1",
			},
			absent: []string{"/self/roles/replica/env/maxmemory", "/self/roles/master/env/master-only"},
		},
		{
			name: "key filtering is by prefix", tree: roled, nodeID: "cln-1", keys: []string{"/self/hosts/master", "/self/cluster/cluster_id"},
			want: map[string]string{
				"/self/hosts/master/i-1/ip": "10.0.0.1", "/self/cluster/cluster_id": "cl-a",
			},
			absent:  []string{"/self/hosts/replica/i-2/ip", "/self/host/ip", "/self/env/maxmemory"},
			wantLen: 5, // the four fields of i-1, and cluster_id
		},
		{
			name: "role-less layout", tree: roleless, nodeID: "cln-2", keys: []string{"/self/"},
			want: map[string]string{
				"/self/host/ip": "10.0.0.2", "/self/host/instance_id": "i-2",
				"/self/hosts/i-1/ip": "10.0.0.1", "/self/env/port": "2181", "/self/cluster/zone": "z1",
			},
		},
		{
			name: "unknown node has no host but the cluster env", tree: roled, nodeID: "cln-404", keys: []string{"/self/host/", "/self/env/"},
			want:    map[string]string{"/self/env/maxmemory": "100mb", "/self/env/appendonly": "yes", "/self/env/key/access_key_id": "AK"},
			absent:  []string{"/self/host/ip"},
			wantLen: 3,
		},
		{
			name: "prefix outside the view matches nothing", tree: roled, nodeID: "cln-1", keys: []string{"/clusters/"},
			wantLen: -1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cid := strings.NewReplacer(" ", "-").Replace(tc.name)
			put(t, c, "/clusters/"+cid+"/", tc.tree)
			// A neighbour cluster whose keys must never leak in.
			put(t, c, "/clusters/"+cid+"-other/", map[string]string{"hosts/master/i-7/node_id": tc.nodeID, "env/maxmemory": "leak"})
			v, err := New(Config{Client: c, ClusterID: cid, NodeID: tc.nodeID})
			if err != nil {
				t.Fatal(err)
			}
			run(t, v)
			got, err := v.StoreClient(context.Background()).GetValues(tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is present, want absent", k)
				}
			}
			switch {
			case tc.wantLen > 0 && len(got) != tc.wantLen, tc.wantLen < 0 && len(got) != 0:
				t.Errorf("got %d entries, want %d: %v", len(got), max(tc.wantLen, 0), slices.Sorted(maps.Keys(got)))
			}
		})
	}
}

func TestWatchPrefix(t *testing.T) {
	c := etcdtest.Client(t)
	v, err := New(Config{Client: c, ClusterID: "w", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, v)
	seen(t, v, put(t, c, "/clusters/w/", host("", "i-1", "cln-1", "10.0.0.1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := v.StoreClient(ctx)

	first, err := sc.WatchPrefix("/self", []string{"/self"}, 0, nil)
	if err != nil || first == 0 {
		t.Fatalf("first call: %d %v, want the current revision at once", first, err)
	}

	// A change elsewhere does not wake the watcher; one in the cluster does.
	type result struct {
		rev uint64
		err error
	}
	got := make(chan result, 1)
	go func() {
		rev, err := sc.WatchPrefix("/self", []string{"/self"}, first, nil)
		got <- result{rev, err}
	}()
	put(t, c, "/clusters/w-other/", map[string]string{"x": "1"})
	put(t, c, "/clusters/w/", map[string]string{"hosts/i-1/ip": "10.0.0.2"})
	select {
	case r := <-got:
		if r.err != nil || r.rev != first+2 {
			t.Fatalf("got %d %v, want revision %d", r.rev, r.err, first+2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch never fired")
	}

	// stopChan ends a watch that sees no change.
	stop := make(chan bool)
	go func() {
		rev, err := sc.WatchPrefix("/self", []string{"/self"}, first+2, stop)
		got <- result{rev, err}
	}()
	close(stop)
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("stopped watch: %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stopChan did not end the watch")
	}

	// And so does the client's context.
	cctx, ccancel := context.WithCancel(context.Background())
	go func() {
		rev, err := v.StoreClient(cctx).WatchPrefix("/self", nil, first+2, nil)
		got <- result{rev, err}
	}()
	ccancel()
	select {
	case r := <-got:
		if r.err == nil {
			t.Fatal("cancelled watch returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not end the watch")
	}

	// A client remembers the lowest revision its reads saw.
	sc = v.StoreClient(ctx)
	if _, err := sc.GetValues([]string{"/self"}); err != nil {
		t.Fatal(err)
	}
	put(t, c, "/clusters/w/", map[string]string{"hosts/i-1/ip": "10.0.0.3"})
	if _, err := sc.GetValues([]string{"/self"}); err != nil {
		t.Fatal(err)
	}
	if sc.Revision() != int64(first+2) {
		t.Fatalf("Revision() = %d, want %d (the first read's)", sc.Revision(), first+2)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := &clientv3.Client{}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ClusterID: "a", NodeID: "n"}, "Client"},
		{Config{Client: c, NodeID: "n"}, "cluster id"},
		{Config{Client: c, ClusterID: "a/b", NodeID: "n"}, "cluster id"},
		{Config{Client: c, ClusterID: "a"}, "NodeID"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestSealedValues(t *testing.T) {
	c := etcdtest.Client(t)
	key := bytes.Repeat([]byte{4}, secretbox.KeySize)
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(cluster, rel, plain string) string {
		return box.Seal(plain, "/clusters/"+cluster+"/"+rel)
	}
	good := merge(host("db", "i-1", "cln-1", "10.0.0.1"), map[string]string{
		"env/port":                "6379",
		"env/requirepass":         seal("cl-a", "env/requirepass", "s3cret"),
		"roles/db/env/admin_pass": seal("cl-a", "roles/db/env/admin_pass", "adm1n"),
	})
	put(t, c, "/clusters/cl-a/", good)

	v, err := New(Config{Client: c, ClusterID: "cl-a", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, v)
	ctx := context.Background()
	// No key yet: the sealed value is an error naming it, and a read that
	// does not touch it still works.
	if _, _, err := v.Values(ctx, []string{"/self/env"}); err == nil || !strings.Contains(err.Error(), "/clusters/cl-a/env/requirepass") || !strings.Contains(err.Error(), "no metadata key") {
		t.Fatalf("Values without a key: err = %v", err)
	}
	if got, _, err := v.Values(ctx, []string{"/self/host"}); err != nil || got["/self/host/ip"] != "10.0.0.1" {
		t.Fatalf("host read without a key = %v, %v", got, err)
	}

	if err := v.SetMetadataKey(key[:16]); err == nil {
		t.Fatal("a 16-byte metadata key was accepted")
	}
	if err := v.SetMetadataKey(key); err != nil {
		t.Fatal(err)
	}
	got, _, err := v.Values(ctx, []string{"/self/env"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/self/env/port": "6379", "/self/env/requirepass": "s3cret", "/self/env/admin_pass": "adm1n"}
	if !maps.Equal(got, want) {
		t.Fatalf("Values = %v, want %v", got, want)
	}

	// Key in Config works the same.
	v2, err := New(Config{Client: c, ClusterID: "cl-a", NodeID: "cln-1", MetadataKey: key})
	if err != nil {
		t.Fatal(err)
	}
	run(t, v2)
	if got, _, err := v2.Values(ctx, []string{"/self/env/requirepass"}); err != nil || got["/self/env/requirepass"] != "s3cret" {
		t.Fatalf("Values with Config.MetadataKey = %v, %v", got, err)
	}

	// Refused, naming the key: a tampered value, a value copied from
	// another key, a value sealed for another cluster.
	raw := []byte(good["env/requirepass"])
	raw[len(raw)-3] ^= 1
	for name, bad := range map[string]string{
		"tampered":          string(raw),
		"copied from a key": good["roles/db/env/admin_pass"],
		"other cluster":     seal("cl-b", "env/requirepass", "s3cret"),
	} {
		seen(t, v, put(t, c, "/clusters/cl-a/", map[string]string{"env/requirepass": bad}))
		_, _, err := v.Values(ctx, []string{"/self/env"})
		if err == nil || !strings.Contains(err.Error(), "/clusters/cl-a/env/requirepass") {
			t.Errorf("%s: err = %v, want one naming /clusters/cl-a/env/requirepass", name, err)
		}
	}
	if _, err := New(Config{Client: c, ClusterID: "cl-a", NodeID: "cln-1", MetadataKey: []byte("short")}); err == nil {
		t.Fatal("New accepted a short metadata key")
	}
}

// TestCopyFollowsTree checks the view's copy: reads wait for its first
// load, it follows puts and deletes in its cluster and ignores others, and
// a view never run says so instead of hanging.
func TestCopyFollowsTree(t *testing.T) {
	c := etcdtest.Client(t)
	put(t, c, "/clusters/f/", merge(host("", "i-1", "cln-1", "10.0.0.1"), host("", "i-2", "cln-2", "10.0.0.2")))
	v, err := New(Config{Client: c, ClusterID: "f", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, _, err = v.Values(ctx, []string{"/self"})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "Run was never called") {
		t.Fatalf("Values on a view never run: %v, want an error saying Run was never called", err)
	}

	// Sync is a load of its own: a delivery may come before Run could
	// read (a drone not yet allowed to), and it renders all the same.
	synced, err := New(Config{Client: c, ClusterID: "f", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := synced.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _, err := synced.Values(context.Background(), []string{"/self/host/ip"}); err != nil || got["/self/host/ip"] != "10.0.0.1" {
		t.Fatalf("Values after Sync on a view not run: %v %v", got, err)
	}

	// Running, but the etcd it reads is not answering yet: a read that
	// gives up says the tree is not loaded, an error worth retrying.
	slow, err := New(Config{Client: c, ClusterID: "f", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	slow.running.Store(true) // as if Run's first read were still under way
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _, err = slow.Values(ctx, []string{"/self"})
	cancel()
	if !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("Values before the first load: %v, want ErrNotLoaded", err)
	}

	run(t, v)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, rev, err := v.Values(ctx, []string{"/self/hosts"})
	if err != nil || got["/self/hosts/i-2/ip"] != "10.0.0.2" || rev == 0 {
		t.Fatalf("first load: %v rev %d %v", got, rev, err)
	}
	if err := v.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("a second Run at once: %v, want it refused", err)
	}

	// A change elsewhere is not applied.
	put(t, c, "/clusters/f-2/", map[string]string{"hosts/i-9/ip": "10.9.9.9"})
	// Puts and a delete in the cluster are.
	put(t, c, "/clusters/f/", host("", "i-3", "cln-3", "10.0.0.3"))
	del, err := c.Delete(ctx, "/clusters/f/hosts/i-2/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	seen(t, v, del.Header.Revision)
	got, _, err = v.Values(ctx, []string{"/self/hosts"})
	if err != nil {
		t.Fatal(err)
	}
	if got["/self/hosts/i-3/ip"] != "10.0.0.3" || got["/self/hosts/i-2/ip"] != "" || got["/self/hosts/i-9/ip"] != "" {
		t.Fatalf("after put and delete: %v", got)
	}
	if n := len(got); n != 8 {
		t.Fatalf("%d entries, want 8 (two hosts of four fields): %v", n, got)
	}

	// Sync: what etcd held when it was called is in the copy when it
	// returns, a change of this cluster or only of another (which moves
	// etcd's revision, not the tree: the watch's progress notification
	// says so).
	rev = put(t, c, "/clusters/f/", map[string]string{"env/x": "1"})
	if err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, seenRev, err := v.Values(ctx, []string{"/self/env"})
	if err != nil || got["/self/env/x"] != "1" || seenRev < rev {
		t.Fatalf("after a put and Sync: %v at %d (%v), want env x at %d or later", got, seenRev, err, rev)
	}
	other := put(t, c, "/clusters/f-2/", map[string]string{"env/y": "2"})
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync after another cluster's change: %v", err)
	}
	if _, seenRev, _ = v.Values(ctx, []string{"/self/env"}); seenRev < other {
		t.Fatalf("the copy is complete through %d after Sync, want %d", seenRev, other)
	}
}

// countingKV counts the whole-tree reads made through it.
type countingKV struct {
	clientv3.KV
	gets atomic.Int32
}

func (k *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if op := clientv3.OpGet(key, opts...); len(op.RangeBytes()) > 0 {
		k.gets.Add(1)
	}
	return k.KV.Get(ctx, key, opts...)
}

// TestRunWatchesFromSyncsRead: a Sync's read of the tree is where Run's
// watch starts, not a second read (a drone's first read is usually the Sync
// of pilot's delivery); changes after it arrive all the same. Once Run
// watches, a Sync reads nothing of the tree: it waits for the watch to
// catch up with etcd, and what was written before it is in the copy.
func TestRunWatchesFromSyncsRead(t *testing.T) {
	c := etcdtest.Client(t)
	put(t, c, "/clusters/f/", host("", "i-1", "cln-1", "10.0.0.1"))
	kv := &countingKV{KV: c.KV}
	c.KV = kv
	v, err := New(Config{Client: c, ClusterID: "f", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, v)
	rev := put(t, c, "/clusters/f/", host("", "i-2", "cln-2", "10.0.0.2"))
	seen(t, v, rev)
	got, _, err := v.Values(context.Background(), []string{"/self/hosts"})
	if err != nil || got["/self/hosts/i-2/ip"] != "10.0.0.2" || got["/self/hosts/i-1/ip"] != "10.0.0.1" {
		t.Fatalf("after a change: %v %v", got, err)
	}
	if n := kv.gets.Load(); n != 1 {
		t.Errorf("%d reads of the tree, want 1 (Sync's; Run watches from it)", n)
	}

	// Written without waiting for the watch, then Sync: the copy has it.
	put(t, c, "/clusters/f/", map[string]string{"env/y": "2"})
	if err := v.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _, err = v.Values(context.Background(), []string{"/self/env"})
	if err != nil || got["/self/env/y"] != "2" {
		t.Fatalf("after Sync: %v %v; want env/y = 2", got, err)
	}
	if n := kv.gets.Load(); n != 1 {
		t.Errorf("%d reads of the tree after a Sync on a running view, want still 1", n)
	}
}
