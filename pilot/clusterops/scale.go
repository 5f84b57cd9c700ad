package clusterops

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// Scaling a role out and in, in AppCenter's order of events
// (docs/appcenter-format.md §4, docs/operations.md):
//
// Scale-out: scale_out's pre_check on the existing nodes (non-zero refuses
// the operation before anything changes) → the new node records → their
// instances → metadata with the new hosts under hosts and adding-hosts (the
// existing nodes re-render) → the new drones → their confd → init and start
// on the new nodes, by order → scale_out on the existing nodes, by order →
// metadata without adding-hosts.
//
// Scale-in (the role's highest server ids leave): metadata with the leaving
// hosts under deleting-hosts → the staying nodes' drones have rendered it
// (so a load balancer has drained the leaving nodes) → scale_in's pre_check on the remaining nodes
// → destroy (pre-stop) on the leaving nodes → scale_in on the remaining
// nodes, by order → stop on the leaving nodes → destroy (post-stop) → their
// instances deleted → their node records removed → metadata without them.
//
// A server id (sid) is never reused: new nodes take the cluster's last_sid
// onwards.

// Job kinds of scaling.
const (
	KindScaleOut = "scale_out"
	KindScaleIn  = "scale_in"
)

// Task kinds of scaling.
const (
	taskAddNodes    = "add_nodes"
	taskRemoveNodes = "remove_nodes"
)

// Scale accepts a new node count for role: a scale-out, a scale-in, or,
// for the count it has, nothing to do (refused, so the user knows).
func (l *Lifecycle) Scale(ctx context.Context, r OpRequest, role string, count int) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return nil, refuse(Precondition, "cluster %s is %s; only an active cluster is scaled (a failed one: fix it first, e.g. with a restart)", c.Id, c.Status)
	}
	var have []*pilotv1.Node
	for _, nd := range c.Nodes {
		if nd.Role == role {
			have = append(have, nd)
		}
	}
	if len(have) == count {
		return nil, refuse(Invalid, "count: role %q already has %d nodes", role, count)
	}
	pkg, secret, vals, err := l.storedValues(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return nil, refuse(Invalid, "role: %q is not a role of cluster %s (%s %s)", role, c.Id, c.App, c.AppVersion)
	}
	nv, err := vals.ChangeCount(role, count)
	if err != nil {
		return nil, refuse(Invalid, "%v", err)
	}
	spec, stored, err := l.render(pkg, nv, nil, secret)
	if err != nil {
		return nil, err
	}
	if n, ok := spec.Node(role); !ok || n.Count != count {
		return nil, refuse(Invalid, "%s: the package's cluster.json does not use it as role %q's count, so Hangar cannot scale the role", vals.CountPath(role), role)
	}
	sort.Slice(have, func(i, j int) bool { return have[i].Sid < have[j].Sid })
	existing := nodeIDs(c.Nodes)
	kind := KindScaleOut
	var tasks []*pilotv1.Task
	if count > len(have) {
		added := make([]string, count-len(have))
		for i := range added {
			added[i] = newID("cln-")
		}
		tasks = PlanScaleOut(c, spec, role, existing, added)
		images, err := l.imagesFor(ctx, c.Tenant, c.App, c.AppVersion, c.Runtime, spec, []string{role})
		if err != nil {
			return nil, err
		}
		for _, t := range tasks {
			if t.Kind == taskAddNodes {
				t.Input.Image = images[role]
			}
		}
	} else {
		kind = KindScaleIn
		var leaving []string
		for _, nd := range have[count:] {
			leaving = append(leaving, nd.Id)
		}
		var staying []string
		for _, id := range existing {
			if !slices.Contains(leaving, id) {
				staying = append(staying, id)
			}
		}
		tasks = PlanScaleIn(c, spec, role, staying, leaving)
	}
	return l.accept(ctx, r, kind, tasks, spec, stored, "role", role, "from", len(have), "to", count)
}

// rolesOfNodes are the roles of the nodes ids of c: the roles a step over
// those nodes can run on.
func rolesOfNodes(c *pilotv1.Cluster, ids []string) []string {
	var roles []string
	for _, nd := range c.Nodes {
		if slices.Contains(ids, nd.Id) && !slices.Contains(roles, nd.Role) {
			roles = append(roles, nd.Role)
		}
	}
	if roles == nil {
		// No node: no step (nil would mean every role).
		roles = []string{}
	}
	return roles
}

func nodeIDs(nodes []*pilotv1.Node) []string {
	out := make([]string, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.Id
	}
	return out
}

