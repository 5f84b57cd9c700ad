package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// redacted replaces password values in every response.
const redacted = clusterops.Redacted

// CreateCluster checks the request and hands it to the lifecycle, which
// validates everything and stores the cluster and its create job in one
// transaction.
func (s *Server) CreateCluster(ctx context.Context, req *pilotv1.CreateClusterRequest) (*pilotv1.ClusterJob, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.App == "" {
		return nil, invalid("app: required (see `hangar app list`)")
	}
	if req.Runtime == "" {
		req.Runtime = "local"
	}
	app, err := s.findApp(ctx, tn, req.App, req.AppVersion)
	if err != nil {
		return nil, toStatus(err)
	}
	rt, err := s.findRuntime(ctx, tn, req.Runtime)
	if err != nil {
		return nil, err
	}
	if err := s.checkStoredHostRuntime(ctx, rt); err != nil {
		return nil, err
	}
	r, err := s.cfg.Lifecycle.Create(ctx, clusterops.CreateRequest{Tenant: tn, App: app.Name, AppVersion: app.Version, Runtime: rt.Id, Params: req.Params, DryRun: req.DryRun})
	if err != nil {
		return nil, toStatus(err)
	}
	return s.redactJob(ctx, r), nil
}

// redactJob is what a change answers: the cluster with its passwords
// hidden, and its job.
func (s *Server) redactJob(ctx context.Context, r *pilotv1.ClusterJob) *pilotv1.ClusterJob {
	return &pilotv1.ClusterJob{Cluster: s.redact(ctx, r.Cluster), Job: r.Job}
}

// redact hides password parameter values (stored sealed or not).
func (s *Server) redact(ctx context.Context, c *pilotv1.Cluster) *pilotv1.Cluster {
	pkg, err := s.pkg(ctx, c.Tenant, c.App, c.AppVersion)
	secret := clusterops.SecretParam(pkg)
	out := proto.Clone(c).(*pilotv1.Cluster)
	for k, v := range out.Params {
		// Without the package we cannot tell which are secret: hide all.
		if err != nil || secret(k) || secretbox.IsSealed(v) {
			out.Params[k] = redacted
		}
	}
	return out
}

// ListClusters lists the tenant's clusters.
func (s *Server) ListClusters(ctx context.Context, _ *pilotv1.ListClustersRequest) (*pilotv1.ListClustersResponse, error) {
	cs, err := listOfTenant(ctx, s, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return nil, err
	}
	for i, c := range cs {
		cs[i] = s.withEndpoints(ctx, s.redact(ctx, c))
	}
	return &pilotv1.ListClustersResponse{Clusters: cs}, nil
}

// listOfTenant lists the records under prefix that belong to the caller's
// tenant (clusters and jobs carry theirs; their keys do not).
func listOfTenant[M interface {
	proto.Message
	GetTenant() string
}](ctx context.Context, s *Server, prefix string, newM func() M) ([]M, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	all, err := store.List(ctx, s.cfg.Store, prefix, newM)
	if err != nil {
		return nil, toStatus(err)
	}
	return slices.DeleteFunc(all, func(m M) bool { return m.GetTenant() != tn }), nil
}

// GetCluster returns a cluster with its nodes and endpoints.
func (s *Server) GetCluster(ctx context.Context, req *pilotv1.GetClusterRequest) (*pilotv1.Cluster, error) {
	c, _, err := s.tenantCluster(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	return s.withEndpoints(ctx, s.redact(ctx, c)), nil
}

// ListClusterEvents returns a cluster's events, oldest first.
func (s *Server) ListClusterEvents(ctx context.Context, req *pilotv1.ListClusterEventsRequest) (*pilotv1.ListClusterEventsResponse, error) {
	if s.cfg.Events == nil {
		return nil, status.Error(codes.Unimplemented, "this pilot keeps no cluster events")
	}
	if _, _, err := s.tenantCluster(ctx, req.GetClusterId()); err != nil {
		return nil, err
	}
	evs, err := s.cfg.Events.List(ctx, req.GetClusterId(), req.GetAfter(), int(req.GetLimit()))
	if err != nil {
		if req.GetLimit() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "limit %d: give 0 (100) to %d", req.GetLimit(), events.MaxLimit)
		}
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &pilotv1.ListClusterEventsResponse{Events: evs}, nil
}

// tenantCluster reads a cluster of the caller's tenant with its revision;
// another tenant's answers exactly like a missing one.
func (s *Server) tenantCluster(ctx context.Context, id string) (*pilotv1.Cluster, int64, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, 0, err
	}
	c := &pilotv1.Cluster{}
	rev, err := s.cfg.Store.Get(ctx, store.ClusterKey(id), c)
	if err != nil {
		return nil, 0, notFoundCluster(id, err)
	}
	if c.Tenant != tn {
		return nil, 0, notFoundCluster(id, store.ErrNotFound)
	}
	return c, rev, nil
}

