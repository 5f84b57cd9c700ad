package metrics

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseCPU(t *testing.T) {
	tests := []struct {
		name        string
		stat        string
		busy, total uint64
		err         string
	}{
		{"ten fields", "cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 1 2 3 4\n", 100 + 5 + 50 + 3 + 2 + 10, 990, ""},
		{"old kernel, four fields", "cpu 10 0 10 80\n", 20, 100, ""},
		{"guest not counted twice", "cpu 10 0 10 80 0 0 0 0 10 10\n", 20, 100, ""},
		{"not cpu", "intr 1 2 3\n", 0, 0, "not the cpu totals"},
		{"bad number", "cpu 10 x 10 80\n", 0, 0, `cpu field 2 "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, err := parseCPU([]byte(tc.stat))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || busy != tc.busy || total != tc.total {
				t.Fatalf("busy %d total %d err %v; want %d %d", busy, total, err, tc.busy, tc.total)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name        string
		meminfo     string
		used, total uint64
		err         bool
	}{
		{"available", "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\nBuffers: 50 kB\nCached: 200 kB\n", 600 << 10, 1000 << 10, false},
		{"no MemAvailable", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n", 600 << 10, 1000 << 10, false},
		{"available above total", "MemTotal: 1000 kB\nMemAvailable: 2000 kB\n", 0, 1000 << 10, false},
		{"no total", "MemFree: 100 kB\n", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			used, total, err := parseMeminfo([]byte(tc.meminfo))
			if (err != nil) != tc.err || used != tc.used || total != tc.total {
				t.Fatalf("used %d total %d err %v; want %d %d err %v", used, total, err, tc.used, tc.total, tc.err)
			}
		})
	}
}

func TestCgroupMemory(t *testing.T) {
	tests := []struct {
		name               string
		current, max, stat string
		hostTotal          uint64
		used, total        uint64
		err                bool
	}{
		{"limited", "300\n", "1000\n", "anon 200\ninactive_file 100\n", 5000, 200, 1000, false},
		{"no limit", "300\n", "max\n", "", 5000, 300, 5000, false},
		{"limit above the host", "300", "9000", "", 5000, 300, 5000, false},
		{"inactive above current ignored", "300", "1000", "inactive_file 400\n", 5000, 300, 1000, false},
		{"garbage", "lots", "max", "", 5000, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			used, total, err := cgroupMemory([]byte(tc.current), []byte(tc.max), []byte(tc.stat), tc.hostTotal)
			if (err != nil) != tc.err || used != tc.used || total != tc.total {
				t.Fatalf("used %d total %d err %v; want %d %d err %v", used, total, err, tc.used, tc.total, tc.err)
			}
		})
	}
}

const netDevHeader = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"

func TestParseNetDev(t *testing.T) {
	tests := []struct {
		name   string
		dev    string
		rx, tx uint64
		err    bool
	}{
		{"loopback excluded", netDevHeader +
			"    lo:  5000  10 0 0 0 0 0 0  5000 10 0 0 0 0 0 0\n" +
			"  eth0: 1000  10 0 0 0 0 0 0  2000 10 0 0 0 0 0 0\n" +
			"  eth1:  100   1 0 0 0 0 0 0   200  1 0 0 0 0 0 0\n", 1100, 2200, false},
		{"loopback alone", netDevHeader + "    lo:  5000  10 0 0 0 0 0 0  6000 10 0 0 0 0 0 0\n", 5000, 6000, false},
		{"no interfaces", netDevHeader, 0, 0, true},
		{"bad counter", netDevHeader + "  eth0: x 10 0 0 0 0 0 0  2000 10 0 0 0 0 0 0\n", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rx, tx, err := parseNetDev([]byte(tc.dev))
			if (err != nil) != tc.err || rx != tc.rx || tx != tc.tx {
				t.Fatalf("rx %d tx %d err %v; want %d %d err %v", rx, tx, err, tc.rx, tc.tx, tc.err)
			}
		})
	}
}

func TestHostReport(t *testing.T) {
	prev := hostReading{cpuBusy: 100, cpuTotal: 1000, cpuOK: true, rx: 1000, tx: 5000, netOK: true}
	cur := hostReading{cpuBusy: 150, cpuTotal: 1200, cpuOK: true, memUsed: 250, memTotal: 1000, memOK: true,
		diskUsed: 7, diskTotal: 10, diskOK: true, rx: 3000, tx: 100, netOK: true}
	rep := hostReport(prev, cur, 2*time.Second)
	if rep.CpuPercent != 25 || rep.MemoryUsedPercent != 25 || rep.MemoryUsedBytes != 250 || rep.DiskUsedBytes != 7 || rep.DiskTotalBytes != 10 {
		t.Errorf("report %v: want cpu 25%%, memory 25%% (250 bytes), disk 7/10", rep)
	}
	// The transmit counter went backwards (the interface was recreated):
	// it counted 100 since, not a negative rate.
	if rep.NetworkReceiveBytesPerSecond != 1000 || rep.NetworkTransmitBytesPerSecond != 50 {
		t.Errorf("network rx %v tx %v B/s, want 1000 and 50", rep.NetworkReceiveBytesPerSecond, rep.NetworkTransmitBytesPerSecond)
	}
	// What could not be read is left out, not zero-and-wrong.
	if rep := hostReport(hostReading{}, hostReading{memOK: false}, time.Second); rep.MemoryTotalBytes != 0 || rep.CpuPercent != 0 {
		t.Errorf("unreadable host: %v", rep)
	}
}

func TestReadHost(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	cg := filepath.Join(dir, "cgroup")
	for name, content := range map[string]string{
		"proc/stat":        "cpu 10 0 10 80\n",
		"proc/meminfo":     "MemTotal: 1000 kB\nMemAvailable: 250 kB\n",
		"proc/net/dev":     netDevHeader + "  eth0: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n",
		"cgroup/other":     "",
		"root/placeholder": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := HostConfig{ProcDir: proc, CgroupDir: cg, Root: filepath.Join(dir, "root")}
	r, errs := readHost(cfg)
	if len(errs) > 0 || r.memUsed != 750<<10 || r.diskTotal == 0 || r.rx != 1 || r.tx != 2 || r.cpuTotal != 100 {
		t.Fatalf("host reading %+v, errors %v", r, errs)
	}
	// In a container: the cgroup's memory.
	os.WriteFile(filepath.Join(cg, "memory.current"), []byte("524288\n"), 0o644)
	os.WriteFile(filepath.Join(cg, "memory.max"), []byte("max\n"), 0o644)
	if r, _ := readHost(cfg); r.memUsed != 512<<10 || r.memTotal != 1000<<10 {
		t.Fatalf("in a cgroup: memory %d of %d, want 512 KiB of the host's 1000 KiB", r.memUsed, r.memTotal)
	}
}

func TestParseOutput(t *testing.T) {
	tests := []struct {
		name string
		out  string
		keys int
		err  bool
	}{
		{"object", `{"a": 1, "b": "2"}`, 2, false},
		{"after a warning on stderr", "warning: slow\n{\"a\": 1}\n", 1, false},
		{"nothing", "", 0, true},
		{"an array", `[1, 2]`, 0, true},
		{"text", "connection refused", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := parseOutput([]byte(tc.out))
			if (err != nil) != tc.err || len(obj) != tc.keys {
				t.Fatalf("%v, %v", obj, err)
			}
		})
	}
}

// The statistics types over a run of samples, one second apart.
func TestStatistics(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		item    ItemSpec
		printed []string // the JSON value printed at each sample
		want    []string // the reported value ("-": none that time)
	}{
		{"latest", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "latest"}, []string{`5`, `7`, `3`}, []string{"5", "7", "3"}},
		{"numeric strings", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "latest"}, []string{`"5"`, `" 7.5 "`}, []string{"5", "7.5"}},
		{"not a number", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "latest"}, []string{`"five"`, `{}`}, []string{"-", "-"}},
		{"avg is pilot's: latest here", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "avg"}, []string{`5`, `7`}, []string{"5", "7"}},
		{"delta", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "delta"}, []string{`100`, `130`, `130`, `200`}, []string{"-", "30", "0", "70"}},
		{"delta of a restarted counter", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "delta"}, []string{`100`, `130`, `4`, `10`}, []string{"-", "30", "4", "6"}},
		{"rate per second", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "rate"}, []string{`0`, `10`, `30`}, []string{"-", "10", "20"}},
		{"rate never negative", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "rate"}, []string{`50`, `0`, `2`}, []string{"-", "0", "2"}},
		{"str with enums", ItemSpec{Key: "k", ValueType: "str", StatisticsType: "latest", Enums: []string{"follower", "leader"}}, []string{`"leader"`, `"follower"`, `"observer"`}, []string{"1 leader", "0 follower", "0 observer"}},
		{"missing", ItemSpec{Key: "k", ValueType: "int", StatisticsType: "latest"}, []string{``, `null`}, []string{"-", "-"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := &Spec{Cmd: "m", Interval: time.Second, Items: []ItemSpec{tc.item}}
			var st itemState
			for i, p := range tc.printed {
				obj := map[string]json.RawMessage{}
				if p != "" {
					obj["k"] = json.RawMessage(p)
				}
				vals, err := st.values(spec, obj, t0.Add(time.Duration(i)*time.Second))
				got := "-"
				if len(vals) == 1 {
					got = trimFloat(vals[0].Value)
					if vals[0].Text != "" {
						got += " " + vals[0].Text
					}
				}
				if got != tc.want[i] {
					t.Errorf("sample %d (%s): got %s, want %s (err %v)", i, p, got, tc.want[i], err)
				}
				if got == "-" && tc.item.StatisticsType == "latest" && err == nil {
					t.Errorf("sample %d (%s): no value and no error", i, p)
				}
			}
		})
	}
}

func trimFloat(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestSpecOf(t *testing.T) {
	if s, err := SpecOf(nil); s != nil || err != nil {
		t.Fatalf("nil monitor: %v %v", s, err)
	}
	tests := []struct {
		m   *streamv1.Monitor
		err string
	}{
		{&streamv1.Monitor{Cmd: "m", IntervalSec: 1, Items: []*streamv1.MonitorItemSpec{{Key: "a"}}}, ""},
		{&streamv1.Monitor{IntervalSec: 1}, "cmd is required"},
		{&streamv1.Monitor{Cmd: "m"}, "interval_sec 0"},
		{&streamv1.Monitor{Cmd: "m", IntervalSec: 1, Items: []*streamv1.MonitorItemSpec{{Key: "a", StatisticsType: "sum"}}}, `statistics_type "sum"`},
		{&streamv1.Monitor{Cmd: "m", IntervalSec: 1, Items: []*streamv1.MonitorItemSpec{{Key: "a", ValueType: "float"}}}, `value_type "float"`},
		{&streamv1.Monitor{Cmd: "m", IntervalSec: 1, Items: []*streamv1.MonitorItemSpec{{}}}, "no key"},
	}
	for _, tc := range tests {
		_, err := SpecOf(tc.m)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("SpecOf(%v) = %v, want %q", tc.m, err, tc.err)
		}
	}
}

// A collector with a fake command: reports come every interval while the
// values change, none while they do not (until the heartbeat), the
// monitor's failures are reported, and a new spec takes effect.
func TestCollector(t *testing.T) {
	var mu sync.Mutex
	out, code := `{"hits": 10, "conns": "3"}`, 0
	run := func(ctx context.Context, cmd string, timeout time.Duration) (int, []byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if timeout > time.Second {
			t.Errorf("monitor timeout %v with a 1 s interval", timeout)
		}
		if code != 0 {
			return code, []byte(out), context.DeadlineExceeded
		}
		return 0, []byte(out), nil
	}
	reports := make(chan *streamv1.MetricsReport, 100)
	c := New(Config{Run: run, Interval: 20 * time.Millisecond, Heartbeat: time.Hour, OnReport: func(r *streamv1.MetricsReport) { reports <- r }})
	c.Set(&Spec{Cmd: "m", Interval: time.Second, Items: []ItemSpec{{Key: "hits", ValueType: "int", StatisticsType: "delta"}, {Key: "conns", ValueType: "int", StatisticsType: "latest"}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func(what string) *streamv1.MetricsReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no report: %s", what)
			return nil
		}
	}
	r := next("first")
	if r.GetIntervalSec() != 1 || r.GetMemoryTotalBytes() == 0 || r.GetAt() == nil {
		t.Errorf("first report %v: want interval 1 s and the host's memory", r)
	}
	if len(r.Items) != 1 || r.Items[0].Key != "conns" || r.Items[0].Value != 3 {
		t.Errorf("first report's items %v: want conns 3 only (delta needs two samples)", r.Items)
	}
	mu.Lock()
	out = `{"hits": 25, "conns": 3}`
	mu.Unlock()
	for r = next("second"); len(r.Items) < 2; r = next("with hits") {
	}
	if r.Items[1].Key != "hits" || r.Items[1].Value != 15 {
		t.Errorf("items %v: want hits delta 15", r.Items)
	}
	mu.Lock()
	code = 1
	out = "boom\n"
	mu.Unlock()
	for r = next("failure"); r.MonitorError == ""; r = next("failure") {
	}
	if !strings.Contains(r.MonitorError, "exit 1: boom") || len(r.Items) != 0 {
		t.Errorf("failed monitor: error %q items %v", r.MonitorError, r.Items)
	}
	// No monitor: host samples every Config.Interval.
	c.Set(nil)
	for r = next("host only"); r.MonitorError != "" || r.IntervalSec != 0; r = next("host only") {
	}
}

// A sample is sent after another only when it moved by more than noise:
// cpu and memory percentages, a MiB of memory or disk, a KiB a second of
// network, an item, the monitor's error.
func TestDiffers(t *testing.T) {
	base := func() *streamv1.MetricsReport {
		return &streamv1.MetricsReport{CpuPercent: 5, MemoryUsedPercent: 40, MemoryUsedBytes: 100 << 20, MemoryTotalBytes: 1 << 30,
			DiskUsedBytes: 10 << 30, DiskTotalBytes: 100 << 30, NetworkReceiveBytesPerSecond: 5000, NetworkTransmitBytesPerSecond: 100,
			IntervalSec: 10, Items: []*streamv1.MonitorValue{{Key: "keys", Value: 3}}}
	}
	for _, tc := range []struct {
		name string
		edit func(r *streamv1.MetricsReport)
		want bool
	}{
		{"the same", func(r *streamv1.MetricsReport) {}, false},
		{"a few bytes of memory", func(r *streamv1.MetricsReport) { r.MemoryUsedBytes += 4096 }, false},
		{"a few bytes of disk", func(r *streamv1.MetricsReport) { r.DiskUsedBytes += 512 }, false},
		{"a few bytes a second of network", func(r *streamv1.MetricsReport) { r.NetworkReceiveBytesPerSecond += 20 }, false},
		{"a MiB of memory", func(r *streamv1.MetricsReport) { r.MemoryUsedBytes += 1 << 20 }, true},
		{"a MiB of disk", func(r *streamv1.MetricsReport) { r.DiskUsedBytes += 1 << 20 }, true},
		{"a KiB a second sent", func(r *streamv1.MetricsReport) { r.NetworkTransmitBytesPerSecond += 1024 }, true},
		{"cpu", func(r *streamv1.MetricsReport) { r.CpuPercent = 5.1 }, true},
		{"an item", func(r *streamv1.MetricsReport) { r.Items[0].Value = 4 }, true},
		{"an item more", func(r *streamv1.MetricsReport) { r.Items = append(r.Items, &streamv1.MonitorValue{Key: "x"}) }, true},
		{"the monitor's error", func(r *streamv1.MetricsReport) { r.MonitorError = "exit 1" }, true},
	} {
		b := base()
		tc.edit(b)
		if got := differs(base(), b); got != tc.want {
			t.Errorf("%s: differs %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCutText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 256, "short"},
		{"abcdef", 4, "abcd"},
		{"ab\u00e9cd", 3, "ab"}, // é is two bytes: not cut in half
		{"a\xffb", 8, "a\uFFFDb"},
	} {
		if got := cutText(tc.in, tc.n); got != tc.want {
			t.Errorf("cutText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
