package jobs

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// resultsInterval is how often a watch sends snapshots while only node
// results change.
const resultsInterval = 500 * time.Millisecond

// Watch calls fn with the job's view (View) now and after every change of
// the job or its node results, until the job is terminal (fn has then seen
// the terminal state with every result), fn fails, or ctx ends.
func Watch(ctx context.Context, s *store.Store, id string, fn func(*pilotv1.Job) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	key := store.JobKey(id)
	resp, err := s.Client().Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	job := &pilotv1.Job{}
	if err := store.Decode(key, resp.Kvs[0].Value, job); err != nil {
		return err
	}
	// The job and its results as of one revision, then every change after
	// it, so none is missed.
	rev := resp.Header.Revision
	v := newView(job)
	if err := v.load(ctx, s, rev); err != nil {
		return err
	}
	wctx := clientv3.WithRequireLeader(ctx)
	jobs := s.Client().Watch(wctx, key, clientv3.WithRev(rev+1))
	results := s.Client().Watch(wctx, store.JobNodeResultsPrefix(id), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	if err := fn(v.snapshot()); err != nil || Terminal(job.State) {
		return err
	}
	// A change of the job (a task started or ended) is sent at once;
	// results alone are sent at most every resultsInterval, so a thousand
	// nodes reporting do not make a thousand snapshots.
	var later *time.Timer
	var laterC <-chan time.Time
	sent := func() {
		if later != nil {
			later.Stop()
		}
		later, laterC = nil, nil
	}
	defer sent()
	lastSent := time.Now()
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-jobs:
		case wr, ok = <-results:
		case <-laterC:
			sent()
			lastSent = time.Now()
			if err := fn(v.snapshot()); err != nil {
				return err
			}
			continue
		}
		if !ok {
			return ctx.Err()
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch job %s: %w", id, err)
		}
		jobChanged := false
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			if k == key {
				if ev.Type == clientv3.EventTypeDelete {
					return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
				}
				j := &pilotv1.Job{}
				if err := store.Decode(k, ev.Kv.Value, j); err != nil {
					return err
				}
				v.job, jobChanged = j, true
				continue
			}
			if ev.Type == clientv3.EventTypeDelete {
				continue
			}
			nr, err := decodeResult(store.JobNodeResultsPrefix(id), k, ev.Kv.Value)
			if err != nil {
				return err
			}
			v.put(nr.TaskID, nr.Result)
		}
		if len(wr.Events) == 0 {
			continue
		}
		if Terminal(v.job.State) {
			// The two watches deliver independently: read the results
			// as of the terminal write, which follows every result.
			if err := v.load(ctx, s, wr.Header.Revision); err != nil {
				return err
			}
			return fn(v.snapshot())
		}
		if !jobChanged && time.Since(lastSent) < resultsInterval {
			if laterC == nil {
				later = time.NewTimer(resultsInterval - time.Since(lastSent))
				laterC = later.C
			}
			continue
		}
		sent()
		lastSent = time.Now()
		if err := fn(v.snapshot()); err != nil {
			return err
		}
	}
}