// PlanScaleOut adds the nodes added (new ids) to role; existing are the
// cluster's nodes before.
func PlanScaleOut(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, role string, existing, added []string) []*pilotv1.Task {
	p := &planner{}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id} }
	existingRoles, newRoles := rolesOfNodes(c, existing), []string{role}
	p.serviceSteps(spec, c.Id, "scale_out", stepSpec{idPrefix: "scale_out-check", preCheck: true, roles: existingRoles, nodeIDs: existing})
	p.add("add-nodes", taskAddNodes, fmt.Sprintf("add %d nodes to role %s", len(added), role), &pilotv1.TaskInput{ClusterId: c.Id, Role: role, NodeIds: added})
	if rs := roleSpec(spec, role); rs != nil && len(rs.ReservedIPs) > 0 {
		p.add("addresses", taskReserveAddresses, "reserve the new nodes' addresses (reserved_ips)", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: added})
	}
	p.add("instances-"+safeID(role), taskRunInstances, "run instances for "+roleList([]string{role}), &pilotv1.TaskInput{ClusterId: c.Id, Role: role})
	p.add("register-adding", taskRegister, "register metadata with the new nodes (adding-hosts)", &pilotv1.TaskInput{ClusterId: c.Id, AddingNodeIds: added})
	p.add("drones", taskWaitDrones, "wait for the new nodes' drones", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: added})
	p.add("confd", taskDeliverConfd, "deliver confd templates to the new nodes", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: added})
	p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "pre", roles: newRoles, nodeIDs: added})
	p.customMetadataSteps(spec, c.Id, newRoles, added, &pilotv1.TaskInput{ClusterId: c.Id, AddingNodeIds: added})
	p.serviceSteps(spec, c.Id, "start", stepSpec{roles: newRoles, nodeIDs: added})
	p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "post", roles: newRoles, nodeIDs: added})
	p.serviceSteps(spec, c.Id, "scale_out", stepSpec{roles: existingRoles, nodeIDs: existing})
	p.add("register", taskRegister, "register metadata (adding-hosts cleared)", in())
	p.nodeNamesStep(spec, c.Id)
	return p.tasks
}

// PlanScaleIn removes the nodes leaving from role; staying are the
// cluster's other nodes.
func PlanScaleIn(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, role string, staying, leaving []string) []*pilotv1.Task {
	p := &planner{}
	p.add("register-deleting", taskRegister, "register metadata with the leaving nodes (deleting-hosts)", &pilotv1.TaskInput{ClusterId: c.Id, DeletingNodeIds: leaving})
	// The staying nodes render deleting-hosts before anything runs on the
	// leaving ones: a load balancer among them drains the leaving nodes
	// (its config without them, reloaded) before their stop. The drones
	// re-render on their own watch, so without this wait nothing orders
	// that reload before stop. LOST nodes render nothing until they are
	// back, so they are not waited for.
	if live := liveNodes(c, staying); len(live) > 0 {
		p.add("rendered-deleting", taskWaitRendered, "wait for the staying nodes to render deleting-hosts (a load balancer drains the leaving nodes)", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: live})
	}
	stayingRoles, leavingRoles := rolesOfNodes(c, staying), []string{role}
	p.serviceSteps(spec, c.Id, "scale_in", stepSpec{idPrefix: "scale_in-check", preCheck: true, roles: stayingRoles, nodeIDs: staying})
	preDestroy, postDestroy := destroyPhases(spec)
	if preDestroy {
		p.serviceSteps(spec, c.Id, "destroy", stepSpec{roles: leavingRoles, nodeIDs: leaving})
	}
	p.serviceSteps(spec, c.Id, "scale_in", stepSpec{roles: stayingRoles, nodeIDs: staying})
	p.serviceSteps(spec, c.Id, "stop", stepSpec{roles: leavingRoles, nodeIDs: leaving})
	if postDestroy && !preDestroy {
		p.serviceSteps(spec, c.Id, "destroy", stepSpec{idPrefix: "destroy-post", roles: leavingRoles, nodeIDs: leaving})
	}
	p.add("delete-instances", taskDeleteInstances, fmt.Sprintf("delete the %d leaving instances", len(leaving)), &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: leaving})
	if rs := roleSpec(spec, role); rs != nil && len(rs.ReservedIPs) > 0 {
		p.add("release-addresses", taskReleaseAddresses, "release the leaving nodes' reserved addresses", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: leaving})
	}
	p.add("remove-nodes", taskRemoveNodes, fmt.Sprintf("remove %d nodes from role %s", len(leaving), role), &pilotv1.TaskInput{ClusterId: c.Id, Role: role, NodeIds: leaving})
	p.add("register", taskRegister, "register metadata (deleting-hosts cleared)", &pilotv1.TaskInput{ClusterId: c.Id})
	return p.tasks
}

