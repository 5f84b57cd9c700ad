// Package metrics keeps, in pilot's memory, a window of each node's
// metrics as its drone reported them (drone/metrics: the host's cpu,
// memory, disk and network, and the monitor items), fed by the reconciler
// from the drones' list every pass. It answers the API (each node's last
// sample), the autoscaler (a role's average over a recent span) and
// Prometheus (a collector that reads the store on each scrape, so a node's
// series go with the node, and none exists per command or job).
//
// Nothing is persisted: a restarted pilot starts with an empty window and
// fills it within one reporting interval; metrics are observations, not
// state to recover.
package metrics

import (
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// DefaultWindow is how far back samples are kept.
const DefaultWindow = 10 * time.Minute

// DefaultMaxSamples bounds each node's samples whatever the window: the
// whole window at a 5 s interval (the default 10 s fills 60), 2 minutes at
// the shortest (1 s). Pilot's memory grows with it times the nodes: a
// sample with three monitor items holds about 0.5 KB live (measured: 58 MiB
// for 1,000 nodes of 120), so 29 MiB at 1,000 nodes at the default 10 s.
const DefaultMaxSamples = 120

// Metric names RoleAverage knows besides monitor item keys.
const (
	CPU    = "cpu"    // percent busy
	Memory = "memory" // percent used
)

// Config tunes a Store.
type Config struct {
	// Window is how long samples are kept (default DefaultWindow).
	Window time.Duration
	// MaxSamples bounds each node's samples (default DefaultMaxSamples).
	MaxSamples int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store is the window of every node's samples. It is safe for concurrent
// use.
type Store struct {
	cfg Config

	mu sync.Mutex
	// clusters holds each cluster's nodes by node id.
	clusters map[string]map[string]*node
}

type node struct {
	role string
	// samples are the node's reports, oldest first, each taken after the
	// one before.
	samples []*streamv1.MetricsReport
	// received is when pilot got each sample (samples[i] at received[i]).
	// The window and RoleAverage's since are on pilot's clock: a drone
	// whose clock is off by minutes must not fall out of the window or
	// out of the autoscaler's sight. A sample's At (the drone's clock)
	// only orders a node's reports and is shown.
	received []time.Time
}

// NewStore returns an empty store.
func NewStore(cfg Config) *Store {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = DefaultMaxSamples
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, clusters: map[string]map[string]*node{}}
}

// Record adds r to the node's window. The reconciler reads the drones'
// last reports every pass, so the same report comes again and again: one
// taken at or before the node's last sample is not added (the role is
// updated all the same).
func (s *Store) Record(cluster, role, nodeID string, r *streamv1.MetricsReport) {
	if r == nil || r.GetAt() == nil || cluster == "" || nodeID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	nodes := s.clusters[cluster]
	if nodes == nil {
		nodes = map[string]*node{}
		s.clusters[cluster] = nodes
	}
	n := nodes[nodeID]
	if n == nil {
		n = &node{}
		nodes[nodeID] = n
	}
	n.role = role
	at := r.GetAt().AsTime()
	if k := len(n.samples); k > 0 && !at.After(n.samples[k-1].GetAt().AsTime()) {
		return
	}
	n.samples = append(n.samples, proto.Clone(r).(*streamv1.MetricsReport))
	n.received = append(n.received, s.cfg.Now())
	s.prune(nodes, nodeID, n)
	if len(nodes) == 0 {
		delete(s.clusters, cluster)
	}
}

// prune drops n's samples older than the window and beyond MaxSamples,
// and n itself when none is left. s.mu is held.
func (s *Store) prune(nodes map[string]*node, nodeID string, n *node) {
	cut := s.cfg.Now().Add(-s.cfg.Window)
	i := sort.Search(len(n.received), func(i int) bool { return !n.received[i].Before(cut) })
	i = max(i, len(n.samples)-s.cfg.MaxSamples)
	if i > 0 {
		// New slices, so the dropped samples are not kept alive by the
		// old backing arrays.
		n.samples = append([]*streamv1.MetricsReport(nil), n.samples[i:]...)
		n.received = append([]time.Time(nil), n.received[i:]...)
	}
	if len(n.samples) == 0 {
		delete(nodes, nodeID)
	}
}

// RoleAverage is the mean over the role's nodes of each node's mean of
// metric over samples received at or after since (pilot's clock). metric is "cpu" (percent),
// "memory" (percent used), or a monitor item key. nodes is how many nodes
// had samples.
func (s *Store) RoleAverage(cluster, role, metric string, since time.Time) (avg float64, nodes int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for _, n := range s.clusters[cluster] {
		if n.role != role {
			continue
		}
		var nsum float64
		var k int
		for i := len(n.samples) - 1; i >= 0; i-- {
			smp := n.samples[i]
			if n.received[i].Before(since) {
				break
			}
			if v, ok := Value(smp, metric); ok {
				nsum += v
				k++
			}
		}
		if k > 0 {
			sum += nsum / float64(k)
			nodes++
		}
	}
	if nodes == 0 {
		return 0, 0, false
	}
	return sum / float64(nodes), nodes, true
}

// Value is metric's value in one sample: "cpu", "memory", or a monitor
// item's key (false: the sample has no value for it).
func Value(r *streamv1.MetricsReport, metric string) (float64, bool) {
	switch metric {
	case CPU:
		return r.GetCpuPercent(), true
	case Memory:
		// A drone that could not read its memory leaves the total 0.
		return r.GetMemoryUsedPercent(), r.GetMemoryTotalBytes() > 0
	}
	for _, it := range r.GetItems() {
		if it.GetKey() == metric {
			return it.GetValue(), true
		}
	}
	return 0, false
}

// Forget drops a cluster's samples (the cluster was deleted).
func (s *Store) Forget(cluster string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clusters, cluster)
}

// ForgetNode drops a node's samples (the node left its cluster).
func (s *Store) ForgetNode(cluster, nodeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if nodes := s.clusters[cluster]; nodes != nil {
		delete(nodes, nodeID)
		if len(nodes) == 0 {
			delete(s.clusters, cluster)
		}
	}
}

// Clusters lists the clusters with samples.
func (s *Store) Clusters() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.clusters))
	for c := range s.clusters {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Nodes lists the nodes of cluster with samples.
func (s *Store) Nodes(cluster string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.clusters[cluster]))
	for n := range s.clusters[cluster] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Latest is one node's last sample.
type Latest struct {
	Cluster, Role, Node string
	// Sample is the drone's report (a copy: the caller may keep it).
	Sample *streamv1.MetricsReport
	// Samples is how many the window holds for the node.
	Samples int
}

// Latest returns the last sample of each node of cluster ("": every
// cluster) still in the window, by cluster then node.
func (s *Store) Latest(cluster string) []Latest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Latest
	for cid, nodes := range s.clusters {
		if cluster != "" && cid != cluster {
			continue
		}
		for id, n := range nodes {
			s.prune(nodes, id, n)
			if len(n.samples) == 0 {
				continue
			}
			out = append(out, Latest{Cluster: cid, Role: n.role, Node: id, Sample: proto.Clone(n.samples[len(n.samples)-1]).(*streamv1.MetricsReport), Samples: len(n.samples)})
		}
		if len(nodes) == 0 {
			delete(s.clusters, cid)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cluster != out[j].Cluster {
			return out[i].Cluster < out[j].Cluster
		}
		return out[i].Node < out[j].Node
	})
	return out
}
