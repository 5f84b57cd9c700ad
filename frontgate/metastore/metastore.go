// Package metastore keeps the clusters' metadata trees in the frontgate's
// etcd, under /clusters/<cluster_id>/. Every change of a tree is written as
// one etcd transaction, so the drones' confd watchers see a change whole or
// not at all, never half a scale-out.
package metastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/limits"
)

// Root is the etcd prefix holding every cluster's tree.
const Root = "/clusters/"

// DefaultMaxTxnOps is etcd's default limit on the operations of one
// transaction (embed.DefaultMaxTxnOps); a member started with a larger
// --max-txn-ops lets Options.MaxTxnOps grow with it.
const DefaultMaxTxnOps = 128

// maxAttempts bounds retries after conflicting writes, so two writers that
// keep racing end in an error instead of spinning.
const maxAttempts = 16

var (
	// ErrInvalid marks a cluster id or key that is not allowed.
	ErrInvalid = errors.New("invalid metadata")
	// ErrTooManyOps marks a change larger than one etcd transaction may be.
	ErrTooManyOps = errors.New("change too large for one etcd transaction")
	// ErrTooLarge marks a tree with more bytes than Options.MaxBytes. It is
	// an ErrInvalid too: the same tree would always be refused.
	ErrTooLarge = fmt.Errorf("%w: tree too large", ErrInvalid)
	// ErrNoTree marks a subtree applied to a cluster that has no tree (never
	// registered, or deleted): it is not created from the subtree alone.
	ErrNoTree = errors.New("cluster has no metadata tree")
	// ErrConflict marks a change that lost the race against other writers
	// maxAttempts times in a row.
	ErrConflict = errors.New("concurrent writes kept conflicting")
)

// Options configure a Store.
type Options struct {
	Logger *slog.Logger
	// MaxTxnOps is the etcd member's transaction limit (default
	// DefaultMaxTxnOps). A change needing more puts and deletes fails with
	// ErrTooManyOps rather than being split, which would expose half of it.
	MaxTxnOps int
	// MaxBytes bounds a cluster's whole tree in one Apply: the sum of each
	// key's full etcd path and value (default limits.MaxMetadataBytes).
	// The tree is written in one transaction and read whole by every drone
	// of the cluster, so a larger one is refused before etcd sees it.
	MaxBytes int
}

// Store reads and writes cluster trees through an etcd client.
type Store struct {
	kv       clientv3.KV
	log      *slog.Logger
	maxOps   int
	maxBytes int

	mu    sync.Mutex
	locks map[string]*clusterLock
}

type clusterLock struct {
	mu   sync.Mutex
	refs int
}

// Result describes what Apply wrote.
type Result struct {
	// Puts and Deletes count the keys written and removed.
	Puts, Deletes int
	// Revision is the etcd revision of the change or, when nothing
	// changed, of the tree's last change (see ChangesPrefix).
	Revision int64
}

// Changed reports whether Apply wrote anything.
func (r Result) Changed() bool { return r.Puts+r.Deletes > 0 }

// New returns a Store writing through kv (usually a *clientv3.Client).
func New(kv clientv3.KV, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = DefaultMaxTxnOps
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = limits.MaxMetadataBytes
	}
	return &Store{kv: kv, log: opts.Logger, maxOps: opts.MaxTxnOps, maxBytes: opts.MaxBytes, locks: map[string]*clusterLock{}}
}

// Prefix is the etcd prefix of a cluster's tree, with its trailing slash so
// that cluster "c-1" never matches the keys of "c-10".
func Prefix(clusterID string) string { return Root + clusterID + "/" }

// ChangesPrefix holds one key per cluster, written by every change of its
// tree in the same transaction: its mod revision is the revision of the
// tree's last change, which a read of the tree alone cannot tell after a
// change that only deleted keys. It lies outside Root, so no drone reads it.
const ChangesPrefix = "/frontgate/changes/"

func changeKey(clusterID string) string { return ChangesPrefix + clusterID }

// ValidateClusterID checks that id may name a cluster's tree.
func ValidateClusterID(id string) error {
	if p := ClusterIDProblem(id); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, p)
	}
	return nil
}

// ClusterIDProblem says what is wrong with id as a cluster id ("" when
// nothing is), for the packages that check it with errors of their own.
func ClusterIDProblem(id string) string {
	if id == "" {
		return "cluster_id is required"
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Sprintf("cluster_id %q: only lowercase letters, digits and '-' are allowed", id)
		}
	}
	return ""
}

