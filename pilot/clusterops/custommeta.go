package clusterops

import (
	"context"
	"slices"
	"strings"
	"sync"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// custom_metadata (docs/appcenter-format.md §1.3, §4): after init, a role's
// custom_metadata command runs on each of its nodes; what it prints
// (trimmed) is the node's token, published as /host/token and under its
// host entry, and the metadata is registered again before start, so the
// app's start can read every node's token (a generated key, an id).

const taskCustomMetadata = "custom_metadata"

// customMetadataSteps adds, when a role among roles has custom_metadata,
// the step running it on nodeIDs (nil: every node) and the metadata
// registration that publishes the tokens (register: its input, which a
// scale-out gives its adding-hosts).
func (p *planner) customMetadataSteps(spec *apppkg.ClusterSpec, clusterID string, roles, nodeIDs []string, register *pilotv1.TaskInput) {
	var with []string
	for _, n := range spec.Nodes {
		if n.CustomMetadata == nil || strings.TrimSpace(n.CustomMetadata.Cmd) == "" || n.Count == 0 || !n.AgentInstalled {
			continue
		}
		if roles == nil || slices.Contains(roles, n.Role) {
			with = append(with, n.Role)
		}
	}
	if len(with) == 0 {
		return
	}
	p.add("custom-metadata", taskCustomMetadata, "custom_metadata on "+roleList(with), &pilotv1.TaskInput{ClusterId: clusterID, Roles: with, NodeIds: nodeIDs})
	p.add("register-tokens", taskRegister, "register metadata with the nodes' tokens", register)
}

// customMetadata runs each role's custom_metadata command on its nodes
// and keeps what it printed as the node's token.
func (o *Ops) customMetadata(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n, in := tc.c, tc.n, tc.in
	var nodes []*pilotv1.Node
	for _, nd := range onlyNodes(agentNodes(c, tc.spec), in.NodeIds) {
		if slices.Contains(in.Roles, nd.Role) {
			nodes = append(nodes, nd)
		}
	}
	var mu sync.Mutex
	tokens := map[string]string{}
	err = forEachNode(ctx, nodes, func(ctx context.Context, nd *pilotv1.Node) error {
		rs := roleSpec(tc.spec, nd.Role)
		out, err := o.runOnNodeOutput(ctx, t, n, nd, rs.CustomMetadata.Cmd, 0)
		if err != nil {
			return err
		}
		mu.Lock()
		tokens[nd.Id] = strings.TrimSpace(out)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	_, err = o.updateCluster(ctx, c.Id, func(x *pilotv1.Cluster) error {
		for _, nd := range x.Nodes {
			if tok, ok := tokens[nd.Id]; ok {
				nd.Token = tok
			}
		}
		return nil
	})
	return err
}
