package clusterops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/providers/sdk"
)

// The cluster's instances: run through the provider with each node's id as
// the idempotency token (so a re-run finds the instance the first attempt
// made), and deleted with the cluster.

// joinTokenTTL bounds how long a new instance has to join.
const joinTokenTTL = time.Hour

func (o *Ops) joinToken(ctx context.Context, id pki.Identity) (string, error) {
	if o.cfg.Tokens == nil {
		return "", errors.New("no join token issuer configured")
	}
	tok, err := o.cfg.Tokens.Issue(ctx, id, nil, joinTokenTTL)
	if err != nil {
		return "", jobs.Retryable(fmt.Errorf("issue join token for %s: %w", id, err))
	}
	return tok, nil
}

// runParallel bounds how many RunInstance calls of one task are in
// flight: a 50-node role is created in the time of a few instances, and a
// provider (a cloud's API rate limit, one Docker Engine) is not flooded.
const runParallel = 8

func (o *Ops) runInstances(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec|needProvider)
	if err != nil {
		return err
	}
	in, c, n := tc.in, tc.c, tc.n
	role := roleSpec(tc.spec, in.Role)
	base := userdata.Drone{
		ClusterID:        c.Id,
		FrontgateID:      n.FrontgateId,
		FrontgateAddress: net.JoinHostPort(n.FrontgateAddress, strconv.Itoa(userdata.FrontgateDronePort)),
		EtcdEndpoints:    []string{"https://" + net.JoinHostPort(n.FrontgateAddress, strconv.Itoa(userdata.FrontgateEtcdPort))},
		CAPEM:            string(o.cfg.CAPEM),
	}
	var todo []*pilotv1.Node
	for _, node := range c.Nodes {
		if node.Role == in.Role && node.InstanceId == "" {
			todo = append(todo, node)
		}
	}
	// Each node's instance is its own unit (token, record): they run in
	// parallel, and the first error is the task's once all have ended.
	sem := make(chan struct{}, runParallel)
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, node := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = o.runInstance(ctx, tc, role, base, node)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// runInstance runs one node's instance and records it on the node.
func (o *Ops) runInstance(ctx context.Context, tc *taskEnv, role *apppkg.NodeSpec, ud userdata.Drone, node *pilotv1.Node) error {
	c, n := tc.c, tc.n
	var err error
	ud.NodeID = node.Id
	if ud.JoinToken, err = o.joinToken(ctx, pki.Identity{Kind: pki.KindDrone, ID: node.Id, Cluster: c.Id}); err != nil {
		return err
	}
	req := &providerv1.RunInstanceRequest{
		Runtime:          tc.prt,
		IdempotencyToken: instanceToken(node),
		NetworkId:        n.Id,
		Name:             node.Id,
		UserData:         userdata.Encode(ud),
		Labels:           map[string]string{"hangar/cluster": c.Id, "hangar/role": node.Role, "hangar/node": node.Id},
	}
	// A replacement gets the data the node had, where it was kept.
	req.VolumeId = node.VolumeId
	// The image chosen when the node was planned (the image map's);
	// nodes planned before the map existed run their role's.
	req.Image = node.Image
	if role != nil {
		if req.Image == "" {
			req.Image = role.Container.Image
		}
		req.Cpu = int32(role.CPU)
		req.MemoryMib = int32(role.Memory)
		req.VolumeGib = int32(volumeSize(role))
		if role.Volume != nil {
			req.MountPoints = role.Volume.MountPoint
		}
	}
	inst, err := tc.prov.RunInstance(ctx, req)
	if err != nil {
		return providerErr(fmt.Sprintf("run instance for node %s (role %s)", node.Id, node.Role), err)
	}
	if err := o.setNode(ctx, c.Id, node.Id, func(nd *pilotv1.Node) {
		nd.InstanceId, nd.Address, nd.VolumeId = inst.Id, inst.Address, inst.VolumeId
	}); err != nil {
		return err
	}
	o.log.Info("instance running", "cluster_id", c.Id, "node_id", node.Id, "instance_id", inst.Id, "address", inst.Address)
	return nil
}

