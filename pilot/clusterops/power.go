package clusterops

import (
	"context"
	"fmt"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Stopping and starting a cluster (docs/appcenter-format.md §4):
//
//	stop:  stop by order → the instances stopped (their drones with them)
//	start: the instances started → metadata registered again (addresses
//	       may change) → drones back → confd → start by order; no init
//
// A stopped cluster keeps its nodes, their data and its metadata; only a
// runtime whose provider declares stop_start can stop instances, and the
// operation is refused before anything changes on any other.

// Job kinds.
const (
	KindStop  = "stop_cluster"
	KindStart = "start_cluster"
	// KindStartNodes starts the services of nodes whose instances came
	// back from nothing (the reconciler asks for it after a machine
	// restart).
	KindStartNodes = "start_nodes"
)

// Task kinds.
const (
	taskStopInstances  = "stop_instances"
	taskStartInstances = "start_instances"
)

// Stop accepts stopping cluster r.C: force goes on past failing stop
// commands.
func (l *Lifecycle) Stop(ctx context.Context, r OpRequest, force bool) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED, pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; only an active, degraded or failed cluster is stopped", c.Id, c.Status)
	}
	if err := l.requireStopStart(ctx, c, "stop"); err != nil {
		return nil, err
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	return l.accept(ctx, r, KindStop, PlanStop(c, spec, force), spec, stored)
}

// Start accepts starting the stopped cluster r.C.
func (l *Lifecycle) Start(ctx context.Context, r OpRequest) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED, pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; only a stopped cluster (or one whose start failed) is started", c.Id, c.Status)
	}
	if err := l.requireStopStart(ctx, c, "start"); err != nil {
		return nil, err
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	return l.accept(ctx, r, KindStart, PlanStart(c, spec), spec, stored)
}

// StartNodes accepts starting the services of nodes of cluster r.C whose
// instances booted: their drones get the confd files again, then start
// runs by order on them. No init: the nodes were initialised when they were
// created.
func (l *Lifecycle) StartNodes(ctx context.Context, r OpRequest, nodes []string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	p := &planner{}
	p.add("drones", taskWaitDrones, "wait for the booted nodes' drones", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
	p.add("confd", taskDeliverConfd, "deliver confd templates to the booted nodes", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
	p.serviceSteps(spec, c.Id, "start", stepSpec{roles: rolesOfNodes(c, nodes), nodeIDs: nodes})
	return l.accept(ctx, r, KindStartNodes, p.tasks, spec, stored, "nodes", nodes)
}

// requireStopStart refuses op when the cluster's runtime cannot stop and
// start instances.
func (l *Lifecycle) requireStopStart(ctx context.Context, c *pilotv1.Cluster, op string) error {
	return l.requireCapability(ctx, c, op, sdk.CapStopStart, func(cp sdk.Capabilities) bool { return cp.StopStart })
}

// requireCapability refuses op, before anything changes, when the
// provider of the cluster's runtime lacks capability name. Without a
// provider source (tests of other parts) it does not check.
func (l *Lifecycle) requireCapability(ctx context.Context, c *pilotv1.Cluster, op, name string, has func(sdk.Capabilities) bool) error {
	if l.cfg.Providers == nil {
		return nil
	}
	caps, err := l.capabilities(ctx, c)
	if err != nil {
		return err
	}
	return missing(l, caps, c, op, name, has(caps))
}

// missing refuses op, naming capability name, unless ok (or the lifecycle
// checks no capabilities).
func missing(l *Lifecycle, caps sdk.Capabilities, c *pilotv1.Cluster, op, name string, ok bool) error {
	if ok || l.cfg.Providers == nil {
		return nil
	}
	return refuse(Precondition, "%v", &sdk.CapabilityMissingError{Provider: caps.Provider, Capability: name, Operation: op + " (runtime " + c.Runtime + ")"})
}

// capabilities are those of the provider of the cluster's runtime (none
// without a provider source).
func (l *Lifecycle) capabilities(ctx context.Context, c *pilotv1.Cluster) (sdk.Capabilities, error) {
	if l.cfg.Providers == nil {
		return sdk.Capabilities{}, nil
	}
	rt := &pilotv1.Runtime{}
	if _, err := l.cfg.Store.Get(ctx, store.RuntimeKey(c.Tenant, c.Runtime), rt); err != nil {
		return sdk.Capabilities{}, refuse(Precondition, "cluster %s: runtime %s: %v", c.Id, c.Runtime, err)
	}
	prov, err := l.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return sdk.Capabilities{}, fmt.Errorf("runtime %s: provider %s: %w", rt.Id, rt.Provider, err)
	}
	info, err := prov.Info(ctx, &providerv1.InfoRequest{})
	if err != nil {
		return sdk.Capabilities{}, fmt.Errorf("runtime %s: provider %s: info: %w", rt.Id, rt.Provider, err)
	}
	caps := sdk.CapabilitiesOf(info)
	if caps.Provider == "" {
		caps.Provider = rt.Provider
	}
	return caps, nil
}

// PlanStop is the stop order of events. The instances of a role with
// user_access survive the stop (its stop service still runs): AppCenter
// keeps them up for their users to log in.
func PlanStop(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, force bool) []*pilotv1.Task {
	p := &planner{}
	p.serviceSteps(spec, c.Id, "stop", stepSpec{force: force})
	in := &pilotv1.TaskInput{ClusterId: c.Id}
	var kept []string
	for _, n := range c.Nodes {
		if rs := roleSpec(spec, n.Role); rs != nil && rs.UserAccess {
			kept = append(kept, n.Role)
			continue
		}
		in.NodeIds = append(in.NodeIds, n.Id)
	}
	switch {
	case len(kept) == 0:
		in.NodeIds = nil
		p.add("stop-instances", taskStopInstances, "stop the instances", in)
	case len(in.NodeIds) > 0:
		p.add("stop-instances", taskStopInstances, "stop the instances (those of roles with user_access stay up)", in)
	}
	return p.tasks
}

// PlanStart is the start order of events.
func PlanStart(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Task {
	p := &planner{}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id} }
	p.add("frontgate", taskEnsureFrontgate, "ensure the network's frontgate is running and connected", in())
	p.add("start-instances", taskStartInstances, "start the instances", in())
	p.add("register", taskRegister, "register metadata again (addresses may have changed)", in())
	p.add("drones", taskWaitDrones, "wait for every drone to connect", in())
	p.add("confd", taskDeliverConfd, "deliver confd templates and render", in())
	p.serviceSteps(spec, c.Id, "start", stepSpec{})
	return p.tasks
}

