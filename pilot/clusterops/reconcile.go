package clusterops

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// The reconciler: jobs write a cluster's status when they end, but what
// exists changes between jobs (a frontgate or a drone killed, a machine
// restarted). The reconciler observes, level-triggered, on a tick: it
// compares what should run with what is connected, writes what it sees
// (a node LOST, its cluster DEGRADED; both back to ACTIVE when the node
// is), and converges what is infrastructure: a frontgate or drone whose
// instance the provider reports LOST is started again (same instance, id,
// address and data). It leaves alone clusters a job is working on, and
// clusters that are not meant to run (stopped, failed, being created or
// deleted). Later health checks and autoscaling plug in here.

// ReconcilerConfig tunes a Reconciler.
type ReconcilerConfig struct {
	// Interval between passes (default 1s).
	Interval time.Duration
	// Grace is how long a frontgate or drone may be disconnected before
	// it counts as lost (default 4s): a drone's reconnect after a cut
	// stream takes less.
	Grace time.Duration
	// Lifecycle starts the services of nodes whose instances booted (nil:
	// they stay STARTING).
	Lifecycle *Lifecycle
	// Events, when set, gets each change of a node's health and each
	// node marked LOST or seen back.
	Events *events.Log
	// Metrics, when set, gets each drone's last metrics report every
	// pass (pilot/metrics), and forgets nodes and clusters that are gone.
	Metrics MetricsSink
	// RuntimeMaxDownPercent and RuntimeMinDown are the meltdown guard of
	// each runtime (recovery.go): no node of any cluster on a runtime is
	// replaced automatically while more than RuntimeMaxDownPercent of its
	// nodes are down, unless fewer than RuntimeMinDown are (0: 20 and 5).
	RuntimeMaxDownPercent int
	RuntimeMinDown        int
	Logger                *slog.Logger
}

// Reconciler runs the passes, one at a time, in the goroutine that calls
// Run. Create it with NewReconciler.
type Reconciler struct {
	o   *Ops
	cfg ReconcilerConfig
	log *slog.Logger
	// seen is when each frontgate and node was last seen connected (or
	// first looked at), by id.
	seen map[string]time.Time
	// prev is seen as the previous pass left it.
	prev map[string]time.Time
	now  func() time.Time
	// links is what the last pass knew of each cluster's links, by
	// cluster id (refreshLinks).
	links map[string]*linkState
	// instances is what the provider said of a network's instances in
	// this pass, by tenant/runtime/network (instanceOf): one
	// ListInstances per network and pass, not one GetInstance per
	// disconnected node. With its frontgate away (say, pilot just
	// restarted) every node of a network is disconnected: 10,000 nodes
	// were 10,000 provider calls a pass, and kept a restarted pilot from
	// serving for 26 s.
	instances map[string]networkInstances
	// rec is what automatic recovery remembers between passes.
	rec *recoveryState
	// runtimeGuard is the meltdown guard of each runtime.
	runtimeGuard guardLimits
}

// networkInstances is one ListInstances of a network: its instances by
// id, or why the provider could not say.
type networkInstances struct {
	byID map[string]*providerv1.Instance
	err  error
}

// linkState is a cluster's links as the reconciler follows them.
type linkState struct {
	job   string              // the job whose spec this is
	spec  *apppkg.ClusterSpec // nil: the cluster has no links
	print string              // what the copy was last taken at ("": not by this pilot)
}

// NewReconciler returns a reconciler over o's store, providers and
// frontgate link.
func NewReconciler(o *Ops, cfg ReconcilerConfig) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 4 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = o.log
	}
	g := guardLimits{maxPercent: cmp.Or(cfg.RuntimeMaxDownPercent, DefaultMaxDownPercent), minDown: cmp.Or(cfg.RuntimeMinDown, DefaultMinDown)}
	return &Reconciler{o: o, cfg: cfg, log: cfg.Logger, seen: map[string]time.Time{}, now: time.Now, rec: newRecoveryState(), runtimeGuard: g}
}

