package jobs

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

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
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-jobs:
		case wr, ok = <-results:
		}
		if !ok {
			return ctx.Err()
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch job %s: %w", id, err)
		}
		if len(wr.Events) == 0 {
			continue
		}
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
				v.job = j
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
		if Terminal(v.job.State) {
			// The two watches deliver independently: read the results
			// as of the terminal write, which follows every result.
			if err := v.load(ctx, s, wr.Header.Revision); err != nil {
				return err
			}
		}
		if err := fn(v.snapshot()); err != nil || Terminal(v.job.State) {
			return err
		}
	}
}
