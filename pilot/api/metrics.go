package api

import (
	"context"
	"math"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/metrics"
)

// GetClusterMetrics returns each node's last sample in pilot's window,
// with the monitor items' units and display values from the package.
func (s *Server) GetClusterMetrics(ctx context.Context, req *pilotv1.GetClusterMetricsRequest) (*pilotv1.GetClusterMetricsResponse, error) {
	if s.cfg.Metrics == nil {
		return nil, status.Error(codes.Unimplemented, "this pilot keeps no metrics")
	}
	c, _, err := s.tenantCluster(ctx, req.GetClusterId())
	if err != nil {
		return nil, err
	}
	if req.GetNode() != "" && !hasNode(c, req.GetNode()) {
		return nil, status.Errorf(codes.NotFound, "cluster %s has no node %s (see `hangar cluster show %s`)", c.Id, req.GetNode(), c.Id)
	}
	// The units and scales are display only: without the package (an
	// app version deleted under a running cluster) the values still go.
	var spec *apppkg.ClusterSpec
	if s.cfg.Packages != nil {
		if _, sp, err := s.cfg.Packages.Current(ctx, c); err == nil {
			spec = sp
		}
	}
	out := &pilotv1.GetClusterMetricsResponse{}
	for _, l := range s.cfg.Metrics.Latest(c.Id) {
		if req.GetNode() != "" && l.Node != req.GetNode() {
			continue
		}
		out.Nodes = append(out.Nodes, nodeMetrics(l, spec))
	}
	return out, nil
}

func hasNode(c *pilotv1.Cluster, id string) bool {
	for _, nd := range c.Nodes {
		if nd.Id == id {
			return true
		}
	}
	return false
}

// nodeMetrics is one node's last sample as the API shows it.
func nodeMetrics(l metrics.Latest, spec *apppkg.ClusterSpec) *pilotv1.NodeMetrics {
	r := l.Sample
	nm := &pilotv1.NodeMetrics{
		NodeId: l.Node, Role: l.Role, Time: r.GetAt(), IntervalSec: r.GetIntervalSec(),
		CpuPercent: r.GetCpuPercent(), MemoryUsedPercent: r.GetMemoryUsedPercent(),
		MemoryUsedBytes: r.GetMemoryUsedBytes(), MemoryTotalBytes: r.GetMemoryTotalBytes(),
		DiskUsedBytes: r.GetDiskUsedBytes(), DiskTotalBytes: r.GetDiskTotalBytes(),
		NetworkReceiveBytesPerSecond:  r.GetNetworkReceiveBytesPerSecond(),
		NetworkTransmitBytesPerSecond: r.GetNetworkTransmitBytesPerSecond(),
		MonitorError:                  r.GetMonitorError(),
	}
	var mon *apppkg.Monitor
	if spec != nil {
		mon = clusterops.MonitorOf(spec, l.Role)
	}
	for _, it := range r.GetItems() {
		iv := &pilotv1.MonitorItemValue{Key: it.GetKey(), Value: it.GetValue(), Text: it.GetText(), StatisticsType: "latest", Samples: 1}
		scale := 1.0
		if mon != nil {
			if spec, ok := mon.Items[it.GetKey()]; ok {
				iv.Unit, iv.StatisticsType = spec.Unit, spec.StatisticsType
				if spec.ScaleFactorWhenDisplay > 0 {
					scale = spec.ScaleFactorWhenDisplay
				}
			}
		}
		iv.Display = displayValue(iv, scale)
		nm.Items = append(nm.Items, iv)
	}
	return nm
}

// displayValue is the value as a person reads it: a str item's text, else
// value / scale_factor_when_display (AppCenter divides: a value in bytes
// with a factor of 1024 shows KiB) with the unit.
func displayValue(iv *pilotv1.MonitorItemValue, scale float64) string {
	if iv.Text != "" {
		return iv.Text
	}
	v := iv.Value / scale
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if v != math.Trunc(v) {
		s = strconv.FormatFloat(v, 'f', 2, 64)
	}
	if iv.Unit != "" {
		s += " " + iv.Unit
	}
	return s
}
