package clusterops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// outputTail is how much of a failing command's output goes into errors.
const outputTail = 2048

// runService runs one order group of a service on its nodes, in parallel,
// and succeeds only when every node reported exit code 0. The command id is
// derived from job, task and node, so a re-run of this task after a pilot
// crash asks the drones for the same ids and gets the recorded results
// instead of running anything twice.
func (o *Ops) runService(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	in, c := tc.in, tc.c
	n, err := o.network(ctx, c)
	if err != nil {
		if in.Force {
			o.log.Warn("forced: skipping service, cluster has no network", "service", in.Service, "err", err)
			return nil
		}
		return err
	}
	_, spec, err := o.cfg.Packages.Spec(ctx, c)
	if err != nil {
		return err
	}
	targets := serviceTargets(c, spec, in.Roles, in.Service)
	nodes := make([]*pilotv1.Node, len(targets))
	byNode := map[string]target{}
	for i, tg := range targets {
		nodes[i] = tg.node
		byNode[tg.node.Id] = tg
	}
	forced := in.Force && forceAllowed(spec, in.Roles, in.Service)
	rctx := ctx
	if forced {
		// A forced delete does not wait long on nodes it cannot reach (a
		// dead or revoked frontgate): their resources go anyway.
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, forcedWait)
		defer cancel()
	}
	err = forEachNode(rctx, nodes, func(ctx context.Context, nd *pilotv1.Node) error {
		tg := byNode[nd.Id]
		return o.runOnNode(ctx, t, n, nd, tg.cmd, tg.timeout)
	})
	if err != nil && forced {
		o.log.Warn("forced: going on past a failed service", "service", in.Service, "cluster_id", c.Id, "err", err)
		return nil
	}
	return err
}

// forceAllowed: a forced delete may go on past a failing service, except a
// destroy whose role says allow_force: false.
func forceAllowed(spec *apppkg.ClusterSpec, roles []string, service string) bool {
	if service != "destroy" {
		return true
	}
	for _, role := range roles {
		if rs := roleSpec(spec, role); rs != nil {
			if svc, ok := rs.Service(service); ok && !svc.AllowForce {
				return false
			}
		}
	}
	return true
}

type target struct {
	node    *pilotv1.Node
	cmd     string
	timeout int
}

// serviceTargets picks the nodes of roles that run service: every node with
// an agent, or the nodes_to_execute_on lowest server ids.
func serviceTargets(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, roles []string, service string) []target {
	var targets []target
	for _, role := range roles {
		rs := roleSpec(spec, role)
		if rs == nil {
			continue
		}
		svc, ok := rs.Service(service)
		if !ok {
			continue
		}
		var nodes []*pilotv1.Node
		for _, nd := range agentNodes(c, spec) {
			if nd.Role == role {
				nodes = append(nodes, nd)
			}
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Sid < nodes[j].Sid })
		if svc.NodesToExecuteOn > 0 && svc.NodesToExecuteOn < len(nodes) {
			// The lowest server ids: a stable, documented choice.
			nodes = nodes[:svc.NodesToExecuteOn]
		}
		for _, nd := range nodes {
			targets = append(targets, target{node: nd, cmd: svc.Cmd, timeout: svc.Timeout})
		}
	}
	return targets
}

func commandID(jobID, taskID, nodeID string) string {
	return safeID(jobID + "." + taskID + "." + nodeID)
}

// commandRequest builds the request running cmd on node nodeID, signed with
// key. The expiry counts from now rather than being fixed per command id: a
// retry, even after a pilot restart, signs afresh, and the drone answers a
// command id it already ran with the recorded result whatever the
// signature's fields (after checking it).
func commandRequest(key ed25519.PrivateKey, nodeID, id, cmd string, timeout int, now time.Time) (*streamv1.Request, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("node %s: command %s not sent: pilot has no command key (clusterops.Config.CommandKey) and never sends unsigned commands", nodeID, id)
	}
	rc := &streamv1.RunCommand{NodeId: nodeID, CommandId: id, Cmd: cmd, TimeoutSeconds: int32(timeout)}
	rc.ExpiresAt = timestamppb.New(cmdsign.ExpiresAt(now, rc.TimeoutSeconds))
	if err := cmdsign.Sign(key, rc); err != nil {
		return nil, fmt.Errorf("node %s: %w", nodeID, err)
	}
	return &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}}, nil
}

// progress records a node's intermediate state (running, unreachable,
// rejected) in its job. It is what `job watch` shows; the task's outcome
// does not depend on it, so a failed write is logged, not fatal.
func (o *Ops) progress(ctx context.Context, t *jobs.Task, nr *pilotv1.NodeResult) {
	if err := t.Record(ctx, nr); err != nil {
		o.log.Warn("record node progress", "job_id", t.Job.Id, "task_id", t.Task.Id, "node_id", nr.NodeId, "state", nr.State, "err", err)
	}
}

