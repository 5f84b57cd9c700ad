package clusterops

import (
	"context"
	"fmt"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// Display tabs (cluster.json display_tabs, docs/appcenter-format.md §1.2):
// a tab's command runs on the first node (lowest sid) of each of its roles
// and prints a table, {"labels": [≤5 names], "data": [[row], …]}. It runs
// as a job, so every command and its output is recorded like any other;
// the job leaves the cluster's state as it was.

// KindDisplayTab is the job of a display tab.
const KindDisplayTab = "display_tab"

const taskDisplayTab = "display_tab"

// DisplayTab accepts running display tab name of cluster r.C.
func (l *Lifecycle) DisplayTab(ctx context.Context, r OpRequest, name string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; a display tab runs on an active cluster", c.Id, c.Status)
	}
	spec, stored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	tab, ok := spec.DisplayTabs[name]
	if !ok {
		names := make([]string, 0, len(spec.DisplayTabs))
		for n := range spec.DisplayTabs {
			names = append(names, n)
		}
		sort.Strings(names)
		have := "it has none"
		if len(names) > 0 {
			have = "its tabs: " + strings.Join(names, ", ")
		}
		return nil, refuse(Invalid, "tab %q: %s %s has no such display tab; %s", name, c.App, c.AppVersion, have)
	}
	roles := tab.RolesToExecuteOn
	if len(roles) == 0 {
		for _, n := range spec.Nodes {
			roles = append(roles, n.Role)
		}
	}
	p := &planner{}
	p.add("tab", taskDisplayTab, fmt.Sprintf("display tab %s on roles %s", name, strings.Join(roles, ", ")),
		&pilotv1.TaskInput{ClusterId: c.Id, Service: name, Roles: roles})
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, spec, nil, KindDisplayTab, p.tasks)}, nil
	}
	// The job's status is the cluster's own: a tab changes nothing.
	job, err := l.commit(ctx, c, r.Rev, KindDisplayTab, p.tasks, stored)
	if err != nil {
		return nil, err
	}
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// displayTab runs a tab's command on the first node of each of its roles
// and checks what each printed.
func (o *Ops) displayTab(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	tab, ok := tc.spec.DisplayTabs[tc.in.Service]
	if !ok {
		return fmt.Errorf("display tab %q is not in the cluster's spec", tc.in.Service)
	}
	timeout := tab.Timeout
	if timeout <= 0 {
		timeout = 10
	}
	var nodes []*pilotv1.Node
	for _, role := range tc.in.Roles {
		var first *pilotv1.Node
		for _, nd := range withInstances(tc.c.Nodes) {
			if nd.Role == role && (first == nil || nd.Sid < first.Sid) {
				first = nd
			}
		}
		if first != nil {
			nodes = append(nodes, first)
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("display tab %s: no node of roles %s has an instance", tc.in.Service, strings.Join(tc.in.Roles, ", "))
	}
	return forEachNode(ctx, nodes, func(ctx context.Context, nd *pilotv1.Node) error {
		out, err := o.runOnNodeOutput(ctx, t, tc.n, nd, tab.Cmd, timeout)
		if err != nil {
			return err
		}
		if _, err := apppkg.ParseTab(out); err != nil {
			return fmt.Errorf("node %s (role %s): display tab %s: %w", nd.Id, nd.Role, tc.in.Service, err)
		}
		return nil
	})
}

// finishDisplayTab leaves the cluster as it was: a failed tab says
// nothing of the cluster.
func (o *Ops) finishDisplayTab(context.Context, *pilotv1.Job) error { return nil }
