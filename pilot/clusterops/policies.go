package clusterops

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/store"
)

// A cluster's policies: automatic recovery (recovery.go) and autoscaling
// (pilot/autoscale). They live on the cluster's record, so that they are
// shown with it and go with it, and are checked here against the
// cluster's package when they are set, so that a policy that could never
// act (a role the app lacks, a count its config.json refuses, a metric
// nobody reports) is refused with what is allowed.

// Bounds of the policies' durations, in seconds.
const (
	maxPolicySec = 24 * 3600
)

// SetRecovery stores c's recovery policy (validated; zero fields take the
// defaults) and returns the cluster as stored.
func (l *Lifecycle) SetRecovery(ctx context.Context, c *pilotv1.Cluster, p *pilotv1.RecoveryPolicy) (*pilotv1.Cluster, error) {
	if p == nil {
		return nil, refuse(Invalid, "recovery: required; set enabled (and, optionally, lost_after_sec, unhealthy_after_sec, max_down_percent, min_down)")
	}
	for _, f := range []struct {
		name string
		v    int32
		max  int32
	}{
		{"lost_after_sec", p.LostAfterSec, maxPolicySec},
		{"unhealthy_after_sec", p.UnhealthyAfterSec, maxPolicySec},
		{"max_down_percent", p.MaxDownPercent, 100},
		{"min_down", p.MinDown, 1_000_000},
	} {
		if f.v < 0 || f.v > f.max {
			return nil, refuse(Invalid, "recovery.%s: %d; give 0 (the default) to %d", f.name, f.v, f.max)
		}
	}
	return l.updatePolicies(ctx, c.Id, func(x *pilotv1.Cluster) error {
		x.Recovery = proto.Clone(p).(*pilotv1.RecoveryPolicy)
		return nil
	})
}

// Autoscaling's defaults (zero fields of an AutoscalePolicy).
const (
	DefaultAutoscaleWindowSec   = 60
	DefaultAutoscaleCooldownSec = 120
	DefaultAutoscaleScaleIn     = 0.5
)

// Host metrics every drone reports, which an autoscaling policy may use
// whatever the package's monitor declares.
var hostMetrics = []string{"cpu", "memory"}

var metricName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// SetAutoscale adds or replaces c's autoscaling policy of p.Role,
// validated against c's package, and returns the cluster as stored.
func (l *Lifecycle) SetAutoscale(ctx context.Context, c *pilotv1.Cluster, p *pilotv1.AutoscalePolicy) (*pilotv1.Cluster, error) {
	if p == nil {
		return nil, refuse(Invalid, "policy: required")
	}
	p = proto.Clone(p).(*pilotv1.AutoscalePolicy)
	p.LastDecision, p.LastDecisionAt, p.LastJobId = "", nil, ""
	roles := rolesOf(c)
	if !slices.Contains(roles, p.Role) {
		return nil, refuse(Invalid, "policy.role: %q is not a role of cluster %s; its roles: %s", p.Role, c.Id, strings.Join(roles, ", "))
	}
	spec, _, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	items := monitorItems(spec, p.Role)
	switch {
	case !metricName.MatchString(p.Metric):
		return nil, refuse(Invalid, "policy.metric: %q; give cpu, memory or one of role %s's monitor items (%s)", p.Metric, p.Role, orNone(items))
	case !slices.Contains(hostMetrics, p.Metric) && !slices.Contains(items, p.Metric):
		return nil, refuse(Invalid, "policy.metric: %q is not reported by role %s; give cpu, memory or one of its monitor items (%s)", p.Metric, p.Role, orNone(items))
	case p.Target <= 0:
		return nil, refuse(Invalid, "policy.target: %v; give the role's average of %s to keep near, above 0", p.Target, p.Metric)
	case slices.Contains(hostMetrics, p.Metric) && p.Target > 100:
		return nil, refuse(Invalid, "policy.target: %v; %s is a percentage, give 1 to 100", p.Target, p.Metric)
	}
	if p.Min < 1 || p.Max < p.Min {
		return nil, refuse(Invalid, "policy.min %d, max %d: give 1 ≤ min ≤ max", p.Min, p.Max)
	}
	_, _, vals, err := l.storedValues(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, n := range []struct {
		name string
		v    int32
	}{{"min", p.Min}, {"max", p.Max}} {
		if _, err := vals.ChangeCount(p.Role, int(n.v)); err != nil {
			return nil, refuse(Invalid, "policy.%s: %d is a count the package refuses for role %s: %v", n.name, n.v, p.Role, err)
		}
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"window_sec", p.WindowSec}, {"cooldown_sec", p.CooldownSec}} {
		if f.v < 0 || f.v > maxPolicySec {
			return nil, refuse(Invalid, "policy.%s: %d; give 0 (the default) to %d", f.name, f.v, maxPolicySec)
		}
	}
	if p.Step < 0 || p.Step > p.Max {
		return nil, refuse(Invalid, "policy.step: %d; give 0 (1 node) to max (%d)", p.Step, p.Max)
	}
	if p.ScaleInRatio < 0 || p.ScaleInRatio >= 1 {
		return nil, refuse(Invalid, "policy.scale_in_ratio: %v; give 0 (%v) or a ratio below 1, so that scaling in cannot undo the scale-out it follows", p.ScaleInRatio, DefaultAutoscaleScaleIn)
	}
	return l.updatePolicies(ctx, c.Id, func(x *pilotv1.Cluster) error {
		x.Autoscale = slices.DeleteFunc(x.Autoscale, func(q *pilotv1.AutoscalePolicy) bool { return q.Role == p.Role })
		x.Autoscale = append(x.Autoscale, p)
		sort.Slice(x.Autoscale, func(i, j int) bool { return x.Autoscale[i].Role < x.Autoscale[j].Role })
		return nil
	})
}

