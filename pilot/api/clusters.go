package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// redacted replaces password values in every response.
const redacted = "******"

// CreateCluster validates everything, then stores the cluster and its create
// job in one transaction.
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
	pkg, err := s.pkg(ctx, tn, app.Name, app.Version)
	if err != nil {
		return nil, toStatus(err)
	}
	secret := clusterops.SecretParam(pkg)
	vals, err := pkg.Resolve(req.Params)
	if err != nil {
		return nil, invalid("%s", scrub(err, req.Params, secret))
	}
	spec, err := s.renderChange(pkg, vals, req.Params, secret)
	if err != nil {
		return nil, err
	}

	c := &pilotv1.Cluster{
		Id:         newID("cl-"),
		Name:       spec.Name,
		App:        app.Name,
		AppVersion: app.Version,
		Runtime:    rt.Id,
		Status:     pilotv1.ClusterStatus_CLUSTER_STATUS_PENDING,
		Params:     vals.Strings(),
		CreatedAt:  timestamppb.Now(),
		Tenant:     tn,
	}
	sid := int32(0)
	for _, n := range spec.Nodes {
		for i := 0; i < n.Count; i++ {
			sid++
			c.Nodes = append(c.Nodes, &pilotv1.Node{Id: newID("cln-"), Role: n.Role, Sid: sid, Status: pilotv1.NodeStatus_NODE_STATUS_PENDING})
		}
	}
	if len(c.Nodes) == 0 {
		return nil, invalid("cluster.<role>.count: the cluster would have no nodes; at least one role needs a count above 0")
	}
	c.Params = secretbox.SealParams(s.cfg.Box, c.Id, c.Params, secret)
	job := jobs.NewJob(newID("job-"), clusterops.KindCreate, c.Id, clusterops.PlanCreate(c, spec))
	job.Tenant = tn
	if err := s.cfg.Engine.Validate(job); err != nil {
		return nil, status.Errorf(codes.Internal, "plan: %v", err)
	}
	c.JobId = job.Id
	if err := s.commitWithJob(ctx, c, 0, job); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("cluster create accepted", "cluster_id", c.Id, "tenant", tn, "app", c.App, "version", c.AppVersion, "runtime", c.Runtime, "nodes", len(c.Nodes), "job_id", job.Id)
	return &pilotv1.ClusterJob{Cluster: s.redact(ctx, c), Job: job}, nil
}

// commitWithJob writes the cluster (if it is still at rev; 0: new) and its
// new job in one transaction, then wakes the engine.
func (s *Server) commitWithJob(ctx context.Context, c *pilotv1.Cluster, rev int64, job *pilotv1.Job) error {
	puts := jobs.Records(job)
	guards := map[string]int64{store.ClusterKey(c.Id): rev}
	for k := range puts {
		guards[k] = 0
	}
	puts[store.ClusterKey(c.Id)] = c
	if err := s.cfg.Store.Commit(ctx, guards, puts); err != nil {
		return err
	}
	s.cfg.Engine.Wake()
	return nil
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
			msg = strings.ReplaceAll(msg, form, redacted)
		}
	}
	return msg
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
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	all, err := store.List(ctx, s.cfg.Store, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return nil, toStatus(err)
	}
	cs := make([]*pilotv1.Cluster, 0, len(all))
	for _, c := range all {
		if c.Tenant == tn {
			cs = append(cs, s.withEndpoints(ctx, s.redact(ctx, c)))
		}
	}
	return &pilotv1.ListClustersResponse{Clusters: cs}, nil
}

// GetCluster returns a cluster with its nodes and endpoints.
func (s *Server) GetCluster(ctx context.Context, req *pilotv1.GetClusterRequest) (*pilotv1.Cluster, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	c, _, err := s.getCluster(ctx, tn, req.Id)
	if err != nil {
		return nil, err
	}
	return s.withEndpoints(ctx, s.redact(ctx, c)), nil
}

// getCluster reads a cluster of the tenant with its revision; another
// tenant's answers exactly like a missing one.
func (s *Server) getCluster(ctx context.Context, tn, id string) (*pilotv1.Cluster, int64, error) {
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
	_, spec, err := s.cfg.Packages.Spec(ctx, c)
	if err != nil {
		return c
	}
	c.Endpoints = Endpoints(c, spec)
	return c
}

