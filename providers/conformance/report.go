package conformance

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hangarhq/hangar/api/providerv1"
)

// Result is one check's outcome in a Report.
type Result struct {
	Name     string        `json:"name"`
	Rule     string        `json:"rule"`
	Status   string        `json:"status"` // PASS, FAIL, SKIP, or NOT RUN (after a failed gate)
	Duration time.Duration `json:"duration_ns"`
	// Messages are the check's errors, or why it skipped.
	Messages []string `json:"messages,omitempty"`
	Logs     []string `json:"logs,omitempty"`
}

// Report is the suite's outcome outside `go test`.
type Report struct {
	Provider string   `json:"provider"`
	Results  []Result `json:"results"`
}

// Failed lists the checks that failed.
func (r Report) Failed() []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Status == statusFail {
			out = append(out, x)
		}
	}
	return out
}

const (
	statusPass   = "PASS"
	statusFail   = "FAIL"
	statusSkip   = "SKIP"
	statusNotRun = "NOT RUN"
)

// RunReport runs the suite against client, acting for rt and starting
// instances of image, outside `go test` (`hangar provider test`): each
// check runs as a test would (a Fatal or Skip ends it, its cleanups run
// after it), and its line is written to w as it ends. A check that fails
// names the rule the provider broke. Everything the suite created is
// deleted before it returns, whatever failed.
func RunReport(ctx context.Context, client providerv1.ProviderClient, rt *providerv1.Runtime, image string, w io.Writer) Report {
	rep := Report{}
	if info, err := client.Info(ctx, &providerv1.InfoRequest{}); err == nil {
		rep.Provider = info.GetName() + " " + info.GetVersion()
	}
	s := newSuite(client, rt, image)
	defer s.cleanup()
	stopped := false
	for _, ck := range checks {
		res := Result{Name: ck.name, Rule: ck.rule, Status: statusNotRun}
		if !stopped {
			res = runCheck(ctx, ck, s)
			stopped = res.Status == statusFail && ck.gate
		}
		rep.Results = append(rep.Results, res)
		writeResult(w, res)
	}
	return rep
}

// runCheck runs one check in a goroutine of its own, as testing does, so
// that Fatal and Skip can end it with runtime.Goexit.
func runCheck(ctx context.Context, ck check, s *suite) Result {
	cctx, cancel := context.WithCancel(ctx)
	t := &reportT{ctx: cctx}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
			}
		}()
		ck.fn(s, t)
	}()
	<-done
	cancel()
	t.runCleanups()
	res := Result{Name: ck.name, Rule: ck.rule, Duration: time.Since(start), Status: statusPass, Logs: t.logs}
	switch {
	case t.failed:
		res.Status, res.Messages = statusFail, t.errors
	case t.skipped:
		res.Status, res.Messages = statusSkip, t.errors
	}
	return res
}

func writeResult(w io.Writer, r Result) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "%-7s %-31s %6.1fs  %s\n", r.Status, r.Name, r.Duration.Seconds(), r.Rule)
	for _, m := range r.Messages {
		for _, line := range strings.Split(strings.TrimRight(m, "\n"), "\n") {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
}

// reportT is a check's T outside `go test`.
type reportT struct {
	ctx context.Context

	mu       sync.Mutex
	failed   bool
	skipped  bool
	errors   []string
	logs     []string
	cleanups []func()
}

var _ T = (*reportT)(nil)

func (t *reportT) Helper() {}

func (t *reportT) Error(args ...any) { t.Errorf("%s", fmt.Sprintln(args...)) }

func (t *reportT) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.errors = append(t.errors, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (t *reportT) Fatal(args ...any) { t.Error(args...); runtime.Goexit() }

func (t *reportT) Fatalf(format string, args ...any) { t.Errorf(format, args...); runtime.Goexit() }

func (t *reportT) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logs = append(t.logs, fmt.Sprintf(format, args...))
}

func (t *reportT) Skip(args ...any) { t.Skipf("%s", fmt.Sprintln(args...)) }

func (t *reportT) Skipf(format string, args ...any) {
	t.mu.Lock()
	t.skipped = true
	t.errors = append(t.errors, strings.TrimSpace(fmt.Sprintf(format, args...)))
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *reportT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *reportT) Context() context.Context { return t.ctx }

func (t *reportT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// runCleanups runs the check's cleanups, last registered first.
func (t *reportT) runCleanups() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
