// Package autoscale scales clusters' roles out and in by their
// autoscaling policies (pilotv1.AutoscalePolicy): on a tick it reads each
// role's average of the policy's metric from pilot's metrics window,
// decides, and starts scale jobs through the lifecycle, as a user's
// `hangar cluster scale` would.
//
// It follows Kubernetes' HPA where a user would expect it to: a
// stabilisation window (a decision needs the metric beyond its threshold
// at every sample over the whole window, so a load that comes and goes
// faster than the window moves nothing), a cooldown after each scale job,
// min and max (never beyond the package's count range either: policies
// are checked against it when set), and no decision while another job
// runs on the cluster. Every decision, and every reason for not deciding
// when it changes, is an event of the cluster and the policy's
// last_decision, so that `hangar cluster events` shows why the count is
// what it is.
package autoscale

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Metrics is what the autoscaler reads of pilot's metrics window
// (*pilot/metrics.Store).
type Metrics interface {
	// RoleAverage is the mean over the role's nodes of each node's mean
	// of metric over the samples at or after since; nodes is how many
	// nodes had samples.
	RoleAverage(cluster, role, metric string, since time.Time) (avg float64, nodes int, ok bool)
}

// Scaler starts scale jobs and keeps the policies' last decisions
// (*pilot/clusterops.Lifecycle).
type Scaler interface {
	Scale(ctx context.Context, r clusterops.OpRequest, role string, count int) (*pilotv1.ClusterJob, error)
	RecordAutoscale(ctx context.Context, clusterID, role, decision, jobID string) error
}

// Config configures an Autoscaler.
type Config struct {
	Store   *store.Store
	Scaler  Scaler
	Metrics Metrics
	// Events gets each decision and each change of the reason for none
	// (nil: only the policy's last_decision says).
	Events *events.Log
	// Interval between passes (default 5 s); each pass takes a sample of
	// every policy's metric, the average of the last Interval × 2.
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Autoscaler evaluates the policies. Create it with New; Run (or Pass,
// one at a time) drives it.
type Autoscaler struct {
	cfg Config
	log *slog.Logger
	// roles is what each policy's evaluation remembers, by cluster/role.
	roles map[string]*roleState
}

// roleState is one policy's samples over its window and what it last
// said.
type roleState struct {
	samples []sample
	said    string // the kind of the last decision or non-decision
}

type sample struct {
	at    time.Time
	value float64
}

// New returns an autoscaler.
func New(cfg Config) *Autoscaler {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Autoscaler{cfg: cfg, log: cfg.Logger, roles: map[string]*roleState{}}
}

// Run makes a pass every interval until ctx ends.
func (a *Autoscaler) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.Pass(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("autoscale pass", "err", err)
		}
	}
}

// Pass evaluates every policy of every cluster once.
func (a *Autoscaler) Pass(ctx context.Context) error {
	clusters, err := store.List(ctx, a.cfg.Store, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return fmt.Errorf("list clusters: %w", err)
	}
	seen := map[string]bool{}
	for _, c := range clusters {
		scaled := false
		for _, p := range c.Autoscale {
			key := c.Id + "/" + p.Role
			seen[key] = true
			st := a.roles[key]
			if st == nil {
				st = &roleState{}
				a.roles[key] = st
			}
			if scaled {
				// The cluster as listed is stale: its job began this
				// pass. The next pass sees it busy.
				continue
			}
			scaled = a.evaluate(ctx, c, p, st)
		}
	}
	for key := range a.roles {
		if !seen[key] {
			delete(a.roles, key) // the policy or its cluster is gone
		}
	}
	return nil
}

// decision is what one evaluation concluded: a kind (what dedupes the
// events: a steady "within target" is said once), a message, and the
// node count to scale to (0: none).
type decision struct {
	kind, msg string
	to        int
}

// evaluate samples p's metric and decides; it reports whether it started
// a scale job.
func (a *Autoscaler) evaluate(ctx context.Context, c *pilotv1.Cluster, p *pilotv1.AutoscalePolicy, st *roleState) bool {
	now := a.cfg.Now()
	window := time.Duration(cmp.Or(p.WindowSec, clusterops.DefaultAutoscaleWindowSec)) * time.Second
	// The sample: the role's average over the last two intervals (a
	// drone reports every few seconds; one interval may hold none).
	if v, n, ok := a.cfg.Metrics.RoleAverage(c.Id, p.Role, p.Metric, now.Add(-2*a.cfg.Interval)); ok && n > 0 {
		st.samples = append(st.samples, sample{at: now, value: v})
	}
	// Keep the window and the one sample before it.
	for len(st.samples) > 1 && !st.samples[1].at.After(now.Add(-window)) {
		st.samples = st.samples[1:]
	}
	d := a.decide(ctx, c, p, st, now, window)
	if d.kind == "busy" {
		// What the role did while a job changed it says nothing of the
		// count it has after: the window starts again.
		st.samples = nil
	}
	jobID := ""
	if d.to > 0 {
		r, err := a.scale(ctx, c.Id, p.Role, d.to)
		if err != nil {
			d = decision{kind: "refused", msg: fmt.Sprintf("%s; the scale job was refused: %v", d.msg, err)}
		} else {
			jobID = r.Job.Id
			d.msg += ": job " + jobID
			st.samples = nil // the new count starts a new window
		}
	}
	if d.kind == st.said && jobID == "" {
		return false
	}
	st.said = d.kind
	a.log.Info("autoscale", "cluster_id", c.Id, "role", p.Role, "decision", d.kind, "message", d.msg, "job_id", jobID)
	if a.cfg.Events != nil {
		a.cfg.Events.Append(ctx, &pilotv1.ClusterEvent{ClusterId: c.Id, Kind: "autoscale", Message: fmt.Sprintf("role %s: %s", p.Role, d.msg)})
	}
	if err := a.cfg.Scaler.RecordAutoscale(ctx, c.Id, p.Role, d.msg, jobID); err != nil {
		a.log.Warn("autoscale: record the decision", "cluster_id", c.Id, "role", p.Role, "err", err)
	}
	return jobID != ""
}

