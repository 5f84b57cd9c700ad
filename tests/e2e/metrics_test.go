package e2e

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// metricsKV is examples/kv with its monitor every second (the example
// samples every 10 s).
func metricsKV(t *testing.T) string {
	return kvCopy(t, "\"interval_sec\": 10,\n    \"items\"", "\"interval_sec\": 1,\n    \"items\"")
}

// TestClusterMetrics deploys examples/kv on the local runtime with its
// monitor every second, writes keys to the primary, and reads pilot's
// /metrics: every node has its cpu and memory series and the example's
// monitor items (keys, version, requests), with the cluster, role and
// node labels; `hangar cluster metrics` shows the same values.
func TestClusterMetrics(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	metricsScenario(t, p, "local", func(n *pilotv1.Node, key, value string) {
		req, err := http.NewRequest(http.MethodPut, "http://"+n.Address+":6380/kv/"+key, strings.NewReader(value))
		if err != nil {
			t.Fatal(err)
		}
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s on %s: %v", key, n.Id, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("PUT %s on %s: %s", key, n.Id, resp.Status)
		}
	})
}

// TestDockerClusterMetrics is the same on the docker runtime: the drone
// samples its container (memory from its cgroup) and runs the monitor
// inside it.
func TestDockerClusterMetrics(t *testing.T) {
	p, _, rt := dockerPilot(t, "kv")
	metricsScenario(t, p, rt, func(n *pilotv1.Node, key, value string) {
		kvPut(t, n.InstanceId, n.Address+":6380", key, value)
	})
}

// promSeries is one sample of a Prometheus text scrape.
type promSeries struct {
	name   string
	labels map[string]string
	value  float64
}

// scrapeNodes reads pilot's /metrics and returns the hangar_node_* series.
func scrapeNodes(t *testing.T, p *pilot) []promSeries {
	t.Helper()
	body, err := p.restGet("/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	var out []promSeries
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, "hangar_node_") {
			continue
		}
		name, rest, ok := strings.Cut(l, "{")
		labels, val, ok2 := strings.Cut(rest, "} ")
		if !ok || !ok2 {
			t.Fatalf("unexpected series line %q", l)
		}
		s := promSeries{name: name, labels: map[string]string{}}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			s.labels[k] = strings.Trim(v, `"`)
		}
		if s.value, err = strconv.ParseFloat(strings.TrimSpace(val), 64); err != nil {
			t.Fatalf("series line %q: %v", l, err)
		}
		out = append(out, s)
	}
	return out
}

// findSeries returns the value of name for node (and item, when given).
func findSeries(ss []promSeries, name, cluster, role, node, item string) (float64, bool) {
	for _, s := range ss {
		if s.name == name && s.labels["cluster"] == cluster && s.labels["role"] == role && s.labels["node"] == node && s.labels["item"] == item {
			return s.value, true
		}
	}
	return 0, false
}