// Run makes a pass every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gone reports whether id has been out of sight longer than the grace
// period; connected marks it seen now.
func (r *Reconciler) gone(id string, connected bool) bool {
	now := r.now()
	last, ok := r.seen[id]
	if !ok {
		last, ok = r.prev[id]
	}
	if connected || !ok {
		r.seen[id] = now
		return false
	}
	r.seen[id] = last
	return now.Sub(last) > r.cfg.Grace
}

// Pass observes every cluster once.
func (r *Reconciler) Pass(ctx context.Context) error {
	o := r.o
	clusters, err := store.List(ctx, o.cfg.Store, store.ClustersPrefix, newCluster)
	if err != nil {
		return fmt.Errorf("list clusters: %w", err)
	}
	frontgates := map[string]bool{} // network id → its frontgate is up
	// What this pass did not look at (deleted clusters, nodes, networks)
	// is forgotten, so seen does not grow with every node ever made.
	looked := r.seen
	r.seen = map[string]time.Time{}
	r.prev = looked
	links := r.links
	r.links = map[string]*linkState{}
	r.instances = map[string]networkInstances{}
	counts := map[string]runtimeCount{}
	var cases []recoveryCase
	lookedNodes := map[string]bool{}
	existing := map[string]bool{}
	defer func() { r.recoverClusters(ctx, cases, counts, lookedNodes, existing) }()
	r.forgetMetrics(clusters)
	for _, c := range clusters {
		existing[c.Id] = true
		for _, nd := range c.Nodes {
			// What recovery remembers of a node (its backoff) lasts
			// while the node exists, a recover job on it included.
			lookedNodes[nd.Id] = true
		}
		switch c.Status {
		case pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED, pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING, pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED:
			// Nothing of it should run, or a job is removing it.
			continue
		}
		n, err := o.network(ctx, c)
		if err != nil || n.FrontgateInstanceId == "" {
			continue
		}
		up, ok := frontgates[n.Id]
		if !ok {
			up = o.cfg.Frontgates.Connected(n.FrontgateId)
			r.gone(n.FrontgateId, up)
			if !up {
				// A frontgate has no services of an app to start.
				r.reviveIfLost(ctx, c, n.FrontgateInstanceId, "frontgate "+n.FrontgateId)
			}
			frontgates[n.Id] = up
		}
		// With its frontgate down the drones cannot be seen (they are not
		// lost for that), but the provider still says which instances
		// died.
		var connected map[string]bool
		if up {
			resp, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: c.Id}}})
			if err != nil {
				r.log.Warn("list drones", "cluster_id", c.Id, "err", err)
				continue
			}
			connected = map[string]bool{}
			health := map[string]*streamv1.HealthReport{}
			for _, d := range resp.GetDroneList().GetDrones() {
				connected[d.NodeId] = true
				if d.GetHealth() != nil {
					health[d.NodeId] = d.GetHealth()
				}
			}
			r.recordMetrics(c, resp.GetDroneList().GetDrones())
			if err := r.recordHealth(ctx, c, health); err != nil {
				r.log.Warn("record node health", "cluster_id", c.Id, "err", err)
			}
		}
		watched := r.watched(ctx, c)
		dead, err := r.observeNodes(ctx, c, connected, watched)
		if err != nil {
			r.log.Warn("observe cluster", "cluster_id", c.Id, "err", err)
		}
		if watched && recoveryOn(c) {
			// As observed just now, with the revision a recover job is
			// accepted at.
			if now, rev, err := r.clusterAt(ctx, c.Id); err == nil {
				c = now
				cases = append(cases, recoveryCase{c: now, rev: rev, dead: dead})
			}
		}
		countDown(counts, c)
		if watched && up {
			r.refreshLinks(ctx, c, links[c.Id])
		}
	}
	return nil
}

