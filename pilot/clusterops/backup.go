package clusterops

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Backups (docs/appcenter-format.md §1.4, §4). With backup_policy custom the app
// backs itself up: backup runs by order, each command getting one JSON
// argument holding the backup's id as snapshot_id (plus the service's
// service_params), and restore runs the same way in place, or, for an app
// without a restore service, start by order. The backup record is created
// with its job and says whether it can be restored (its job succeeded).
//
// backup_policy device snapshots every node's volume through the provider
// (capability snapshots; elsewhere refused, naming it, before anything
// changes), as they are (a running app's files, as after a power cut:
// AppCenter's device backups are the same). Its restore stops the nodes
// (stop by order, then the instances), puts each volume back from its
// snapshot, starts the instances, and runs restore (or start) by order.

// Job kinds.
const (
	KindBackup  = "backup_cluster"
	KindRestore = "restore_cluster"
)

// Backup accepts taking a backup of cluster r.C.
//
// An incremental backup is refused unless the app's cluster.json says
// incremental_backup_supported; a custom one's backup command gets
// "incremental": true in its argument (the app knows what it kept), a
// device one takes the provider's snapshots as any (a provider may make
// them incremental; the backup records that it was asked).
func (l *Lifecycle) Backup(ctx context.Context, r OpRequest, name string, params map[string]string, incremental bool) (*pilotv1.ClusterJob, *pilotv1.Backup, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, nil, err
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return nil, nil, refuse(Precondition, "cluster %s is %s; only an active cluster is backed up", c.Id, c.Status)
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	if err := l.backupPolicy(ctx, spec, c, false); err != nil {
		return nil, nil, err
	}
	if incremental && !spec.IncrementalBackupSupported {
		return nil, nil, refuse(Invalid, "incremental: %s %s takes full backups only (its cluster.json does not set incremental_backup_supported)", c.App, c.AppVersion)
	}
	b := &pilotv1.Backup{Id: newID("bk-"), ClusterId: c.Id, Name: name, Policy: spec.BackupPolicy, AppVersion: c.AppVersion,
		CreatedAt: timestamppb.Now(), State: pilotv1.BackupState_BACKUP_STATE_PENDING, Tenant: c.Tenant, Incremental: incremental}
	if b.Name == "" {
		b.Name = b.Id
	}
	p := &planner{}
	if spec.BackupPolicy == "device" {
		if len(params) > 0 {
			return nil, nil, refuse(Invalid, "params: a device backup (snapshots of the volumes) takes none")
		}
		p.add("snapshots", taskSnapshotVolumes, "snapshot every node's volume", &pilotv1.TaskInput{ClusterId: c.Id})
	} else {
		roles, err := serviceRoles(spec, apppkg.SvcBackup, false, nil)
		if err != nil {
			return nil, nil, refuse(Invalid, "backup_policy is custom, but %v", err)
		}
		pkg, err := l.cfg.Packages.Get(ctx, c.Tenant, c.App, c.AppVersion)
		if err != nil {
			return nil, nil, err
		}
		args := map[string]string{}
		for _, role := range roles {
			a, err := pkg.ServiceArgs(spec, role, apppkg.SvcBackup, params)
			if err != nil {
				return nil, nil, refuse(Invalid, "%v", err)
			}
			if args[role], err = withSnapshotID(a, b.Id, incremental); err != nil {
				return nil, nil, err
			}
		}
		p.serviceSteps(spec, c.Id, apppkg.SvcBackup, stepSpec{roles: roles, args: args})
	}
	for _, t := range p.tasks {
		t.Input.BackupId = b.Id
	}
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, KindBackup, p.tasks)}, b, nil
	}
	job, err := l.commitWith(ctx, c, r.Rev, KindBackup, p.tasks, stored, nil, func(jobID string) map[string]proto.Message {
		b.JobId = jobID
		return map[string]proto.Message{store.BackupKey(c.Id, b.Id): b}
	})
	if err != nil {
		return nil, nil, err
	}
	l.log.Info("cluster backup accepted", "cluster_id", c.Id, "backup_id", b.Id, "job_id", job.Id)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, b, nil
}

func newBackup() *pilotv1.Backup { return &pilotv1.Backup{} }

// backupPolicy refuses a backup or restore the package, or the runtime's
// provider, does not provide for.
// A device restore also stops and starts the instances.
func (l *Lifecycle) backupPolicy(ctx context.Context, spec *apppkg.ClusterSpec, c *pilotv1.Cluster, restore bool) error {
	switch spec.BackupPolicy {
	case "custom":
		return nil
	case "device":
		if err := l.requireCapability(ctx, c, "a device backup or restore (backup_policy device)", sdk.CapSnapshots, func(cp sdk.Capabilities) bool { return cp.Snapshots }); err != nil {
			return err
		}
		if !restore {
			return nil
		}
		return l.requireStopStart(ctx, c, "a device restore")
	default:
		return refuse(Precondition, "%s %s declares no backup_policy (custom or device) in its cluster.json, so it cannot be backed up", c.App, c.AppVersion)
	}
}

// withSnapshotID adds the backup's id, and whether it is incremental, to
// a service's JSON argument.
func withSnapshotID(arg []byte, id string, incremental bool) (string, error) {
	m := map[string]any{}
	if len(arg) > 0 {
		if err := json.Unmarshal(arg, &m); err != nil {
			return "", fmt.Errorf("backup argument: %w", err)
		}
	}
	m["snapshot_id"] = id
	if incremental {
		m["incremental"] = true
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// ListBackups returns the cluster's backups, newest first.
func (l *Lifecycle) ListBackups(ctx context.Context, c *pilotv1.Cluster) ([]*pilotv1.Backup, error) {
	bs, err := store.List(ctx, l.cfg.Store, store.BackupsPrefix+c.Id+"/", newBackup)
	if err != nil {
		return nil, err
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].CreatedAt.AsTime().After(bs[j].CreatedAt.AsTime()) })
	return bs, nil
}

