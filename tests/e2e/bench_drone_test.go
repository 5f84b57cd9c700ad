package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDroneIdle measures what a drone costs every instance it runs
// in: the size of the drone binary built for an image (stripped, as
// `go build -trimpath -ldflags '-s -w'`), and the resident memory of the
// drones of a real three-node kv cluster on the local runtime once idle
// (connected, watching the metadata, nothing to run). Beside them, the
// floor measured in the same run: a Go program built the same way that only
// waits for a signal (testdata/idlefloor). It prints a table and writes it
// as JSON to $HANGAR_BENCH_OUT (default: a temporary file, named in the
// table).
//
//	go test -run '^$' -bench BenchmarkDroneIdle -benchtime 1x ./tests/e2e/
func BenchmarkDroneIdle(b *testing.B) {
	root := repoRoot(b)
	dir := b.TempDir()
	build := func(pkg, out string) int64 {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Dir = root
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", pkg, err, o)
		}
		fi, err := os.Stat(out)
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	droneSize := build("./cmd/drone", filepath.Join(dir, "drone"))
	floorSize := build("./tests/e2e/testdata/idlefloor", filepath.Join(dir, "idlefloor"))

	floor := exec.Command(filepath.Join(dir, "idlefloor"))
	if err := floor.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = floor.Process.Kill(); _ = floor.Wait() }()

	p := startPilot(b)
	createLocalRuntime(b, p)
	p.mustHangar("app", "push", "examples/kv")
	var droneRSS, floorRSS int64
	for b.Loop() {
		c, job := createCluster(b, p, "kv", nil)
		mustSucceed(b, job)
		var ids []string
		for _, n := range c.Nodes {
			ids = append(ids, n.InstanceId)
		}
		drones := func() []string {
			var pids []string
			for _, pid := range processesOf(ids...) {
				if exe, _ := os.Readlink("/proc/" + pid + "/exe"); filepath.Base(exe) == "drone" {
					pids = append(pids, pid)
				}
			}
			return pids
		}
		// Idle: the largest drone's RSS has not moved by more than 1%
		// over three samples a second apart.
		var last []int64
		waitFor(b, 60*time.Second, "the drones' memory to settle", func() (bool, string) {
			var m int64
			pids := drones()
			for _, pid := range pids {
				m = max(m, rssOf(b, pid))
			}
			last = append(last, m)
			if len(pids) != len(ids) || len(last) < 3 {
				time.Sleep(time.Second)
				return false, fmt.Sprintf("%d drones of %d", len(pids), len(ids))
			}
			w := last[len(last)-3:]
			lo, hi := min(w[0], w[1], w[2]), max(w[0], w[1], w[2])
			if float64(hi-lo) > 0.01*float64(hi) {
				time.Sleep(time.Second)
				return false, fmt.Sprintf("RSS samples %v", w)
			}
			return true, ""
		})
		droneRSS = last[len(last)-1]
		floorRSS = rssOf(b, strconv.Itoa(floor.Process.Pid))
	}
	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	b.ReportMetric(mb(droneRSS), "drone-RSS-MiB")
	b.ReportMetric(mb(droneSize), "drone-binary-MiB")
	b.ReportMetric(float64(droneRSS)/float64(floorRSS), "RSS-ratio-to-floor")
	out := os.Getenv("HANGAR_BENCH_OUT")
	if out == "" {
		out = filepath.Join(os.TempDir(), "hangar-bench-drone-idle.json")
	}
	res := map[string]any{
		"drone_binary_bytes": droneSize, "floor_binary_bytes": floorSize,
		"drone_idle_rss_bytes": droneRSS, "floor_idle_rss_bytes": floorRSS,
		"rss_ratio": float64(droneRSS) / float64(floorRSS), "binary_ratio": float64(droneSize) / float64(floorSize),
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, js, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("\n%-28s %10s %10s %7s\n%-28s %8.1fMi %8.1fMi %6.1fx\n%-28s %8.1fMi %8.1fMi %6.1fx\nJSON: %s",
		"", "drone", "floor", "ratio",
		"stripped binary", mb(droneSize), mb(floorSize), float64(droneSize)/float64(floorSize),
		"idle RSS (largest of 3)", mb(droneRSS), mb(floorRSS), float64(droneRSS)/float64(floorRSS), out)
}

// rssOf reads a process's resident set (VmRSS) in bytes.
func rssOf(b testing.TB, pid string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS of %s: %q", pid, v)
			}
			return kb << 10
		}
	}
	return 0
}