// refreshLinks copies the trees of the clusters c links to into c's
// metadata again when they changed (Ops.refreshLinks). st is what the
// previous pass knew of c's links; the spec is read again after each job.
func (r *Reconciler) refreshLinks(ctx context.Context, c *pilotv1.Cluster, st *linkState) {
	if st == nil || st.job != c.JobId {
		_, spec, err := r.o.cfg.Packages.Current(ctx, c)
		if err != nil {
			r.log.Warn("links: read the cluster's spec", "cluster_id", c.Id, "err", err)
			return
		}
		st = &linkState{job: c.JobId}
		if len(spec.Links) > 0 {
			st.spec = spec
		}
	}
	r.links[c.Id] = st
	if st.spec == nil {
		return
	}
	print, err := r.o.refreshLinks(ctx, c, st.spec, st.print)
	if err != nil {
		r.log.Warn("links: copy the linked clusters' metadata", "cluster_id", c.Id, "err", err)
	}
	st.print = print
}

// watched: only clusters that should be running and that no job is
// changing get their status written; the others only have their lost
// agents revived (a job waiting on a killed drone gets it back).
func (r *Reconciler) watched(ctx context.Context, c *pilotv1.Cluster) bool {
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED:
	default:
		return false
	}
	if c.JobId != "" {
		j := &pilotv1.Job{}
		if _, err := r.o.cfg.Store.Get(ctx, store.JobKey(c.JobId), j); err == nil && !jobs.Terminal(j.State) {
			return false
		}
	}
	return true
}

// observeNodes revives the instances of disconnected drones the provider
// lost and, when write is set, marks the nodes whose drones are gone LOST,
// those back ACTIVE, and the cluster DEGRADED while any node is lost.
//
// connected holds the drones connected to the frontgate; nil when the
// frontgate is down and none can be seen.
func (r *Reconciler) observeNodes(ctx context.Context, c *pilotv1.Cluster, connected map[string]bool, write bool) (dead map[string]bool, err error) {
	seeing := connected != nil
	lost, booted := map[string]bool{}, map[string]bool{}
	dead = map[string]bool{}
	// With recovery on, a dead instance is replaced, not restarted in
	// place, unless the meltdown guard holds (recovery.go); only where a
	// replacement can start (write: no job runs on the cluster). A job's
	// own nodes are restarted in place as before, or the job would wait
	// on a drone that nothing brings back.
	replace := write && recoveryOn(c) && !r.guarding(c)
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		// Lost once out of sight past the grace period, or at once when
		// the provider says its instance died (a pilot that just started
		// after a machine restart must not call it active meanwhile).
		gone := seeing && r.gone(nd.Id, connected[nd.Id])
		switch {
		case connected[nd.Id]:
		case replace:
			if r.instanceDead(ctx, c, nd.InstanceId) {
				dead[nd.Id], gone = true, true
			}
		default:
			died, boot := r.reviveIfLost(ctx, c, nd.InstanceId, "drone of node "+nd.Id)
			gone = gone || died
			if boot {
				booted[nd.Id] = true
			}
		}
		if gone {
			lost[nd.Id] = true
		}
	}
	if len(booted) > 0 {
		// Whatever the cluster is doing, a node whose instance booted
		// needs its services started: say so for good (a pilot restart
		// must not forget it).
		if err := r.markStarting(ctx, c.Id, booted); err != nil {
			return dead, err
		}
	}
	if !write {
		return dead, nil
	}
	var evs []*pilotv1.ClusterEvent
	_, err = r.o.updateCluster(ctx, c.Id, func(x *pilotv1.Cluster) error {
		evs = evs[:0] // a retried update starts again
		changed := false
		anyLost := false
		for _, nd := range x.Nodes {
			want := nd.Status
			switch {
			case nd.Status == pilotv1.NodeStatus_NODE_STATUS_STARTING:
				// Until a start job ran on it (startNodes).
				anyLost = true
			case lost[nd.Id]:
				want, anyLost = pilotv1.NodeStatus_NODE_STATUS_LOST, true
				if h := nd.GetHealth(); h != nil && h.Status != healthLost {
					// Its drone cannot check it any more: its health is
					// lost too, until the drone is back and reports.
					r.log.Info("node health changed", "cluster_id", x.Id, "node_id", nd.Id, "role", nd.Role, "from", h.Status, "to", healthLost)
					evs = append(evs, healthEvent(x.Id, nd, &pilotv1.NodeHealth{Status: healthLost}))
					h.Status, h.Since, changed = healthLost, timestamppb.Now(), true
				}
			case connected[nd.Id] && nd.Status == pilotv1.NodeStatus_NODE_STATUS_LOST:
				want = pilotv1.NodeStatus_NODE_STATUS_ACTIVE
			case nd.Status == pilotv1.NodeStatus_NODE_STATUS_LOST:
				anyLost = true
			}
			if want != nd.Status {
				r.log.Info("node status observed", "cluster_id", x.Id, "node_id", nd.Id, "from", nd.Status, "to", want)
				evs = append(evs, &pilotv1.ClusterEvent{ClusterId: x.Id, Kind: "node", NodeId: nd.Id,
					Message: fmt.Sprintf("%s (role %s): %s -> %s", nd.Id, nd.Role, enumWord(nd.Status.String()), enumWord(want.String()))})
				nd.Status, changed = want, true
			}
		}
		// A job accepted since this pass began owns the status.
		if x.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE || x.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED {
			want := pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			if anyLost {
				want = pilotv1.ClusterStatus_CLUSTER_STATUS_DEGRADED
			}
			if want != x.Status {
				r.log.Info("cluster status observed", "cluster_id", x.Id, "from", x.Status, "to", want)
				x.Status, changed = want, true
			}
		}
		if !changed {
			return store.ErrNoChange
		}
		return nil
	})
	if err == nil {
		r.emit(ctx, evs)
	}
	if err = ignoreNotFound(err); err != nil || !seeing {
		return dead, err
	}
	return dead, r.startBooted(ctx, c.Id, connected)
}

