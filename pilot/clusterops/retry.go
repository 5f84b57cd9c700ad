package clusterops

import (
	"context"
	"errors"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Retry runs a failed or cancelled job again (a create that failed on a
// transient fault, an upgrade whose fix is now in place): the steps that
// did not succeed run anew, their commands under new ids, and the cluster
// is back in the job's state (pending, deleting or updating) until it
// ends. Only the cluster's last job is retried: a later job decided what
// the cluster is. The other way out of a failed create is to delete the
// cluster, which removes whatever it made.
func (l *Lifecycle) Retry(ctx context.Context, tenant, jobID string) (*pilotv1.Job, error) {
	job := &pilotv1.Job{}
	jobRev, err := l.cfg.Store.Get(ctx, store.JobKey(jobID), job)
	if err != nil || job.Tenant != tenant {
		return nil, refuse(Invalid, "job_id: no job %q (`hangar job list` lists them)", jobID)
	}
	if !jobs.RetryableState(job.State) {
		return nil, refuse(Precondition, "job %s is %s; only a failed or cancelled job is retried", job.Id, job.State)
	}
	c := &pilotv1.Cluster{}
	rev, err := l.cfg.Store.Get(ctx, store.ClusterKey(job.ClusterId), c)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(Precondition, "job %s: its cluster %s is gone", job.Id, job.ClusterId)
	}
	if err != nil {
		return nil, err
	}
	if c.JobId != job.Id {
		return nil, refuse(Precondition, "job %s is not cluster %s's last job (%s is): a later job decided the cluster's state; start a new operation instead", job.Id, c.Id, c.JobId)
	}
	switch job.Kind {
	case KindCreate:
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_PENDING
	case KindDelete:
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING
	case KindCustomService, KindBackup:
		// They leave the cluster's status alone.
	default:
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	}
	puts := jobs.Retry(job)
	guards := map[string]int64{store.ClusterKey(c.Id): rev, store.JobKey(job.Id): jobRev}
	puts[store.ClusterKey(c.Id)] = c
	if err := l.cfg.Store.CommitRaw(ctx, guards, puts, nil); err != nil {
		return nil, err
	}
	l.cfg.Jobs.Wake()
	l.log.Info("job retried", "job_id", job.Id, "kind", job.Kind, "cluster_id", c.Id, "retries", job.Retries)
	return job, nil
}
