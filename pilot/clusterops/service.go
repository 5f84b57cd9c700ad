package clusterops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// outputTail is how much of a failing command's output goes into errors.
const outputTail = 2048

// runService runs one order group of a service on its nodes, in parallel,
// and succeeds only when every node reported exit code 0. The command id is
// derived from job, task and node, so a re-run of this task after a pilot
// crash asks the drones for the same ids and gets the recorded results
// instead of running anything twice.
func (o *Ops) runService(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needSpec)
	if err != nil {
		return err
	}
	in, c, spec := tc.in, tc.c, tc.spec
	n, err := o.network(ctx, c)
	if err != nil {
		if in.Force {
			o.log.Warn("forced: skipping service, cluster has no network", "service", in.Service, "err", err)
			return nil
		}
		return err
	}
	targets := serviceTargets(c, spec, in)
	if in.Service == apppkg.SvcBackup && !in.PreCheck {
		if targets, err = o.selectBackupNodes(ctx, t, n, spec, targets); err != nil {
			return err
		}
	}
	nodes := make([]*pilotv1.Node, len(targets))
	byNode := map[string]target{}
	for i, tg := range targets {
		nodes[i] = tg.node
		byNode[tg.node.Id] = tg
	}
	forced := in.Force && (in.OverrideAllowForce || forceAllowed(spec, in.Roles, in.Service))
	rctx, cancel := forcedContext(ctx, forced)
	defer cancel()
	err = rollout(rctx, spec, nodes, func(ctx context.Context, nd *pilotv1.Node) error {
		tg := byNode[nd.Id]
		return o.runOnNode(ctx, t, n, nd, tg.cmd, tg.timeout)
	})
	if err != nil && forced {
		o.log.Warn("forced: going on past a failed service", "service", in.Service, "cluster_id", c.Id, "err", err)
		return nil
	}
	return err
}

// selectBackupNodes applies the backup service's selector: for each role
// whose backup has one, the selector runs on the role's first node (the
// lowest sid) and prints the id of the node to back up, which alone runs
// the backup. Its command id is the task's with ".selector", so a re-run
// asks the drone for the same answer.
func (o *Ops) selectBackupNodes(ctx context.Context, t *jobs.Task, n *pilotv1.Network, spec *apppkg.ClusterSpec, targets []target) ([]target, error) {
	byRole := map[string][]target{}
	var roles []string
	for _, tg := range targets {
		if _, ok := byRole[tg.node.Role]; !ok {
			roles = append(roles, tg.node.Role)
		}
		byRole[tg.node.Role] = append(byRole[tg.node.Role], tg)
	}
	var out []target
	for _, role := range roles {
		tgs := byRole[role]
		svc, _ := roleSpec(spec, role).Service(apppkg.SvcBackup)
		if svc.Selector == "" {
			out = append(out, tgs...)
			continue
		}
		sort.Slice(tgs, func(i, j int) bool { return tgs[i].node.Sid < tgs[j].node.Sid })
		sel := *t
		sel.Task = proto.Clone(t.Task).(*pilotv1.Task)
		sel.Task.Id += ".selector"
		sel.Task.Title = "select the node to back up (role " + role + ")"
		chosen, err := o.runOnNodeOutput(ctx, &sel, n, tgs[0].node, svc.Selector, svc.Timeout)
		if err != nil {
			return nil, fmt.Errorf("backup selector of role %s: %w", role, err)
		}
		chosen = strings.TrimSpace(chosen)
		found := false
		for _, tg := range tgs {
			if tg.node.Id == chosen {
				out, found = append(out, tg), true
			}
		}
		if !found {
			return nil, fmt.Errorf("backup selector of role %s printed %q, which is not a node of the role", role, chosen)
		}
	}
	return out, nil
}