func notFoundCluster(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return status.Errorf(codes.NotFound, "cluster %s: not found; `hangar cluster list` shows the existing ones", id)
	}
	return toStatus(err)
}

// withEndpoints resolves the spec's endpoints to node addresses.
func (s *Server) withEndpoints(ctx context.Context, c *pilotv1.Cluster) *pilotv1.Cluster {
	spec, err := s.cfg.Lifecycle.Spec(ctx, c)
	if err != nil {
		return c
	}
	c.Endpoints = Endpoints(c, spec)
	return c
}

// Endpoints lists the spec's endpoints. One whose port refers to a role's
// env ("master.env.port") is served by that role: it is listed with every
// address of the role's nodes. Any other is the cluster's: AppCenter names
// no node that serves it, so it is listed once, without role or address.
func Endpoints(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Endpoint {
	var out []*pilotv1.Endpoint
	for _, name := range spec.EndpointNames() {
		port, err := spec.EndpointPort(name)
		if err != nil {
			continue
		}
		pn, _ := strconv.Atoi(port)
		role, _, byRole := strings.Cut(spec.Endpoints[name].Port.Ref, ".env.")
		if !byRole {
			out = append(out, &pilotv1.Endpoint{Name: name, Port: int32(pn), Protocol: spec.Endpoints[name].Protocol})
			continue
		}
		for _, n := range c.Nodes {
			if n.Address == "" || n.Role != role {
				continue
			}
			out = append(out, &pilotv1.Endpoint{Name: name, Role: n.Role, Address: n.Address, Port: int32(pn), Protocol: spec.Endpoints[name].Protocol})
		}
	}
	return out
}

// DeleteCluster starts the delete job.
func (s *Server) DeleteCluster(ctx context.Context, req *pilotv1.DeleteClusterRequest) (*pilotv1.ClusterJob, error) {
	c, rev, err := s.tenantCluster(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	if req.OverrideAllowForce {
		caller, err := auth.Require(ctx)
		if err != nil {
			return nil, err
		}
		if caller.Role != pilotv1.Role_ROLE_ADMIN {
			return nil, status.Errorf(codes.PermissionDenied, "override_allow_force: only admins may delete past an app's allow_force: false; you are %s — ask an admin of tenant %s", auth.RoleName(caller.Role), caller.Tenant)
		}
	}
	r, err := s.cfg.Lifecycle.Delete(ctx, clusterops.OpRequest{C: c, Rev: rev, DryRun: req.DryRun}, req.Force, req.OverrideAllowForce)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.redactJob(ctx, r), nil
}

// UpdateClusterEnv starts a job that re-registers the metadata with the new
// env values, once the lifecycle has validated them.
func (s *Server) UpdateClusterEnv(ctx context.Context, req *pilotv1.UpdateClusterEnvRequest) (*pilotv1.ClusterJob, error) {
	// Existence first: another tenant's cluster answers NotFound whatever
	// the request holds.
	c, rev, err := s.tenantCluster(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	if len(req.Env) == 0 {
		return nil, invalid("env: give at least one key=value")
	}
	r, err := s.cfg.Lifecycle.UpdateEnv(ctx, clusterops.OpRequest{C: c, Rev: rev, DryRun: req.DryRun}, req.Env)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.redactJob(ctx, r), nil
}

// ScaleCluster starts a scale-out or scale-in of one role.
func (s *Server) ScaleCluster(ctx context.Context, req *pilotv1.ScaleClusterRequest) (*pilotv1.ClusterJob, error) {
	c, rev, err := s.tenantCluster(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	if req.Role == "" {
		// A role-less app's one node entry has no role; any other app's
		// roles must be named.
		roles := map[string]bool{}
		for _, n := range c.Nodes {
			roles[n.Role] = true
		}
		if len(roles) > 1 || !roles[""] {
			names := make([]string, 0, len(roles))
			for r := range roles {
				names = append(names, r)
			}
			sort.Strings(names)
			return nil, invalid("role: required; name the role to scale (the cluster's roles: %s)", strings.Join(names, ", "))
		}
	}
	if req.Count < 0 {
		return nil, invalid("count: %d; a node count is 0 or more", req.Count)
	}
	r, err := s.cfg.Lifecycle.Scale(ctx, clusterops.OpRequest{C: c, Rev: rev, DryRun: req.DryRun}, req.Role, int(req.Count))
	if err != nil {
		return nil, toStatus(err)
	}
	return s.redactJob(ctx, r), nil
}

// clusterOp runs an operation of the lifecycle on the caller's cluster id.
func (s *Server) clusterOp(ctx context.Context, id string, r clusterops.OpRequest, do func(clusterops.OpRequest) (*pilotv1.ClusterJob, error)) (*pilotv1.ClusterJob, error) {
	c, rev, err := s.tenantCluster(ctx, id)
	if err != nil {
		return nil, err
	}
	r.C, r.Rev = c, rev
	res, err := do(r)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.redactJob(ctx, res), nil
}

// RecoverCluster starts a job replacing the instances of some nodes.
func (s *Server) RecoverCluster(ctx context.Context, req *pilotv1.RecoverClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Recover(ctx, r, req.NodeIds)
	})
}

// StopCluster starts a job running stop by order and stopping the
// instances.
func (s *Server) StopCluster(ctx context.Context, req *pilotv1.StopClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Stop(ctx, r, req.Force)
	})
}

