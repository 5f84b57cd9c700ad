package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// redacted replaces password values in every response.
const redacted = "******"

// CreateCluster validates everything, then stores the cluster and its create
// job in one transaction.
func (s *Server) CreateCluster(ctx context.Context, req *pilotv1.CreateClusterRequest) (*pilotv1.ClusterJob, error) {
	if req.App == "" {
		return nil, invalid("app: required (see `hangar app list`)")
	}
	if req.Runtime == "" {
		req.Runtime = "local"
	}
	app, err := s.findApp(ctx, req.App, req.AppVersion)
	if err != nil {
		return nil, toStatus(err)
	}
	rt := &pilotv1.Runtime{}
	if _, err := s.cfg.Store.Get(ctx, store.RuntimeKey(req.Runtime), rt); err != nil {
		return nil, status.Errorf(codes.NotFound, "runtime %s: not found; `hangar runtime list` shows the registered ones", req.Runtime)
	}
	pkg, err := s.pkg(ctx, app.Name, app.Version)
	if err != nil {
		return nil, toStatus(err)
	}
	vals, err := pkg.Resolve(req.Params)
	if err != nil {
		return nil, invalid("%v", err)
	}
	spec, err := pkg.Render(vals)
	if err != nil {
		return nil, invalid("%v", err)
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
	job := jobs.NewJob(newID("job-"), clusterops.KindCreate, c.Id, clusterops.PlanCreate(c, spec))
	if err := s.cfg.Engine.Validate(job); err != nil {
		return nil, status.Errorf(codes.Internal, "plan: %v", err)
	}
	c.JobId = job.Id
	if err := s.commitWithJob(ctx, c, 0, job); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("cluster create accepted", "cluster_id", c.Id, "app", c.App, "version", c.AppVersion, "runtime", c.Runtime, "nodes", len(c.Nodes), "job_id", job.Id)
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

// redact hides password parameter values.
func (s *Server) redact(ctx context.Context, c *pilotv1.Cluster) *pilotv1.Cluster {
	var vals *apppkg.Values
	pkg, err := s.pkg(ctx, c.App, c.AppVersion)
	if err == nil {
		vals, err = pkg.Resolve(c.Params)
	}
	out := proto.Clone(c).(*pilotv1.Cluster)
	for k := range out.Params {
		// Without the package we cannot tell which are secret: hide all.
		if err != nil || vals.Secret(k) {
			out.Params[k] = redacted
		}
	}
	return out
}

// ListClusters lists clusters.
func (s *Server) ListClusters(ctx context.Context, _ *pilotv1.ListClustersRequest) (*pilotv1.ListClustersResponse, error) {
	cs, err := store.List(ctx, s.cfg.Store, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return nil, toStatus(err)
	}
	for i, c := range cs {
		cs[i] = s.withEndpoints(ctx, s.redact(ctx, c))
	}
	return &pilotv1.ListClustersResponse{Clusters: cs}, nil
}

// GetCluster returns a cluster with its nodes and endpoints.
func (s *Server) GetCluster(ctx context.Context, req *pilotv1.GetClusterRequest) (*pilotv1.Cluster, error) {
	c := &pilotv1.Cluster{}
	if _, err := s.cfg.Store.Get(ctx, store.ClusterKey(req.Id), c); err != nil {
		return nil, notFoundCluster(req.Id, err)
	}
	return s.withEndpoints(ctx, s.redact(ctx, c)), nil
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
	c := &pilotv1.Cluster{}
	rev, err := s.cfg.Store.Get(ctx, store.ClusterKey(req.Id), c)
	if err != nil {
		return nil, notFoundCluster(req.Id, err)
	}
	if err := s.busy(ctx, c); err != nil {
		return nil, err
	}
	_, spec, err := s.cfg.Packages.Spec(ctx, c)
	if err != nil && !req.Force {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s: %v; delete with force to skip its services", c.Id, err)
	}
	job := jobs.NewJob(newID("job-"), clusterops.KindDelete, c.Id, clusterops.PlanDelete(c, spec, req.Force))
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
	if len(req.Env) == 0 {
		return nil, invalid("env: give at least one key=value")
	}
	c := &pilotv1.Cluster{}
	rev, err := s.cfg.Store.Get(ctx, store.ClusterKey(req.Id), c)
	if err != nil {
		return nil, notFoundCluster(req.Id, err)
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s is %s; env can change only on an active cluster", c.Id, c.Status)
	}
	if err := s.busy(ctx, c); err != nil {
		return nil, err
	}
	pkg, err := s.pkg(ctx, c.App, c.AppVersion)
	if err != nil {
		return nil, toStatus(err)
	}
	vals, err := pkg.Resolve(c.Params)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	nv, err := vals.ChangeEnv(req.Env)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if _, err := pkg.Render(nv); err != nil {
		return nil, invalid("%v", err)
	}
	job := jobs.NewJob(newID("job-"), clusterops.KindUpdateEnv, c.Id, clusterops.PlanUpdateEnv(c))
	c.Params = nv.Strings()
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	c.JobId = job.Id
	if err := s.commitWithJob(ctx, c, rev, job); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("cluster env update accepted", "cluster_id", c.Id, "job_id", job.Id, "keys", len(req.Env))
	return &pilotv1.ClusterJob{Cluster: s.redact(ctx, c), Job: job}, nil
}

// ---- jobs ----

// GetJob returns a job.
func (s *Server) GetJob(ctx context.Context, req *pilotv1.GetJobRequest) (*pilotv1.Job, error) {
	j := &pilotv1.Job{}
	if _, err := s.cfg.Store.Get(ctx, store.JobKey(req.Id), j); err != nil {
		return nil, toStatus(fmt.Errorf("job %s: %w", req.Id, err))
	}
	return j, nil
}

// ListJobs lists jobs, optionally of one cluster, oldest first.
func (s *Server) ListJobs(ctx context.Context, req *pilotv1.ListJobsRequest) (*pilotv1.ListJobsResponse, error) {
	js, err := store.List(ctx, s.cfg.Store, store.JobsPrefix, func() *pilotv1.Job { return &pilotv1.Job{} })
	if err != nil {
		return nil, toStatus(err)
	}
	out := js[:0]
	for _, j := range js {
		if req.ClusterId == "" || j.ClusterId == req.ClusterId {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].CreatedAt.AsTime().Before(out[k].CreatedAt.AsTime()) })
	return &pilotv1.ListJobsResponse{Jobs: out}, nil
}

// WatchJob streams the job after every change until it is terminal.
func (s *Server) WatchJob(req *pilotv1.WatchJobRequest, st grpc.ServerStreamingServer[pilotv1.Job]) error {
	err := jobs.Watch(st.Context(), s.cfg.Store, req.Id, st.Send)
	return toStatus(err)
}

// CancelJob asks a running job to stop.
func (s *Server) CancelJob(ctx context.Context, req *pilotv1.CancelJobRequest) (*pilotv1.Job, error) {
	j, err := store.Update(ctx, s.cfg.Store, store.JobKey(req.Id), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
		if jobs.Terminal(j.State) || j.CancelRequested {
			return store.ErrNoChange
		}
		j.CancelRequested = true
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return j, nil
}