// recordHealth keeps on each node what its drone last reported of its
// health, writing the cluster only when a report differs from the node's
// (a check's time alone does not: drones report changes only). Each change
// of a node's health status is logged as an event.
func (r *Reconciler) recordHealth(ctx context.Context, c *pilotv1.Cluster, reports map[string]*streamv1.HealthReport) error {
	changed := slices.ContainsFunc(c.Nodes, func(nd *pilotv1.Node) bool {
		hr := reports[nd.Id]
		return hr != nil && !proto.Equal(nodeHealth(hr), nd.Health)
	})
	if !changed {
		return nil // the common case: nothing to write, nothing read again
	}
	var evs []*pilotv1.ClusterEvent
	_, err := r.o.updateCluster(ctx, c.Id, func(x *pilotv1.Cluster) error {
		evs = evs[:0] // a retried update starts again
		changed := false
		for _, nd := range x.Nodes {
			hr := reports[nd.Id]
			if hr == nil {
				continue
			}
			h := nodeHealth(hr)
			if proto.Equal(h, nd.Health) {
				continue
			}
			if h.GetStatus() != nd.GetHealth().GetStatus() {
				r.log.Info("node health changed", "cluster_id", x.Id, "node_id", nd.Id, "role", nd.Role,
					"from", nd.GetHealth().GetStatus(), "to", h.GetStatus(), "failures", h.GetFailures(), "check_exit_code", h.GetCheck().GetExitCode())
				evs = append(evs, healthEvent(x.Id, nd, h))
			}
			nd.Health, changed = h, true
		}
		if !changed {
			return store.ErrNoChange
		}
		return nil
	})
	if err == nil {
		r.emit(ctx, evs)
	}
	return ignoreNotFound(err)
}