func (o *Ops) runOnNode(ctx context.Context, t *jobs.Task, n *pilotv1.Network, nd *pilotv1.Node, cmd string, timeout int) error {
	if timeout <= 0 {
		timeout = 600
	}
	id := commandID(t.Job.Id, t.Task.Id, nd.Id)
	// Signed before anything is recorded: without a key the node never
	// shows as running.
	req, err := commandRequest(o.cfg.CommandKey, nd.Id, id, cmd, timeout, time.Now())
	if err != nil {
		return err
	}
	nr := &pilotv1.NodeResult{NodeId: nd.Id, InstanceId: nd.InstanceId, Role: nd.Role, CommandId: id, Cmd: cmd, State: "running", StartedAt: timestamppb.Now()}
	o.progress(ctx, t, nr)
	// The drone enforces the timeout; we wait a little longer for its answer.
	cctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second+30*time.Second)
	defer cancel()
	var res *streamv1.CommandResult
	for {
		resp, err := o.cfg.Frontgates.Call(cctx, n.FrontgateId, req)
		var remote *streamrpc.Error
		if errors.As(err, &remote) && remote.Code == cmdsign.CodeUnauthenticated {
			// The drone refused the signature (wrong key, clock skew): a
			// retry signs with the same key and clock, so it cannot help.
			nr.State, nr.Error = "rejected", err.Error()
			o.progress(ctx, t, nr)
			return fmt.Errorf("node %s (role %s): %s: the drone refused the command's signature (check that the drone joined this pilot and that the clocks agree): %w", nd.Id, nd.Role, t.Task.Title, err)
		}
		if err != nil {
			nr.State, nr.Error = "unreachable", err.Error()
			o.progress(ctx, t, nr)
			if errors.Is(err, fglink.ErrRevoked) {
				return fmt.Errorf("node %s (role %s): %s: %w", nd.Id, nd.Role, t.Task.Title, err)
			}
			return jobs.Retryable(fmt.Errorf("node %s (role %s): %s: %w", nd.Id, nd.Role, t.Task.Title, err))
		}
		res = resp.GetCommandResult()
		if res == nil {
			return fmt.Errorf("node %s: frontgate answered a command with no result", nd.Id)
		}
		if res.State != streamv1.CommandState_COMMAND_STATE_RUNNING {
			break
		}
		// Still running (a previous attempt started it): ask again.
		if err := sleepCtx(cctx, time.Second); err != nil {
			return jobs.Retryable(fmt.Errorf("node %s: waiting for command %s: %w", nd.Id, id, err))
		}
	}
	nr.ExitCode = res.ExitCode
	nr.Output = string(res.Output)
	nr.State = strings.TrimPrefix(strings.ToLower(res.State.String()), "command_state_")
	nr.StartedAt, nr.FinishedAt, nr.Error = res.StartedAt, res.FinishedAt, res.Error
	if err := t.Record(ctx, nr); err != nil {
		// The result must not be lost: the retry asks the drone again, and
		// the drone answers the command id it already ran with its
		// recorded result instead of running it twice.
		return jobs.Retryable(fmt.Errorf("node %s: record the result of command %s: %w", nd.Id, id, err))
	}
	if res.State == streamv1.CommandState_COMMAND_STATE_EXITED && res.ExitCode == 0 {
		return nil
	}
	out := nr.Output
	if len(out) > outputTail {
		out = "…" + out[len(out)-outputTail:]
	}
	what := fmt.Sprintf("exited with code %d", res.ExitCode)
	switch res.State {
	case streamv1.CommandState_COMMAND_STATE_TIMED_OUT:
		what = fmt.Sprintf("timed out after %ds", timeout)
	case streamv1.CommandState_COMMAND_STATE_FAILED_TO_START:
		what = "could not start: " + res.Error
	case streamv1.CommandState_COMMAND_STATE_LOST:
		what = "was lost when the drone restarted"
	}
	return fmt.Errorf("node %s (role %s, %s): command %q %s; output: %s", nd.Id, nd.Role, nd.Address, cmd, what, strings.TrimSpace(out))
}

// ---- delete ----

