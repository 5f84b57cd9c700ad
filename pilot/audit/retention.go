package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/sortid"
)

// Pilot's retention defaults: a quarter of history, and a cap that keeps
// one busy tenant from filling pilot's etcd.
const (
	DefaultMaxAge              = 90 * 24 * time.Hour
	DefaultMaxEntriesPerTenant = 100000
	// DefaultPruneInterval is how often RunRetention prunes: the limits
	// are overshot by at most this much time's worth of entries.
	DefaultPruneInterval = time.Hour
)

// pruneBatch bounds the keys of one retention read or delete, so pruning
// a large backlog is many small etcd requests, never one huge one.
const pruneBatch = 1000

// Retention bounds the audit log. A zero field leaves that dimension
// unlimited, so the zero Retention keeps every entry forever.
type Retention struct {
	// MaxAge deletes entries older than this.
	MaxAge time.Duration
	// MaxEntriesPerTenant keeps each tenant's newest this many entries and
	// deletes older ones; one tenant's volume never evicts another's.
	MaxEntriesPerTenant int
}

// Validate says which field is negative and what is allowed.
func (r Retention) Validate() error {
	if r.MaxAge < 0 {
		return fmt.Errorf("audit retention: max age %s: must be 0 (keep forever) or positive", r.MaxAge)
	}
	if r.MaxEntriesPerTenant < 0 {
		return fmt.Errorf("audit retention: max entries per tenant %d: must be 0 (no limit) or positive", r.MaxEntriesPerTenant)
	}
	return nil
}

// unlimited reports whether r never deletes anything.
func (r Retention) unlimited() bool { return r.MaxAge == 0 && r.MaxEntriesPerTenant == 0 }

// PrunedEntries counts the entries retention has deleted since New.
func (l *Log) PrunedEntries() uint64 { return l.pruned.Load() }

// FailedPruneRuns counts RunRetention's runs that ended in an error.
func (l *Log) FailedPruneRuns() uint64 { return l.failedRuns.Load() }

// Prune applies the retention once, as of now: for every tenant it deletes
// the entries older than MaxAge, then the oldest beyond
// MaxEntriesPerTenant. It returns how many entries it deleted, including
// those deleted before an error stopped it. Keys under Prefix that are not
// <tenant>/<id> are left alone.
func (l *Log) Prune(ctx context.Context, now time.Time) (int, error) {
	if err := l.retention.Validate(); err != nil {
		return 0, err
	}
	if l.retention.unlimited() {
		return 0, nil
	}
	deleted := 0
	defer func() { l.pruned.Add(uint64(deleted)) }()
	cursor, end := Prefix, clientv3.GetPrefixRangeEnd(Prefix)
	for {
		tenant, ok, err := l.nextTenant(ctx, cursor, end)
		if err != nil || !ok {
			return deleted, err
		}
		n, err := l.pruneTenant(ctx, tenant, now)
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("prune the audit log of tenant %s: %w", tenant, err)
		}
		cursor = clientv3.GetPrefixRangeEnd(TenantPrefix(tenant))
	}
}

// nextTenant finds the first tenant with an entry at or after cursor. It
// reads one key per tenant, not every entry: the caller skips past the
// tenant's whole prefix once done with it.
func (l *Log) nextTenant(ctx context.Context, cursor, end string) (string, bool, error) {
	for {
		resp, err := l.kv.Get(ctx, cursor, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return "", false, fmt.Errorf("list audit log tenants: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return "", false, nil
		}
		key := string(resp.Kvs[0].Key)
		if tenant, _, ok := strings.Cut(strings.TrimPrefix(key, Prefix), "/"); ok {
			return tenant, true, nil
		}
		// Not an entry (no tenant part): not ours to delete.
		cursor = key + "\x00"
	}
}

// pruneTenant applies both limits to one tenant: age first, so the count
// limit only weighs entries the age limit keeps.
func (l *Log) pruneTenant(ctx context.Context, tenant string, now time.Time) (int, error) {
	prefix := TenantPrefix(tenant)
	deleted := 0
	if l.retention.MaxAge > 0 {
		// Ids encode only times after 1970 comparably, so an earlier
		// cutoff deletes nothing by age.
		if cutoff := now.Add(-l.retention.MaxAge); cutoff.After(time.Unix(0, 0)) {
			n, err := l.deleteRange(ctx, prefix, prefix+sortid.TimeKey(cutoff))
			deleted += n
			if err != nil {
				return deleted, fmt.Errorf("delete entries older than %s: %w", l.retention.MaxAge, err)
			}
		}
	}
	if l.retention.MaxEntriesPerTenant > 0 {
		n, err := l.deleteOldest(ctx, prefix, l.retention.MaxEntriesPerTenant)
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("delete entries beyond the newest %d: %w", l.retention.MaxEntriesPerTenant, err)
		}
	}
	return deleted, nil
}