// liveNodes are the nodes ids of c that are not LOST: their drones are
// there to report what they rendered.
func liveNodes(c *pilotv1.Cluster, ids []string) []string {
	var out []string
	for _, nd := range c.Nodes {
		if slices.Contains(ids, nd.Id) && nd.Status != pilotv1.NodeStatus_NODE_STATUS_LOST {
			out = append(out, nd.Id)
		}
	}
	return out
}

// destroyPhases says whether the app has a destroy service that runs before
// stop (post_stop_service false) and one that runs after.
func destroyPhases(spec *apppkg.ClusterSpec) (pre, post bool) {
	for _, n := range spec.Nodes {
		if s, ok := n.Service("destroy"); ok {
			if s.PostStopService {
				post = true
			} else {
				pre = true
			}
		}
	}
	return pre, post
}

// addNodes adds the node records of a scale-out: the ids planned, each with
// the next server id, and the role's count parameter. Run again, it adds
// none twice.
func (o *Ops) addNodes(ctx context.Context, t *jobs.Task) error {
	in := t.Task.GetInput()
	_, err := o.updateCluster(ctx, in.GetClusterId(), func(c *pilotv1.Cluster) error {
		have := nodeIDs(c.Nodes)
		for _, id := range in.NodeIds {
			if slices.Contains(have, id) {
				continue
			}
			c.LastSid = max(c.LastSid, maxSid(c.Nodes)) + 1
			c.Nodes = append(c.Nodes, &pilotv1.Node{Id: id, Role: in.Role, Sid: c.LastSid, Status: pilotv1.NodeStatus_NODE_STATUS_PENDING, Image: in.Image})
		}
		setCount(c, in.Role, o.countPath(ctx, c, in.Role))
		return nil
	})
	return err
}

// countPath is the parameter of role's count in c's package.
func (o *Ops) countPath(ctx context.Context, c *pilotv1.Cluster, role string) string {
	if role == "" {
		if pkg, err := o.cfg.Packages.Get(ctx, c.Tenant, c.App, c.AppVersion); err == nil {
			return pkg.Config.CountPath(role)
		}
	}
	return apppkg.CountPath(role)
}

// removeNodes drops the node records of a scale-in once their instances
// are gone, and sets the role's count parameter.
func (o *Ops) removeNodes(ctx context.Context, t *jobs.Task) error {
	in := t.Task.GetInput()
	_, err := o.updateCluster(ctx, in.GetClusterId(), func(c *pilotv1.Cluster) error {
		var keep []*pilotv1.Node
		for _, nd := range c.Nodes {
			if slices.Contains(in.NodeIds, nd.Id) {
				if nd.InstanceId != "" {
					return fmt.Errorf("node %s still has instance %s; it is removed once the instance is deleted", nd.Id, nd.InstanceId)
				}
				continue
			}
			keep = append(keep, nd)
		}
		c.Nodes = keep
		setCount(c, in.Role, o.countPath(ctx, c, in.Role))
		return nil
	})
	return err
}

func maxSid(nodes []*pilotv1.Node) int32 {
	var m int32
	for _, nd := range nodes {
		m = max(m, nd.Sid)
	}
	return m
}

// setCount makes role's count parameter (path) the number of its node
// records.
func setCount(c *pilotv1.Cluster, role, path string) {
	n := 0
	for _, nd := range c.Nodes {
		if nd.Role == role {
			n++
		}
	}
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params[path] = strconv.Itoa(n)
}

// finishScale settles the cluster after a scale or recover job. Success:
// every node active. A failure of a pre_check changed nothing, so the
// cluster is active again; any later failure leaves it failed, its nodes
// as far as the job got, for the user to retry or reverse.
func (o *Ops) finishScale(ctx context.Context, j *pilotv1.Job) error {
	// Only pre_checks change nothing; any other step that began did.
	changed := false
	for _, t := range j.Tasks {
		began := t.State == pilotv1.TaskState_TASK_STATE_SUCCEEDED || t.State == pilotv1.TaskState_TASK_STATE_RUNNING || t.State == pilotv1.TaskState_TASK_STATE_FAILED
		changed = changed || (began && !t.GetInput().GetPreCheck())
	}
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		switch {
		case j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			for _, nd := range c.Nodes {
				nd.Status = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
			}
		case !changed:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
		default:
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		}
		return nil
	})
	return ignoreNotFound(err)
}
