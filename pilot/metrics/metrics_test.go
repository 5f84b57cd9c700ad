package metrics

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable Now.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func rep(at time.Time, cpu float64, items ...*streamv1.MonitorValue) *streamv1.MetricsReport {
	return &streamv1.MetricsReport{At: timestamppb.New(at), CpuPercent: cpu, MemoryUsedPercent: cpu / 2, MemoryTotalBytes: 1 << 30, MemoryUsedBytes: 1 << 29, Items: items}
}

func item(k string, v float64) *streamv1.MonitorValue {
	return &streamv1.MonitorValue{Key: k, Value: v}
}

func TestRoleAverage(t *testing.T) {
	clk := &clock{now: t0}
	s := NewStore(Config{Now: clk.Now})
	// Each sample received at pilot's clk.now. web: n1 at 10, 20, 30
	// (mean 20 since t0); n2 at 60 (mean 60), its drone's clock an hour
	// behind pilot's: the window is pilot's clock, so it counts all the
	// same.
	recv := func(at time.Time, cluster, role, node string, r *streamv1.MetricsReport) {
		clk.now = at
		s.Record(cluster, role, node, r)
	}
	for i, v := range []float64{10, 20, 30} {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		recv(at, "c1", "web", "n1", rep(at, v, item("conns", v*2)))
	}
	recv(t0.Add(15*time.Second), "c1", "web", "n2", rep(t0.Add(15*time.Second-time.Hour), 60))
	recv(t0, "c1", "db", "n3", rep(t0, 99))
	recv(t0, "c2", "web", "n4", rep(t0, 99))
	clk.now = t0.Add(time.Minute)
	tests := []struct {
		name          string
		cluster, role string
		metric        string
		since         time.Time
		avg           float64
		nodes         int
		ok            bool
	}{
		{"cpu of both nodes", "c1", "web", CPU, t0, (20 + 60) / 2.0, 2, true},
		{"memory", "c1", "web", Memory, t0, (10 + 30) / 2.0, 2, true},
		{"since drops older samples", "c1", "web", CPU, t0.Add(12 * time.Second), (30 + 60) / 2.0, 2, true},
		{"only the newest", "c1", "web", CPU, t0.Add(18 * time.Second), 30, 1, true},
		{"a monitor item only some nodes have", "c1", "web", "conns", t0, 40, 1, true},
		{"an item nobody reports", "c1", "web", "nope", t0, 0, 0, false},
		{"another role", "c1", "db", CPU, t0, 99, 1, true},
		{"no such role", "c1", "cache", CPU, t0, 0, 0, false},
		{"no such cluster", "c9", "web", CPU, t0, 0, 0, false},
		{"nothing recent", "c1", "web", CPU, t0.Add(time.Hour), 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			avg, nodes, ok := s.RoleAverage(tc.cluster, tc.role, tc.metric, tc.since)
			if math.Abs(avg-tc.avg) > 1e-9 || nodes != tc.nodes || ok != tc.ok {
				t.Fatalf("RoleAverage = %v, %d, %v; want %v, %d, %v", avg, nodes, ok, tc.avg, tc.nodes, tc.ok)
			}
		})
	}
}

func TestRecordAndWindow(t *testing.T) {
	clk := &clock{now: t0}
	s := NewStore(Config{Window: time.Minute, MaxSamples: 5, Now: clk.Now})
	r := rep(t0, 10)
	// The reconciler reads the same last report every pass: kept once.
	for range 3 {
		s.Record("c", "web", "n", r)
	}
	s.Record("c", "web", "n", rep(t0.Add(-time.Second), 99)) // crossed: older
	s.Record("c", "web", "n", nil)
	s.Record("c", "web", "n", &streamv1.MetricsReport{CpuPercent: 5}) // no time
	if l := s.Latest("c"); len(l) != 1 || l[0].Samples != 1 || l[0].Sample.CpuPercent != 10 {
		t.Fatalf("latest %+v: want the one sample", l)
	}
	// At most MaxSamples per node.
	for i := 1; i <= 10; i++ {
		clk.now = t0.Add(time.Duration(i) * time.Second)
		s.Record("c", "web", "n", rep(clk.now, float64(i)))
	}
	if l := s.Latest("c"); l[0].Samples != 5 || l[0].Sample.CpuPercent != 10 {
		t.Fatalf("latest %+v: want 5 samples, the last cpu 10", l)
	}
	// The role moves with the node's (the reconciler says which).
	s.Record("c", "db", "n", rep(clk.now.Add(time.Second), 1))
	if l := s.Latest("c"); l[0].Role != "db" {
		t.Fatalf("role %q, want db", l[0].Role)
	}
	// Past the window the node is gone.
	clk.now = clk.now.Add(2 * time.Minute)
	if l := s.Latest(""); len(l) != 0 {
		t.Fatalf("after the window: %+v", l)
	}
	if c := s.Clusters(); len(c) != 0 {
		t.Fatalf("clusters %v after the window", c)
	}
}

