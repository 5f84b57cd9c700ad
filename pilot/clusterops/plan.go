package clusterops

import (
	"fmt"
	"maps"
	"slices"
	"sort"

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

// serviceSteps adds one task per order group of service, ascending; equal
// orders (across roles) share a task and run in parallel. postStart picks
// roles by their service's post_start_service: "" every role, "pre" those
// without it (init before start), "post" those with it.
func (p *planner) serviceSteps(spec *apppkg.ClusterSpec, clusterID, service, postStart string, force bool) {
	p.orderGroups(spec, clusterID, service, force, nil, func(role string, s apppkg.Service) bool {
		switch {
		case postStart == "pre" && s.PostStartService, postStart == "post" && !s.PostStartService:
			return false
		}
		return true
	}, postStart == "post")
}

// serviceStepsFor is serviceSteps for the roles named only, each role's
// command getting its JSON argument from args (custom services).
func (p *planner) serviceStepsFor(spec *apppkg.ClusterSpec, clusterID, service string, roles []string, args map[string]string) {
	p.orderGroups(spec, clusterID, service, false, args, func(role string, _ apppkg.Service) bool {
		return slices.Contains(roles, role)
	}, false)
}

// orderGroups adds the order-group steps of service for the roles keep
// accepts.
func (p *planner) orderGroups(spec *apppkg.ClusterSpec, clusterID, service string, force bool, args map[string]string, keep func(string, apppkg.Service) bool, post bool) {
	groups := map[int][]string{}
	for _, n := range spec.Nodes {
		s, ok := n.Service(service)
		if !ok || n.Count == 0 || !agentInstalled(n) || !keep(n.Role, s) {
			continue
		}
		groups[s.Order] = append(groups[s.Order], n.Role)
	}
	for _, o := range slices.Sorted(maps.Keys(groups)) {
		roles := groups[o]
		sort.Strings(roles)
		id := fmt.Sprintf("%s-o%d", safeID(service), o)
		if post {
			id = fmt.Sprintf("%s-post-o%d", safeID(service), o)
		}
		in := &pilotv1.TaskInput{ClusterId: clusterID, Service: service, Roles: roles, Force: force}
		for _, role := range roles {
			if a, ok := args[role]; ok {
				if in.ServiceArgs == nil {
					in.ServiceArgs = map[string]string{}
				}
				in.ServiceArgs[role] = a
			}
		}
		p.add(id, taskRunService, fmt.Sprintf("%s on %s (order %d)", service, roleList(roles), o), in)
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
	var runs []*pilotv1.Task
	for _, role := range rolesOf(c) {
		runs = append(runs, p.task("instances-"+safeID(role), taskRunInstances, "run instances for "+roleList([]string{role}), &pilotv1.TaskInput{ClusterId: c.Id, Role: role}))
	}
	p.addParallel(runs)
	p.add("register", taskRegister, "register metadata", in())
	p.add("drones", taskWaitDrones, "wait for every drone to connect", in())
	p.add("confd", taskDeliverConfd, "deliver confd templates and render", in())
	p.serviceSteps(spec, c.Id, "init", "pre", false)
	p.serviceSteps(spec, c.Id, "start", "", false)
	p.serviceSteps(spec, c.Id, "init", "post", false)
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
			p.serviceSteps(spec, c.Id, "destroy", "", force)
		}
		p.serviceSteps(spec, c.Id, "stop", "", force)
		if postDestroy && !preDestroy {
			p.serviceSteps(spec, c.Id, "destroy", "", force)
		}
	}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id, Force: force} }
	p.add("delete-instances", taskDeleteInstances, "delete instances", in())
	p.add("delete-metadata", taskDeleteMetadata, "delete metadata", in())
	p.add("release-network", taskReleaseNetwork, "leave the network; remove it and its frontgate if it was the last cluster", in())
	return p.tasks
}

// PlanUpdateEnv re-registers metadata: every drone re-renders its config
// from the new values and runs the reload commands of changed files.
func PlanUpdateEnv(c *pilotv1.Cluster) []*pilotv1.Task {
	p := &planner{}
	p.add("register", taskRegister, "register metadata with the new env", &pilotv1.TaskInput{ClusterId: c.Id})
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
