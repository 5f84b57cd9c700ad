package clusterops

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

// Operations on a running cluster that run the app's own services:
// restart (AppCenter's "restart by order") and custom services. Each is a
// job planned here, like create and delete, and each may be planned only
// (dry run): the answer then carries the job as it would run, with every
// node's command, and nothing is stored.

// Job kinds of the operations.
const (
	KindRestart       = "restart_cluster"
	KindCustomService = "custom_service"
)

// DryRunJobID names the job of a dry run: it was never stored.
const DryRunJobID = "dry-run"

// OpRequest is an operation on cluster C, read at revision Rev.
type OpRequest struct {
	C   *pilotv1.Cluster
	Rev int64
	// Roles limits the operation (empty: every role that has the service).
	Roles []string
	// DryRun plans only.
	DryRun bool
}

// Restart accepts running the restart service by order on the roles of r
// that have one.
func (l *Lifecycle) Restart(ctx context.Context, r OpRequest) (*pilotv1.ClusterJob, error) {
	return l.runServiceOp(ctx, r, KindRestart, "restart", nil)
}

// RunService accepts running the custom service of cluster r.C with
// params (its service_params by name), checked against config.json for
// every role it runs on.
func (l *Lifecycle) RunService(ctx context.Context, r OpRequest, service string, params map[string]string) (*pilotv1.ClusterJob, error) {
	if strings.TrimSpace(service) == "" {
		return nil, refuse(Invalid, "service: required; name one of the app's custom services")
	}
	return l.runServiceOp(ctx, r, KindCustomService, service, params)
}

func (l *Lifecycle) runServiceOp(ctx context.Context, r OpRequest, kind, service string, params map[string]string) (*pilotv1.ClusterJob, error) {
	c := r.C
	// A running job first: it is what the user can act on.
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; %s runs on an active (or failed) cluster", c.Id, c.Status, service)
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	roles, err := serviceRoles(spec, service, kind == KindCustomService, r.Roles)
	if err != nil {
		return nil, err
	}
	var args map[string]string
	if kind == KindCustomService {
		pkg, err := l.cfg.Packages.Get(ctx, c.Tenant, c.App, c.AppVersion)
		if err != nil {
			return nil, err
		}
		args = map[string]string{}
		for _, role := range roles {
			a, err := pkg.ServiceArgs(spec, role, service, params)
			if err != nil {
				return nil, refuse(Invalid, "%v", err)
			}
			args[role] = string(a)
		}
	} else if len(params) > 0 {
		return nil, refuse(Invalid, "params: %s takes none", service)
	}
	tasks := PlanService(c, spec, service, roles, args)
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, kind, tasks)}, nil
	}
	if kind == KindRestart {
		// A custom service changes nothing Hangar manages, so the cluster
		// keeps its status whatever the service's outcome (its job keeps
		// that); a restart may leave services down, so the cluster is
		// updating until it ends, then active or failed.
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	}
	job, err := l.commit(ctx, c, r.Rev, kind, tasks, stored)
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster operation accepted", "cluster_id", c.Id, "kind", kind, "service", service, "roles", roles, "job_id", job.Id)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// serviceRoles are the roles that run service: those asked for (each must
// exist and have the service), or every role that has it. A custom service
// must be declared as one (type custom): the system services run only
// within the operations they belong to.
func serviceRoles(spec *apppkg.ClusterSpec, service string, custom bool, asked []string) ([]string, error) {
	var have []string
	for _, n := range spec.Nodes {
		svc, ok := n.Service(service)
		if !ok || n.Count == 0 || !n.AgentInstalled {
			continue
		}
		if custom && !svc.IsCustom() {
			return nil, refuse(Invalid, "service %q of role %q is not a custom service (type custom in cluster.json); it runs only within its own operation", service, n.Role)
		}
		have = append(have, n.Role)
	}
	sort.Strings(have)
	if len(have) == 0 {
		return nil, refuse(Invalid, "service %q: no role of this app has it (with a command and nodes)%s", service, customHint(spec, custom))
	}
	if len(asked) == 0 {
		return have, nil
	}
	var out []string
	for _, role := range asked {
		if !slices.Contains(have, role) {
			return nil, refuse(Invalid, "roles: %q has no service %q; roles that have it: %s", role, service, strings.Join(have, ", "))
		}
		if !slices.Contains(out, role) {
			out = append(out, role)
		}
	}
	sort.Strings(out)
	return out, nil
}

