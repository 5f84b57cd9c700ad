package clusterops

import (
	"context"
	"fmt"
	"sort"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Vertical scaling (docs/appcenter-format.md §4): the role is listed under
// vertical-scaling-roles in the metadata while it runs; a volume that only
// grows is resized online (on a provider with live_resize); otherwise each
// node runs stop, its instance is
// stopped, resized and started, and it runs start, all of the role's nodes
// at once (vertical_scaling_policy parallel, the default) or one at a time
// by server id (sequential). Then the metadata, with the new sizes and
// without the key, is registered. The role's cpu, memory and volume_size
// parameters, where config.json declares them, take the new values (within
// their range), so nodes added later get them too.

// KindResize is the job kind of vertical scaling.
const KindResize = "resize_cluster"

const taskResizeInstances = "resize_instances"

// Sizes are the new sizes of a resize; 0 keeps one.
type Sizes struct{ CPU, MemoryMiB, VolumeGiB int }

// Resize accepts new sizes for role's nodes.
func (l *Lifecycle) Resize(ctx context.Context, r OpRequest, role string, sz Sizes) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return nil, refuse(Precondition, "cluster %s is %s; only an active cluster is resized", c.Id, c.Status)
	}
	if sz.CPU < 0 || sz.MemoryMiB < 0 || sz.VolumeGiB < 0 || sz == (Sizes{}) {
		return nil, refuse(Invalid, "cpu, memory_mib, volume_gib: give at least one new size, each above 0")
	}
	var nodes []*pilotv1.Node
	for _, nd := range c.Nodes {
		if nd.Role == role && nd.InstanceId != "" {
			nodes = append(nodes, nd)
		}
	}
	if len(nodes) == 0 {
		return nil, refuse(Invalid, "role: %q is not a role of cluster %s with nodes (its roles: %v)", role, c.Id, rolesOf(c))
	}
	// A volume that only grows is resized online where the provider can
	// resize a running instance; anything else stops the nodes first.
	caps, err := l.capabilities(ctx, c)
	if err != nil {
		return nil, err
	}
	online := sz.CPU == 0 && sz.MemoryMiB == 0 && (caps.LiveResize || l.cfg.Providers == nil)
	if err := missing(l, caps, c, "resize", sdk.CapResize, caps.Resize); err != nil {
		return nil, err
	}
	if err := missing(l, caps, c, "resize with a stop", sdk.CapStopStart, online || caps.StopStart); err != nil {
		return nil, err
	}
	pkg, secret, vals, err := l.storedValues(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		key string
		v   int
	}{{"cpu", sz.CPU}, {"memory", sz.MemoryMiB}, {"volume_size", sz.VolumeGiB}} {
		if p.v == 0 {
			continue
		}
		if vals, err = vals.ChangeRoleParam(role, p.key, p.v); err != nil {
			return nil, refuse(Invalid, "%v", err)
		}
	}
	spec, stored, err := l.render(pkg, vals, nil, secret)
	if err != nil {
		return nil, err
	}
	rs := roleSpec(spec, role)
	if rs == nil {
		return nil, refuse(Invalid, "role: %q is not in the package's cluster.json", role)
	}
	if v := volumeSizeOf(nodes[0], rs); sz.VolumeGiB > 0 && sz.VolumeGiB < v {
		return nil, refuse(Invalid, "volume_gib: %d is smaller than the role's %d GiB; a volume never shrinks", sz.VolumeGiB, v)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Sid < nodes[j].Sid })
	tasks := PlanResize(c, spec, role, nodeIDs(nodes), sz, online, rs.VerticalScalingPolicy == "sequential")
	c.Params = secretbox.SealParams(l.cfg.Packages.Box, c.Id, vals.Strings(), secret)
	return l.accept(ctx, r, KindResize, tasks, spec, stored, "role", role, "cpu", sz.CPU, "memory_mib", sz.MemoryMiB, "volume_gib", sz.VolumeGiB)
}