// StartCluster starts a job starting a stopped cluster.
func (s *Server) StartCluster(ctx context.Context, req *pilotv1.StartClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Start(ctx, r)
	})
}

// ResizeCluster starts a job giving a role's nodes new sizes.
func (s *Server) ResizeCluster(ctx context.Context, req *pilotv1.ResizeClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Resize(ctx, r, req.Role, clusterops.Sizes{CPU: int(req.Cpu), MemoryMiB: int(req.MemoryMib), VolumeGiB: int(req.VolumeGib)})
	})
}

// BackupCluster starts a job taking a backup.
func (s *Server) BackupCluster(ctx context.Context, req *pilotv1.BackupClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		cj, _, err := s.cfg.Lifecycle.Backup(ctx, r, req.Name, req.Params, req.Incremental)
		return cj, err
	})
}

// ListBackups lists the caller's cluster's backups.
func (s *Server) ListBackups(ctx context.Context, req *pilotv1.ListBackupsRequest) (*pilotv1.ListBackupsResponse, error) {
	c, _, err := s.tenantCluster(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	bs, err := s.cfg.Lifecycle.ListBackups(ctx, c)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pilotv1.ListBackupsResponse{Backups: bs}, nil
}

// RestoreCluster starts a job restoring a backup in place.
func (s *Server) RestoreCluster(ctx context.Context, req *pilotv1.RestoreClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Restore(ctx, r, req.BackupId)
	})
}

// UpgradeCluster starts a job moving the cluster to another app version.
func (s *Server) UpgradeCluster(ctx context.Context, req *pilotv1.UpgradeClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Upgrade(ctx, r, req.AppVersion)
	})
}

// RollbackCluster starts a job moving the cluster back to the version its
// last upgrade came from.
func (s *Server) RollbackCluster(ctx context.Context, req *pilotv1.RollbackClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Rollback(ctx, r)
	})
}

// RestartCluster starts a job running the app's restart service by order.
func (s *Server) RestartCluster(ctx context.Context, req *pilotv1.RestartClusterRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{Roles: req.Roles, DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.Restart(ctx, r)
	})
}

// RunClusterService starts a job running one of the app's custom services.
func (s *Server) RunClusterService(ctx context.Context, req *pilotv1.RunClusterServiceRequest) (*pilotv1.ClusterJob, error) {
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{Roles: req.Roles, DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.RunService(ctx, r, req.Service, req.Params)
	})
}

// RunClusterTab starts the job of a display tab.
func (s *Server) RunClusterTab(ctx context.Context, req *pilotv1.RunClusterTabRequest) (*pilotv1.ClusterJob, error) {
	if req.Tab == "" {
		return nil, invalid("tab: required; name one of the app's display_tabs")
	}
	return s.clusterOp(ctx, req.Id, clusterops.OpRequest{DryRun: req.DryRun}, func(r clusterops.OpRequest) (*pilotv1.ClusterJob, error) {
		return s.cfg.Lifecycle.DisplayTab(ctx, r, req.Tab)
	})
}

// ---- jobs ----

// errOtherTenant stops a read-modify-write of another tenant's record.
var errOtherTenant = errors.New("not the caller's tenant")

func notFoundJob(id string) error {
	return status.Errorf(codes.NotFound, "job %s: not found; `hangar job list` shows the existing ones", id)
}

