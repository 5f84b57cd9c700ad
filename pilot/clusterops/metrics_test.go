package clusterops

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/metrics"
)

func TestMonitorOf(t *testing.T) {
	cluster := &apppkg.Monitor{Enable: true, Cmd: "c", IntervalSec: 10, Items: map[string]apppkg.MonitorItem{
		"b": {ValueType: "int", StatisticsType: "rate"}, "a": {ValueType: "str", StatisticsType: "latest", Enums: []string{"x"}},
	}}
	spec := &apppkg.ClusterSpec{Monitor: cluster, Nodes: []apppkg.NodeSpec{
		{Role: "plain"},
		{Role: "own", Monitor: &apppkg.Monitor{Enable: true, Cmd: "own", IntervalSec: 1}},
		{Role: "off", Monitor: &apppkg.Monitor{Enable: false, Cmd: "x", IntervalSec: 1}},
	}}
	tests := []struct {
		role string
		cmd  string // "": none
	}{{"plain", "c"}, {"own", "own"}, {"off", ""}, {"nosuch", "c"}}
	for _, tc := range tests {
		m := monitorOf(spec, tc.role)
		if m.GetCmd() != tc.cmd {
			t.Errorf("role %s: monitor %v, want cmd %q", tc.role, m, tc.cmd)
		}
	}
	m := monitorOf(spec, "plain")
	if m.IntervalSec != 10 || len(m.Items) != 2 || m.Items[0].Key != "a" || m.Items[1].StatisticsType != "rate" || !slices.Equal(m.Items[0].Enums, []string{"x"}) {
		t.Errorf("monitor %v: want interval 10, items a then b with their types", m)
	}
	if !anyMonitor(spec) || anyMonitor(&apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{{Role: "a"}}}) {
		t.Error("anyMonitor")
	}
}

// The reconciler hands each drone's report to the store under its node's
// role, and forgets nodes and clusters that are gone.
func TestReconcilerRecordsMetrics(t *testing.T) {
	now := time.Now()
	store := metrics.NewStore(metrics.Config{})
	r := &Reconciler{cfg: ReconcilerConfig{Metrics: store}}
	c := &pilotv1.Cluster{Id: "cl-1", Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, Nodes: []*pilotv1.Node{{Id: "n1", Role: "web"}, {Id: "n2", Role: "db"}}}
	rep := func(cpu float64) *streamv1.MetricsReport {
		return &streamv1.MetricsReport{At: timestamppb.New(now), CpuPercent: cpu}
	}
	r.recordMetrics(c, []*streamv1.DroneInfo{{NodeId: "n1", Metrics: rep(10)}, {NodeId: "n2", Metrics: rep(30)}, {NodeId: "stranger", Metrics: rep(99)}, {NodeId: "n3"}})
	if avg, n, ok := store.RoleAverage("cl-1", "web", metrics.CPU, now.Add(-time.Minute)); !ok || n != 1 || avg != 10 {
		t.Fatalf("web cpu %v over %d nodes (%v), want 10 over 1", avg, n, ok)
	}
	if nodes := store.Nodes("cl-1"); !slices.Equal(nodes, []string{"n1", "n2"}) {
		t.Fatalf("nodes %v: a drone that is no node of the cluster is not recorded", nodes)
	}
	c.Nodes = c.Nodes[:1] // n2 scaled in
	r.recordMetrics(c, nil)
	if nodes := store.Nodes("cl-1"); !slices.Equal(nodes, []string{"n1"}) {
		t.Fatalf("nodes %v after n2 left, want n1", nodes)
	}
	r.forgetMetrics([]*pilotv1.Cluster{c})
	if len(store.Clusters()) != 1 {
		t.Fatal("a running cluster was forgotten")
	}
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING
	r.forgetMetrics([]*pilotv1.Cluster{c})
	if len(store.Clusters()) != 0 {
		t.Fatal("a cluster being deleted is still kept")
	}
}
