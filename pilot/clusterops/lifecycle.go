package clusterops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Accepting a change: everything is checked and computed before anything
// is written, and what the change writes (the cluster, its job, the spec
// the job was planned with) is one transaction, guarded on the cluster's
// revision. So a refused change leaves no trace, an accepted one is never
// half-recorded, and the handlers read the spec rendered here instead of
// rendering again.

// JobQueue is what the lifecycle needs of the job engine (*jobs.Engine).
type JobQueue interface {
	// Validate checks a job's task graph before it is stored.
	Validate(job *pilotv1.Job) error
	// Wake makes the engine look at stored jobs now.
	Wake()
}

// LifecycleConfig wires a Lifecycle.
type LifecycleConfig struct {
	Store *store.Store
	// Packages loads and renders packages (required); its Box seals
	// password parameters.
	Packages *Packages
	Jobs     JobQueue
	// MaxClusterNodes bounds the nodes of one cluster (pilot
	// --max-cluster-nodes); 0: limits.DefaultMaxClusterNodes. Above
	// limits.MaxClusterNodesCeiling it counts as the ceiling.
	MaxClusterNodes int
	// Providers answers which capabilities a runtime's provider has, so
	// an operation it cannot carry out is refused before anything
	// changes (nil: not checked).
	Providers ProviderSource
	// Events, when set, gets an event of the cluster for each job
	// accepted.
	Events *events.Log
	Logger *slog.Logger
}

// Lifecycle accepts changes to clusters. Create a Lifecycle with
// NewLifecycle.
type Lifecycle struct {
	cfg LifecycleConfig
	log *slog.Logger
}

// NewLifecycle returns the owner of cluster changes.
func NewLifecycle(cfg LifecycleConfig) *Lifecycle {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lifecycle{cfg: cfg, log: log}
}

// Reason says why a change is refused.
type Reason int

const (
	// Invalid: the request itself is wrong (a parameter, a count).
	Invalid Reason = iota + 1
	// Precondition: the cluster's state does not allow the change now.
	Precondition
)

// RefusedError is a change the lifecycle does not accept. Its message is
// for the user: it names what to change, and never a password.
type RefusedError struct {
	Reason Reason
	Msg    string
}

func (e *RefusedError) Error() string { return e.Msg }