// ValidateKey checks a key relative to a cluster's prefix, such as
// "hosts/master/i-1/ip".
func ValidateKey(key string) error {
	const allowed = `keys are relative paths like "hosts/master/i-1/ip": UTF-8 without control characters, no leading "/", no empty, "." or ".." segment`
	if key == "" {
		return fmt.Errorf("%w: empty key; %s", ErrInvalid, allowed)
	}
	// Control characters would pass into confd's key lookups and rendered
	// files (a newline in a key splits a config line in two).
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key %q is not valid UTF-8; %s", ErrInvalid, key, allowed)
	}
	if i := strings.IndexFunc(key, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%w: key %q has control character %U at byte %d; %s", ErrInvalid, key, []rune(key[i:])[0], i, allowed)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w: key %q starts with \"/\"; %s", ErrInvalid, key, allowed)
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: key %q has an empty segment; %s", ErrInvalid, key, allowed)
		case ".", "..":
			return fmt.Errorf("%w: key %q has a %q segment; %s", ErrInvalid, key, seg, allowed)
		}
	}
	return nil
}

// lastChange is the revision of the last change of clusterID's tree (0:
// never changed).
func (s *Store) lastChange(ctx context.Context, clusterID string) (int64, error) {
	got, err := s.kv.Get(ctx, changeKey(clusterID))
	if err != nil {
		return 0, fmt.Errorf("read the last change of cluster %s: %w", clusterID, err)
	}
	if len(got.Kvs) == 0 {
		return 0, nil
	}
	return got.Kvs[0].ModRevision, nil
}

// Apply makes the tree of clusterID equal to kvs (keys relative to its
// prefix): one transaction puts the new and changed keys and deletes the
// keys kvs no longer holds. It is guarded on the tree not having been
// written since it was read, and retried when it was. Nothing is written
// when the tree already equals kvs.
func (s *Store) Apply(ctx context.Context, clusterID string, kvs map[string]string) (Result, error) {
	return s.ApplyUnder(ctx, clusterID, "", kvs)
}