// emit appends events, when there is an event log.
func (r *Reconciler) emit(ctx context.Context, evs []*pilotv1.ClusterEvent) {
	if r.cfg.Events == nil {
		return
	}
	for _, ev := range evs {
		r.cfg.Events.Append(ctx, ev)
	}
}

// healthEvent says that nd's health is now h, and what its check said.
func healthEvent(clusterID string, nd *pilotv1.Node, h *pilotv1.NodeHealth) *pilotv1.ClusterEvent {
	msg := fmt.Sprintf("%s (role %s): %s -> %s", nd.Id, nd.Role, orUnset(nd.GetHealth().GetStatus()), h.GetStatus())
	if c := h.GetCheck(); c != nil && h.GetStatus() != healthLost {
		msg += fmt.Sprintf("; check exit %d", c.GetExitCode())
		if c.GetError() != "" {
			msg += " (" + c.GetError() + ")"
		}
		if out := lastLine(c.GetOutput()); out != "" {
			msg += ": " + out
		}
	}
	if a := h.GetAction(); a != nil && h.GetStatus() == "unhealthy" {
		msg += fmt.Sprintf("; action_cmd exit %d", a.GetExitCode())
	}
	return &pilotv1.ClusterEvent{ClusterId: clusterID, Kind: "health", NodeId: nd.Id, Message: msg}
}

// enumWord is NODE_STATUS_LOST as "LOST".
func enumWord(s string) string { return strings.TrimPrefix(s, "NODE_STATUS_") }