// rollout runs fn on nodes, each role as its spec says (roles of one order
// group side by side): serial runs one node at a time, max_in_flight at
// most that many at once, canary runs that many nodes first and, if one
// fails, leaves the role's other nodes untouched (BOSH's canaries). Once a
// node failed, a role under any of these starts no more nodes. A role
// without them runs all its nodes at once.
func rollout(ctx context.Context, spec *apppkg.ClusterSpec, nodes []*pilotv1.Node, fn func(context.Context, *pilotv1.Node) error) error {
	byRole := map[string][]*pilotv1.Node{}
	var roles []string
	for _, nd := range nodes {
		if _, ok := byRole[nd.Role]; !ok {
			roles = append(roles, nd.Role)
		}
		byRole[nd.Role] = append(byRole[nd.Role], nd)
	}
	if len(roles) == 1 {
		return rolloutRole(ctx, roleSpec(spec, roles[0]), byRole[roles[0]], fn)
	}
	groups := make([]*pilotv1.Node, len(roles))
	for i, role := range roles {
		// One stand-in per role, so that the roles run side by side.
		groups[i] = &pilotv1.Node{Role: role}
	}
	return forEachNode(ctx, groups, func(ctx context.Context, g *pilotv1.Node) error {
		return rolloutRole(ctx, roleSpec(spec, g.Role), byRole[g.Role], fn)
	})
}

func rolloutRole(ctx context.Context, rs *apppkg.NodeSpec, nodes []*pilotv1.Node, fn func(context.Context, *pilotv1.Node) error) error {
	limit, canary := 0, 0
	if rs != nil {
		limit, canary = rs.MaxInFlight, rs.Canary
		if rs.Serial {
			limit = 1
		}
	}
	if limit == 0 && canary == 0 {
		return forEachNode(ctx, nodes, fn)
	}
	canary = min(canary, len(nodes))
	if canary > 0 {
		if err := forEachLimited(ctx, nodes[:canary], limit, fn); err != nil {
			if rest := len(nodes) - canary; rest > 0 {
				return fmt.Errorf("canary failed; the role's other %d nodes were left untouched: %w", rest, err)
			}
			return err
		}
	}
	return forEachLimited(ctx, nodes[canary:], limit, fn)
}

// forEachLimited is forEachNode in waves of at most limit nodes (0: one
// wave), starting no more waves once a node failed.
func forEachLimited(ctx context.Context, nodes []*pilotv1.Node, limit int, fn func(context.Context, *pilotv1.Node) error) error {
	if limit <= 0 || limit >= len(nodes) {
		return forEachNode(ctx, nodes, fn)
	}
	for start := 0; start < len(nodes); start += limit {
		if err := forEachNode(ctx, nodes[start:min(start+limit, len(nodes))], fn); err != nil {
			if rest := len(nodes) - start - limit; rest > 0 {
				return fmt.Errorf("%w\n%d more nodes were not started (the role runs at most %d at a time and stops at a failure)", err, rest, limit)
			}
			return err
		}
	}
	return nil
}

// forcedWait bounds how long a forced delete waits on an unreachable node
// or frontgate.
const forcedWait = 15 * time.Second

