// Package metaview presents one node's view of its cluster's metadata, as
// AppCenter templates expect it: the frontgate keeps a cluster's tree under
// /clusters/<cluster_id>/ in etcd, and this package maps it to /self/…, with
// /self/host being the node's own host entry and /self/env the cluster env
// overlaid with the node's role env (the mapping is internal/selfview's,
// shared with `hangar app render`). It also serves the view the way
// confd's backends do (StoreClient: GetValues and WatchPrefix), so the
// renderer reads it as confd reads its stores.
//
// The view keeps a copy of the tree, fed by one watch (Run): one full read
// when it starts, then the changes. A render reads the copy, not etcd, so a
// 1,000-node cluster's drones do not each read its 17,000 keys again for
// every template on every change, and their first reads do not time out
// against one frontgate's etcd when they all start at once.
//
// Secret values (password env) are stored sealed ("enc:v1:…", see
// internal/secretbox) with the cluster's metadata key, bound to their etcd
// key; the view opens those it serves with that key, so templates see them
// in clear while etcd never holds them so.
package metaview

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/internal/selfview"
)

// Root is the key prefix of the view.
const Root = selfview.Root

// defaultCallTimeout is as long as a first load may take: a render asked
// for while a thousand drones load their trees at once waits its turn
// rather than failing.
const defaultCallTimeout = loadTimeout

// loadTimeout bounds one full read of the tree. It is generous: when a
// thousand drones start at once their reads queue at one etcd, and a read
// given up and retried only adds to the queue.
const loadTimeout = 2 * time.Minute

// Config describes a View.
type Config struct {
	Client    *clientv3.Client
	ClusterID string
	// NodeID is this node's stable id; its host entry is the one whose
	// node_id field equals it.
	NodeID string
	// CallTimeout bounds how long a StoreClient's calls, which carry no
	// context, wait for the copy's first load (default 2m).
	CallTimeout time.Duration
	// MetadataKey opens the cluster's sealed values; it may also be set
	// later with SetMetadataKey. Without it a sealed value is an error.
	MetadataKey []byte
}

// View is the /self view of one node, served from a copy of the cluster's
// tree that Run keeps current.
type View struct {
	c       *clientv3.Client
	prefix  string
	nodeID  string
	timeout time.Duration
	// box opens sealed values; nil until a key is set. It is swapped
	// whole, as pilot delivers a key while renders run.
	box atomic.Pointer[secretbox.Box]

	running atomic.Bool
	mu      sync.Mutex
	tree    map[string]string // keys relative to prefix
	rev     int64             // the revision of the last change applied; 0 before the first load
	// seen is the revision the copy is complete through (no change of the
	// tree up to it is missing): rev, or later when the watch said so
	// (a progress notification) or the load was read there.
	seen int64
	// fresh is the revision of a whole read (a Sync's) that no watch has
	// started from yet, or 0: Run's next watch starts there instead of
	// reading the tree again. A drone's first read that works is usually
	// the Sync of pilot's first delivery (before it, the cluster does not
	// let the drone read), and a second read of the same tree by every
	// drone doubled what a 1,000-node cluster's frontgate served.
	fresh int64
	// watch is the context of Run's live watch (nil when there is none):
	// Sync asks that watch's stream for a progress notification.
	watch context.Context
	// changed is closed, and replaced, whenever rev or seen advances.
	changed chan struct{}
	// kick ends Run's wait after a failed read when a Sync read the tree.
	kick chan struct{}
}