func TestForget(t *testing.T) {
	s := NewStore(Config{Now: func() time.Time { return t0 }})
	s.Record("c1", "web", "n1", rep(t0, 1))
	s.Record("c1", "web", "n2", rep(t0, 2))
	s.Record("c2", "web", "n3", rep(t0, 3))
	s.ForgetNode("c1", "n1")
	if n := s.Nodes("c1"); len(n) != 1 || n[0] != "n2" {
		t.Fatalf("nodes of c1 %v after ForgetNode n1", n)
	}
	s.Forget("c1")
	if c := s.Clusters(); len(c) != 1 || c[0] != "c2" {
		t.Fatalf("clusters %v after Forget c1", c)
	}
	if _, _, ok := s.RoleAverage("c1", "web", CPU, t0); ok {
		t.Fatal("a forgotten cluster still averages")
	}
	s.ForgetNode("c2", "n3")
	if c := s.Clusters(); len(c) != 0 {
		t.Fatalf("clusters %v after its last node went", c)
	}
}

// The collector's series carry cluster, role and node (and item), and go
// with the node.
func TestCollectorLabels(t *testing.T) {
	s := NewStore(Config{Now: func() time.Time { return t0 }})
	r := rep(t0, 42, item("keys", 7), item("keys", 8))
	r.DiskTotalBytes, r.DiskUsedBytes = 100, 40
	r.NetworkReceiveBytesPerSecond = 1000
	s.Record("cl-1", "primary", "cln-1", r)
	s.Record("cl-1", "replica", "cln-2", &streamv1.MetricsReport{At: timestamppb.New(t0), CpuPercent: 5})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s))
	want := []string{
		`hangar_node_cpu_percent{cluster="cl-1",node="cln-1",role="primary"} 42`,
		`hangar_node_cpu_percent{cluster="cl-1",node="cln-2",role="replica"} 5`,
		`hangar_node_disk_total_bytes{cluster="cl-1",node="cln-1",role="primary"} 100`,
		`hangar_node_disk_used_bytes{cluster="cl-1",node="cln-1",role="primary"} 40`,
		`hangar_node_memory_total_bytes{cluster="cl-1",node="cln-1",role="primary"} 1.073741824e+09`,
		`hangar_node_memory_used_bytes{cluster="cl-1",node="cln-1",role="primary"} 5.36870912e+08`,
		`hangar_node_memory_used_percent{cluster="cl-1",node="cln-1",role="primary"} 21`,
		`hangar_node_metrics_timestamp_seconds{cluster="cl-1",node="cln-1",role="primary"} 1.8934992e+09`,
		`hangar_node_metrics_timestamp_seconds{cluster="cl-1",node="cln-2",role="replica"} 1.8934992e+09`,
		`hangar_node_monitor_value{cluster="cl-1",item="keys",node="cln-1",role="primary"} 7`,
		`hangar_node_network_receive_bytes_per_second{cluster="cl-1",node="cln-1",role="primary"} 1000`,
		`hangar_node_network_receive_bytes_per_second{cluster="cl-1",node="cln-2",role="replica"} 0`,
		`hangar_node_network_transmit_bytes_per_second{cluster="cl-1",node="cln-1",role="primary"} 0`,
		`hangar_node_network_transmit_bytes_per_second{cluster="cl-1",node="cln-2",role="replica"} 0`,
	}
	if got := series(t, reg); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	count := func(name string) int {
		n := 0
		for _, l := range series(t, reg) {
			if strings.HasPrefix(l, name+"{") {
				n++
			}
		}
		return n
	}
	s.ForgetNode("cl-1", "cln-1")
	if n := count("hangar_node_monitor_value"); n != 0 {
		t.Fatalf("%d monitor series after the node went, want 0", n)
	}
	if n := count("hangar_node_cpu_percent"); n != 1 {
		t.Fatalf("%d cpu series after one node went, want 1", n)
	}
}

// series is every sample gathered, as name{labels} value lines, sorted.
func series(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out = append(out, fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue()))
		}
	}
	sort.Strings(out)
	return out
}