func metricsScenario(t *testing.T, p *pilot, runtime string, put func(n *pilotv1.Node, key, value string)) {
	p.mustHangar("app", "push", metricsKV(t))
	c, job := createClusterOn(t, p, runtime, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	created := time.Now()
	primary := byRole(c, "primary")[0]
	for i := range 3 {
		put(primary, fmt.Sprint("k", i), "v")
	}
	// Every node's host series and the items; keys 3 where the writes
	// went (the replica pulls them too, in its own time).
	items := []string{"keys", "requests", "version"}
	var ss []promSeries
	waitFor(t, time.Minute, "each node's cpu, memory and monitor items in /metrics", func() (bool, string) {
		ss = scrapeNodes(t, p)
		var missing []string
		for _, n := range c.Nodes {
			for _, name := range []string{"hangar_node_cpu_percent", "hangar_node_memory_used_percent", "hangar_node_memory_used_bytes", "hangar_node_disk_used_bytes",
				"hangar_node_network_receive_bytes_per_second", "hangar_node_metrics_timestamp_seconds"} {
				if _, ok := findSeries(ss, name, c.Id, n.Role, n.Id, ""); !ok {
					missing = append(missing, n.Id+" "+name)
				}
			}
			for _, it := range items {
				if _, ok := findSeries(ss, "hangar_node_monitor_value", c.Id, n.Role, n.Id, it); !ok {
					missing = append(missing, n.Id+" item "+it)
				}
			}
		}
		if keys, _ := findSeries(ss, "hangar_node_monitor_value", c.Id, "primary", primary.Id, "keys"); keys != 3 {
			missing = append(missing, fmt.Sprintf("primary keys=%v (want 3)", keys))
		}
		return len(missing) == 0, strings.Join(missing, ", ")
	})
	t.Logf("every node's series in /metrics %.1f s after the cluster was created (monitor every 1 s)", time.Since(created).Seconds())
	for _, n := range c.Nodes {
		cpu, _ := findSeries(ss, "hangar_node_cpu_percent", c.Id, n.Role, n.Id, "")
		mem, _ := findSeries(ss, "hangar_node_memory_used_percent", c.Id, n.Role, n.Id, "")
		if cpu < 0 || cpu > 100 || mem <= 0 || mem > 100 {
			t.Errorf("node %s: cpu %v%%, memory %v%%: want percentages, memory above 0", n.Id, cpu, mem)
		}
		req, _ := findSeries(ss, "hangar_node_monitor_value", c.Id, n.Role, n.Id, "requests")
		ver, _ := findSeries(ss, "hangar_node_monitor_value", c.Id, n.Role, n.Id, "version")
		t.Logf("node %s (%s): cpu %.1f%%, memory %.1f%%, requests %.2f/s, version +%v", n.Id, n.Role, cpu, mem, req, ver)
		if req < 0 || ver < 0 {
			t.Errorf("node %s: a rate or delta below 0 (requests %v, version %v)", n.Id, req, ver)
		}
	}
	for _, s := range ss {
		if s.labels["cluster"] == c.Id && s.labels["node"] == "" {
			t.Errorf("series without a node label: %+v", s)
		}
	}

	// The CLI shows what /metrics shows: the same sample (by its time)
	// with the same values. A new sample may come between the two reads;
	// then both are read again.
	waitFor(t, 30*time.Second, "hangar cluster metrics and /metrics to show the same sample", func() (bool, string) {
		ss := scrapeNodes(t, p)
		out := p.mustHangar("-o", "json", "cluster", "metrics", c.Id)
		var resp pilotv1.GetClusterMetricsResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("hangar cluster metrics -o json: %v\n%s", err, out)
		}
		if len(resp.GetNodes()) != len(c.Nodes) {
			return false, fmt.Sprintf("%d nodes in hangar cluster metrics, want %d", len(resp.GetNodes()), len(c.Nodes))
		}
		for _, n := range resp.GetNodes() {
			ts, _ := findSeries(ss, "hangar_node_metrics_timestamp_seconds", c.Id, n.GetRole(), n.GetNodeId(), "")
			if math.Abs(ts-float64(n.GetTime().AsTime().UnixNano())/1e9) > 1e-3 {
				return false, fmt.Sprintf("node %s: a new sample came between the reads", n.GetNodeId())
			}
			cpu, _ := findSeries(ss, "hangar_node_cpu_percent", c.Id, n.GetRole(), n.GetNodeId(), "")
			mem, _ := findSeries(ss, "hangar_node_memory_used_percent", c.Id, n.GetRole(), n.GetNodeId(), "")
			if cpu != n.GetCpuPercent() || mem != n.GetMemoryUsedPercent() {
				t.Errorf("node %s: CLI cpu %v memory %v, /metrics %v and %v", n.GetNodeId(), n.GetCpuPercent(), n.GetMemoryUsedPercent(), cpu, mem)
			}
			if len(n.GetItems()) != 3 {
				return false, fmt.Sprintf("node %s: items %v, want kv's three", n.GetNodeId(), n.GetItems())
			}
			for _, it := range n.GetItems() {
				v, ok := findSeries(ss, "hangar_node_monitor_value", c.Id, n.GetRole(), n.GetNodeId(), it.GetKey())
				if !ok || v != it.GetValue() {
					t.Errorf("node %s item %s: CLI %v, /metrics %v (%v)", n.GetNodeId(), it.GetKey(), it.GetValue(), v, ok)
				}
			}
		}
		return true, ""
	})
	out := p.mustHangar("cluster", "metrics", c.Id, "--node", primary.Id)
	for _, want := range []string{"CPU", "MEMORY", primary.Id, "keys=3 keys", "requests=", "req/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("hangar cluster metrics --node lacks %q:\n%s", want, out)
		}
	}
	t.Logf("hangar cluster metrics --node %s:\n%s", primary.Id, out)
}
