package clusterops

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

// Job kinds.
const (
	KindCreate    = "create_cluster"
	KindDelete    = "delete_cluster"
	KindUpdateEnv = "update_env"
)

// Task kinds (handler names).
const (
	taskCreateNetwork   = "create_network"
	taskEnsureFrontgate = "ensure_frontgate"
	taskRunInstances    = "run_instances"
	taskRegister        = "register_metadata"
	taskWaitDrones      = "wait_drones"
	taskDeliverConfd    = "deliver_confd"
	taskRunService      = "run_service"
	taskDeleteInstances = "delete_instances"
	taskDeleteMetadata  = "delete_metadata"
	taskReleaseNetwork  = "release_network"
	taskWaitRendered    = "wait_rendered"
)

// planner builds a job's task graph step by step.
type planner struct {
	tasks []*pilotv1.Task
	last  []string
}

// add appends a task depending on the previous step (all of its tasks).
func (p *planner) add(id, kind, title string, in *pilotv1.TaskInput) {
	p.addParallel([]*pilotv1.Task{p.task(id, kind, title, in)})
}

func (p *planner) task(id, kind, title string, in *pilotv1.TaskInput) *pilotv1.Task {
	return &pilotv1.Task{Id: id, Kind: kind, Title: title, Input: in}
}

// addParallel appends a step of tasks that run together.
func (p *planner) addParallel(ts []*pilotv1.Task) {
	if len(ts) == 0 {
		return
	}
	ids := make([]string, 0, len(ts))
	for _, t := range ts {
		t.DependsOn = append([]string(nil), p.last...)
		p.tasks = append(p.tasks, t)
		ids = append(ids, t.Id)
	}
	p.last = ids
}

// stepSpec says which nodes a service's steps cover and how.
type stepSpec struct {
	// idPrefix starts the steps' task ids (default: the service's name).
	idPrefix string
	// postStart picks roles by their service's post_start_service: ""
	// every role, "pre" those without it (init before start), "post" those
	// with it.
	postStart string
	// roles limits the steps to these roles (nil: every role with the
	// service).
	roles []string
	// nodeIDs limits them to these nodes (nil: every node of the roles).
	nodeIDs []string
	// preCheck runs the service's pre_check instead of its cmd, on the
	// roles that have one.
	preCheck bool
	force    bool
	// priorSpec runs the service from the spec the cluster had before
	// the job (an upgrade's stop).
	priorSpec bool
	// args are the JSON arguments of custom services, by role.
	args map[string]string
}

// serviceSteps adds one task per order group of service, ascending; equal
// orders (across roles) share a task and run in parallel.
func (p *planner) serviceSteps(spec *apppkg.ClusterSpec, clusterID, service string, o stepSpec) {
	groups := map[int][]string{}
	for _, n := range spec.Nodes {
		s, ok := n.Service(service)
		if !ok || n.Count == 0 || !agentInstalled(n) {
			continue
		}
		switch {
		case o.postStart == "pre" && s.PostStartService, o.postStart == "post" && !s.PostStartService:
			continue
		case o.roles != nil && !slices.Contains(o.roles, n.Role):
			continue
		case o.preCheck && strings.TrimSpace(s.PreCheck) == "":
			continue
		}
		groups[s.Order] = append(groups[s.Order], n.Role)
	}
	prefix := o.idPrefix
	if prefix == "" {
		prefix = safeID(service)
	}
	if o.postStart == "post" {
		prefix += "-post"
	}
	what := service
	if o.preCheck {
		what += " pre_check"
	}
	for _, ord := range slices.Sorted(maps.Keys(groups)) {
		roles := groups[ord]
		sort.Strings(roles)
		in := &pilotv1.TaskInput{ClusterId: clusterID, Service: service, Roles: roles, Force: o.force, NodeIds: o.nodeIDs, PreCheck: o.preCheck, PriorSpec: o.priorSpec}
		for _, role := range roles {
			if a, ok := o.args[role]; ok {
				if in.ServiceArgs == nil {
					in.ServiceArgs = map[string]string{}
				}
				in.ServiceArgs[role] = a
			}
		}
		p.add(fmt.Sprintf("%s-o%d", prefix, ord), taskRunService, fmt.Sprintf("%s on %s (order %d)", what, roleList(roles), ord), in)
	}
}