// stopInstances stops each node's instance through the provider.
func (o *Ops) stopInstances(ctx context.Context, t *jobs.Task) error {
	return o.powerInstances(ctx, t, pilotv1.NodeStatus_NODE_STATUS_STOPPED, func(tc *taskEnv, nd *pilotv1.Node) (*providerv1.Instance, error) {
		return tc.prov.StopInstance(ctx, &providerv1.StopInstanceRequest{Runtime: tc.prt, InstanceId: nd.InstanceId, IdempotencyToken: t.Job.Id + "." + nd.Id})
	})
}

// startInstances starts each node's instance again, recording its address
// (a provider may give a new one).
func (o *Ops) startInstances(ctx context.Context, t *jobs.Task) error {
	return o.powerInstances(ctx, t, pilotv1.NodeStatus_NODE_STATUS_PENDING, func(tc *taskEnv, nd *pilotv1.Node) (*providerv1.Instance, error) {
		return tc.prov.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: tc.prt, InstanceId: nd.InstanceId, IdempotencyToken: t.Job.Id + "." + nd.Id})
	})
}

func (o *Ops) powerInstances(ctx context.Context, t *jobs.Task, st pilotv1.NodeStatus, call func(*taskEnv, *pilotv1.Node) (*providerv1.Instance, error)) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	return forEachNode(ctx, withInstances(onlyNodes(tc.c.Nodes, tc.in.NodeIds)), func(ctx context.Context, nd *pilotv1.Node) error {
		inst, err := call(tc, nd)
		if err != nil {
			return providerErr(fmt.Sprintf("%s instance %s of node %s", t.Task.Title, nd.InstanceId, nd.Id), err)
		}
		return o.setNode(ctx, tc.c.Id, nd.Id, func(x *pilotv1.Node) {
			x.Status = st
			if a := inst.GetAddress(); a != "" {
				x.Address = a
			}
		})
	})
}

// withInstances keeps the nodes that have an instance.
func withInstances(nodes []*pilotv1.Node) []*pilotv1.Node {
	var out []*pilotv1.Node
	for _, nd := range nodes {
		if nd.InstanceId != "" {
			out = append(out, nd)
		}
	}
	return out
}

// finishPower settles a stopped or started cluster.
func (o *Ops) finishPower(ctx context.Context, j *pilotv1.Job) error {
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		switch {
		case j.Kind == KindStartNodes:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			for _, nd := range c.Nodes {
				switch {
				case nd.Status == pilotv1.NodeStatus_NODE_STATUS_STARTING && j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED:
					nd.Status = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
				case nd.Status == pilotv1.NodeStatus_NODE_STATUS_STARTING:
					nd.Status = pilotv1.NodeStatus_NODE_STATUS_FAILED
				}
				if nd.Status != pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
					c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED
				}
			}
			if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
				c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
			}
		case j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		case j.Kind == KindStop:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED
		default:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			for _, nd := range c.Nodes {
				if nd.InstanceId != "" {
					nd.Status = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
				}
			}
		}
		return nil
	})
	return ignoreNotFound(err)
}