func orUnset(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// healthLost is a node's health while its drone is lost: nobody checks it.
const healthLost = "lost"

// nodeHealth is a drone's health report as pilot keeps it.
func nodeHealth(hr *streamv1.HealthReport) *pilotv1.NodeHealth {
	cmd := func(c *streamv1.CommandRun) *pilotv1.HealthCommand {
		if c == nil {
			return nil
		}
		return &pilotv1.HealthCommand{ExitCode: c.GetExitCode(), Output: c.GetOutput(), At: c.GetAt(), Error: c.GetError()}
	}
	return &pilotv1.NodeHealth{Status: hr.GetStatus(), Since: hr.GetSince(), Failures: hr.GetFailures(), Check: cmd(hr.GetCheck()), Action: cmd(hr.GetAction())}
}

// markStarting sets the nodes whose instances booted STARTING.
func (r *Reconciler) markStarting(ctx context.Context, clusterID string, booted map[string]bool) error {
	_, err := r.o.updateCluster(ctx, clusterID, func(x *pilotv1.Cluster) error {
		changed := false
		for _, nd := range x.Nodes {
			if booted[nd.Id] && nd.Status != pilotv1.NodeStatus_NODE_STATUS_STARTING {
				nd.Status, changed = pilotv1.NodeStatus_NODE_STATUS_STARTING, true
			}
		}
		if !changed {
			return store.ErrNoChange
		}
		return nil
	})
	return ignoreNotFound(err)
}

// startBooted asks the lifecycle to start the services of the cluster's
// STARTING nodes once their drones are connected (a job: confd, then start
// by order on those nodes).
func (r *Reconciler) startBooted(ctx context.Context, clusterID string, connected map[string]bool) error {
	if r.cfg.Lifecycle == nil {
		return nil
	}
	c, rev, err := r.clusterAt(ctx, clusterID)
	if err != nil {
		return ignoreNotFound(err)
	}
	var nodes []string
	for _, nd := range c.Nodes {
		if nd.Status == pilotv1.NodeStatus_NODE_STATUS_STARTING {
			if !connected[nd.Id] {
				return nil // next pass, once every drone is back
			}
			nodes = append(nodes, nd.Id)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	cj, err := r.cfg.Lifecycle.StartNodes(ctx, OpRequest{C: c, Rev: rev}, nodes)
	if err != nil {
		return fmt.Errorf("start the services of booted nodes %v: %w", nodes, err)
	}
	r.log.Info("services of booted nodes being started", "cluster_id", clusterID, "nodes", nodes, "job_id", cj.Job.Id)
	return nil
}

// instanceOf is what the provider says of an instance of c's network,
// from one ListInstances of the network per pass (nil: not listed, so not
// lost). A failed listing is logged once and not retried in the pass.
// Only a listing resolves the provider (the runtime and its credentials
// are two reads of the store).
func (r *Reconciler) instanceOf(ctx context.Context, c *pilotv1.Cluster, instanceID string) (*providerv1.Instance, error) {
	key := c.Tenant + "/" + c.Runtime + "/" + c.NetworkId
	ni, ok := r.instances[key]
	if !ok {
		var list *providerv1.ListInstancesResponse
		prov, prt, err := r.o.provider(ctx, c.Tenant, c.Runtime)
		if err == nil {
			list, err = prov.ListInstances(ctx, &providerv1.ListInstancesRequest{Runtime: prt, NetworkId: c.NetworkId})
		}
		if err != nil {
			ni.err = fmt.Errorf("list the instances of network %s: %w", c.NetworkId, err)
			r.log.Warn("revive: cannot tell which instances died", "runtime", c.Runtime, "network_id", c.NetworkId, "err", err)
		} else {
			ni.byID = make(map[string]*providerv1.Instance, len(list.GetInstances()))
			for _, in := range list.GetInstances() {
				ni.byID[in.GetId()] = in
			}
		}
		if r.instances != nil {
			r.instances[key] = ni
		}
	}
	return ni.byID[instanceID], ni.err
}

func (r *Reconciler) clusterAt(ctx context.Context, id string) (*pilotv1.Cluster, int64, error) {
	c := &pilotv1.Cluster{}
	rev, err := r.o.cfg.Store.Get(ctx, store.ClusterKey(id), c)
	return c, rev, err
}

// instanceDead reports whether the provider says instanceID died (it will
// not come back by itself).
func (r *Reconciler) instanceDead(ctx context.Context, c *pilotv1.Cluster, instanceID string) bool {
	in, err := r.instanceOf(ctx, c, instanceID)
	return err == nil && in.GetState() == providerv1.InstanceState_INSTANCE_STATE_LOST
}

// reviveIfLost asks the provider about an instance whose agent is not
// connected; one it reports LOST (its process or machine gone though
// nobody stopped it) is started again. Anything else (running: the agent
// is only cut off; stopped: on purpose) is left alone. booted: nothing of
// it was left, so the app's services on it must be started again.
func (r *Reconciler) reviveIfLost(ctx context.Context, c *pilotv1.Cluster, instanceID, what string) (lost, booted bool) {
	in, err := r.instanceOf(ctx, c, instanceID)
	if err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_LOST {
		return false, false
	}
	prov, prt, err := r.o.provider(ctx, c.Tenant, c.Runtime)
	if err != nil {
		r.log.Warn("revive: provider", "what", what, "err", err)
		return false, false
	}
	// The pass read the cluster a while ago (a pass over a 300-node
	// cluster takes seconds): one whose delete or stop began since is
	// not revived, its instance is lost on purpose. (Providers refuse to
	// start an instance being deleted too; this spares them the call.)
	if now, _, err := r.clusterAt(ctx, c.Id); err != nil || now.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING ||
		now.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED || now.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED {
		return false, false
	}
	in, err = prov.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: prt, InstanceId: instanceID, IdempotencyToken: "revive." + instanceID})
	if err != nil {
		r.log.Warn("revive a lost instance", "what", what, "instance_id", instanceID, "err", err)
		return true, false
	}
	r.log.Info("lost instance started again", "what", what, "instance_id", instanceID, "cluster_id", c.Id, "booted", in.GetBooted())
	return true, in.GetBooted()
}