func refuse(r Reason, format string, args ...any) error {
	return &RefusedError{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// Redacted replaces password values wherever a user could read them.
const Redacted = "******"

// CreateRequest asks for a new cluster of an app version (both found in
// the tenant) on one of the tenant's runtimes.
type CreateRequest struct {
	Tenant, App, AppVersion, Runtime string
	Params                           map[string]string
	// DryRun plans only.
	DryRun bool
}

// Create accepts a new cluster: it resolves the parameters, renders the
// spec, checks the node limit, builds the node records, seals the
// passwords, and commits the cluster with its create job.
func (l *Lifecycle) Create(ctx context.Context, r CreateRequest) (*pilotv1.ClusterJob, error) {
	pkg, pkgRev, err := l.cfg.Packages.GetAt(ctx, r.Tenant, r.App, r.AppVersion)
	if err != nil {
		return nil, err
	}
	secret := SecretParam(pkg)
	vals, err := pkg.Resolve(r.Params)
	if err != nil {
		return nil, refuse(Invalid, "%s", scrub(err, r.Params, secret))
	}
	spec, stored, err := l.render(pkg, vals, r.Params, secret)
	if err != nil {
		return nil, err
	}
	if err := l.checkLinks(ctx, r.Tenant, "", pkg, vals, spec, nil); err != nil {
		return nil, err
	}
	var roles []string
	for _, n := range spec.Nodes {
		if n.Count > 0 {
			roles = append(roles, n.Role)
		}
	}
	images, err := l.imagesFor(ctx, r.Tenant, r.App, r.AppVersion, r.Runtime, spec, roles)
	if err != nil {
		return nil, err
	}
	c := &pilotv1.Cluster{
		Id:         newID("cl-"),
		Name:       spec.Name,
		App:        r.App,
		AppVersion: r.AppVersion,
		Runtime:    r.Runtime,
		Status:     pilotv1.ClusterStatus_CLUSTER_STATUS_PENDING,
		Params:     vals.Strings(),
		CreatedAt:  timestamppb.Now(),
		Tenant:     r.Tenant,
	}
	sid := int32(0)
	for _, n := range spec.Nodes {
		for i := 0; i < n.Count; i++ {
			sid++
			c.Nodes = append(c.Nodes, &pilotv1.Node{Id: newID("cln-"), Role: n.Role, Sid: sid, Status: pilotv1.NodeStatus_NODE_STATUS_PENDING, Image: images[n.Role]})
		}
	}
	if len(c.Nodes) == 0 {
		return nil, refuse(Invalid, "cluster.<role>.count: the cluster would have no nodes; at least one role needs a count above 0")
	}
	c.LastSid = sid
	if err := l.requireAddresses(ctx, c, spec); err != nil {
		return nil, err
	}
	c.Params = secretbox.SealParams(l.cfg.Packages.Box, c.Id, c.Params, secret)
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, KindCreate, PlanCreate(c, spec))}, nil
	}
	job, err := l.commitGuarded(ctx, c, 0, KindCreate, PlanCreate(c, spec), stored, nil, nil,
		map[string]int64{store.ArchiveKey(r.Tenant, r.App, r.AppVersion): pkgRev})
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster create accepted", "cluster_id", c.Id, "tenant", c.Tenant, "app", c.App, "version", c.AppVersion, "runtime", c.Runtime, "nodes", len(c.Nodes), "job_id", job.Id)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// Delete accepts the delete of cluster r.C: its services are planned from
// its current spec; with force, a spec that cannot be had plans none.
//
// With force, a failing destroy is passed over, unless a role's destroy says
// allow_force: false: then force is refused, naming the roles, unless
// override (an admin's escape, checked by the caller) is set too.
func (l *Lifecycle) Delete(ctx context.Context, r OpRequest, force, override bool) (*pilotv1.ClusterJob, error) {
	c, rev := r.C, r.Rev
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	if override && !force {
		return nil, refuse(Invalid, "override_allow_force: only with force")
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil && !force {
		return nil, refuse(Precondition, "cluster %s: %v; delete with force to skip its services", c.Id, err)
	}
	if force && !override && spec != nil {
		if roles := forceDisallowed(spec); len(roles) > 0 {
			return nil, refuse(Precondition, "cluster %s: the app's destroy on role %s says allow_force: false, so force may not pass over its failure; make destroy succeed and delete again, or, as an admin, add --override-allow-force to go on regardless",
				c.Id, strings.Join(roles, ", "))
		}
	}
	tasks := PlanDelete(c, spec, force)
	for _, t := range tasks {
		t.Input.OverrideAllowForce = override
	}
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, KindDelete, tasks)}, nil
	}
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING
	job, err := l.commit(ctx, c, rev, KindDelete, tasks, stored)
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster delete accepted", "cluster_id", c.Id, "job_id", job.Id, "force", force, "override_allow_force", override)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// UpdateEnv accepts new env values (keys without "env.") for cluster r.C:
// the cluster must be active and idle, the values valid and changeable, and
// the spec they render within the node limit. A dry run answers what the
// metadata would gain, lose or change.
//
// A cluster that failed because of its last env update (a value a
// check_cmd refused, say) takes another: correcting the value is how one
// gets out of it, and nothing else of the cluster is half-done.
func (l *Lifecycle) UpdateEnv(ctx context.Context, r OpRequest, env map[string]string) (*pilotv1.ClusterJob, error) {
	c, rev := r.C, r.Rev
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE && !(c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED && l.lastJobKind(ctx, c) == KindUpdateEnv) {
		return nil, refuse(Precondition, "cluster %s is %s; env can change only on an active cluster (or one whose last env update failed)", c.Id, c.Status)
	}
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	pkg, secret, vals, err := l.storedValues(ctx, c)
	if err != nil {
		return nil, err
	}
	envSecret := func(k string) bool { return secret(apppkg.GroupEnv + "." + k) }
	nv, err := vals.ChangeEnv(env)
	if err != nil {
		return nil, refuse(Invalid, "%s", scrub(err, env, envSecret))
	}
	spec, stored, err := l.render(pkg, nv, env, envSecret)
	if err != nil {
		return nil, err
	}
	old, _, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	if err := l.checkLinks(ctx, c.Tenant, c.Id, pkg, nv, spec, old); err != nil {
		return nil, err
	}
	if r.DryRun {
		job := DryRun(c, spec, nil, KindUpdateEnv, PlanUpdateEnv(c))
		job.MetadataChanges = metadataChanges(c, pkg, old, spec)
		return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
	}
	c.Params = secretbox.SealParams(l.cfg.Packages.Box, c.Id, nv.Strings(), secret)
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	job, err := l.commit(ctx, c, rev, KindUpdateEnv, PlanUpdateEnv(c), stored)
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster env update accepted", "cluster_id", c.Id, "job_id", job.Id, "keys", len(env))
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// storedValues are cluster c's package, which of its parameters are
// passwords, and the cluster's parameters as stored (passwords opened),
// resolved: where a change to them starts.
func (l *Lifecycle) storedValues(ctx context.Context, c *pilotv1.Cluster) (*apppkg.Package, func(string) bool, *apppkg.Values, error) {
	pkg, err := l.cfg.Packages.Get(ctx, c.Tenant, c.App, c.AppVersion)
	if err != nil {
		return nil, nil, nil, err
	}
	secret := SecretParam(pkg)
	params, err := secretbox.OpenParams(l.cfg.Packages.Box, c.Id, c.Params, secret)
	if err != nil {
		return nil, nil, nil, refuse(Precondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	vals, err := pkg.Resolve(params)
	if err != nil {
		return nil, nil, nil, refuse(Precondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	return pkg, secret, vals, nil
}

// Spec is the cluster's current spec: the one its last job was planned
// with, or, for a cluster whose job stored none, rendered from its stored
// parameters.
func (l *Lifecycle) Spec(ctx context.Context, c *pilotv1.Cluster) (*apppkg.ClusterSpec, error) {
	spec, _, err := l.currentSpec(ctx, c)
	return spec, err
}

func (l *Lifecycle) currentSpec(ctx context.Context, c *pilotv1.Cluster) (*apppkg.ClusterSpec, []byte, error) {
	if c.JobId != "" {
		spec, stored, err := l.cfg.Packages.JobSpec(ctx, c.JobId)
		if !errors.Is(err, store.ErrNotFound) {
			return spec, stored, err
		}
	}
	_, spec, err := l.cfg.Packages.Spec(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	stored, err := spec.Stored()
	if err != nil {
		return nil, nil, err
	}
	return spec, stored, nil
}

// render renders the spec a change asks for and checks that this pilot
// will hold it. Every change that decides a cluster's nodes renders here
// (create and env updates today; scale-out and scale-in when they come),
// so the node limit has one place and runs before any node record, plan or
// stored value exists: rendering costs no more for a count of a million
// than for one, building a million node records cost 630 MB. It returns
// the spec and its stored form, which the change's job keeps.
func (l *Lifecycle) render(pkg *apppkg.Package, vals *apppkg.Values, params map[string]string, secret func(string) bool) (*apppkg.ClusterSpec, []byte, error) {
	spec, err := l.cfg.Packages.render(pkg, vals)
	if err != nil {
		return nil, nil, refuse(Invalid, "%s", scrub(err, params, secret))
	}
	if err := checkClusterSize(spec, vals, maxNodes(l.cfg.MaxClusterNodes)); err != nil {
		return nil, nil, refuse(Invalid, "%v", err)
	}
	stored, err := spec.Stored()
	if err != nil {
		return nil, nil, err
	}
	return spec, stored, nil
}

// accept plans kind as tasks on cluster r.C: a dry run answers the plan;
// otherwise the cluster is updating until the job ends, and the job is
// committed. attrs go to the log line.
func (l *Lifecycle) accept(ctx context.Context, r OpRequest, kind string, tasks []*pilotv1.Task, spec *apppkg.ClusterSpec, stored []byte, attrs ...any) (*pilotv1.ClusterJob, error) {
	c := r.C
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, kind, tasks)}, nil
	}
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	job, err := l.commit(ctx, c, r.Rev, kind, tasks, stored)
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster operation accepted", append([]any{"cluster_id", c.Id, "kind", kind, "job_id", job.Id}, attrs...)...)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// lastJobKind is the kind of c's last job ("" when it has none or it is
// gone).
func (l *Lifecycle) lastJobKind(ctx context.Context, c *pilotv1.Cluster) string {
	if c.JobId == "" {
		return ""
	}
	j := &pilotv1.Job{}
	if _, err := l.cfg.Store.Get(ctx, store.JobKey(c.JobId), j); err != nil {
		return ""
	}
	return j.Kind
}

// busy refuses a change while another job of the cluster runs.
func (l *Lifecycle) busy(ctx context.Context, c *pilotv1.Cluster) error {
	if c.JobId == "" {
		return nil
	}
	j := &pilotv1.Job{}
	if _, err := l.cfg.Store.Get(ctx, store.JobKey(c.JobId), j); err != nil {
		return nil
	}
	if !jobs.Terminal(j.State) {
		return refuse(Precondition, "cluster %s: job %s (%s) is still running; wait for it (`hangar job watch %s`) or cancel it", c.Id, j.Id, j.Kind, j.Id)
	}
	return nil
}

// commit plans the job of a change and writes it with the cluster (if the
// cluster is still at rev; 0: new) and the spec it was planned with (nil:
// none), in one transaction, then wakes the engine.
func (l *Lifecycle) commit(ctx context.Context, c *pilotv1.Cluster, rev int64, kind string, tasks []*pilotv1.Task, spec []byte) (*pilotv1.Job, error) {
	return l.commitWith(ctx, c, rev, kind, tasks, spec, nil, nil)
}

// commitWith is commit keeping prior too (nil: none): the spec the
// cluster had before a change of its app version (JobPriorSpec); and
// creating the records extra returns for the job's id (key → record; nil:
// none) in the same transaction.
func (l *Lifecycle) commitWith(ctx context.Context, c *pilotv1.Cluster, rev int64, kind string, tasks []*pilotv1.Task, spec, prior []byte, extra func(jobID string) map[string]proto.Message) (*pilotv1.Job, error) {
	return l.commitGuarded(ctx, c, rev, kind, tasks, spec, prior, extra, nil)
}

// commitGuarded is commitWith that also requires the keys of guards to be
// at their revisions: a change onto an app version guards its archive, so
// that it cannot commit a cluster on a version deleted meanwhile (DeleteApp
// checks the clusters under the same kind of guard).
func (l *Lifecycle) commitGuarded(ctx context.Context, c *pilotv1.Cluster, rev int64, kind string, tasks []*pilotv1.Task, spec, prior []byte, extra func(jobID string) map[string]proto.Message, guards map[string]int64) (*pilotv1.Job, error) {
	job := jobs.NewJob(newID("job-"), kind, c.Id, tasks)
	job.Tenant = c.Tenant
	if err := l.cfg.Jobs.Validate(job); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	c.JobId = job.Id
	puts := jobs.Records(job)
	guards = maps.Clone(guards)
	if guards == nil {
		guards = map[string]int64{}
	}
	guards[store.ClusterKey(c.Id)] = rev
	for k := range puts {
		guards[k] = 0
	}
	puts[store.ClusterKey(c.Id)] = c
	if extra != nil {
		for k, m := range extra(job.Id) {
			puts[k], guards[k] = m, 0
		}
	}
	raw := map[string][]byte{}
	if spec != nil {
		raw[store.JobSpecKey(job.Id)] = l.cfg.Packages.sealSpec(store.JobSpecKey(job.Id), spec)
	}
	if prior != nil {
		raw[store.JobPriorSpecKey(job.Id)] = l.cfg.Packages.sealSpec(store.JobPriorSpecKey(job.Id), prior)
	}
	if err := l.cfg.Store.CommitRaw(ctx, guards, puts, raw); err != nil {
		return nil, err
	}
	l.cfg.Jobs.Wake()
	if l.cfg.Events != nil {
		l.cfg.Events.Append(ctx, &pilotv1.ClusterEvent{ClusterId: c.Id, Kind: "job", Message: fmt.Sprintf("job %s (%s) accepted", job.Id, job.Kind)})
	}
	return job, nil
}

// JobEnded returns the jobs engine's Ended hook: an event of the job's
// cluster saying how it ended; none for a delete that succeeded, whose
// cluster's events went with it.
func JobEnded(log *events.Log) func(context.Context, *pilotv1.Job) {
	return func(ctx context.Context, j *pilotv1.Job) {
		if j.ClusterId == "" || j.Kind == KindDelete && j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			return
		}
		msg := fmt.Sprintf("job %s (%s) ended %s", j.Id, j.Kind, strings.TrimPrefix(j.State.String(), "JOB_STATE_"))
		if j.Error != "" {
			msg += ": " + j.Error
		}
		log.Append(ctx, &pilotv1.ClusterEvent{ClusterId: j.ClusterId, Kind: "job", Message: msg})
	}
}

func newID(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// scrub removes from err's message every secret value of params, as given
// or quoted: a refused password must not come back in the answer, pilot's
// log or the audit log.
func scrub(err error, params map[string]string, secret func(string) bool) string {
	msg := err.Error()
	for k, v := range params {
		if v == "" || !secret(k) {
			continue
		}
		q := strconv.Quote(v)
		for _, form := range []string{q, q[1 : len(q)-1], v} {
			msg = strings.ReplaceAll(msg, form, Redacted)
		}
	}
	return msg
}

// ---- finalizers: the cluster's state once its job ended ----

func (o *Ops) finishCreate(ctx context.Context, j *pilotv1.Job) error {
	var failedNodes map[string]bool
	if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		var err error
		if failedNodes, err = failedNodeIDs(ctx, o.cfg.Store, j.Id); err != nil {
			return err
		}
	}
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			for _, nd := range c.Nodes {
				nd.Status = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
			}
		} else {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
			for _, nd := range c.Nodes {
				if failedNodes[nd.Id] {
					nd.Status = pilotv1.NodeStatus_NODE_STATUS_FAILED
				}
			}
		}
		return nil
	})
	return ignoreNotFound(err)
}