// forcedContext bounds ctx by forcedWait when force is set: a forced delete
// does not wait long on nodes or a frontgate it cannot reach (dead, or
// revoked), as their resources go anyway.
func forcedContext(ctx context.Context, force bool) (context.Context, context.CancelFunc) {
	if !force {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, forcedWait)
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

// forceDisallowed lists the roles whose destroy says allow_force: false.
func forceDisallowed(spec *apppkg.ClusterSpec) []string {
	var roles []string
	for _, n := range spec.Nodes {
		if !forceAllowed(spec, []string{n.Role}, "destroy") {
			role := n.Role
			if role == "" {
				role = "(the app's only role)"
			}
			roles = append(roles, role)
		}
	}
	return roles
}

type target struct {
	node    *pilotv1.Node
	cmd     string
	timeout int
}

// serviceTargets picks the nodes of in.Roles that run in.Service: every
// node with an agent (or those of in.NodeIds), or the nodes_to_execute_on
// lowest server ids. A role's command gets its argument from
// in.ServiceArgs, if any; with in.PreCheck the service's pre_check runs
// instead, on the roles that have one.
func serviceTargets(c *pilotv1.Cluster, spec *apppkg.ClusterSpec, in *pilotv1.TaskInput) []target {
	var targets []target
	for _, role := range in.Roles {
		service := in.Service
		rs := roleSpec(spec, role)
		if rs == nil {
			continue
		}
		svc, ok := rs.Service(service)
		if !ok {
			continue
		}
		cmd := withArg(svc.Cmd, in.ServiceArgs[role])
		if in.PreCheck {
			if strings.TrimSpace(svc.PreCheck) == "" {
				continue
			}
			cmd = svc.PreCheck
		}
		var nodes []*pilotv1.Node
		for _, nd := range onlyNodes(agentNodes(c, spec), in.NodeIds) {
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
			targets = append(targets, target{node: nd, cmd: cmd, timeout: svc.Timeout})
		}
	}
	return targets
}

// commandID names a task's command on a node; a retried job's commands
// get new ids (retries), so the drones run them again.
func commandID(job *pilotv1.Job, taskID, nodeID string) string {
	id := job.GetId() + "." + taskID + "." + nodeID
	if job.GetRetries() > 0 {
		id += fmt.Sprintf(".r%d", job.GetRetries())
	}
	return safeID(id)
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

// cancelWait bounds killing a cancelled job's command on its node: the
// drone's grace period between SIGTERM and SIGKILL, and some.
const cancelWait = 20 * time.Second

// cancelOnNode kills the command of nr on its node because its job was
// cancelled, and records how it ended. The job is ending whatever the
// answer, so a node that cannot be reached is logged, not retried.
func (o *Ops) cancelOnNode(ctx context.Context, t *jobs.Task, n *pilotv1.Network, nd *pilotv1.Node, nr *pilotv1.NodeResult) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelWait)
	defer cancel()
	req := &streamv1.Request{Body: &streamv1.Request_CancelCommand{CancelCommand: &streamv1.CancelCommand{NodeId: nd.Id, CommandId: nr.CommandId, Reason: "job " + t.Job.Id + " was cancelled"}}}
	resp, err := o.cfg.Frontgates.Call(cctx, n.FrontgateId, req)
	if res := resp.GetCommandResult(); err == nil && res != nil {
		nr.State, nr.ExitCode, nr.Error = res.State, res.ExitCode, res.Error
		nr.Output = strings.ToValidUTF8(string(res.Output), "\uFFFD")
		nr.StartedAt, nr.FinishedAt = res.StartedAt, res.FinishedAt
	} else {
		o.log.Warn("cancel a command on its node", "job_id", t.Job.Id, "node_id", nd.Id, "command_id", nr.CommandId, "err", err)
		nr.State, nr.Error = streamv1.CommandState_COMMAND_STATE_CANCELLED, fmt.Sprintf("job cancelled; the drone could not be told (%v)", err)
	}
	if err := t.Record(cctx, nr); err != nil {
		o.log.Warn("record a cancelled command", "job_id", t.Job.Id, "node_id", nd.Id, "err", err)
	}
	return fmt.Errorf("node %s (role %s): %s: cancelled", nd.Id, nd.Role, t.Task.Title)
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
	_, err := o.runOnNodeOutput(ctx, t, n, nd, cmd, timeout)
	return err
}