// decide is the policy's verdict at now.
func (a *Autoscaler) decide(ctx context.Context, c *pilotv1.Cluster, p *pilotv1.AutoscalePolicy, st *roleState, now time.Time, window time.Duration) decision {
	n := 0
	for _, nd := range c.Nodes {
		if nd.Role == p.Role {
			n++
		}
	}
	if c.JobId != "" {
		j := &pilotv1.Job{}
		if _, err := a.cfg.Store.Get(ctx, store.JobKey(c.JobId), j); err == nil {
			if !jobs.Terminal(j.State) {
				return decision{kind: "busy", msg: fmt.Sprintf("no decision: job %s (%s) runs on the cluster", j.Id, j.Kind)}
			}
			cooldown := time.Duration(cmp.Or(p.CooldownSec, clusterops.DefaultAutoscaleCooldownSec)) * time.Second
			if j.Id == p.LastJobId && j.UpdatedAt != nil && now.Sub(j.UpdatedAt.AsTime()) < cooldown {
				return decision{kind: "cooldown", msg: fmt.Sprintf("no decision: cooling down for %s after job %s", cooldown, j.Id)}
			}
		}
	}
	if c.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
		return decision{kind: "status", msg: fmt.Sprintf("no decision: the cluster is %s", strings.TrimPrefix(c.Status.String(), "CLUSTER_STATUS_"))}
	}
	step := int(cmp.Or(p.Step, 1))
	switch {
	case n < int(p.Min):
		return decision{kind: "out", msg: fmt.Sprintf("scale out %d -> %d: below the policy's min", n, p.Min), to: int(p.Min)}
	case n > int(p.Max):
		return decision{kind: "in", msg: fmt.Sprintf("scale in %d -> %d: above the policy's max", n, p.Max), to: int(p.Max)}
	}
	if len(st.samples) == 0 {
		return decision{kind: "no-data", msg: fmt.Sprintf("no decision: no %s reported by role %s yet", p.Metric, p.Role)}
	}
	if st.samples[0].at.After(now.Add(-window)) {
		return decision{kind: "filling", msg: fmt.Sprintf("no decision: %s samples cover %s of the %s window", p.Metric, now.Sub(st.samples[0].at).Round(time.Second), window)}
	}
	lo, hi := st.samples[0].value, st.samples[0].value
	for _, s := range st.samples[1:] {
		lo, hi = min(lo, s.value), max(hi, s.value)
	}
	ratio := p.ScaleInRatio
	if ratio == 0 {
		ratio = clusterops.DefaultAutoscaleScaleIn
	}
	floor := p.Target * ratio
	last := st.samples[len(st.samples)-1].value
	switch {
	case lo > p.Target && n < int(p.Max):
		to := min(n+step, int(p.Max))
		return decision{kind: "out", msg: fmt.Sprintf("scale out %d -> %d: %s above %g over the %s window (lowest %.3g)", n, to, p.Metric, p.Target, window, lo), to: to}
	case lo > p.Target:
		return decision{kind: "at-max", msg: fmt.Sprintf("no decision: %s above %g (lowest %.3g) but the role is at the policy's max, %d", p.Metric, p.Target, lo, p.Max)}
	case hi < floor && n > int(p.Min):
		to := max(n-step, int(p.Min))
		return decision{kind: "in", msg: fmt.Sprintf("scale in %d -> %d: %s below %g over the %s window (highest %.3g)", n, to, p.Metric, floor, window, hi), to: to}
	case hi < floor:
		return decision{kind: "at-min", msg: fmt.Sprintf("no decision: %s below %g (highest %.3g) but the role is at the policy's min, %d", p.Metric, floor, hi, p.Min)}
	case last > p.Target || last < floor:
		// The same kind as within: a load that comes and goes faster
		// than the window is said once, not at every turn.
		return decision{kind: "hold", msg: fmt.Sprintf("no decision: %s is %.3g, beyond %g..%g, but not over the whole %s window (it ranged %.3g..%.3g)", p.Metric, last, floor, p.Target, window, lo, hi)}
	}
	return decision{kind: "hold", msg: fmt.Sprintf("no decision: %s %.3g within %g..%g", p.Metric, last, floor, p.Target)}
}

// scale starts a scale job of role to count, with the cluster as stored
// now (its revision guards the job against a concurrent change).
func (a *Autoscaler) scale(ctx context.Context, clusterID, role string, count int) (*pilotv1.ClusterJob, error) {
	c := &pilotv1.Cluster{}
	rev, err := a.cfg.Store.Get(ctx, store.ClusterKey(clusterID), c)
	if err != nil {
		return nil, err
	}
	return a.cfg.Scaler.Scale(ctx, clusterops.OpRequest{C: c, Rev: rev}, role, count)
}