// customHint lists the app's custom services, for a refusal naming an
// unknown one.
func customHint(spec *apppkg.ClusterSpec, custom bool) string {
	if !custom {
		return ""
	}
	var names []string
	for _, n := range spec.Nodes {
		for name, svc := range n.Services {
			if svc.IsCustom() && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return "; the app has no custom services"
	}
	sort.Strings(names)
	return "; its custom services: " + strings.Join(names, ", ")
}

// PlanService runs service by order on roles: one step per order group,
// ascending, equal orders in parallel. args are the JSON arguments by role.
func PlanService(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, service string, roles []string, args map[string]string) []*pilotv1.Task {
	p := &planner{}
	p.serviceSteps(spec, c.Id, service, stepSpec{roles: roles, args: args})
	return p.tasks
}

// DryRun is the job kind would run as tasks, without being stored: every
// service step lists the command each node would run, and the other steps
// their inputs. prior is the spec the cluster had before the change, for
// steps that use it (nil: none do).
func DryRun(c *pilotv1.Cluster, spec, prior *apppkg.ClusterSpec, kind string, tasks []*pilotv1.Task) *pilotv1.Job {
	for _, t := range tasks {
		if t.Kind != taskRunService {
			continue
		}
		s := spec
		if t.Input.GetPriorSpec() && prior != nil {
			s = prior
		}
		for _, tg := range serviceTargets(c, s, t.Input) {
			t.NodeResults = append(t.NodeResults, &pilotv1.NodeResult{NodeId: tg.node.Id, InstanceId: tg.node.InstanceId, Role: tg.node.Role, Cmd: tg.cmd})
		}
	}
	return &pilotv1.Job{Id: DryRunJobID, Kind: kind, ClusterId: c.Id, Tenant: c.Tenant, Tasks: tasks}
}

// withArg appends a service's JSON argument to its command, quoted for the
// shell: the command gets it as one argument, whatever it holds.
func withArg(cmd, arg string) string {
	if arg == "" {
		return cmd
	}
	return cmd + " " + shellQuote(arg)
}

// shellQuote is s in single quotes, every ' closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// KindRecover is the job kind of a recover.
const KindRecover = "recover"

// Recover accepts replacing the instances of nodes of cluster r.C: each is
// deleted (if anything is left of it) and created anew, keeping the node's
// id and server id (and, where the provider has volumes, its data),
// registered, given its confd files, and runs init (unless its data was
// kept) and start by order.
func (l *Lifecycle) Recover(ctx context.Context, r OpRequest, nodes []string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, refuse(Invalid, "node_ids: name at least one node (cln-...) to recover; `hangar cluster show` lists them")
	}
	if c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING || c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED {
		return nil, refuse(Precondition, "cluster %s is %s", c.Id, c.Status)
	}
	have := nodeIDs(c.Nodes)
	for _, id := range nodes {
		if !slices.Contains(have, id) {
			return nil, refuse(Invalid, "node_ids: %q is not a node of cluster %s; its nodes: %s", id, c.Id, strings.Join(have, ", "))
		}
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	// Where the provider keeps volumes, a node with one gets its data back
	// on the new instance: it was initialised, so only start runs on it.
	caps, err := l.capabilities(ctx, c)
	if err != nil {
		return nil, err
	}
	var fresh []string
	for _, nd := range c.Nodes {
		if slices.Contains(nodes, nd.Id) && !(caps.Volumes && nd.VolumeId != "") {
			fresh = append(fresh, nd.Id)
		}
	}
	tasks := PlanRecover(c, spec, nodes, fresh)
	return l.accept(ctx, r, KindRecover, tasks, spec, stored, "nodes", nodes)
}

// PlanRecover replaces the instances of nodes; init runs on those of
// fresh (whose data is not kept), start on all.
func PlanRecover(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, nodes, fresh []string) []*pilotv1.Task {
	p := &planner{}
	roles := rolesOfNodes(c, nodes)
	p.add("delete-instances", taskDeleteInstances, fmt.Sprintf("delete what is left of %d instances", len(nodes)), &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes, Replace: true})
	var runs []*pilotv1.Task
	for _, role := range roles {
		runs = append(runs, p.task("instances-"+safeID(role), taskRunInstances, "run new instances for "+roleList([]string{role}), &pilotv1.TaskInput{ClusterId: c.Id, Role: role}))
	}
	p.addParallel(runs)
	p.add("register", taskRegister, "register metadata with the new instances", &pilotv1.TaskInput{ClusterId: c.Id})
	p.add("drones", taskWaitDrones, "wait for the new instances' drones", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
	p.add("confd", taskDeliverConfd, "deliver confd templates to the new instances", &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: nodes})
	if len(fresh) > 0 {
		p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "pre", roles: rolesOfNodes(c, fresh), nodeIDs: fresh})
		p.customMetadataSteps(spec, c.Id, rolesOfNodes(c, fresh), fresh, &pilotv1.TaskInput{ClusterId: c.Id})
	}
	p.serviceSteps(spec, c.Id, "start", stepSpec{roles: roles, nodeIDs: nodes})
	if len(fresh) > 0 {
		p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "post", roles: rolesOfNodes(c, fresh), nodeIDs: fresh})
	}
	return p.tasks
}