// New checks cfg and returns the view.
func New(cfg Config) (*View, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("metaview: Client is required")
	case cfg.ClusterID == "" || strings.Contains(cfg.ClusterID, "/"):
		return nil, fmt.Errorf("metaview: cluster id %q must be non-empty and contain no '/'", cfg.ClusterID)
	case cfg.NodeID == "":
		return nil, errors.New("metaview: NodeID is required")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = defaultCallTimeout
	}
	v := &View{
		c:       cfg.Client,
		prefix:  "/clusters/" + cfg.ClusterID + "/",
		nodeID:  cfg.NodeID,
		timeout: cfg.CallTimeout,
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	if cfg.MetadataKey != nil {
		if err := v.SetMetadataKey(cfg.MetadataKey); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// SetMetadataKey sets the key that opens the cluster's sealed values (the
// 32 bytes pilot sends in ConfigureRenderer.metadata_key).
func (v *View) SetMetadataKey(key []byte) error {
	b, err := secretbox.New(key)
	if err != nil {
		return fmt.Errorf("metaview: metadata key: %w", err)
	}
	v.box.Store(b)
	return nil
}

// ClusterPrefix is the etcd prefix the view is built from.
func (v *View) ClusterPrefix() string { return v.prefix }

// Run keeps the view's copy of the tree current until ctx ends: it reads
// the tree whole, then applies the changes its watch reports, and reads it
// whole again when the watch fails or falls behind a compaction. The reads
// below wait for its first load. One Run at a time: a view may be run
// again after an earlier Run has ended (a renderer closed and replaced).
func (v *View) Run(ctx context.Context) error {
	if !v.running.CompareAndSwap(false, true) {
		return errors.New("metaview: Run is already running")
	}
	defer v.running.Store(false)
	bo := backoff.New(200*time.Millisecond, 15*time.Second)
	for {
		loaded, err := v.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if loaded {
			bo.Reset()
		}
		if errors.Is(err, errCompacted) {
			continue
		}
		// Until the next load succeeds, reads serve the last copy: its
		// revision tells pilot how current this node is.
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-v.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

var errCompacted = errors.New("watch fell behind a compaction")

// ErrNotLoaded is returned (wrapped) by a read that ended before the
// view's first load, or a Sync that ended before the copy caught up: the
// metadata may be there, this drone has not read it yet, and asking again
// later can succeed.
var ErrNotLoaded = errors.New("metadata not loaded yet")

// follow loads the tree and applies its changes until the watch ends. It
// reports whether the load succeeded.
func (v *View) follow(ctx context.Context) (bool, error) {
	v.mu.Lock()
	rev := v.fresh
	v.fresh = 0
	v.mu.Unlock()
	if rev == 0 {
		lctx, cancel := context.WithTimeout(ctx, loadTimeout)
		var err error
		rev, err = v.load(lctx)
		cancel()
		if err != nil {
			return false, err
		}
		v.mu.Lock()
		if v.fresh == rev {
			v.fresh = 0 // this watch starts from it
		}
		v.mu.Unlock()
	}

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := v.c.Watch(wctx, v.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	v.mu.Lock()
	v.watch = wctx
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.watch = nil
		v.mu.Unlock()
	}()
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return true, errCompacted
		}
		if err := wr.Err(); err != nil {
			return true, fmt.Errorf("watch %s: %w", v.prefix, err)
		}
		v.mu.Lock()
		if len(wr.Events) == 0 {
			// A progress notification: nothing changed up to its revision.
			v.advance(0, wr.Header.Revision)
			v.mu.Unlock()
			continue
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision <= v.seen {
				continue // a Sync read the tree later than this change
			}
			k := strings.TrimPrefix(string(ev.Kv.Key), v.prefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(v.tree, k)
			} else {
				v.tree[k] = string(ev.Kv.Value)
			}
		}
		v.advance(wr.Header.Revision, wr.Header.Revision)
		v.mu.Unlock()
	}
	return true, fmt.Errorf("watch %s: closed", v.prefix)
}

// advance moves the copy's change revision (0: no change) and the
// revision it is complete through forward, and wakes the waiters. The
// caller holds mu.
func (v *View) advance(rev, seen int64) {
	moved := false
	if rev > v.rev {
		v.rev, moved = rev, true
	}
	if seen = max(seen, v.rev); seen > v.seen {
		v.seen, moved = seen, true
	}
	if moved {
		close(v.changed)
		v.changed = make(chan struct{})
	}
}

// await returns once the copy's change revision is above after, with the
// lock held, or ctx's error (or stop's firing, as ok=false) without it.
func (v *View) await(ctx context.Context, after int64, stop <-chan bool) (ok bool, err error) {
	return v.awaitCond(ctx, stop, func() bool { return v.rev > after })
}

// Sync brings the copy up to what etcd holds now: a render right after it
// sees what pilot wrote before asking for it (a confd delivery follows the
// metadata's registration), as a read of etcd itself would. With Run's
// watch live it waits for that watch to catch up (syncByProgress), for at
// most progressWait: etcd catches up watchers that started behind every
// 100 ms, a batch at a time, which a thousand drones starting at once all
// are. Otherwise it reads the tree whole, once, which serves as the first
// load when Run has not made it yet (a drone may only read its cluster
// once pilot registered it as a reader, which a delivery follows).
func (v *View) Sync(ctx context.Context) error {
	if v.syncByProgress(ctx) {
		return nil
	}
	if _, err := v.load(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLoaded, err)
	}
	// The tree is readable now: a Run waiting out a failed first read (a
	// drone may start before its cluster lets it read) retries at once.
	select {
	case v.kick <- struct{}{}:
	default:
	}
	return nil
}

// progressWait is how long Sync waits for Run's watch to say it has caught
// up before it reads the tree whole instead.
const progressWait = 2 * time.Second

// syncByProgress brings the copy up to etcd's current revision through
// Run's live watch: it reads that revision with a point read (nothing of
// the tree) and asks the watch for a progress notification, which etcd
// sends once the watch has delivered every change up to it. A read of the
// whole tree by every drone at each delivery (about 2 MB for each of the
// 1,000 drones of a 1,000-node cluster) was most of what their frontgate
// served.
// It reports false when there is no live watch or it did not catch up
// within progressWait: Sync then reads the tree whole.
func (v *View) syncByProgress(ctx context.Context) bool {
	v.mu.Lock()
	wctx := v.watch
	v.mu.Unlock()
	if wctx == nil {
		return false
	}
	resp, err := v.c.Get(ctx, v.prefix) // the prefix itself is no key of the tree
	if err != nil {
		return false
	}
	if err := v.c.RequestProgress(wctx); err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, progressWait)
	defer cancel()
	rev := resp.Header.Revision
	ok, err := v.awaitCond(pctx, nil, func() bool { return v.seen >= rev })
	if ok {
		v.mu.Unlock()
	}
	return ok && err == nil
}