// GetJob returns a job of the tenant.
func (s *Server) GetJob(ctx context.Context, req *pilotv1.GetJobRequest) (*pilotv1.Job, error) {
	j, err := s.tenantJob(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	v, err := jobs.View(ctx, s.cfg.Store, j)
	if err != nil {
		return nil, toStatus(fmt.Errorf("job %s: %w", req.Id, err))
	}
	return v, nil
}

// tenantJob reads the record of a job of the caller's tenant; another
// tenant's answers exactly like a missing one.
func (s *Server) tenantJob(ctx context.Context, id string) (*pilotv1.Job, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	j := &pilotv1.Job{}
	if _, err := s.cfg.Store.Get(ctx, store.JobKey(id), j); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundJob(id)
		}
		return nil, toStatus(fmt.Errorf("job %s: %w", id, err))
	}
	if j.Tenant != tn {
		return nil, notFoundJob(id)
	}
	return j, nil
}

// maxResultsPage is the largest page of ListNodeResults: 100 results of up
// to 64 KiB of output each stay well within a response.
const maxResultsPage = 100

// ListNodeResults pages through a job's node results, outputs whole.
func (s *Server) ListNodeResults(ctx context.Context, req *pilotv1.ListNodeResultsRequest) (*pilotv1.ListNodeResultsResponse, error) {
	j, err := s.tenantJob(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	size := int(req.PageSize)
	if size <= 0 || size > maxResultsPage {
		size = maxResultsPage
	}
	if req.TaskId != "" && !slices.ContainsFunc(j.Tasks, func(t *pilotv1.Task) bool { return t.Id == req.TaskId }) {
		return nil, status.Errorf(codes.NotFound, "job %s has no task %s; `hangar job show %s` lists them", j.Id, req.TaskId, j.Id)
	}
	page, next, err := jobs.ResultsPage(ctx, s.cfg.Store, j.Id, req.TaskId, req.PageToken, size)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pilotv1.ListNodeResultsResponse{NextPageToken: next}
	for _, r := range page {
		out.Results = append(out.Results, &pilotv1.TaskNodeResult{TaskId: r.TaskID, Result: r.Result})
	}
	return out, nil
}

// ListJobs lists the tenant's jobs, optionally of one cluster, oldest first.
func (s *Server) ListJobs(ctx context.Context, req *pilotv1.ListJobsRequest) (*pilotv1.ListJobsResponse, error) {
	js, err := listOfTenant(ctx, s, store.JobsPrefix, func() *pilotv1.Job { return &pilotv1.Job{} })
	if err != nil {
		return nil, err
	}
	js = slices.DeleteFunc(js, func(j *pilotv1.Job) bool { return req.ClusterId != "" && j.ClusterId != req.ClusterId })
	sort.Slice(js, func(i, k int) bool { return js[i].CreatedAt.AsTime().Before(js[k].CreatedAt.AsTime()) })
	return &pilotv1.ListJobsResponse{Jobs: js}, nil
}

// WatchJob streams the job after every change until it is terminal.
func (s *Server) WatchJob(req *pilotv1.WatchJobRequest, st grpc.ServerStreamingServer[pilotv1.Job]) error {
	tn, err := tenant(st.Context())
	if err != nil {
		return err
	}
	first := true
	err = jobs.Watch(st.Context(), s.cfg.Store, req.Id, func(j *pilotv1.Job) error {
		// The first snapshot decides: a job never changes tenant.
		if first && j.Tenant != tn {
			return errOtherTenant
		}
		first = false
		return st.Send(j)
	})
	if errors.Is(err, errOtherTenant) || errors.Is(err, store.ErrNotFound) {
		return notFoundJob(req.Id)
	}
	return toStatus(err)
}

// CancelJob asks a running job of the tenant to stop.
// RetryJob runs the caller's failed or cancelled job again from its steps
// that did not succeed.
func (s *Server) RetryJob(ctx context.Context, req *pilotv1.RetryJobRequest) (*pilotv1.Job, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Lifecycle.Retry(ctx, tn, req.Id)
	var re *clusterops.RefusedError
	if errors.As(err, &re) && re.Reason == clusterops.Invalid {
		return nil, notFoundJob(req.Id)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return j, nil
}

func (s *Server) CancelJob(ctx context.Context, req *pilotv1.CancelJobRequest) (*pilotv1.Job, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	j, err := store.Update(ctx, s.cfg.Store, store.JobKey(req.Id), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
		if j.Tenant != tn {
			return errOtherTenant
		}
		if jobs.Terminal(j.State) || j.CancelRequested {
			return store.ErrNoChange
		}
		j.CancelRequested = true
		return nil
	})
	if errors.Is(err, errOtherTenant) || errors.Is(err, store.ErrNotFound) {
		return nil, notFoundJob(req.Id)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return j, nil
}