func volumeSizeOf(nd *pilotv1.Node, rs *apppkg.NodeSpec) int {
	if nd.VolumeGib > 0 {
		return int(nd.VolumeGib)
	}
	return volumeSize(rs)
}

// PlanResize is the vertical scaling of role's nodes.
func PlanResize(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, role string, nodes []string, sz Sizes, online, sequential bool) []*pilotv1.Task {
	p := &planner{}
	roles := []string{role}
	sizes := func(ids []string) *pilotv1.TaskInput {
		return &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: ids, Cpu: int32(sz.CPU), MemoryMib: int32(sz.MemoryMiB), VolumeGib: int32(sz.VolumeGiB)}
	}
	p.add("register", taskRegister, "register metadata with vertical-scaling-roles", &pilotv1.TaskInput{ClusterId: c.Id, VerticalScalingRoles: roles})
	switch {
	case online:
		p.add("resize", taskResizeInstances, "grow the volumes online", sizes(nodes))
	case sequential:
		for _, id := range nodes {
			one := []string{id}
			pre := safeID(id) + "-"
			p.serviceSteps(spec, c.Id, "stop", stepSpec{idPrefix: pre + "stop", roles: roles, nodeIDs: one})
			p.add(pre+"stop-instance", taskStopInstances, "stop the instance of node "+id, &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: one})
			p.add(pre+"resize", taskResizeInstances, "resize the instance of node "+id, sizes(one))
			p.add(pre+"start-instance", taskStartInstances, "start the instance of node "+id, &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: one})
			p.add(pre+"drone", taskWaitDrones, "wait for the drone of node "+id, &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: one})
			p.serviceSteps(spec, c.Id, "start", stepSpec{idPrefix: pre + "start", roles: roles, nodeIDs: one})
		}
	default:
		p.serviceSteps(spec, c.Id, "stop", stepSpec{roles: roles, nodeIDs: nodes})
		p.add("stop-instances", taskStopInstances, "stop the instances of role "+role, &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
		p.add("resize", taskResizeInstances, "resize the instances of role "+role, sizes(nodes))
		p.add("start-instances", taskStartInstances, "start the instances of role "+role, &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
		p.add("drones", taskWaitDrones, "wait for their drones", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
		p.serviceSteps(spec, c.Id, "start", stepSpec{roles: roles, nodeIDs: nodes})
	}
	p.add("finish", taskRegister, "register metadata with the new sizes, without vertical-scaling-roles", &pilotv1.TaskInput{ClusterId: c.Id})
	return p.tasks
}

// resizeInstances resizes each node's instance and records its new sizes.
func (o *Ops) resizeInstances(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	in := tc.in
	return forEachNode(ctx, withInstances(onlyNodes(tc.c.Nodes, in.NodeIds)), func(ctx context.Context, nd *pilotv1.Node) error {
		inst, err := tc.prov.ResizeInstance(ctx, &providerv1.ResizeInstanceRequest{Runtime: tc.prt, InstanceId: nd.InstanceId, IdempotencyToken: t.Job.Id + "." + nd.Id,
			Cpu: in.Cpu, MemoryMib: in.MemoryMib, VolumeGib: in.VolumeGib})
		if err != nil {
			return providerErr(fmt.Sprintf("resize instance %s of node %s", nd.InstanceId, nd.Id), err)
		}
		return o.setNode(ctx, tc.c.Id, nd.Id, func(x *pilotv1.Node) {
			x.Cpu, x.MemoryMib, x.VolumeGib = orSize(inst.GetCpu(), in.Cpu), orSize(inst.GetMemoryMib(), in.MemoryMib), orSize(inst.GetVolumeGib(), in.VolumeGib)
		})
	})
}

// orSize is what the provider says, else what was asked.
func orSize(got, asked int32) int32 {
	if got > 0 {
		return got
	}
	return asked
}
