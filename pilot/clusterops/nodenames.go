package clusterops

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// advanced_services.update_nodes_names (docs/appcenter-format.md §1.2):
// after a create or a scale-out, the command runs on one node (the lowest
// sid with an agent) and prints {"<node id>": "<name>", …}; the names are
// kept on the nodes and shown by `hangar cluster show`.

const taskUpdateNodeNames = "update_node_names"

// maxNodeName bounds a name an app gives a node.
const maxNodeName = 64

// nodeNamesStep adds the step, when the spec has the service.
func (p *planner) nodeNamesStep(spec *apppkg.ClusterSpec, clusterID string) {
	if as := spec.AdvancedServices; as == nil || as.UpdateNodesNames == nil || strings.TrimSpace(as.UpdateNodesNames.Cmd) == "" {
		return
	}
	p.add("node-names", taskUpdateNodeNames, "name the nodes (advanced_services.update_nodes_names)", &pilotv1.TaskInput{ClusterId: clusterID})
}

func (o *Ops) updateNodeNames(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	svc := tc.spec.AdvancedServices.GetUpdateNodesNames()
	if svc == nil {
		return nil
	}
	var on *pilotv1.Node
	for _, nd := range withInstances(agentNodes(tc.c, tc.spec)) {
		if on == nil || nd.Sid < on.Sid {
			on = nd
		}
	}
	if on == nil {
		return nil
	}
	timeout := svc.Timeout
	if timeout <= 0 {
		timeout = 30
	}
	out, err := o.runOnNodeOutput(ctx, t, tc.n, on, svc.Cmd, timeout)
	if err != nil {
		return err
	}
	var names map[string]string
	if err := json.Unmarshal([]byte(out), &names); err != nil {
		return fmt.Errorf("update_nodes_names on node %s printed %q; want one JSON object {\"<node id>\": \"<name>\"}: %v", on.Id, clip(out), err)
	}
	var unknown []string
	_, err = o.updateCluster(ctx, tc.c.Id, func(c *pilotv1.Cluster) error {
		unknown = unknown[:0]
		have := map[string]*pilotv1.Node{}
		for _, nd := range c.Nodes {
			have[nd.Id] = nd
		}
		for id, name := range names {
			nd, ok := have[id]
			if !ok {
				unknown = append(unknown, id)
				continue
			}
			if r := []rune(name); len(r) > maxNodeName {
				name = string(r[:maxNodeName])
			}
			nd.Name = name
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("update_nodes_names on node %s named nodes the cluster does not have: %s", on.Id, strings.Join(unknown, ", "))
	}
	return nil
}

// clip shortens output quoted in an error.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
