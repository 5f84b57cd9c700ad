package jobs

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// Every job keeps its record, its spec and one record per node result for
// ever unless something deletes them: a 1,000-node cluster's command adds
// 1,000 keys, and etcd holds an index entry for every key in memory, so a
// pilot's memory would grow with every job run (issue 12). Retention
// bounds them, as Nomad's job GC and BOSH's task cleanup do.

// Defaults of Retention and RunRetention.
const (
	DefaultMaxAge        = 30 * 24 * time.Hour
	DefaultMaxPerCluster = 100
	// DefaultPruneInterval is how often RunRetention prunes: one read of
	// the jobs and of the pinned set each time.
	DefaultPruneInterval = time.Minute
)

// Retention bounds the stored jobs. A zero field leaves that dimension
// unlimited. A job still running, and a job Pinned names, are never
// deleted.
type Retention struct {
	// MaxAge deletes the jobs that ended longer ago than this.
	MaxAge time.Duration
	// MaxPerCluster keeps each cluster's newest this many jobs and deletes
	// older ones (the jobs of no cluster count as one group).
	MaxPerCluster int
	// Pinned returns the ids of jobs that must stay whatever their age:
	// pilot pins each cluster's last job, whose spec is the one the
	// cluster runs.
	Pinned func(ctx context.Context) (map[string]bool, error)
}

// Validate says which field is wrong and what is allowed.
func (r Retention) Validate() error {
	if r.MaxAge < 0 {
		return fmt.Errorf("job retention: max age %s: must be 0 (keep forever) or positive", r.MaxAge)
	}
	if r.MaxPerCluster < 0 {
		return fmt.Errorf("job retention: max jobs per cluster %d: must be 0 (no limit) or positive", r.MaxPerCluster)
	}
	return nil
}

// Pruner applies a Retention to a store.
type Pruner struct {
	st  *store.Store
	r   Retention
	log *slog.Logger
	// pruned counts the jobs deleted; failedRuns the runs that failed.
	pruned, failedRuns atomic.Uint64
}

// NewPruner returns a pruner of st's jobs.
func NewPruner(st *store.Store, r Retention, log *slog.Logger) (*Pruner, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pruner{st: st, r: r, log: log}, nil
}

// Pruned counts the jobs deleted since NewPruner.
func (p *Pruner) Pruned() uint64 { return p.pruned.Load() }

// FailedRuns counts the runs of Run that ended in an error.
func (p *Pruner) FailedRuns() uint64 { return p.failedRuns.Load() }

// storedJob is a job as read for pruning: what decides, and the revision
// its delete is guarded by.
type storedJob struct {
	id, cluster string
	terminal    bool
	created     time.Time
	updated     time.Time
	rev         int64
}

// Prune applies the retention once, as of now, and returns how many jobs
// it deleted (with those deleted before an error stopped it).
func (p *Pruner) Prune(ctx context.Context, now time.Time) (int, error) {
	if p.r.MaxAge == 0 && p.r.MaxPerCluster == 0 {
		return 0, nil
	}
	pinned := map[string]bool{}
	if p.r.Pinned != nil {
		var err error
		if pinned, err = p.r.Pinned(ctx); err != nil {
			return 0, fmt.Errorf("jobs to keep: %w", err)
		}
	}
	resp, err := p.st.Client().Get(ctx, store.JobsPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list jobs: %w", err)
	}
	byCluster := map[string][]storedJob{}
	for _, kv := range resp.Kvs {
		j := &pilotv1.Job{}
		if err := store.Decode(string(kv.Key), kv.Value, j); err != nil {
			p.log.Warn("job retention: an unreadable job record is left alone", "key", string(kv.Key), "err", err)
			continue
		}
		byCluster[j.ClusterId] = append(byCluster[j.ClusterId], storedJob{
			id: j.Id, cluster: j.ClusterId, terminal: Terminal(j.State),
			created: j.CreatedAt.AsTime(), updated: j.UpdatedAt.AsTime(), rev: kv.ModRevision,
		})
	}
	deleted := 0
	defer func() { p.pruned.Add(uint64(deleted)) }()
	for _, js := range byCluster {
		// Newest first.
		slices.SortFunc(js, func(a, b storedJob) int { return cmp.Or(b.created.Compare(a.created), cmp.Compare(b.id, a.id)) })
		for i, j := range js {
			tooMany := p.r.MaxPerCluster > 0 && i >= p.r.MaxPerCluster
			tooOld := p.r.MaxAge > 0 && now.Sub(j.updated) > p.r.MaxAge
			if !j.terminal || pinned[j.id] || (!tooMany && !tooOld) {
				continue
			}
			ok, err := p.delete(ctx, j)
			if err != nil {
				return deleted, fmt.Errorf("delete job %s: %w", j.id, err)
			}
			if ok {
				deleted++
			}
		}
	}
	return deleted, nil
}

// delete removes a job and everything kept under its id in one
// transaction, unless the job changed since it was read (a retry made it
// run again).
func (p *Pruner) delete(ctx context.Context, j storedJob) (bool, error) {
	resp, err := p.st.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(store.JobKey(j.id)), "=", j.rev)).
		Then(
			clientv3.OpDelete(store.JobKey(j.id)),
			clientv3.OpDelete(store.ActiveJobKey(j.id)),
			clientv3.OpDelete(store.JobSpecKey(j.id)),
			clientv3.OpDelete(store.JobPriorSpecKey(j.id)),
			clientv3.OpDelete(store.ClaimsPrefix+j.id),
			clientv3.OpDelete(store.JobNodeResultsPrefix(j.id), clientv3.WithPrefix()),
		).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Run prunes at once and then every interval until ctx ends. A failed run
// is logged and counted; the next one tries again.
func (p *Pruner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := p.Prune(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			p.failedRuns.Add(1)
			p.log.Warn("job retention failed; retrying at the next run", "err", err, "deleted", n, "next_in", interval)
		case n > 0:
			p.log.Info("old jobs deleted by retention", "deleted", n,
				"max_age", p.r.MaxAge, "max_per_cluster", p.r.MaxPerCluster)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
