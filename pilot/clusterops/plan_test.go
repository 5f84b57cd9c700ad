package clusterops

import (
	"reflect"
	"testing"

	"go.uber.org/goleak"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

func node(role string, count int, services map[string]apppkg.Service) apppkg.NodeSpec {
	return apppkg.NodeSpec{Role: role, Count: count, AgentInstalled: true, Services: services}
}

func svc(order int) apppkg.Service { return apppkg.Service{Cmd: "x", Order: order} }

func clusterOf(spec *apppkg.ClusterSpec, withInstances bool) *pilotv1.Cluster {
	c := &pilotv1.Cluster{Id: "cl-1"}
	for _, n := range spec.Nodes {
		for i := 0; i < n.Count; i++ {
			nd := &pilotv1.Node{Id: "cln-" + n.Role, Role: n.Role}
			if withInstances {
				nd.InstanceId = "i-" + n.Role
			}
			c.Nodes = append(c.Nodes, nd)
		}
	}
	return c
}

// steps renders a plan as its task ids, one group per step (tasks sharing
// the same dependencies run together).
func steps(tasks []*pilotv1.Task) [][]string {
	var out [][]string
	var last []string
	for _, t := range tasks {
		if len(out) > 0 && reflect.DeepEqual(t.DependsOn, last) {
			out[len(out)-1] = append(out[len(out)-1], t.Id)
			continue
		}
		out = append(out, []string{t.Id})
		last = t.DependsOn
	}
	return out
}

func TestPlanCreateFollowsRoleOrder(t *testing.T) {
	// RabbitMQ-like: disc(1) and haproxy(3) with ram(2) in between; a
	// post_start init on ram.
	ramInit := apppkg.Service{Cmd: "x", PostStartService: true}
	spec := &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{
		node("disc", 2, map[string]apppkg.Service{"init": svc(0), "start": svc(1)}),
		node("ram", 1, map[string]apppkg.Service{"init": ramInit, "start": svc(2)}),
		node("haproxy", 1, map[string]apppkg.Service{"start": svc(3)}),
		node("cache", 1, map[string]apppkg.Service{"start": svc(1)}),
		node("empty", 0, map[string]apppkg.Service{"start": svc(0)}),
	}}
	got := steps(PlanCreate(clusterOf(spec, false), spec))
	want := [][]string{
		{"network"}, {"frontgate"},
		{"instances-cache", "instances-disc", "instances-haproxy", "instances-ram"},
		{"register"}, {"drones"}, {"confd"},
		{"init-o0"},                              // disc only: ram's init is post-start
		{"start-o1"}, {"start-o2"}, {"start-o3"}, // cache+disc together, then ram, then haproxy
		{"init-post-o0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan steps\n got %v\nwant %v", got, want)
	}
	for _, task := range PlanCreate(clusterOf(spec, false), spec) {
		if task.Id == "start-o1" {
			in := task.Input
			if !reflect.DeepEqual(in.Roles, []string{"cache", "disc"}) {
				t.Fatalf("start-o1 roles %v, want cache and disc in parallel", in.Roles)
			}
		}
	}
}

func TestPlanDeleteFollowsDestroyRules(t *testing.T) {
	stop := map[string]apppkg.Service{"stop": svc(0)}
	withDestroy := func(post bool) map[string]apppkg.Service {
		return map[string]apppkg.Service{"stop": svc(0), "destroy": {Cmd: "x", PostStopService: post}}
	}
	tail := [][]string{{"delete-instances"}, {"delete-metadata"}, {"release-network"}}
	for _, tc := range []struct {
		name     string
		services map[string]apppkg.Service
		inst     bool
		want     [][]string
	}{
		{"no destroy: stop then delete", stop, true, append([][]string{{"stop-o0"}}, tail...)},
		{"destroy before stop", withDestroy(false), true, append([][]string{{"destroy-o0"}, {"stop-o0"}}, tail...)},
		{"destroy after stop", withDestroy(true), true, append([][]string{{"stop-o0"}, {"destroy-o0"}}, tail...)},
		{"never started: nothing to stop", withDestroy(false), false, tail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{node("a", 1, tc.services)}}
			if got := steps(PlanDelete(clusterOf(spec, tc.inst), spec, false)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestServiceTargets(t *testing.T) {
	spec := &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{
		node("a", 3, map[string]apppkg.Service{"init": {Cmd: "x", NodesToExecuteOn: 2}}),
		{Role: "noagent", Count: 1, AgentInstalled: false, Services: map[string]apppkg.Service{"init": svc(0)}},
	}}
	c := &pilotv1.Cluster{Nodes: []*pilotv1.Node{
		{Id: "n3", Role: "a", Sid: 3, InstanceId: "i3"},
		{Id: "n1", Role: "a", Sid: 1, InstanceId: "i1"},
		{Id: "n2", Role: "a", Sid: 2, InstanceId: "i2"},
		{Id: "n4", Role: "noagent", Sid: 4, InstanceId: "i4"},
	}}
	var ids []string
	for _, tg := range serviceTargets(c, spec, &pilotv1.TaskInput{Roles: []string{"a", "noagent"}, Service: "init"}) {
		ids = append(ids, tg.node.Id)
	}
	if !reflect.DeepEqual(ids, []string{"n1", "n2"}) {
		t.Fatalf("targets %v, want the two lowest sids of role a and none of the agent-less role", ids)
	}
}

func TestForceAllowed(t *testing.T) {
	spec := &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{
		node("a", 1, map[string]apppkg.Service{"destroy": {Cmd: "x", AllowForce: false}, "stop": svc(0)}),
	}}
	if forceAllowed(spec, []string{"a"}, "destroy") {
		t.Error("destroy with allow_force false was forced")
	}
	if !forceAllowed(spec, []string{"a"}, "stop") {
		t.Error("stop could not be forced")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A role with user_access keeps its instances up when the cluster stops;
// its stop service still runs.
func TestPlanStopKeepsUserAccessInstances(t *testing.T) {
	stop := map[string]apppkg.Service{"stop": svc(0)}
	spec := &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{node("db", 1, stop), node("client", 2, stop)}}
	spec.Nodes[1].UserAccess = true
	c := clusterOf(spec, true)
	tasks := PlanStop(c, spec, false)
	if got, want := steps(tasks), [][]string{{"stop-o0"}, {"stop-instances"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	var db []string
	for _, n := range c.Nodes {
		if n.Role == "db" {
			db = append(db, n.Id)
		}
	}
	if got := tasks[len(tasks)-1].Input.NodeIds; !reflect.DeepEqual(got, db) {
		t.Fatalf("stop-instances on %v, want only db's %v", got, db)
	}
	spec.Nodes[0].UserAccess = true
	if got := steps(PlanStop(c, spec, false)); !reflect.DeepEqual(got, [][]string{{"stop-o0"}}) {
		t.Fatalf("every role with user_access: steps %v", got)
	}
}
