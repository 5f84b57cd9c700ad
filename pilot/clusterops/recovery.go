package clusterops

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Automatic recovery, BOSH's resurrector in the reconciler: a cluster
// whose RecoveryPolicy is enabled gets its failed nodes replaced by a
// recover job (the same job `hangar cluster recover` starts), and a
// meltdown guard holds replacements back when many nodes fail at once,
// where replacing them would more likely pile load on a sick cloud than
// help (a zone outage, a network partition, pilot's own link).
//
// A node is down when it is LOST or its health is unhealthy. It is
// replaced when it has been down long enough: a LOST node whose instance
// the provider reports dead after the grace period (it will not come
// back by itself; with recovery on it is not restarted in place but
// replaced with a fresh instance), a LOST node whose instance still runs
// after lost_after_sec (its drone may only be cut off), an unhealthy one
// after unhealthy_after_sec (its action_cmd had its chance). The guard
// counts the down nodes of the cluster and of its runtime (every cluster
// on it): while more than max_down_percent are down and at least min_down
// are, nothing is replaced; the reconciler restarts dead instances in
// place meanwhile, as it does for clusters without recovery, and says so
// in an event when the guard begins to hold and when it lets go.

// Recovery defaults: BOSH's resurrector.
const (
	DefaultLostAfter      = 60 * time.Second
	DefaultUnhealthyAfter = 60 * time.Second
	DefaultMaxDownPercent = 20
	DefaultMinDown        = 5
)

// recoveryBackoff is how long a node whose recover job failed waits
// before the next one (doubling, at most maxRecoveryBackoff): a node
// that cannot be replaced (no capacity, a broken image) must not turn
// the cluster into a loop of failing jobs.
const (
	recoveryBackoff    = 30 * time.Second
	maxRecoveryBackoff = 10 * time.Minute
)

// recoveryOn reports whether c asks for automatic recovery.
func recoveryOn(c *pilotv1.Cluster) bool { return c.GetRecovery().GetEnabled() }

// guardLimits are a meltdown guard's thresholds.
type guardLimits struct {
	maxPercent, minDown int
}

func (g guardLimits) holds(down, total int) bool {
	return total > 0 && down >= g.minDown && down*100 > g.maxPercent*total
}

func (g guardLimits) String() string {
	return fmt.Sprintf("more than %d%% and at least %d", g.maxPercent, g.minDown)
}

func clusterGuard(p *pilotv1.RecoveryPolicy) guardLimits {
	return guardLimits{maxPercent: int(cmp.Or(p.GetMaxDownPercent(), DefaultMaxDownPercent)), minDown: int(cmp.Or(p.GetMinDown(), DefaultMinDown))}
}

// recoveryState is what the reconciler remembers of recovery between
// passes. It lives in memory: a restarted pilot starts the clocks again,
// which only delays a replacement.
type recoveryState struct {
	// down is when each node was first seen down, by node id.
	down map[string]time.Time
	// guarded holds the clusters ("c/<id>") and runtimes ("r/<tenant>/<id>")
	// whose guard held at the last pass, with the message said.
	guarded map[string]bool
	// started is the recover job last started for each cluster and the
	// nodes it replaces.
	started map[string]recoverJob
	// retry is when a node whose replacement failed may be tried again,
	// and how many times it failed.
	retry map[string]retryAt
}

type recoverJob struct {
	id    string
	nodes []string
}

type retryAt struct {
	at       time.Time
	failures int
}

func newRecoveryState() *recoveryState {
	return &recoveryState{down: map[string]time.Time{}, guarded: map[string]bool{}, started: map[string]recoverJob{}, retry: map[string]retryAt{}}
}

// recoveryCase is a cluster with recovery on, as this pass saw it.
type recoveryCase struct {
	c    *pilotv1.Cluster
	rev  int64
	dead map[string]bool // nodes whose instance the provider reports dead
}

// runtimeCount is how many nodes of a runtime are down, of how many.
type runtimeCount struct{ down, total int }

func runtimeKey(c *pilotv1.Cluster) string { return "r/" + c.Tenant + "/" + c.Runtime }

