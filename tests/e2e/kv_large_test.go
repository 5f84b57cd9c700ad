package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// TestKVLarge creates a kv cluster of 100 and one of 300 nodes on the
// local runtime (real drones, a real hangar-kv server each), scales each
// out by 10 replicas and back in, and deletes it, three times in a row:
// every job must succeed and every node's server must answer. It takes
// several minutes and most of a 2-core machine, so it runs only with
// HANGAR_E2E_LARGE=1 (the sizes with HANGAR_E2E_LARGE_SIZES, e.g. "100").
//
//	HANGAR_E2E_LARGE=1 go test -count=1 -timeout 90m -run TestKVLarge -v ./tests/e2e/
func TestKVLarge(t *testing.T) {
	if os.Getenv("HANGAR_E2E_LARGE") != "1" {
		t.Skip("a 100- and a 300-node cluster on this machine: set HANGAR_E2E_LARGE=1 to run")
	}
	sizes := []int{100, 300}
	if s := os.Getenv("HANGAR_E2E_LARGE_SIZES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("HANGAR_E2E_LARGE_SIZES=%q: give one node count", s)
		}
		sizes = []int{n}
	}
	p := startPilot(t)
	// A /22: 1,021 addresses, where a /24 holds 253.
	if _, err := p.runtimes.CreateRuntime(context.Background(), &pilotv1.CreateRuntimeRequest{Id: "local", Provider: "local", Zone: "local",
		Config: map[string]string{"network_prefix": "22"}}); err != nil {
		t.Fatalf("create local runtime: %v", err)
	}
	p.mustHangar("app", "push", largeKV(t))
	ctx := context.Background()
	for _, n := range sizes {
		for round := 1; round <= 3; round++ {
			name := fmt.Sprintf("%d nodes, round %d", n, round)
			start := time.Now()
			c, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": fmt.Sprint(n - 1)})
			mustSucceed(t, job)
			if len(c.Nodes) != n {
				t.Fatalf("%s: %d nodes, want %d", name, len(c.Nodes), n)
			}
			created := time.Since(start)
			answering := 0
			for _, nd := range c.Nodes {
				if _, err := httpGet("http://" + nd.Address + ":6380/status"); err == nil {
					answering++
				}
			}
			if answering != n {
				t.Fatalf("%s: %d of %d kv servers answer", name, answering, n)
			}
			// The frontgate's memory with n drones connected: an upper
			// bound of its bytes per drone (its etcd's share included).
			if pids := processesRunning(filepath.Join(p.bin, "frontgate")); len(pids) == 1 {
				rss := rssOf(t, pids[0])
				t.Logf("%s: frontgate RSS %.1f MiB with %d drones: at most %.1f KiB per drone", name, float64(rss)/(1<<20), n, float64(rss)/1024/float64(n))
			}
			scale := func(count int) time.Duration {
				s := time.Now()
				r, err := p.clusters.ScaleCluster(ctx, &pilotv1.ScaleClusterRequest{Id: c.Id, Role: "replica", Count: int32(count)})
				if err != nil {
					t.Fatalf("%s: scale replicas to %d: %v", name, count, err)
				}
				mustSucceed(t, p.waitJob(ctx, r.Job.Id))
				return time.Since(s)
			}
			out := scale(n - 1 + 10)
			in := scale(n - 1)
			s := time.Now()
			p.mustHangar("cluster", "delete", c.Id, "--wait")
			// Deleted means gone: no drone of the cluster still runs.
			drone := filepath.Join(p.bin, "drone")
			waitFor(t, 30*time.Second, name+": every drone to have exited after the delete", func() (bool, string) {
				left := processesRunning(drone)
				if len(left) > 0 {
					if b, err := os.ReadFile(p.logPath); err == nil {
						_ = os.WriteFile(filepath.Join(os.TempDir(), "kvlarge-pilot.log"), b, 0o644)
					}
				}
				return len(left) == 0, fmt.Sprint(left)
			})
			t.Logf("%s: create %v (%s), scale out +10 %v, in −10 %v, delete %v", name, created.Round(time.Millisecond), phaseSummary(job),
				out.Round(time.Millisecond), in.Round(time.Millisecond), time.Since(s).Round(time.Millisecond))
		}
	}
}

// phaseSummary names a job's three slowest tasks with their times.
func phaseSummary(j *pilotv1.Job) string {
	ph := phases(j)
	ids := slices.Collect(maps.Keys(ph))
	sort.Slice(ids, func(a, b int) bool { return ph[ids[a]] > ph[ids[b]] })
	out := ""
	for _, id := range ids[:min(3, len(ids))] {
		out += fmt.Sprintf("%s %.1fs ", id, ph[id])
	}
	return out
}

// largeKV is a copy of examples/kv whose replica count may go to 999 (the
// example stops at 9, which its tests of the limit rely on).
func largeKV(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "examples", "kv")
	dst := filepath.Join(t.TempDir(), "kv")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "config.json" {
			before := len(b)
			b = bytes.Replace(b, []byte(`"description": "number of replicas",
              "type": "integer",
              "default": 2,
              "min": 0,
              "max": 9,`), []byte(`"description": "number of replicas",
              "type": "integer",
              "default": 2,
              "min": 0,
              "max": 999,`), 1)
			if len(b) == before {
				return fmt.Errorf("%s: the replica count's max not found", path)
			}
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