// ApplyUnder is Apply for the keys of clusterID's tree that start with
// under ("" is the whole tree, else a valid key followed by "/", like
// "links/"): those become equal to kvs, every key of which must start with
// under, and the others stay as they are. The size limit counts the whole
// tree as it will be. A cluster without a tree gets none (ErrNoTree): a
// subtree applied after the cluster's metadata was deleted must not leave
// an orphan.
func (s *Store) ApplyUnder(ctx context.Context, clusterID, under string, kvs map[string]string) (Result, error) {
	if err := ValidateClusterID(clusterID); err != nil {
		return Result{}, err
	}
	if under != "" {
		if err := ValidateKey(strings.TrimSuffix(under, "/")); err != nil || !strings.HasSuffix(under, "/") {
			return Result{}, fmt.Errorf("%w: cluster %s: subtree %q: give a key followed by \"/\", like \"links/\"", ErrInvalid, clusterID, under)
		}
	}
	keys := make([]string, 0, len(kvs))
	size := 0
	for k, v := range kvs {
		if err := ValidateKey(k); err != nil {
			return Result{}, fmt.Errorf("cluster %s: %w", clusterID, err)
		}
		if !strings.HasPrefix(k, under) {
			return Result{}, fmt.Errorf("%w: cluster %s: key %q lies outside the subtree %q being applied", ErrInvalid, clusterID, k, under)
		}
		keys = append(keys, k)
		size += len(Prefix(clusterID)) + len(k) + len(v)
	}
	if size > s.maxBytes {
		return Result{}, fmt.Errorf("apply metadata of cluster %s: %d keys take %d bytes with their paths, more than the %d allowed: %w",
			clusterID, len(kvs), size, s.maxBytes, ErrTooLarge)
	}
	// Sorted so that the transaction, and the watch events it produces, come
	// in a stable order.
	sort.Strings(keys)

	unlock := s.lock(clusterID)
	defer unlock()

	prefix := Prefix(clusterID)
	for attempt := 1; ; attempt++ {
		got, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return Result{}, fmt.Errorf("read metadata of cluster %s: %w", clusterID, err)
		}
		rev := got.Header.Revision
		if under != "" && len(got.Kvs) == 0 {
			return Result{}, fmt.Errorf("apply metadata of cluster %s under %q: %w", clusterID, under, ErrNoTree)
		}
		stored := make(map[string]string, len(got.Kvs))
		for _, kv := range got.Kvs {
			stored[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
		}

		var ops []clientv3.Op
		var res Result
		for _, k := range keys {
			if old, ok := stored[k]; !ok || old != kvs[k] {
				ops = append(ops, clientv3.OpPut(prefix+k, kvs[k]))
				res.Puts++
			}
		}
		// The bytes of the tree as it will be.
		kept := size
		for _, kv := range got.Kvs { // already in key order
			k := strings.TrimPrefix(string(kv.Key), prefix)
			if !strings.HasPrefix(k, under) {
				kept += len(kv.Key) + len(kv.Value)
				continue
			}
			if _, keep := kvs[k]; !keep {
				ops = append(ops, clientv3.OpDelete(prefix+k))
				res.Deletes++
			}
		}
		if len(ops) == 0 {
			// Unchanged: the revision of the last change, so a caller that
			// re-applies after a lost answer learns the same revision.
			if res.Revision, err = s.lastChange(ctx, clusterID); err != nil {
				return Result{}, err
			}
			return res, nil
		}
		if kept > s.maxBytes {
			return Result{}, fmt.Errorf("apply metadata of cluster %s under %q: the tree would take %d bytes with its paths, more than the %d allowed: %w",
				clusterID, under, kept, s.maxBytes, ErrTooLarge)
		}
		ops = append(ops, clientv3.OpPut(changeKey(clusterID), ""))
		if len(ops) > s.maxOps {
			return Result{}, fmt.Errorf("apply metadata of cluster %s: %d puts and %d deletes, the etcd member allows %d operations per transaction: %w",
				clusterID, res.Puts, res.Deletes, s.maxOps, ErrTooManyOps)
		}

		// Every key under the prefix must still be as read: its mod revision
		// is at most the revision of our read.
		guard := clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix()
		tr, err := s.kv.Txn(ctx).If(guard).Then(ops...).Commit()
		if err != nil {
			if errors.Is(err, rpctypes.ErrTooManyOps) {
				return Result{}, fmt.Errorf("apply metadata of cluster %s: %d operations: %w (%v)", clusterID, len(ops), ErrTooManyOps, err)
			}
			return Result{}, fmt.Errorf("write metadata of cluster %s: %w", clusterID, err)
		}
		if tr.Succeeded {
			res.Revision = tr.Header.Revision
			s.log.Debug("metadata applied", "cluster_id", clusterID, "puts", res.Puts, "deletes", res.Deletes, "revision", res.Revision)
			return res, nil
		}
		if attempt >= maxAttempts {
			return Result{}, fmt.Errorf("apply metadata of cluster %s after %d attempts: %w", clusterID, attempt, ErrConflict)
		}
		s.log.Debug("metadata changed while applying; retrying", "cluster_id", clusterID, "attempt", attempt)
	}
}

// Delete removes the whole tree of clusterID; deleting an absent tree is
// not an error, so pilot may repeat it.
func (s *Store) Delete(ctx context.Context, clusterID string) (deleted int64, err error) {
	if err := ValidateClusterID(clusterID); err != nil {
		return 0, err
	}
	unlock := s.lock(clusterID)
	defer unlock()
	resp, err := s.kv.Txn(ctx).Then(clientv3.OpDelete(Prefix(clusterID), clientv3.WithPrefix()), clientv3.OpDelete(changeKey(clusterID))).Commit()
	if err != nil {
		return 0, fmt.Errorf("delete metadata of cluster %s: %w", clusterID, err)
	}
	deleted = resp.Responses[0].GetResponseDeleteRange().GetDeleted()
	s.log.Debug("metadata deleted", "cluster_id", clusterID, "keys", deleted)
	return deleted, nil
}

// lock serialises the writers of one cluster in this process. The
// transaction guard alone cannot see a concurrent delete-only change (a
// deleted key leaves no mod revision to compare), so two Applies racing in
// one frontgate could otherwise lose a key.
func (s *Store) lock(clusterID string) (unlock func()) {
	s.mu.Lock()
	l := s.locks[clusterID]
	if l == nil {
		l = &clusterLock{}
		s.locks[clusterID] = l
	}
	l.refs++
	s.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.locks, clusterID)
		}
		s.mu.Unlock()
	}
}