// nodeDown says whether nd is down, and why.
func nodeDown(nd *pilotv1.Node) (bool, string) {
	switch {
	case nd.Status == pilotv1.NodeStatus_NODE_STATUS_LOST:
		return true, "lost"
	case nd.GetHealth().GetStatus() == "unhealthy":
		return true, "unhealthy"
	}
	return false, ""
}

// countDown adds c's nodes to its runtime's count.
func countDown(counts map[string]runtimeCount, c *pilotv1.Cluster) {
	rc := counts[runtimeKey(c)]
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		rc.total++
		if d, _ := nodeDown(nd); d {
			rc.down++
		}
	}
	counts[runtimeKey(c)] = rc
}

// guarding reports whether the guard held for c at the last pass: the
// reconciler then restarts c's dead instances in place instead of
// leaving them to a replacement.
func (r *Reconciler) guarding(c *pilotv1.Cluster) bool {
	return r.rec.guarded["c/"+c.Id] || r.rec.guarded[runtimeKey(c)]
}

// recoverClusters decides, after a pass observed every cluster, which
// nodes to replace, and starts their recover jobs. looked holds the nodes
// of every cluster that exists, clusters the clusters: what it remembers
// of others is forgotten.
func (r *Reconciler) recoverClusters(ctx context.Context, cases []recoveryCase, counts map[string]runtimeCount, looked, clusters map[string]bool) {
	now := r.now()
	for id := range r.rec.started {
		if !clusters[id] {
			delete(r.rec.started, id)
		}
	}
	// Forget the nodes and clusters that are gone.
	for id := range r.rec.down {
		if !looked[id] {
			delete(r.rec.down, id)
		}
	}
	for key := range r.rec.guarded {
		if id, ok := strings.CutPrefix(key, "c/"); ok && !clusters[id] {
			delete(r.rec.guarded, key)
		}
	}
	for id := range r.rec.retry {
		if !looked[id] {
			delete(r.rec.retry, id)
		}
	}
	runtimeHeld := map[string]bool{}
	for key, rc := range counts {
		// The runtime's guard has the pilot's limits: no cluster's
		// policy speaks for the others on its runtime.
		held := r.runtimeGuard.holds(rc.down, rc.total)
		runtimeHeld[key] = held
		r.guardChanged(ctx, key, held, fmt.Sprintf("runtime %s: %d of %d nodes down (%s)", strings.TrimPrefix(key, "r/"), rc.down, rc.total, r.runtimeGuard), cases)
	}
	for _, rc := range cases {
		r.recoverCluster(ctx, rc, runtimeHeld[runtimeKey(rc.c)], now)
	}
}

// guardChanged remembers whether the guard of key holds and, when that
// changed, says so in an event of every cluster concerned.
func (r *Reconciler) guardChanged(ctx context.Context, key string, held bool, what string, cases []recoveryCase) {
	if held == r.rec.guarded[key] {
		return
	}
	if held {
		r.rec.guarded[key] = true
	} else {
		delete(r.rec.guarded, key)
	}
	msg := "meltdown guard released: " + what + "; replacing failed nodes again"
	if held {
		msg = "meltdown guard holds: " + what + "; no node is replaced until fewer are down (dead instances are restarted in place)"
	}
	r.log.Warn("recovery guard", "scope", key, "holds", held, "what", what)
	var evs []*pilotv1.ClusterEvent
	for _, rc := range cases {
		if key == "c/"+rc.c.Id || key == runtimeKey(rc.c) {
			evs = append(evs, &pilotv1.ClusterEvent{ClusterId: rc.c.Id, Kind: "recovery", Message: msg})
		}
	}
	r.emit(ctx, evs)
}