func (o *Ops) deleteInstances(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	_, prov, prt, err := o.runtime(ctx, c.Tenant, c.Runtime)
	if err != nil {
		return err
	}
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		if _, err := prov.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: prt, InstanceId: nd.InstanceId}); err != nil {
			return providerErr(fmt.Sprintf("delete instance %s of node %s", nd.InstanceId, nd.Id), err)
		}
		nodeID := nd.Id
		if _, err := o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
			for _, x := range c.Nodes {
				if x.Id == nodeID {
					x.InstanceId, x.Status = "", pilotv1.NodeStatus_NODE_STATUS_DELETED
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func (o *Ops) deleteMetadata(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	if c.NetworkId == "" {
		return nil
	}
	n, err := o.network(ctx, c)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	if n.FrontgateInstanceId == "" {
		return nil
	}
	cctx := ctx
	if tc.in.Force {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, forcedWait)
		defer cancel()
	}
	_, err = o.callFrontgate(cctx, n, &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: c.Id}}})
	if err != nil && tc.in.Force {
		// The frontgate goes with its network when this is the last
		// cluster; otherwise its metadata is orphaned until then. Say so.
		o.log.Warn("forced: metadata not deleted; its frontgate is unreachable", "cluster_id", c.Id, "frontgate_id", n.FrontgateId, "err", err)
		return nil
	}
	return err
}

// forcedWait bounds how long a forced delete waits on an unreachable node
// or frontgate.
const forcedWait = 15 * time.Second

// releaseNetwork takes the cluster out of its network. The last cluster out
// retires the network record first (renamed under retired/, in one
// transaction that fails if another cluster joined meanwhile), then deletes
// the frontgate and the provider network, then the retired record — so a
// crash anywhere in between is finished by the re-run.
func (o *Ops) releaseNetwork(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	if c.NetworkId == "" {
		return nil
	}
	key := store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork)
	retiredKey := store.NetworkKey(c.Tenant, c.Runtime, "retired/"+c.NetworkId)
	for {
		n := &pilotv1.Network{}
		rev, err := o.cfg.Store.Get(ctx, key, n)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && n.Id == c.NetworkId {
			n.ClusterIds = slices.DeleteFunc(n.ClusterIds, func(id string) bool { return id == c.Id })
			retired, err := o.leaveOrRetire(ctx, key, retiredKey, rev, n)
			if err != nil {
				return err
			}
			if !retired {
				continue // lost a race; look again
			}
			if len(n.ClusterIds) > 0 {
				return nil // other clusters still use the network
			}
		}
		break
	}
	n := &pilotv1.Network{}
	if _, err := o.cfg.Store.Get(ctx, retiredKey, n); errors.Is(err, store.ErrNotFound) {
		return nil // already removed, or other clusters keep it
	} else if err != nil {
		return err
	}
	_, prov, prt, err := o.runtime(ctx, c.Tenant, c.Runtime)
	if err != nil {
		return err
	}
	if n.FrontgateInstanceId != "" {
		if _, err := prov.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: prt, InstanceId: n.FrontgateInstanceId}); err != nil {
			return providerErr("delete frontgate instance "+n.FrontgateInstanceId, err)
		}
	}
	if _, err := prov.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: prt, NetworkId: n.Id}); err != nil {
		return providerErr("delete network "+n.Id, err)
	}
	o.log.Info("network and frontgate removed with their last cluster", "network_id", n.Id, "frontgate_id", n.FrontgateId)
	return o.cfg.Store.Delete(ctx, retiredKey)
}

// leaveOrRetire writes the network without this cluster, or — when it was
// the last — moves it to retiredKey, guarded on the revision read.
func (o *Ops) leaveOrRetire(ctx context.Context, key, retiredKey string, rev int64, n *pilotv1.Network) (bool, error) {
	if len(n.ClusterIds) > 0 {
		_, err := store.Update(ctx, o.cfg.Store, key, newNetwork, func(cur *pilotv1.Network) error {
			cur.ClusterIds = n.ClusterIds
			return nil
		})
		return err == nil, err
	}
	ok, err := o.cfg.Store.Move(ctx, key, rev, retiredKey, n)
	return ok, err
}

// ---- finalizers ----

func (o *Ops) finishCreate(ctx context.Context, j *pilotv1.Job) error {
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			for _, nd := range c.Nodes {
				nd.Status = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
			}
		} else {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
			failedNodes := failedNodeIDs(j)
			for _, nd := range c.Nodes {
				if failedNodes[nd.Id] {
					nd.Status = pilotv1.NodeStatus_NODE_STATUS_FAILED
				}
			}
		}
		return nil
	})
	return ignoreNotFound(err)
}

func failedNodeIDs(j *pilotv1.Job) map[string]bool {
	out := map[string]bool{}
	for _, t := range j.Tasks {
		for _, r := range t.NodeResults {
			if r.State != "exited" || r.ExitCode != 0 {
				out[r.NodeId] = true
			}
		}
	}
	return out
}

func (o *Ops) finishDelete(ctx context.Context, j *pilotv1.Job) error {
	if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
		// The job record stays as the history of the cluster.
		return o.cfg.Store.Delete(ctx, store.ClusterKey(j.ClusterId))
	}
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		return nil
	})
	return ignoreNotFound(err)
}

func (o *Ops) finishUpdate(ctx context.Context, j *pilotv1.Job) error {
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
		} else {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		}
		return nil
	})
	return ignoreNotFound(err)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
