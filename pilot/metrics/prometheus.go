package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// nodeLabels are every node series' labels; monitor items add "item".
var nodeLabels = []string{"cluster", "role", "node"}

type gauge struct {
	desc  *prometheus.Desc
	value func(*streamv1.MetricsReport) (float64, bool)
}

// Collector exports each node's last sample in the window as gauges with
// cluster, role and node labels, read from the store at each scrape: a
// node forgotten, or silent for longer than the window, has no series.
type Collector struct {
	s         *Store
	gauges    []gauge
	monitor   *prometheus.Desc
	timestamp *prometheus.Desc
}

// NewCollector returns the store's collector, for a prometheus.Registry.
func NewCollector(s *Store) *Collector {
	g := func(name, help string, value func(*streamv1.MetricsReport) (float64, bool)) gauge {
		return gauge{desc: prometheus.NewDesc(name, help, nodeLabels, nil), value: value}
	}
	always := func(f func(*streamv1.MetricsReport) float64) func(*streamv1.MetricsReport) (float64, bool) {
		return func(r *streamv1.MetricsReport) (float64, bool) { return f(r), true }
	}
	hasMem := func(f func(*streamv1.MetricsReport) float64) func(*streamv1.MetricsReport) (float64, bool) {
		return func(r *streamv1.MetricsReport) (float64, bool) { return f(r), r.GetMemoryTotalBytes() > 0 }
	}
	hasDisk := func(f func(*streamv1.MetricsReport) float64) func(*streamv1.MetricsReport) (float64, bool) {
		return func(r *streamv1.MetricsReport) (float64, bool) { return f(r), r.GetDiskTotalBytes() > 0 }
	}
	return &Collector{
		s: s,
		gauges: []gauge{
			g("hangar_node_cpu_percent", "Percent of the node's cpu time busy over its last sampling interval.",
				always(func(r *streamv1.MetricsReport) float64 { return r.GetCpuPercent() })),
			g("hangar_node_memory_used_percent", "Percent of the node's memory used (its container's cgroup when it has one).",
				hasMem(func(r *streamv1.MetricsReport) float64 { return r.GetMemoryUsedPercent() })),
			g("hangar_node_memory_used_bytes", "Bytes of the node's memory used.",
				hasMem(func(r *streamv1.MetricsReport) float64 { return float64(r.GetMemoryUsedBytes()) })),
			g("hangar_node_memory_total_bytes", "Bytes of memory the node may use.",
				hasMem(func(r *streamv1.MetricsReport) float64 { return float64(r.GetMemoryTotalBytes()) })),
			g("hangar_node_disk_used_bytes", "Bytes used on the filesystem holding the node's root.",
				hasDisk(func(r *streamv1.MetricsReport) float64 { return float64(r.GetDiskUsedBytes()) })),
			g("hangar_node_disk_total_bytes", "Size of the filesystem holding the node's root.",
				hasDisk(func(r *streamv1.MetricsReport) float64 { return float64(r.GetDiskTotalBytes()) })),
			g("hangar_node_network_receive_bytes_per_second", "Bytes per second the node received over its last sampling interval (loopback excluded).",
				always(func(r *streamv1.MetricsReport) float64 { return r.GetNetworkReceiveBytesPerSecond() })),
			g("hangar_node_network_transmit_bytes_per_second", "Bytes per second the node sent over its last sampling interval (loopback excluded).",
				always(func(r *streamv1.MetricsReport) float64 { return r.GetNetworkTransmitBytesPerSecond() })),
		},
		monitor:   prometheus.NewDesc("hangar_node_monitor_value", "A monitor item of the node's app (its package's monitor block), after its statistics_type; a str item is the index of its value among its enums.", append(append([]string(nil), nodeLabels...), "item"), nil),
		timestamp: prometheus.NewDesc("hangar_node_metrics_timestamp_seconds", "When the node's drone took its last sample (Unix time).", nodeLabels, nil),
	}
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range c.gauges {
		ch <- g.desc
	}
	ch <- c.monitor
	ch <- c.timestamp
}

// Collect sends each node's last sample.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.s.Latest("") {
		r := l.Sample
		labels := []string{l.Cluster, l.Role, l.Node}
		for _, g := range c.gauges {
			if v, ok := g.value(r); ok {
				ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, labels...)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.timestamp, prometheus.GaugeValue, float64(r.GetAt().AsTime().UnixNano())/1e9, labels...)
		seen := map[string]bool{}
		for _, it := range r.GetItems() {
			// A key twice would fail the whole scrape; the first counts.
			if seen[it.GetKey()] {
				continue
			}
			seen[it.GetKey()] = true
			ch <- prometheus.MustNewConstMetric(c.monitor, prometheus.GaugeValue, it.GetValue(), l.Cluster, l.Role, l.Node, it.GetKey())
		}
	}
}