// load reads the tree whole and makes it the copy, unless the copy is
// already later (Run's load and Sync's race); the watch's events up to the
// read's revision are then skipped when they arrive (follow). The read
// counts as a change, so the render loop looks again: a tree re-read after
// a broken watch may differ by deletes no event will report. It returns
// the read's revision.
func (v *View) load(ctx context.Context) (int64, error) {
	tree, rev, err := v.readTree(ctx)
	if err != nil {
		return 0, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if rev > v.seen {
		v.tree = tree
		v.advance(rev, rev)
		// A watch from rev+1 on misses nothing of this copy; events it
		// replays that the copy holds already are skipped (follow).
		v.fresh = rev
	}
	return rev, nil
}

// readTree reads the tree whole, in one response.
func (v *View) readTree(ctx context.Context) (map[string]string, int64, error) {
	resp, err := v.c.Get(ctx, v.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", v.prefix, err)
	}
	tree := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		tree[strings.TrimPrefix(string(kv.Key), v.prefix)] = string(kv.Value)
	}
	return tree, resp.Header.Revision, nil
}

func (v *View) awaitCond(ctx context.Context, stop <-chan bool, cond func() bool) (ok bool, err error) {
	for {
		v.mu.Lock()
		if cond() {
			return true, nil
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ctx.Done():
			v.mu.Lock()
			loaded := v.rev > 0
			v.mu.Unlock()
			switch {
			case !v.running.Load():
				return false, fmt.Errorf("metaview of %s: not running (Run was never called): %w", v.prefix, ctx.Err())
			case !loaded:
				return false, fmt.Errorf("metaview of %s: %w: %w", v.prefix, ErrNotLoaded, ctx.Err())
			}
			return false, fmt.Errorf("metaview of %s: %w", v.prefix, ctx.Err())
		case <-stop:
			return false, nil
		case <-ch:
		}
	}
}