// runOnNodeOutput is runOnNode answering the command's output too (on
// success).
func (o *Ops) runOnNodeOutput(ctx context.Context, t *jobs.Task, n *pilotv1.Network, nd *pilotv1.Node, cmd string, timeout int) (string, error) {
	if timeout <= 0 {
		timeout = 600
	}
	id := commandID(t.Job, t.Task.Id, nd.Id)
	// Signed before anything is recorded: without a key the node never
	// shows as running.
	req, err := commandRequest(o.cfg.CommandKey, nd.Id, id, cmd, timeout, time.Now())
	if err != nil {
		return "", err
	}
	nr := &pilotv1.NodeResult{NodeId: nd.Id, InstanceId: nd.InstanceId, Role: nd.Role, CommandId: id, Cmd: cmd, State: streamv1.CommandState_COMMAND_STATE_RUNNING, StartedAt: timestamppb.Now()}
	o.progress(ctx, t, nr)
	// The drone enforces the timeout; we wait a little longer for its answer.
	cctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second+30*time.Second)
	defer cancel()
	// One request: the drone answers when the command ends, and the
	// frontgate link and the relay re-send the same command id after a cut
	// stream, so the result is pushed, not polled for.
	resp, err := o.cfg.Frontgates.Call(cctx, n.FrontgateId, req)
	var remote *streamrpc.Error
	if errors.As(err, &remote) && remote.Code == streamrpc.CodeUnauthenticated {
		// The drone refused the signature (wrong key, clock skew): a
		// retry signs with the same key and clock, so it cannot help.
		nr.State, nr.Error = streamv1.CommandState_COMMAND_STATE_REJECTED, err.Error()
		o.progress(ctx, t, nr)
		return "", fmt.Errorf("node %s (role %s): %s: the drone refused the command's signature (check that the drone joined this pilot and that the clocks agree): %w", nd.Id, nd.Role, t.Task.Title, err)
	}
	if err != nil && errors.Is(context.Cause(ctx), jobs.ErrCancelRequested) {
		return "", o.cancelOnNode(ctx, t, n, nd, nr)
	}
	if err != nil {
		nr.State, nr.Error = streamv1.CommandState_COMMAND_STATE_UNREACHABLE, err.Error()
		o.progress(ctx, t, nr)
		if errors.Is(err, fglink.ErrRevoked) {
			return "", fmt.Errorf("node %s (role %s): %s: %w", nd.Id, nd.Role, t.Task.Title, err)
		}
		return "", jobs.Retryable(fmt.Errorf("node %s (role %s): %s: %w", nd.Id, nd.Role, t.Task.Title, err))
	}
	res := resp.GetCommandResult()
	if res == nil {
		return "", fmt.Errorf("node %s: frontgate answered a command with no result", nd.Id)
	}
	if res.State == streamv1.CommandState_COMMAND_STATE_RUNNING {
		// Our deadline came before the command's end (the drone enforces
		// the timeout, so this means a slow link or a drone restarted
		// mid-wait): the retry asks again under the same command id, and
		// the drone answers when it ends.
		return "", jobs.Retryable(fmt.Errorf("node %s (role %s): %s: command %s still running at the deadline; asking again", nd.Id, nd.Role, t.Task.Title, id))
	}
	nr.ExitCode = res.ExitCode
	// Output is text in the record; a command printing bytes that are not
	// UTF-8 must not make its result unrecordable.
	nr.Output = strings.ToValidUTF8(string(res.Output), "\uFFFD")
	nr.State = res.State
	nr.StartedAt, nr.FinishedAt, nr.Error = res.StartedAt, res.FinishedAt, res.Error
	if err := t.Record(ctx, nr); err != nil {
		// The result must not be lost: the retry asks the drone again, and
		// the drone answers the command id it already ran with its
		// recorded result instead of running it twice.
		return "", jobs.Retryable(fmt.Errorf("node %s: record the result of command %s: %w", nd.Id, id, err))
	}
	if res.State == streamv1.CommandState_COMMAND_STATE_EXITED && res.ExitCode == 0 {
		return nr.Output, nil
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
	return "", fmt.Errorf("node %s (role %s, %s): command %q %s; output: %s", nd.Id, nd.Role, nd.Address, cmd, what, strings.TrimSpace(out))
}