// deleteRange deletes every key in [from, to), at most l.batch per
// request. Ids sort by time, so for an age limit this is "everything
// before the cutoff" without decoding any entry.
func (l *Log) deleteRange(ctx context.Context, from, to string) (int, error) {
	deleted := 0
	for {
		resp, err := l.kv.Get(ctx, from, clientv3.WithRange(to), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(l.batch)))
		if err != nil {
			return deleted, fmt.Errorf("read keys from %s: %w", from, err)
		}
		if len(resp.Kvs) == 0 {
			return deleted, nil
		}
		n, err := l.deleteKeys(ctx, resp.Kvs[0].Key, resp.Kvs[len(resp.Kvs)-1].Key)
		deleted += n
		if err != nil || !resp.More {
			return deleted, err
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// deleteOldest deletes the oldest entries under prefix beyond the newest
// keep. It counts and pages through one snapshot (a revision), so two
// pruners running at once (two pilots on one etcd) each delete only what
// was beyond the newest keep in their snapshot: as new entries sort after
// existing ones, together they never leave fewer than keep.
func (l *Log) deleteOldest(ctx context.Context, prefix string, keep int) (int, error) {
	resp, err := l.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count entries: %w", err)
	}
	excess := resp.Count - int64(keep)
	rev := resp.Header.Revision
	from, to := prefix, clientv3.GetPrefixRangeEnd(prefix)
	deleted := 0
	for excess > 0 {
		page, err := l.kv.Get(ctx, from, clientv3.WithRange(to), clientv3.WithKeysOnly(),
			clientv3.WithLimit(min(int64(l.batch), excess)), clientv3.WithRev(rev))
		if err != nil {
			return deleted, fmt.Errorf("read the oldest entries at revision %d: %w", rev, err)
		}
		if len(page.Kvs) == 0 {
			break
		}
		last := page.Kvs[len(page.Kvs)-1].Key
		n, err := l.deleteKeys(ctx, page.Kvs[0].Key, last)
		deleted += n
		if err != nil {
			return deleted, err
		}
		excess -= int64(len(page.Kvs))
		from = string(last) + "\x00"
	}
	return deleted, nil
}

// deleteKeys deletes the keys from first to last inclusive: one range
// delete, where a transaction of single deletes would hit etcd's limit of
// operations per transaction.
func (l *Log) deleteKeys(ctx context.Context, first, last []byte) (int, error) {
	resp, err := l.kv.Delete(ctx, string(first), clientv3.WithRange(string(last)+"\x00"))
	if err != nil {
		return 0, fmt.Errorf("delete %s to %s: %w", first, last, err)
	}
	return int(resp.Deleted), nil
}

// RunRetention prunes at once and then every interval (DefaultPruneInterval
// if not positive) until ctx ends; the caller owns the goroutine it runs
// in. A failed run is logged and retried at the next one: retention never
// stops pilot. It returns at once if the retention keeps everything.
func (l *Log) RunRetention(ctx context.Context, every time.Duration) {
	if l.retention.unlimited() {
		l.log.Info("audit retention off: entries are kept forever")
		return
	}
	if every <= 0 {
		every = DefaultPruneInterval
	}
	l.log.Info("audit retention", "max_age", l.retention.MaxAge, "max_entries_per_tenant", l.retention.MaxEntriesPerTenant, "every", every)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		l.pruneRun(ctx, every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneRun is one logged Prune, bounded by the interval so a stuck run
// never overlaps the next.
func (l *Log) pruneRun(ctx context.Context, timeout time.Duration) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	n, err := l.Prune(rctx, start)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err != nil && ctx.Err() == nil:
		l.failedRuns.Add(1)
		l.log.Warn("audit retention run failed; retrying at the next run", "deleted", n, "took", took, "err", err)
	case n > 0:
		l.log.Info("audit entries pruned", "deleted", n, "took", took)
	}
}