// Restore accepts restoring backup id into cluster r.C.
func (l *Lifecycle) Restore(ctx context.Context, r OpRequest, id string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; a backup is restored into an active (or failed) cluster", c.Id, c.Status)
	}
	b := &pilotv1.Backup{}
	if _, err := l.cfg.Store.Get(ctx, store.BackupKey(c.Id, id), b); err != nil {
		return nil, refuse(Invalid, "backup_id: %q is not a backup of cluster %s (`hangar cluster backups %s` lists them)", id, c.Id, c.Id)
	}
	if b.State != pilotv1.BackupState_BACKUP_STATE_AVAILABLE {
		return nil, refuse(Precondition, "backup %s is %s; only an available backup (its job succeeded) is restored", id, b.State)
	}
	if b.AppVersion != c.AppVersion {
		return nil, refuse(Precondition, "backup %s was taken of %s %s, the cluster runs %s; roll back or upgrade first", id, c.App, b.AppVersion, c.AppVersion)
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	if err := l.backupPolicy(ctx, spec, c, true); err != nil {
		return nil, err
	}
	p := &planner{}
	if b.Policy == "device" {
		in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id, BackupId: b.Id} }
		p.serviceSteps(spec, c.Id, "stop", stepSpec{})
		p.add("stop-instances", taskStopInstances, "stop the instances", in())
		p.add("restore-volumes", taskRestoreVolumes, "put every node's volume back from its snapshot", in())
		p.add("start-instances", taskStartInstances, "start the instances", in())
		p.add("drones", taskWaitDrones, "wait for every drone to connect", in())
		p.add("confd", taskDeliverConfd, "deliver confd templates and render", in())
	}
	if roles, err := serviceRoles(spec, apppkg.SvcRestore, false, nil); err == nil {
		args := map[string]string{}
		for _, role := range roles {
			if args[role], err = withSnapshotID(nil, b.Id, false); err != nil {
				return nil, err
			}
		}
		p.serviceSteps(spec, c.Id, apppkg.SvcRestore, stepSpec{roles: roles, args: args})
	} else {
		// AppCenter: an app without restore is started.
		p.serviceSteps(spec, c.Id, "start", stepSpec{})
	}
	return l.accept(ctx, r, KindRestore, p.tasks, spec, stored, "backup_id", id)
}

// finishBackup says whether the backup can be restored.
func (o *Ops) finishBackup(ctx context.Context, j *pilotv1.Job) error {
	id := ""
	for _, t := range j.Tasks {
		if t.GetInput().GetBackupId() != "" {
			id = t.Input.BackupId
		}
	}
	if id == "" {
		return nil
	}
	_, err := store.Update(ctx, o.cfg.Store, store.BackupKey(j.ClusterId, id), newBackup, func(b *pilotv1.Backup) error {
		b.State = pilotv1.BackupState_BACKUP_STATE_FAILED
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			b.State = pilotv1.BackupState_BACKUP_STATE_AVAILABLE
		}
		return nil
	})
	return ignoreNotFound(err)
}

// Task kinds of device backups.
const (
	taskSnapshotVolumes = "snapshot_volumes"
	taskRestoreVolumes  = "restore_volumes"
)

// snapshotVolumes snapshots each node's volume and records the snapshots
// in the backup (the token makes a retry find the snapshot it made).
func (o *Ops) snapshotVolumes(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	c, id := tc.c, tc.in.BackupId
	var mu sync.Mutex
	snaps := map[string]string{}
	err = forEachNode(ctx, withInstances(c.Nodes), func(ctx context.Context, nd *pilotv1.Node) error {
		sn, err := tc.prov.CreateSnapshot(ctx, &providerv1.CreateSnapshotRequest{Runtime: tc.prt, IdempotencyToken: id + "." + nd.Id, InstanceId: nd.InstanceId, Name: id + "/" + nd.Id})
		if err != nil {
			return providerErr(fmt.Sprintf("snapshot the volume of node %s", nd.Id), err)
		}
		mu.Lock()
		snaps[nd.Id] = sn.Id
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	_, err = store.Update(ctx, o.cfg.Store, store.BackupKey(c.Id, id), newBackup, func(b *pilotv1.Backup) error {
		b.Snapshots = snaps
		return nil
	})
	return err
}

// restoreVolumes puts each node's volume back from the backup's snapshot.
func (o *Ops) restoreVolumes(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	c := tc.c
	b := &pilotv1.Backup{}
	if _, err := o.cfg.Store.Get(ctx, store.BackupKey(c.Id, tc.in.BackupId), b); err != nil {
		return fmt.Errorf("backup %s: %w", tc.in.BackupId, err)
	}
	return forEachNode(ctx, withInstances(c.Nodes), func(ctx context.Context, nd *pilotv1.Node) error {
		snap, ok := b.Snapshots[nd.Id]
		if !ok {
			return fmt.Errorf("node %s: backup %s holds no snapshot of it (the node was added after the backup)", nd.Id, b.Id)
		}
		if _, err := tc.prov.RestoreSnapshot(ctx, &providerv1.RestoreSnapshotRequest{Runtime: tc.prt, IdempotencyToken: t.Job.Id + "." + nd.Id, InstanceId: nd.InstanceId, SnapshotId: snap}); err != nil {
			return providerErr(fmt.Sprintf("restore the volume of node %s from snapshot %s", nd.Id, snap), err)
		}
		return nil
	})
}