// strayInstances finds, by the labels pilot gives every instance, the
// instances of nodes that pilot never recorded: a RunInstance that created
// one and then failed, or whose answer was lost with a job that then
// failed or was canceled. Deleting a node deletes those too, or they would
// outlive their cluster. Only nodes without an instance are looked for
// (one ListInstances of the cluster's network).
func (o *Ops) strayInstances(ctx context.Context, tc *taskEnv, nodes []*pilotv1.Node) (map[string][]string, error) {
	c := tc.c
	missing := map[string]bool{}
	for _, nd := range nodes {
		// A node deleted already had its strays deleted with it.
		if nd.InstanceId == "" && nd.Status != pilotv1.NodeStatus_NODE_STATUS_DELETED {
			missing[nd.Id] = true
		}
	}
	if len(missing) == 0 || c.NetworkId == "" {
		return nil, nil
	}
	list, err := tc.prov.ListInstances(ctx, &providerv1.ListInstancesRequest{Runtime: tc.prt, NetworkId: c.NetworkId})
	if err != nil {
		return nil, providerErr("list the instances of network "+c.NetworkId, err)
	}
	out := map[string][]string{}
	for _, in := range list.GetInstances() {
		l := in.GetLabels()
		if l["hangar/cluster"] == c.Id && missing[l["hangar/node"]] && in.GetState() != providerv1.InstanceState_INSTANCE_STATE_TERMINATED {
			out[l["hangar/node"]] = append(out[l["hangar/node"]], in.GetId())
		}
	}
	return out, nil
}

// instanceToken is the idempotency token of a node's instance: the node id,
// and after each replacement a new one, so a retried RunInstance finds the
// instance it made and a replacement never gets the deleted one.
func instanceToken(nd *pilotv1.Node) string {
	if nd.Replacements == 0 {
		return nd.Id
	}
	return fmt.Sprintf("%s.r%d", nd.Id, nd.Replacements)
}

func volumeSize(n *apppkg.NodeSpec) int {
	if n.Volume == nil {
		return 0
	}
	return n.Volume.Size
}

func (o *Ops) deleteInstances(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needProvider)
	if err != nil {
		return err
	}
	c := tc.c
	// A node whose instance is replaced keeps its data where the provider
	// has volumes.
	keep := false
	if tc.in.Replace {
		if info, err := tc.prov.Info(ctx, &providerv1.InfoRequest{}); err == nil {
			keep = sdk.CapabilitiesOf(info).Volumes
		}
	}
	nodes := onlyNodes(c.Nodes, tc.in.NodeIds)
	strays, err := o.strayInstances(ctx, tc, nodes)
	if err != nil {
		return err
	}
	for _, nd := range nodes {
		for _, id := range strays[nd.Id] {
			if _, err := tc.prov.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: tc.prt, InstanceId: id}); err != nil {
				return providerErr(fmt.Sprintf("delete instance %s of node %s (made by a run whose answer never came)", id, nd.Id), err)
			}
			o.log.Info("stray instance deleted", "cluster_id", c.Id, "node_id", nd.Id, "instance_id", id)
		}
		if nd.InstanceId == "" {
			continue
		}
		if _, err := tc.prov.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: tc.prt, InstanceId: nd.InstanceId, KeepVolume: keep && nd.VolumeId != ""}); err != nil {
			return providerErr(fmt.Sprintf("delete instance %s of node %s", nd.InstanceId, nd.Id), err)
		}
		if err := o.setNode(ctx, c.Id, nd.Id, func(x *pilotv1.Node) {
			if tc.in.Replace {
				// Recovering: the node gets a new instance, asked for
				// with a new token (the deleted one's is spent).
				x.InstanceId, x.Address, x.Status = "", "", pilotv1.NodeStatus_NODE_STATUS_PENDING
				x.Replacements++
				if !keep {
					x.VolumeId = ""
				}
				return
			}
			x.InstanceId, x.VolumeId, x.Status = "", "", pilotv1.NodeStatus_NODE_STATUS_DELETED
		}); err != nil {
			return err
		}
	}
	return nil
}
