package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scale benchmarks (bench_scale_test.go, run by bench/run) share this
// report: every figure beside the floor or peer measured in the same run,
// and their ratio. Each benchmark writes its rows as JSON to
// $HANGAR_BENCH_DIR/<name>.json (default: the temporary dir) and logs them
// as a table; bench/run gathers them into one.

// benchQuick reports whether the benchmarks run at their small size
// (HANGAR_BENCH_SIZE=quick, what CI runs so that the harness cannot rot).
func benchQuick() bool { return os.Getenv("HANGAR_BENCH_SIZE") == "quick" }

// sized is full at full size, quick at the quick one.
func sized(full, quick int) int {
	if benchQuick() {
		return quick
	}
	return full
}

// benchRow is one figure: Hangar's, and the floor's or peer's it is
// compared with (Against names which), in Unit.
type benchRow struct {
	Metric  string  `json:"metric"`
	Hangar  float64 `json:"hangar"`
	Against string  `json:"against"`
	Other   float64 `json:"other"`
	Unit    string  `json:"unit"`
	// Ratio is Hangar / Other: below 1 Hangar is faster (or smaller).
	Ratio float64 `json:"ratio"`
	// Target is the target for the ratio or the figure ("≤ 2×",
	// "≤ 5 s"), and Met whether this run met it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
}

// row builds a row with its ratio; maxRatio > 0 sets a target on the
// ratio.
func row(metric string, hangar float64, against string, other float64, unit string, maxRatio float64) benchRow {
	r := benchRow{Metric: metric, Hangar: hangar, Against: against, Other: other, Unit: unit}
	if other != 0 {
		r.Ratio = hangar / other
	}
	if maxRatio > 0 {
		met := r.Ratio <= maxRatio
		r.Target, r.Met = fmt.Sprintf("≤ %g×", maxRatio), &met
	}
	return r
}

// withTarget sets an absolute target on Hangar's figure.
func (r benchRow) withTarget(max float64) benchRow {
	met := r.Hangar <= max
	r.Target, r.Met = fmt.Sprintf("≤ %g %s", max, r.Unit), &met
	return r
}

// benchReport is one benchmark's result file.
type benchReport struct {
	Name    string         `json:"name"`
	Size    string         `json:"size"`
	Machine string         `json:"machine"`
	When    time.Time      `json:"when"`
	Rows    []benchRow     `json:"rows"`
	Detail  map[string]any `json:"detail,omitempty"`
}

// reportBench writes the report and logs its table.
func reportBench(b *testing.B, name string, rows []benchRow, detail map[string]any) {
	b.Helper()
	size := "full"
	if benchQuick() {
		size = "quick"
	}
	rep := benchReport{Name: name, Size: size, Machine: machine(), When: time.Now().UTC(), Rows: rows, Detail: detail}
	dir := os.Getenv("HANGAR_BENCH_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, name+".json")
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		b.Fatal(err)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n%s (%s) on %s\n%-46s %12s  %-22s %12s %8s  %s\n", name, size, rep.Machine, "", "hangar", "against", "", "ratio", "target")
	for _, r := range rows {
		met := ""
		if r.Met != nil {
			met = map[bool]string{true: "met", false: "MISSED"}[*r.Met]
		}
		fmt.Fprintf(&t, "%-46s %12s  %-22s %12s %7.2fx  %s %s\n", r.Metric, fmtUnit(r.Hangar, r.Unit), r.Against, fmtUnit(r.Other, r.Unit), r.Ratio, r.Target, met)
	}
	fmt.Fprintf(&t, "JSON: %s", path)
	b.Log(t.String())
}

func fmtUnit(v float64, unit string) string {
	if unit == "s" {
		return fmt.Sprintf("%.3f s", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// machine names this machine: cores and memory, as the figures depend on
// them.
func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				mem = fmt.Sprintf(", %.0f GiB", kb/(1<<20))
			}
		}
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v) + ", "
				break
			}
		}
	}
	return fmt.Sprintf("%s%d cores%s", model, runtime.NumCPU(), mem)
}

// percentile is the p-th percentile (0-100) of ds, by nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// forkExecFloor runs n fork/execs of `true`, inFlight at a time, and
// returns each one's completion time from the start: the floor of a
// fan-out of one command to n machines from one host.
func forkExecFloor(b *testing.B, n, inFlight int) []time.Duration {
	b.Helper()
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	out := make([]time.Duration, n)
	sem := make(chan struct{}, inFlight)
	done := make(chan error, n)
	start := time.Now()
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			err := exec.Command(truePath).Run()
			out[i] = time.Since(start)
			done <- err
		}()
	}
	for range n {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return out
}