// Endpoints lists, for each endpoint of the spec, every node address.
func Endpoints(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Endpoint {
	var out []*pilotv1.Endpoint
	for _, name := range spec.EndpointNames() {
		port, err := spec.EndpointPort(name)
		if err != nil {
			continue
		}
		pn, _ := strconv.Atoi(port)
		for _, n := range c.Nodes {
			if n.Address == "" {
				continue
			}
			out = append(out, &pilotv1.Endpoint{Name: name, Role: n.Role, Address: n.Address, Port: int32(pn), Protocol: spec.Endpoints[name].Protocol})
		}
	}
	return out
}

// busy refuses a change while another job of the cluster runs.
func (s *Server) busy(ctx context.Context, c *pilotv1.Cluster) error {
	if c.JobId == "" {
		return nil
	}
	j := &pilotv1.Job{}
	if _, err := s.cfg.Store.Get(ctx, store.JobKey(c.JobId), j); err != nil {
		return nil
	}
	if !jobs.Terminal(j.State) {
		return status.Errorf(codes.FailedPrecondition, "cluster %s: job %s (%s) is still running; wait for it (`hangar job watch %s`) or cancel it", c.Id, j.Id, j.Kind, j.Id)
	}
	return nil
}

// DeleteCluster starts the delete job.
func (s *Server) DeleteCluster(ctx context.Context, req *pilotv1.DeleteClusterRequest) (*pilotv1.ClusterJob, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	c, rev, err := s.getCluster(ctx, tn, req.Id)
	if err != nil {
		return nil, err
	}
	if err := s.busy(ctx, c); err != nil {
		return nil, err
	}
	_, spec, err := s.cfg.Packages.Spec(ctx, c)
	if err != nil && !req.Force {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s: %v; delete with force to skip its services", c.Id, err)
	}
	job := jobs.NewJob(newID("job-"), clusterops.KindDelete, c.Id, clusterops.PlanDelete(c, spec, req.Force))
	job.Tenant = tn
	if err := s.cfg.Engine.Validate(job); err != nil {
		return nil, status.Errorf(codes.Internal, "plan: %v", err)
	}
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING
	c.JobId = job.Id
	if err := s.commitWithJob(ctx, c, rev, job); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("cluster delete accepted", "cluster_id", c.Id, "job_id", job.Id, "force", req.Force)
	return &pilotv1.ClusterJob{Cluster: s.redact(ctx, c), Job: job}, nil
}

// UpdateClusterEnv validates the new env values and starts a job that
// re-registers the metadata.
func (s *Server) UpdateClusterEnv(ctx context.Context, req *pilotv1.UpdateClusterEnvRequest) (*pilotv1.ClusterJob, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	// Existence first: another tenant's cluster answers NotFound whatever
	// the request holds.
	c, rev, err := s.getCluster(ctx, tn, req.Id)
	if err != nil {
		return nil, err
	}
	if len(req.Env) == 0 {
		return nil, invalid("env: give at least one key=value")
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s is %s; env can change only on an active cluster", c.Id, c.Status)
	}
	if err := s.busy(ctx, c); err != nil {
		return nil, err
	}
	pkg, err := s.pkg(ctx, c.Tenant, c.App, c.AppVersion)
	if err != nil {
		return nil, toStatus(err)
	}
	secret := clusterops.SecretParam(pkg)
	stored, err := secretbox.OpenParams(s.cfg.Box, c.Id, c.Params, secret)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	vals, err := pkg.Resolve(stored)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	envSecret := func(k string) bool { return secret("env." + k) }
	nv, err := vals.ChangeEnv(req.Env)
	if err != nil {
		return nil, invalid("%s", scrub(err, req.Env, envSecret))
	}
	if _, err := s.renderChange(pkg, nv, req.Env, envSecret); err != nil {
		return nil, err
	}
	job := jobs.NewJob(newID("job-"), clusterops.KindUpdateEnv, c.Id, clusterops.PlanUpdateEnv(c))
	job.Tenant = tn
	c.Params = secretbox.SealParams(s.cfg.Box, c.Id, nv.Strings(), secret)
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	c.JobId = job.Id
	if err := s.commitWithJob(ctx, c, rev, job); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("cluster env update accepted", "cluster_id", c.Id, "job_id", job.Id, "keys", len(req.Env))
	return &pilotv1.ClusterJob{Cluster: s.redact(ctx, c), Job: job}, nil
}

// ---- jobs ----

// errOtherTenant stops a read-modify-write of another tenant's record.
var errOtherTenant = errors.New("not the caller's tenant")

func notFoundJob(id string) error {
	return status.Errorf(codes.NotFound, "job %s: not found; `hangar job list` shows the existing ones", id)
}

// GetJob returns a job of the tenant.
func (s *Server) GetJob(ctx context.Context, req *pilotv1.GetJobRequest) (*pilotv1.Job, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	j := &pilotv1.Job{}
	if _, err := s.cfg.Store.Get(ctx, store.JobKey(req.Id), j); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundJob(req.Id)
		}
		return nil, toStatus(fmt.Errorf("job %s: %w", req.Id, err))
	}
	if j.Tenant != tn {
		return nil, notFoundJob(req.Id)
	}
	return j, nil
}

// ListJobs lists the tenant's jobs, optionally of one cluster, oldest first.
func (s *Server) ListJobs(ctx context.Context, req *pilotv1.ListJobsRequest) (*pilotv1.ListJobsResponse, error) {
	tn, err := tenant(ctx)
	if err != nil {
		return nil, err
	}
	js, err := store.List(ctx, s.cfg.Store, store.JobsPrefix, func() *pilotv1.Job { return &pilotv1.Job{} })
	if err != nil {
		return nil, toStatus(err)
	}
	out := js[:0]
	for _, j := range js {
		if j.Tenant == tn && (req.ClusterId == "" || j.ClusterId == req.ClusterId) {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].CreatedAt.AsTime().Before(out[k].CreatedAt.AsTime()) })
	return &pilotv1.ListJobsResponse{Jobs: out}, nil
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
