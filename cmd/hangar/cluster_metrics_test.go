package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// GetClusterMetrics answers the cluster's scripted metrics, of one node
// when asked.
func (f *fakeClusters) GetClusterMetrics(_ context.Context, req *pilotv1.GetClusterMetricsRequest) (*pilotv1.GetClusterMetricsResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if _, ok := f.s.clusters[req.GetClusterId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetClusterId())
	}
	resp := &pilotv1.GetClusterMetricsResponse{}
	for _, n := range f.s.metrics[req.GetClusterId()] {
		if req.GetNode() == "" || n.GetNodeId() == req.GetNode() {
			resp.Nodes = append(resp.Nodes, n)
		}
	}
	return resp, nil
}

func TestClusterMetrics(t *testing.T) {
	s := newFakeState()
	s.clusters["cl-new"] = deployedCluster()
	at := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s.metrics = map[string][]*pilotv1.NodeMetrics{"cl-new": {
		{NodeId: "cln-a", Role: "primary", Time: at, CpuPercent: 12.34, MemoryUsedPercent: 50, MemoryUsedBytes: 512 << 20, MemoryTotalBytes: 1 << 30,
			DiskUsedBytes: 3 << 30, DiskTotalBytes: 10 << 30, NetworkReceiveBytesPerSecond: 2048, NetworkTransmitBytesPerSecond: 100,
			Items: []*pilotv1.MonitorItemValue{{Key: "keys", Value: 3, Display: "3"}, {Key: "mem", Value: 2048, Unit: "KiB", Display: "2 KiB"}}},
		{NodeId: "cln-b", Role: "replica", Time: at, CpuPercent: 1, MonitorError: "monitor cmd exit 1: refused"},
	}}
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "metrics", "cl-new")
	mustContain(t, "metrics", res.stdout, "NODE", "CPU", "cln-a", "primary", "12.3%", "50.0% (512.0 MiB)", "3.0 GiB/10.0 GiB", "2.0 KiB/s", "100 B/s",
		"cln-b", "replica", "cln-a: keys=3  mem=2 KiB", "cln-b: (monitor: monitor cmd exit 1: refused)")

	res = runCLI(t, addr, "cluster", "metrics", "cl-new", "--node", "cln-b")
	if strings.Contains(res.stdout, "cln-a") || !strings.Contains(res.stdout, "cln-b") {
		t.Errorf("--node cln-b:\n%s", res.stdout)
	}

	res = runCLI(t, addr, "-o", "json", "cluster", "metrics", "cl-new")
	var got pilotv1.GetClusterMetricsResponse
	if err := protojson.Unmarshal([]byte(res.stdout), &got); err != nil || len(got.GetNodes()) != 2 || got.GetNodes()[0].GetItems()[1].GetDisplay() != "2 KiB" {
		t.Fatalf("metrics JSON: %v\n%s", err, res.stdout)
	}
	if res = runCLI(t, addr, "cluster", "metrics", "cl-none"); res.code == 0 || !strings.Contains(res.stderr, "cl-none") {
		t.Errorf("metrics of a cluster that does not exist: exit %d\n%s", res.code, res.stderr)
	}
	s.metrics["cl-new"] = nil
	mustContain(t, "no metrics", runCLI(t, addr, "cluster", "metrics", "cl-new").stdout, "No metrics yet")
}