// DeleteAutoscale removes c's autoscaling policy of role.
func (l *Lifecycle) DeleteAutoscale(ctx context.Context, c *pilotv1.Cluster, role string) (*pilotv1.Cluster, error) {
	if !slices.ContainsFunc(c.Autoscale, func(q *pilotv1.AutoscalePolicy) bool { return q.Role == role }) {
		return nil, refuse(Invalid, "role: cluster %s has no autoscaling policy for role %q", c.Id, role)
	}
	return l.updatePolicies(ctx, c.Id, func(x *pilotv1.Cluster) error {
		x.Autoscale = slices.DeleteFunc(x.Autoscale, func(q *pilotv1.AutoscalePolicy) bool { return q.Role == role })
		return nil
	})
}

// RecordAutoscale keeps on c's policy of role what the autoscaler last
// decided (and the job it started: "" for none). Nothing is written when
// the decision is the one already kept, so a steady "within target" costs
// no write a pass.
func (l *Lifecycle) RecordAutoscale(ctx context.Context, clusterID, role, decision, jobID string) error {
	_, err := l.updatePolicies(ctx, clusterID, func(x *pilotv1.Cluster) error {
		for _, q := range x.Autoscale {
			if q.Role != role {
				continue
			}
			if q.LastDecision == decision && (jobID == "" || q.LastJobId == jobID) {
				return store.ErrNoChange
			}
			q.LastDecision, q.LastDecisionAt = decision, timestamppb.Now()
			if jobID != "" {
				q.LastJobId = jobID
			}
			return nil
		}
		return store.ErrNoChange
	})
	return ignoreNotFound(err)
}

func (l *Lifecycle) updatePolicies(ctx context.Context, id string, fn func(*pilotv1.Cluster) error) (*pilotv1.Cluster, error) {
	c, err := store.Update(ctx, l.cfg.Store, store.ClusterKey(id), newCluster, func(x *pilotv1.Cluster) error {
		switch x.Status {
		case pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING, pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED:
			return refuse(Precondition, "cluster %s is %s", x.Id, x.Status)
		}
		return fn(x)
	})
	if err != nil {
		return nil, fmt.Errorf("store the policy of cluster %s: %w", id, err)
	}
	return c, nil
}

// monitorItems are the monitor items role reports (MonitorOf), sorted.
func monitorItems(spec *apppkg.ClusterSpec, role string) []string {
	m := MonitorOf(spec, role)
	if m == nil {
		return nil
	}
	items := slices.Collect(maps.Keys(m.Items))
	sort.Strings(items)
	return items
}

func orNone(items []string) string {
	if len(items) == 0 {
		return "it declares none"
	}
	return strings.Join(items, ", ")
}
