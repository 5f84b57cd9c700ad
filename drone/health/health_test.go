package health

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestThresholds: the status moves only after the threshold's count of
// results in a row, and a result the other way starts the count again.
func TestThresholds(t *testing.T) {
	ok, bad := Result{ExitCode: 0}, Result{ExitCode: 1}
	for _, tc := range []struct {
		name    string
		results []Result
		want    []Status // after each result
	}{
		{"healthy after two", []Result{ok, ok, ok}, []Status{Unknown, Healthy, Healthy}},
		{"unhealthy after three", []Result{bad, bad, bad}, []Status{Unknown, Unknown, Unhealthy}},
		{"a success breaks the failures", []Result{bad, bad, ok, bad, bad, bad}, []Status{Unknown, Unknown, Unknown, Unknown, Unknown, Unhealthy}},
		{"back to healthy", []Result{ok, ok, bad, bad, bad, ok, ok}, []Status{Unknown, Healthy, Healthy, Healthy, Unhealthy, Unhealthy, Healthy}},
		{"a timeout is a failure", []Result{{ExitCode: -1, Err: "timed out"}, bad, bad}, []Status{Unknown, Unknown, Unhealthy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := state{spec: Spec{HealthyThreshold: 2, UnhealthyThreshold: 3}, report: Report{Status: Unknown}}
			for i, r := range tc.results {
				s.observe(r)
				if s.report.Status != tc.want[i] {
					t.Fatalf("after result %d (%+v): %s, want %s", i, r, s.report.Status, tc.want[i])
				}
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	good := Spec{CheckCmd: "true", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*Spec)
		want   string
	}{
		{func(s *Spec) { s.CheckCmd = "" }, "check_cmd is required"},
		{func(s *Spec) { s.Interval = 0 }, "interval 0s: at least 1s"},
		{func(s *Spec) { s.Timeout = 2 * time.Second }, "timeout 2s: above 0 and at most the interval"},
		{func(s *Spec) { s.ActionCmd = "x" }, "action timeout 0s"},
		{func(s *Spec) { s.UnhealthyThreshold = 0 }, "unhealthy threshold 0"},
	} {
		s := good
		tc.change(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", s, err, tc.want)
		}
	}
}

// script is a Runner whose check results come from a switch the test
// flips, recording every command it ran.
type script struct {
	mu      sync.Mutex
	healthy bool
	ran     []string
}

func (s *script) run(_ context.Context, cmd string, _ time.Duration) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ran = append(s.ran, cmd)
	if cmd == "act" {
		s.healthy = true // the action repairs the node
		return Result{ExitCode: 0, Output: "restarted", At: time.Now()}
	}
	if s.healthy {
		return Result{ExitCode: 0, Output: "ok", At: time.Now()}
	}
	return Result{ExitCode: 2, Output: "down", At: time.Now()}
}

func (s *script) set(healthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.healthy = healthy
}

func (s *script) count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.ran {
		if c == cmd {
			n++
		}
	}
	return n
}

// TestCheckerActsOnceAndReportsChanges: healthy, then failing until
// unhealthy, when action_cmd runs once and repairs it, then healthy
// again; reports come on changes only, not on every check.
func TestCheckerActsOnceAndReportsChanges(t *testing.T) {
	sc := &script{healthy: true}
	reports := make(chan Report, 100)
	c := New(Config{Run: sc.run, OnChange: func(r Report) { reports <- r }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	c.Set(&Spec{CheckCmd: "check", ActionCmd: "act", Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, ActionTimeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3})

	next := func(want Status) Report {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-reports:
				if r.Status == want {
					return r
				}
			case <-deadline:
				t.Fatalf("no report of %s within 10s", want)
			}
		}
	}
	next(Healthy)
	checksBefore := sc.count("check")
	waitFor(t, "five more checks while healthy", func() bool { return sc.count("check") >= checksBefore+5 })
	if len(reports) != 0 {
		t.Errorf("%d reports while nothing changed, want none", len(reports))
	}

	sc.set(false)
	r := next(Unhealthy)
	if r.Failures != 3 || r.Check.ExitCode != 2 || r.Check.Output != "down" {
		t.Errorf("unhealthy report %+v: want 3 failures of exit 2 with output \"down\"", r)
	}
	if r.Action == nil || r.Action.Output != "restarted" {
		t.Errorf("unhealthy report's action %+v, want action_cmd's result", r.Action)
	}
	next(Healthy)
	if n := sc.count("act"); n != 1 {
		t.Errorf("action_cmd ran %d times, want once", n)
	}

	// A nil spec stops the checks: ten intervals later, at most the
	// check under way when it was set has run.
	c.Set(nil)
	n := sc.count("check")
	time.Sleep(100 * time.Millisecond)
	if got := sc.count("check"); got > n+1 {
		t.Errorf("checks went on after Set(nil): %d then %d", n, got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShellRunner(t *testing.T) {
	run := ShellRunner("", t.TempDir())
	ctx := context.Background()
	if r := run(ctx, "echo fine", time.Second); !r.OK() || r.Output != "fine\n" {
		t.Errorf("echo fine: %+v", r)
	}
	if r := run(ctx, "echo broken >&2; exit 3", time.Second); r.OK() || r.ExitCode != 3 || r.Output != "broken\n" {
		t.Errorf("exit 3: %+v, want exit code 3 with its stderr", r)
	}
	start := time.Now()
	r := run(ctx, "sleep 30", 100*time.Millisecond)
	if r.OK() || r.ExitCode != -1 || !strings.Contains(r.Err, "timed out after 100ms") || time.Since(start) > 10*time.Second {
		t.Errorf("sleep past its timeout: %+v after %s, want it killed and said so", r, time.Since(start))
	}
}

// TestCleanOutput: whatever a check prints, a report carries valid UTF-8
// of at most MaxOutputBytes, the end of it.
func TestCleanOutput(t *testing.T) {
	for _, in := range []string{
		"fine\n",
		"bad \xff\xfe bytes",
		strings.Repeat("é", MaxOutputBytes), // twice the limit in bytes, cut mid-character by a byte count
		"\xff" + strings.Repeat("x", MaxOutputBytes),
	} {
		got := CleanOutput(in)
		if !utf8.ValidString(got) || len(got) > MaxOutputBytes {
			t.Errorf("CleanOutput(%d bytes): %d bytes, valid %v", len(in), len(got), utf8.ValidString(got))
		}
		if want := in[len(in)-1:]; utf8.ValidString(want) && !strings.HasSuffix(got, want) {
			t.Errorf("CleanOutput(%d bytes) lost the end: %q", len(in), got[max(0, len(got)-10):])
		}
	}
}
