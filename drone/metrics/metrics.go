// Package metrics samples a node for pilot: the host's cpu (percent busy
// over the last interval, /proc/stat), memory (used percent and bytes,
// /proc/meminfo, or the container's cgroup v2 memory.current and
// memory.max when it has them), disk (used and total bytes of the
// filesystem holding the instance's root) and network (received and sent
// bytes per second, /proc/net/dev, loopback left out unless it is the only
// interface); and the app's monitor items (APPCENTER-FORMAT 1.5): the
// role's monitor cmd, run like a health check (drone/shellcmd), prints one
// JSON object {item: value}, each value turned into the reported one by
// its statistics_type (delta and rate here; min, max, avg, mode and median
// are pilot's, over its window, and reported here as the latest value).
//
// A Collector samples every interval (the monitor's interval_sec, a
// Hangar extension, else 10 s) on the drone's own clock and hands a
// report over only when it differs from the last one handed over, or a
// minute has passed: a thousand idle nodes send little.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/shellcmd"
)

// DefaultInterval is the sampling interval without a monitor that says
// otherwise.
const DefaultInterval = 10 * time.Second

// DefaultHeartbeat is the longest a collector goes without a report, even
// when nothing changed, so pilot can tell a quiet node from a silent one.
const DefaultHeartbeat = time.Minute

// maxErrorBytes bounds monitor_error.
const maxErrorBytes = 512

// Runner runs a command line in the instance (through /bin/sh, as health
// checks run) and returns its exit code (-1: it did not exit by itself),
// its output's tail, and an error for anything but exit 0.
type Runner func(ctx context.Context, cmd string, timeout time.Duration) (int, []byte, error)

// Config is a Collector's wiring.
type Config struct {
	Host HostConfig
	// Run runs the monitor command; nil: no monitor runs (host only).
	Run Runner
	// Interval is the sampling interval without a monitor (default
	// DefaultInterval).
	Interval time.Duration
	// Heartbeat (default DefaultHeartbeat).
	Heartbeat time.Duration
	// OnReport gets each report worth sending; it must not block long.
	OnReport func(*streamv1.MetricsReport)
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Collector samples with the monitor spec it was last given.
type Collector struct {
	cfg Config

	mu      sync.Mutex
	spec    *Spec
	changed chan struct{} // closed and replaced by Set
}

// New returns a collector that samples the host only until Set gives it a
// monitor.
func New(cfg Config) *Collector {
	cfg.Host = cfg.Host.withDefaults()
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg, changed: make(chan struct{})}
}

// Set replaces the monitor (nil: none); delta and rate items start again.
func (c *Collector) Set(spec *Spec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spec.equal(spec) {
		return
	}
	c.spec = spec
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Collector) current() (*Spec, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spec, c.changed
}

// Run samples until ctx ends and returns its error.
func (c *Collector) Run(ctx context.Context) error {
	s := sampler{cfg: c.cfg}
	s.prevHost, s.prevAt = s.readHost(), c.cfg.Now()
	var last *streamv1.MetricsReport
	var lastSent time.Time
	for {
		spec, changed := c.current()
		s.items = itemState{}
		interval := c.cfg.Interval
		if spec != nil {
			interval = spec.Interval
		}
		t := time.NewTicker(interval)
	follow:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-changed:
				break follow
			case <-t.C:
			}
			rep := s.sample(ctx, spec, interval)
			if ctx.Err() != nil {
				t.Stop()
				return ctx.Err()
			}
			if last == nil || differs(last, rep) || c.cfg.Now().Sub(lastSent) >= c.cfg.Heartbeat {
				last, lastSent = rep, c.cfg.Now()
				if c.cfg.OnReport != nil {
					c.cfg.OnReport(proto.Clone(rep).(*streamv1.MetricsReport))
				}
			}
		}
		t.Stop()
	}
}

// differs says whether b is worth sending after a. Byte counts and
// rates move by a few bytes at nearly every sample, so they count only
// when they moved by a MiB (memory, disk) or a KiB a second (network):
// otherwise every idle node would report every interval.
func differs(a, b *streamv1.MetricsReport) bool {
	const mib, kib = 1 << 20, 1 << 10
	return a.CpuPercent != b.CpuPercent || a.MemoryUsedPercent != b.MemoryUsedPercent ||
		a.MemoryUsedBytes/mib != b.MemoryUsedBytes/mib || a.MemoryTotalBytes != b.MemoryTotalBytes ||
		a.DiskUsedBytes/mib != b.DiskUsedBytes/mib || a.DiskTotalBytes != b.DiskTotalBytes ||
		int64(a.NetworkReceiveBytesPerSecond/kib) != int64(b.NetworkReceiveBytesPerSecond/kib) ||
		int64(a.NetworkTransmitBytesPerSecond/kib) != int64(b.NetworkTransmitBytesPerSecond/kib) ||
		a.IntervalSec != b.IntervalSec || a.MonitorError != b.MonitorError ||
		!slices.EqualFunc(a.Items, b.Items, func(x, y *streamv1.MonitorValue) bool { return proto.Equal(x, y) })
}

