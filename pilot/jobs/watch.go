package jobs

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// Watch calls fn with the job now and after every change, until the job is
// terminal (fn has then seen the terminal state), fn fails, or ctx ends.
func Watch(ctx context.Context, s *store.Store, id string, fn func(*pilotv1.Job) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	key := store.JobKey(id)
	job := &pilotv1.Job{}
	rev, err := s.Get(ctx, key, job)
	if err != nil {
		return err
	}
	// Watch from just after the revision we read, so no change is missed.
	w := s.Client().Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev+1))
	if err := fn(job); err != nil || Terminal(job.State) {
		return err
	}
	for resp := range w {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch job %s: %w", id, err)
		}
		if len(resp.Events) == 0 {
			continue
		}
		ev := resp.Events[len(resp.Events)-1]
		if ev.Type == clientv3.EventTypeDelete {
			return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
		}
		job = &pilotv1.Job{}
		if _, err := s.Get(ctx, key, job); err != nil {
			return err
		}
		if err := fn(job); err != nil || Terminal(job.State) {
			return err
		}
	}
	return ctx.Err()
}
