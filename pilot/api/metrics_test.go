package api

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/metrics"
)

// A node's sample as the API shows it: the host's numbers as reported,
// the items with the package's unit, statistics type and display scale.
func TestNodeMetrics(t *testing.T) {
	at := time.Unix(1000, 0)
	spec := &apppkg.ClusterSpec{Monitor: &apppkg.Monitor{Enable: true, Cmd: "m", IntervalSec: 10, Items: map[string]apppkg.MonitorItem{
		"mem":   {Unit: "KiB", ValueType: "int", StatisticsType: "latest", ScaleFactorWhenDisplay: 1024},
		"qps":   {Unit: "req/s", ValueType: "int", StatisticsType: "rate", ScaleFactorWhenDisplay: 1},
		"state": {ValueType: "str", StatisticsType: "latest", ScaleFactorWhenDisplay: 1, Enums: []string{"follower", "leader"}},
	}}, Nodes: []apppkg.NodeSpec{{Role: "web"}}}
	l := metrics.Latest{Cluster: "cl-1", Role: "web", Node: "n1", Samples: 3, Sample: &streamv1.MetricsReport{
		At: timestamppb.New(at), IntervalSec: 10, CpuPercent: 12.5, MemoryUsedPercent: 50, MemoryUsedBytes: 512, MemoryTotalBytes: 1024,
		Items: []*streamv1.MonitorValue{{Key: "mem", Value: 2048}, {Key: "qps", Value: 2.5}, {Key: "state", Value: 1, Text: "leader"}, {Key: "undeclared", Value: 7}},
	}}
	nm := nodeMetrics(l, spec)
	if nm.NodeId != "n1" || nm.Role != "web" || nm.CpuPercent != 12.5 || nm.MemoryTotalBytes != 1024 || !nm.Time.AsTime().Equal(at) {
		t.Fatalf("node metrics %v", nm)
	}
	want := map[string]string{"mem": "2 KiB", "qps": "2.50 req/s", "state": "leader", "undeclared": "7"}
	types := map[string]string{"mem": "latest", "qps": "rate", "state": "latest", "undeclared": "latest"}
	for _, it := range nm.Items {
		if it.Display != want[it.Key] || it.StatisticsType != types[it.Key] {
			t.Errorf("item %s: display %q (%s), want %q (%s)", it.Key, it.Display, it.StatisticsType, want[it.Key], types[it.Key])
		}
	}
	// Without the package the values still go, undecorated.
	if nm := nodeMetrics(l, nil); nm.Items[0].Display != "2048" || nm.Items[0].Unit != "" {
		t.Errorf("without the package: %v", nm.Items[0])
	}
}