// recoverCluster replaces the nodes of one cluster that have been down
// long enough, unless a guard holds.
func (r *Reconciler) recoverCluster(ctx context.Context, rc recoveryCase, runtimeHeld bool, now time.Time) {
	c, p := rc.c, rc.c.GetRecovery()
	r.noteRecoverJob(ctx, c, now)
	var down []string
	ready := map[string]string{} // node id → why it is replaced
	for _, nd := range c.Nodes {
		isDown, why := nodeDown(nd)
		if !isDown || nd.InstanceId == "" {
			delete(r.rec.down, nd.Id) // up again: a next failure starts a new clock
			continue
		}
		down = append(down, nd.Id)
		since, ok := r.rec.down[nd.Id]
		if !ok {
			since = now
			r.rec.down[nd.Id] = since
		}
		after := time.Duration(cmp.Or(p.GetUnhealthyAfterSec(), int32(DefaultUnhealthyAfter/time.Second))) * time.Second
		if why == "lost" {
			after = time.Duration(cmp.Or(p.GetLostAfterSec(), int32(DefaultLostAfter/time.Second))) * time.Second
			if rc.dead[nd.Id] {
				why, after = "lost, its instance dead", r.cfg.Grace
			}
		}
		if now.Sub(since) < after {
			continue
		}
		if ra, ok := r.rec.retry[nd.Id]; ok && now.Before(ra.at) {
			continue
		}
		ready[nd.Id] = fmt.Sprintf("%s (%s for %s)", nd.Id, why, now.Sub(since).Round(time.Second))
	}
	g := clusterGuard(p)
	held := g.holds(len(down), len(c.Nodes))
	r.guardChanged(ctx, "c/"+c.Id, held, fmt.Sprintf("%d of %d nodes of the cluster down (%s)", len(down), len(c.Nodes), g), []recoveryCase{rc})
	if held || runtimeHeld || len(ready) == 0 {
		return
	}
	ids := make([]string, 0, len(ready))
	whys := make([]string, 0, len(ready))
	for id, why := range ready {
		ids = append(ids, id)
		whys = append(whys, why)
	}
	sort.Strings(ids)
	sort.Strings(whys)
	if r.cfg.Lifecycle == nil {
		return
	}
	res, err := r.cfg.Lifecycle.Recover(ctx, OpRequest{C: c, Rev: rc.rev}, ids)
	if err != nil {
		// A job began since the pass read the cluster, or it changed: the
		// next pass looks again.
		r.log.Info("recovery not started", "cluster_id", c.Id, "nodes", ids, "err", err)
		return
	}
	r.rec.started[c.Id] = recoverJob{id: res.Job.Id, nodes: ids}
	r.log.Warn("recovering nodes", "cluster_id", c.Id, "job_id", res.Job.Id, "nodes", ids)
	r.emit(ctx, []*pilotv1.ClusterEvent{{ClusterId: c.Id, Kind: "recovery",
		Message: fmt.Sprintf("replacing %s: recover job %s", strings.Join(whys, ", "), res.Job.Id)}})
}

// noteRecoverJob looks at the recover job last started for c once it
// ended: a failure delays the next attempt on its nodes, a success
// forgets their failures.
func (r *Reconciler) noteRecoverJob(ctx context.Context, c *pilotv1.Cluster, now time.Time) {
	rj, ok := r.rec.started[c.Id]
	if !ok {
		return
	}
	j := &pilotv1.Job{}
	if _, err := r.o.cfg.Store.Get(ctx, store.JobKey(rj.id), j); err != nil || !jobs.Terminal(j.State) {
		return
	}
	delete(r.rec.started, c.Id)
	for _, id := range rj.nodes {
		delete(r.rec.down, id) // a new instance: its clock starts again
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			delete(r.rec.retry, id)
			continue
		}
		ra := r.rec.retry[id]
		ra.failures++
		wait := min(recoveryBackoff<<(ra.failures-1), maxRecoveryBackoff)
		ra.at = now.Add(wait)
		r.rec.retry[id] = ra
	}
	if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
		return // the job's own event says so
	}
	msg := fmt.Sprintf("recover job %s of %s ended %s (%s); next attempt after %s", rj.id, strings.Join(rj.nodes, ", "),
		strings.TrimPrefix(j.State.String(), "JOB_STATE_"), j.Error, r.rec.retry[rj.nodes[0]].at.Sub(now).Round(time.Second))
	r.emit(ctx, []*pilotv1.ClusterEvent{{ClusterId: c.Id, Kind: "recovery", Message: msg}})
}