func agentInstalled(n apppkg.NodeSpec) bool {
	return n.AgentInstalled
}

func roleList(roles []string) string {
	if len(roles) == 1 {
		if roles[0] == "" {
			return "all nodes"
		}
		return "role " + roles[0]
	}
	return fmt.Sprintf("roles %v", roles)
}

// PlanCreate is the create order of events: network, frontgate, instances
// (all roles in parallel), metadata, drones up, confd, init by order (nodes
// without post_start_service), start by order, then the post-start inits.
func PlanCreate(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Task {
	p := &planner{}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id} }
	p.add("network", taskCreateNetwork, "create or join the runtime's network", in())
	p.add("frontgate", taskEnsureFrontgate, "ensure the network's frontgate is running and connected", in())
	if wantsAddresses(spec) {
		p.add("addresses", taskReserveAddresses, "reserve the cluster's addresses (reserved_ips)", in())
	}
	var runs []*pilotv1.Task
	for _, role := range rolesOf(c) {
		runs = append(runs, p.task("instances-"+safeID(role), taskRunInstances, "run instances for "+roleList([]string{role}), &pilotv1.TaskInput{ClusterId: c.Id, Role: role}))
	}
	p.addParallel(runs)
	p.add("register", taskRegister, "register metadata", in())
	p.add("drones", taskWaitDrones, "wait for every drone to connect", in())
	p.add("confd", taskDeliverConfd, "deliver confd templates and render", in())
	p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "pre"})
	p.customMetadataSteps(spec, c.Id, nil, nil, in())
	p.serviceSteps(spec, c.Id, "start", stepSpec{})
	p.serviceSteps(spec, c.Id, "init", stepSpec{postStart: "post"})
	p.nodeNamesStep(spec, c.Id)
	return p.tasks
}

// PlanDelete follows AppCenter's delete: with no destroy service, stop then
// delete; destroy without post_stop_service runs before stop; with it,
// after. Then instances, metadata and (for the last cluster) the network go.
func PlanDelete(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, force bool) []*pilotv1.Task {
	p := &planner{}
	hasInstances := false
	for _, n := range c.Nodes {
		hasInstances = hasInstances || n.InstanceId != ""
	}
	if hasInstances && spec != nil {
		preDestroy, postDestroy := false, false
		for _, n := range spec.Nodes {
			if s, ok := n.Service("destroy"); ok {
				if s.PostStopService {
					postDestroy = true
				} else {
					preDestroy = true
				}
			}
		}
		if preDestroy {
			p.serviceSteps(spec, c.Id, "destroy", stepSpec{force: force})
		}
		p.serviceSteps(spec, c.Id, "stop", stepSpec{force: force})
		if postDestroy && !preDestroy {
			p.serviceSteps(spec, c.Id, "destroy", stepSpec{force: force})
		}
	}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id, Force: force} }
	p.add("delete-instances", taskDeleteInstances, "delete instances", in())
	p.add("delete-metadata", taskDeleteMetadata, "delete metadata", in())
	if reservedAny(c) {
		p.add("release-addresses", taskReleaseAddresses, "release the cluster's reserved addresses", in())
	}
	p.add("release-network", taskReleaseNetwork, "leave the network; remove it and its frontgate if it was the last cluster", in())
	return p.tasks
}

// PlanUpdateEnv re-registers metadata: every drone re-renders its config
// from the new values and runs the reload commands of changed files, and
// the job ends when every drone reported it did.
func PlanUpdateEnv(c *pilotv1.Cluster) []*pilotv1.Task {
	p := &planner{}
	p.add("register", taskRegister, "register metadata with the new env", &pilotv1.TaskInput{ClusterId: c.Id})
	p.add("rendered", taskWaitRendered, "wait for every drone to render it and run its reload commands", &pilotv1.TaskInput{ClusterId: c.Id})
	return p.tasks
}

func rolesOf(c *pilotv1.Cluster) []string {
	seen := map[string]bool{}
	var roles []string
	for _, n := range c.Nodes {
		if !seen[n.Role] {
			seen[n.Role] = true
			roles = append(roles, n.Role)
		}
	}
	sort.Strings(roles)
	return roles
}

// safeID makes a role name usable in task and command ids.
func safeID(s string) string {
	if s == "" {
		return "default"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