// Values returns every view entry whose key starts with one of prefixes
// (string prefixes, as confd's etcd backend matches them: "/self/host" also
// matches "/self/hosts/…"), from the copy, and the revision the copy is
// complete through. It waits for the copy's first load. Sealed values are returned
// opened; one that does not open is an error naming its etcd key, never
// passed on as ciphertext.
func (v *View) Values(ctx context.Context, prefixes []string) (map[string]string, int64, error) {
	if _, err := v.await(ctx, 0, nil); err != nil {
		return nil, 0, err
	}
	defer v.mu.Unlock()
	tree := v.tree
	box := v.box.Load()
	out := map[string]string{}
	var errs []error
	for k, src := range selfview.Sources(v.nodeID, tree) {
		for _, p := range prefixes {
			if !strings.HasPrefix(k, p) {
				continue
			}
			// Only served values are opened, so an unrelated bad value
			// does not stop templates that never read it.
			val, err := v.open(box, src, tree[src])
			if err != nil {
				errs = append(errs, err)
			}
			out[k] = val
			break
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, 0, errors.Join(errs...)
	}
	return out, v.seen, nil
}

// open returns a tree value, opened when sealed. The associated data is the
// value's etcd key, so a value copied to another key or cluster fails.
func (v *View) open(box *secretbox.Box, rel, val string) (string, error) {
	if !secretbox.IsSealed(val) {
		return val, nil
	}
	key := v.prefix + rel
	if box == nil {
		return "", fmt.Errorf("metadata %s is encrypted and this drone has no metadata key yet (pilot sends it with the confd delivery)", key)
	}
	plain, err := box.Open(val, key)
	if err != nil {
		return "", fmt.Errorf("metadata %s: %w", key, err)
	}
	return plain, nil
}

// Revision returns the revision the copy is complete through, once it is
// loaded.
func (v *View) Revision(ctx context.Context) (int64, error) {
	if _, err := v.await(ctx, 0, nil); err != nil {
		return 0, err
	}
	defer v.mu.Unlock()
	return v.seen, nil
}

// WaitChange blocks until something under the cluster prefix changes after
// revision after, and returns the revision the copy is then complete
// through.
func (v *View) WaitChange(ctx context.Context, after int64) (int64, error) {
	return v.waitChange(ctx, after, nil)
}

func (v *View) waitChange(ctx context.Context, after int64, stop <-chan bool) (int64, error) {
	ok, err := v.await(ctx, after, stop)
	if !ok {
		return after, err
	}
	defer v.mu.Unlock()
	return v.seen, nil
}

// StoreClient adapts the view to confd. Its calls end when ctx does.
func (v *View) StoreClient(ctx context.Context) *StoreClient {
	return &StoreClient{v: v, ctx: ctx}
}

// StoreClient serves a View with the two calls of confd's
// backends.StoreClient.
type StoreClient struct {
	v *View
	// ctx is kept because confd's interface carries none; it is the
	// lifetime of the render that created this client.
	ctx context.Context
	rev atomic.Int64
}

// GetValues returns the view entries under any of keys (confd passes the
// prefix joined with each of the template's keys).
func (s *StoreClient) GetValues(keys []string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.v.timeout)
	defer cancel()
	vals, rev, err := s.v.Values(ctx, keys)
	if err != nil {
		return nil, err
	}
	for {
		old := s.rev.Load()
		if (old != 0 && old <= rev) || s.rev.CompareAndSwap(old, rev) {
			break
		}
	}
	return vals, nil
}

// WatchPrefix blocks until the cluster's metadata changes after waitIndex
// (returning the new revision) or stopChan fires. A zero waitIndex returns
// the current revision at once, so the first render happens immediately.
func (s *StoreClient) WatchPrefix(_ string, _ []string, waitIndex uint64, stopChan chan bool) (uint64, error) {
	if waitIndex == 0 {
		ctx, cancel := context.WithTimeout(s.ctx, s.v.timeout)
		defer cancel()
		rev, err := s.v.Revision(ctx)
		return uint64(rev), err
	}
	rev, err := s.v.waitChange(s.ctx, int64(waitIndex), stopChan)
	return uint64(rev), err
}

// Revision is the lowest etcd revision a GetValues through this client has
// read (0 before any): every read reflects all changes up to it, so a watch
// from there misses nothing a render through this client did not see.
func (s *StoreClient) Revision() int64 { return s.rev.Load() }
