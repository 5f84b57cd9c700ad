package clusterops

import (
	"sort"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

// MetricsSink keeps the drones' metrics reports (*metrics.Store of
// pilot/metrics): the reconciler hands it each drone's last report every
// pass, and what no longer exists is forgotten.
type MetricsSink interface {
	Record(cluster, role, node string, r *streamv1.MetricsReport)
	Forget(cluster string)
	ForgetNode(cluster, node string)
	Clusters() []string
	Nodes(cluster string) []string
}

// MonitorOf is the monitor block a role's nodes run: the role's own, else
// the cluster's (a role's block replaces the cluster's whole, as for
// health_check), or nil when none is enabled.
func MonitorOf(spec *apppkg.ClusterSpec, role string) *apppkg.Monitor {
	m := spec.Monitor
	if ns := roleSpec(spec, role); ns != nil && ns.Monitor != nil {
		m = ns.Monitor
	}
	if m == nil || !m.Enable || m.Cmd == "" {
		return nil
	}
	return m
}

// monitorOf is MonitorOf as the drone gets it, items sorted by key (the
// order the signature covers them in).
func monitorOf(spec *apppkg.ClusterSpec, role string) *streamv1.Monitor {
	m := MonitorOf(spec, role)
	if m == nil {
		return nil
	}
	out := &streamv1.Monitor{Cmd: m.Cmd, IntervalSec: int32(m.IntervalSec)}
	for key, it := range m.Items {
		out.Items = append(out.Items, &streamv1.MonitorItemSpec{Key: key, ValueType: it.ValueType, StatisticsType: it.StatisticsType, Enums: it.Enums})
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Key < out.Items[j].Key })
	return out
}

// anyMonitor says whether some role's nodes run a monitor.
func anyMonitor(spec *apppkg.ClusterSpec) bool {
	for _, n := range spec.Nodes {
		if MonitorOf(spec, n.Role) != nil {
			return true
		}
	}
	return false
}

// recordMetrics hands each listed drone's last report to the sink, under
// its node's role, and forgets the nodes of c that are gone (scaled in,
// replaced).
func (r *Reconciler) recordMetrics(c *pilotv1.Cluster, drones []*streamv1.DroneInfo) {
	sink := r.cfg.Metrics
	if sink == nil {
		return
	}
	roles := make(map[string]string, len(c.Nodes))
	for _, nd := range c.Nodes {
		roles[nd.Id] = nd.Role
	}
	for _, d := range drones {
		if role, ok := roles[d.NodeId]; ok && d.GetMetrics() != nil {
			sink.Record(c.Id, role, d.NodeId, d.GetMetrics())
		}
	}
	for _, id := range sink.Nodes(c.Id) {
		if _, ok := roles[id]; !ok {
			sink.ForgetNode(c.Id, id)
		}
	}
}

// forgetMetrics forgets the clusters that are gone, or not meant to run
// (stopped, being deleted): their drones report nothing any more.
func (r *Reconciler) forgetMetrics(clusters []*pilotv1.Cluster) {
	sink := r.cfg.Metrics
	if sink == nil {
		return
	}
	running := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		switch c.Status {
		case pilotv1.ClusterStatus_CLUSTER_STATUS_STOPPED, pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING, pilotv1.ClusterStatus_CLUSTER_STATUS_DELETED:
		default:
			running[c.Id] = true
		}
	}
	for _, id := range sink.Clusters() {
		if !running[id] {
			sink.Forget(id)
		}
	}
}