// failedNodeIDs are the nodes whose command failed in any task of the job.
func failedNodeIDs(ctx context.Context, st *store.Store, jobID string) (map[string]bool, error) {
	out := map[string]bool{}
	err := jobs.ForEachResult(ctx, st, jobID, 0, func(nr jobs.NodeResult) error {
		if r := nr.Result; r.State != streamv1.CommandState_COMMAND_STATE_EXITED || r.ExitCode != 0 {
			out[r.NodeId] = true
		}
		return nil
	})
	return out, err
}

func (o *Ops) finishDelete(ctx context.Context, j *pilotv1.Job) error {
	if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
		// The job record stays as the history of the cluster; its roles'
		// SSH keys go.
		if err := o.cfg.Store.DeletePrefix(ctx, store.SSHKeysPrefix+j.ClusterId+"/"); err != nil {
			return err
		}
		if err := o.cfg.Store.DeletePrefix(ctx, events.ClusterPrefix(j.ClusterId)); err != nil {
			return err
		}
		return o.cfg.Store.Delete(ctx, store.ClusterKey(j.ClusterId))
	}
	return o.finishUpdate(ctx, j)
}

func (o *Ops) finishUpdate(ctx context.Context, j *pilotv1.Job) error {
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
		} else {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		}
		return nil
	})
	return ignoreNotFound(err)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