// sampler keeps what rates need between samples.
type sampler struct {
	cfg      Config
	prevHost hostReading
	prevAt   time.Time
	items    itemState
	// warned is the last host error logged, so a missing file is not
	// logged every interval.
	warned string
}

func (s *sampler) readHost() hostReading {
	r, errs := readHost(s.cfg.Host)
	if err := errors.Join(errs...); err != nil && err.Error() != s.warned {
		s.warned = err.Error()
		s.cfg.Logger.Warn("host metrics: some could not be read; they are left out", "err", err)
	}
	return r
}

// sample reads the host and runs the monitor once.
func (s *sampler) sample(ctx context.Context, spec *Spec, interval time.Duration) *streamv1.MetricsReport {
	now := s.cfg.Now()
	h := s.readHost()
	rep := hostReport(s.prevHost, h, now.Sub(s.prevAt))
	s.prevHost, s.prevAt = h, now
	rep.At = timestamppb.New(now)
	rep.IntervalSec = int32(interval / time.Second)
	if spec != nil && s.cfg.Run != nil {
		items, err := s.monitor(ctx, spec, interval)
		rep.Items = items
		if err != nil {
			rep.MonitorError = cleanError(err.Error())
		}
	}
	return rep
}

// hostReport is the host's part of a report from two readings dt apart.
func hostReport(prev, cur hostReading, dt time.Duration) *streamv1.MetricsReport {
	rep := &streamv1.MetricsReport{}
	if prev.cpuOK && cur.cpuOK && cur.cpuTotal > prev.cpuTotal {
		busy := counterDelta(prev.cpuBusy, cur.cpuBusy)
		total := cur.cpuTotal - prev.cpuTotal
		rep.CpuPercent = round(100*float64(min(busy, total))/float64(total), 1)
	}
	if cur.memOK && cur.memTotal > 0 {
		rep.MemoryUsedBytes, rep.MemoryTotalBytes = cur.memUsed, cur.memTotal
		rep.MemoryUsedPercent = round(100*float64(cur.memUsed)/float64(cur.memTotal), 1)
	}
	if cur.diskOK {
		rep.DiskUsedBytes, rep.DiskTotalBytes = cur.diskUsed, cur.diskTotal
	}
	if prev.netOK && cur.netOK && dt > 0 {
		rep.NetworkReceiveBytesPerSecond = round(float64(counterDelta(prev.rx, cur.rx))/dt.Seconds(), 0)
		rep.NetworkTransmitBytesPerSecond = round(float64(counterDelta(prev.tx, cur.tx))/dt.Seconds(), 0)
	}
	return rep
}

// monitor runs the command and turns its output into items.
func (s *sampler) monitor(ctx context.Context, spec *Spec, interval time.Duration) ([]*streamv1.MonitorValue, error) {
	timeout := min(MonitorTimeout, interval)
	at := s.cfg.Now()
	code, out, err := s.cfg.Run(ctx, spec.Cmd, timeout)
	if err != nil {
		last := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if code >= 0 {
			return nil, fmt.Errorf("monitor cmd exit %d: %s", code, last)
		}
		return nil, fmt.Errorf("monitor cmd: %v: %s", err, last)
	}
	obj, err := parseOutput(out)
	if err != nil {
		return nil, fmt.Errorf("monitor cmd: %w", err)
	}
	return s.items.values(spec, obj, at)
}

// round keeps digits decimals, so that noise below them is not a change
// worth a report.
func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

// cleanError is valid UTF-8 of at most maxErrorBytes (a protobuf string
// must be valid, and the report stays small).
func cleanError(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > maxErrorBytes {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// ShellRunner runs the monitor command as health checks run
// (drone/shellcmd): /bin/sh -c in the instance's root, its process group
// killed at the timeout, its output (the last shellcmd.OutputBytes)
// in a file under tmpDir.
func ShellRunner(root, tmpDir string) Runner {
	return func(ctx context.Context, cmd string, timeout time.Duration) (int, []byte, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return shellcmd.Run(cctx, root, tmpDir, cmd)
	}
}
