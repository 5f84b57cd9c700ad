package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/pki"
)

// RevocationsPrefix is where revocations live in pilot's etcd:
// <prefix><kind>/<id>.
const RevocationsPrefix = "/hangar/revocations/"

// maxReasonBytes bounds a revocation's reason (it is shown in listings).
const maxReasonBytes = 1024

// revocationRecord is the stored form of a revocation.
type revocationRecord struct {
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Time   time.Time `json:"time"`
}

// Revocations is the set of revoked frontgates and drones. A drone is
// revoked by node id (in whichever cluster), a frontgate by frontgate id.
// The set is read from etcd at construction and kept current by a watch,
// so IsRevoked never waits on etcd; Close stops the watch.
type Revocations struct {
	c   *clientv3.Client
	log *slog.Logger

	mu      sync.RWMutex
	revoked map[string]bool // setKey(kind, id)

	cancel context.CancelFunc
	done   chan struct{}
}

// NewRevocations loads the revocations from c (the caller keeps ownership
// of c) and watches them until Close.
func NewRevocations(ctx context.Context, c *clientv3.Client, log *slog.Logger) (*Revocations, error) {
	if c == nil {
		return nil, errors.New("revocations: etcd client is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Revocations{c: c, log: log, done: make(chan struct{})}
	rev, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.watch(wctx, rev)
	return r, nil
}

// Close stops the watch and waits for it.
func (r *Revocations) Close() {
	r.cancel()
	<-r.done
}

func setKey(kind pki.Kind, id string) string { return string(kind) + "/" + id }

// RevocationKey is the etcd key of a revocation.
func RevocationKey(kind pki.Kind, id string) string { return RevocationsPrefix + setKey(kind, id) }

// load replaces the set with etcd's and returns the revision it reflects.
func (r *Revocations) load(ctx context.Context) (int64, error) {
	resp, err := r.c.Get(ctx, RevocationsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("load revocations: %w", err)
	}
	set := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		set[strings.TrimPrefix(string(kv.Key), RevocationsPrefix)] = true
	}
	r.mu.Lock()
	r.revoked = set
	r.mu.Unlock()
	return resp.Header.Revision, nil
}

// watch applies changes after rev until ctx ends. When the watch breaks
// (compaction, lost leader) it reloads the whole set and starts over, so a
// revocation is never missed for long.
func (r *Revocations) watch(ctx context.Context, rev int64) {
	defer close(r.done)
	b := backoff.New(100*time.Millisecond, 10*time.Second)
	for {
		wctx, cancel := context.WithCancel(ctx)
		for resp := range r.c.Watch(wctx, RevocationsPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				r.log.Warn("revocations watch broke; reloading", "err", err)
				break
			}
			r.mu.Lock()
			for _, ev := range resp.Events {
				k := strings.TrimPrefix(string(ev.Kv.Key), RevocationsPrefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(r.revoked, k)
				} else {
					r.revoked[k] = true
				}
			}
			r.mu.Unlock()
			b.Reset()
		}
		cancel()
		for {
			if ctx.Err() != nil {
				return
			}
			if backoff.Sleep(ctx, b.Next()) != nil {
				return
			}
			var err error
			if rev, err = r.load(ctx); err == nil {
				break
			} else if ctx.Err() == nil {
				r.log.Warn("revocations reload failed; retrying", "err", err)
			}
		}
	}
}

// IsRevoked reports whether id has been revoked. Pilot itself cannot be.
func (r *Revocations) IsRevoked(id pki.Identity) bool {
	if id.Kind != pki.KindFrontgate && id.Kind != pki.KindDrone {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revoked[setKey(id.Kind, id.ID)]
}

// Revoke records that the frontgate or drone (node) id is revoked, by whom
// and why. Revoking again keeps the first record and is not an error.
// Disconnecting the identity is the caller's part; every later handshake,
// join and renewal checks IsRevoked.
func (r *Revocations) Revoke(ctx context.Context, kind pki.Kind, id, reason, by string) error {
	// Refusals wrap ErrInvalid, so Status answers InvalidArgument naming
	// the field: a bad request is the caller's to fix, not pilot's to retry.
	if kind != pki.KindFrontgate && kind != pki.KindDrone {
		return refuse(ErrInvalid, "kind %q: want frontgate or drone", kind)
	}
	if id == "" {
		return refuse(ErrInvalid, "id: required (the frontgate id, or the drone's node id)")
	}
	// pki's id rule, borrowed through a throwaway identity.
	if (pki.Identity{Kind: pki.KindDrone, ID: id, Cluster: "x"}).Validate() != nil {
		return refuse(ErrInvalid, "id %q: 1 to 128 letters, digits, '.', '_' and '-', starting with a letter or digit", id)
	}
	if len(reason) > maxReasonBytes {
		return refuse(ErrInvalid, "reason: %d bytes, at most %d allowed", len(reason), maxReasonBytes)
	}
	val, err := json.Marshal(revocationRecord{Kind: string(kind), ID: id, Reason: reason, By: by, Time: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("revoke %s %s: %w", kind, id, err)
	}
	key := RevocationKey(kind, id)
	if _, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit(); err != nil {
		return fmt.Errorf("revoke %s %s: %w", kind, id, err)
	}
	// Effective here at once; the watch brings it to other replicas.
	r.mu.Lock()
	r.revoked[setKey(kind, id)] = true
	r.mu.Unlock()
	r.log.Warn("identity revoked", "kind", string(kind), "id", id, "reason", reason, "by", by)
	return nil
}

// List returns the revocations, oldest first.
func (r *Revocations) List(ctx context.Context) ([]*pilotv1.Revocation, error) {
	resp, err := r.c.Get(ctx, RevocationsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	type item struct {
		t time.Time
		r *pilotv1.Revocation
	}
	items := make([]item, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec revocationRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			// Written by hand (etcdctl)? It still revokes; show what we know.
			kind, id, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), RevocationsPrefix), "/")
			rec = revocationRecord{Kind: kind, ID: id, Reason: "(unreadable record)"}
		}
		items = append(items, item{rec.Time, &pilotv1.Revocation{
			Kind: rec.Kind, Id: rec.ID, Reason: rec.Reason, By: rec.By, Time: timestamppb.New(rec.Time),
		}})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.t.Compare(b.t) })
	out := make([]*pilotv1.Revocation, len(items))
	for i, it := range items {
		out[i] = it.r
	}
	return out, nil
}
