// Package health runs a role's health_check on the drone: check_cmd every
// interval (bounded by its timeout), the consecutive results counted
// against the thresholds, action_cmd once each time the node turns
// unhealthy, and a report of every change to whoever listens (the agent,
// which tells the frontgate, where pilot reads it).
//
// The drone checks on its own clock rather than pilot asking each node
// every interval: a thousand nodes checked every few seconds would be a
// stream of requests and signatures for nothing, and a node cut off from
// pilot still acts on its own health (action_cmd restarts its service).
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hangarhq/hangar/drone/shellcmd"
)

// Status is a node's health as its drone sees it.
type Status string

const (
	// Unknown: checks have not reached either threshold yet (just started
	// or just configured).
	Unknown Status = "unknown"
	// Healthy: healthy_threshold checks in a row succeeded.
	Healthy Status = "healthy"
	// Unhealthy: unhealthy_threshold checks in a row failed.
	Unhealthy Status = "unhealthy"
)

// Spec is a health_check with the documented defaults filled in.
type Spec struct {
	CheckCmd           string
	ActionCmd          string
	Interval           time.Duration
	Timeout            time.Duration
	ActionTimeout      time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
}

// Validate names the first field out of range.
func (s Spec) Validate() error {
	switch {
	case s.CheckCmd == "":
		return errors.New("health check: check_cmd is required")
	case s.Interval < time.Second:
		return fmt.Errorf("health check: interval %s: at least 1s", s.Interval)
	case s.Timeout <= 0 || s.Timeout > s.Interval:
		return fmt.Errorf("health check: timeout %s: above 0 and at most the interval (%s)", s.Timeout, s.Interval)
	case s.ActionCmd != "" && s.ActionTimeout <= 0:
		return fmt.Errorf("health check: action timeout %s: above 0", s.ActionTimeout)
	case s.HealthyThreshold < 1:
		return fmt.Errorf("health check: healthy threshold %d: at least 1", s.HealthyThreshold)
	case s.UnhealthyThreshold < 1:
		return fmt.Errorf("health check: unhealthy threshold %d: at least 1", s.UnhealthyThreshold)
	}
	return nil
}

// Result is what one command did.
type Result struct {
	ExitCode int // -1: it did not run to an exit (timed out, could not start)
	Output   string
	At       time.Time
	Err      string // why it did not exit 0, when not its exit code alone
}

// OK reports a zero exit.
func (r Result) OK() bool { return r.ExitCode == 0 && r.Err == "" }

// Report is the node's health after a check.
type Report struct {
	Status Status
	// Check is the last check's result.
	Check Result
	// Action is the last action_cmd's result (nil: none ran since the
	// spec was set).
	Action *Result
	// Since is when Status last changed.
	Since time.Time
	// Failures is how many checks in a row failed.
	Failures int
}

// Runner runs a command line (through /bin/sh, as lifecycle commands run)
// and returns its result; it gives up at timeout.
type Runner func(ctx context.Context, cmd string, timeout time.Duration) Result

// Config is a Checker's wiring.
type Config struct {
	Run Runner
	// OnChange gets every report that differs from the one before in
	// status, exit code or output, or that carries a new action result;
	// it must not block long.
	OnChange func(Report)
	Logger   *slog.Logger
}

// Checker runs the checks of the spec it was last given.
type Checker struct {
	cfg Config

	mu      sync.Mutex
	spec    *Spec
	changed chan struct{} // closed and replaced by Set
}

// New returns a checker with no spec: it checks nothing until Set.
func New(cfg Config) *Checker {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checker{cfg: cfg, changed: make(chan struct{})}
}

// Set replaces the spec (nil: stop checking); the counts start again from
// Unknown, since what they counted was checked by another command.
func (c *Checker) Set(spec *Spec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if spec != nil {
		cp := *spec
		spec = &cp
	}
	if same(c.spec, spec) {
		return
	}
	c.spec = spec
	close(c.changed)
	c.changed = make(chan struct{})
}

func same(a, b *Spec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (c *Checker) current() (*Spec, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spec, c.changed
}

// Run checks until ctx ends, with whatever spec Set last gave.
func (c *Checker) Run(ctx context.Context) error {
	for {
		spec, changed := c.current()
		if spec == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				continue
			}
		}
		c.follow(ctx, *spec, changed)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// follow runs spec's checks until ctx ends or the spec changes.
func (c *Checker) follow(ctx context.Context, spec Spec, changed <-chan struct{}) {
	st := state{spec: spec, report: Report{Status: Unknown, Since: time.Now()}}
	var last Report
	first := true
	t := time.NewTimer(0) // the first check at once
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			return
		case <-t.C:
		}
		res := c.cfg.Run(ctx, spec.CheckCmd, spec.Timeout)
		if ctx.Err() != nil {
			return
		}
		turned := st.observe(res)
		if turned && st.report.Status == Unhealthy && spec.ActionCmd != "" {
			c.cfg.Logger.Warn("node unhealthy; running its action_cmd", "check_exit", res.ExitCode, "failures", st.report.Failures)
			act := c.cfg.Run(ctx, spec.ActionCmd, spec.ActionTimeout)
			if ctx.Err() != nil {
				return
			}
			st.report.Action = &act
		} else if turned {
			c.cfg.Logger.Info("node health changed", "status", st.report.Status)
		}
		if first || differs(last, st.report) {
			first = false
			last = st.report
			if c.cfg.OnChange != nil {
				c.cfg.OnChange(st.report)
			}
		}
		t.Reset(spec.Interval)
	}
}

// differs says whether b is worth reporting after a: status, the check's
// exit code or output, or a new action result (a check's time alone is
// not: a report per check per node would be a stream for nothing).
func differs(a, b Report) bool {
	return a.Status != b.Status || a.Check.ExitCode != b.Check.ExitCode || a.Check.Output != b.Check.Output ||
		a.Check.Err != b.Check.Err || a.Action != b.Action
}

// state counts consecutive results against the thresholds.
type state struct {
	spec      Spec
	report    Report
	successes int
}

// observe counts res and reports whether the status changed.
func (s *state) observe(res Result) bool {
	s.report.Check = res
	if res.OK() {
		s.successes++
		s.report.Failures = 0
	} else {
		s.report.Failures++
		s.successes = 0
	}
	next := s.report.Status
	switch {
	case s.successes >= s.spec.HealthyThreshold:
		next = Healthy
	case s.report.Failures >= s.spec.UnhealthyThreshold:
		next = Unhealthy
	}
	if next == s.report.Status {
		return false
	}
	s.report.Status, s.report.Since = next, res.At
	return true
}

// ShellRunner runs commands through /bin/sh in the instance's root, as
// lifecycle commands and confd's hooks run (drone/shellcmd), their output
// files in tmpDir.
func ShellRunner(root, tmpDir string) Runner {
	return func(ctx context.Context, cmd string, timeout time.Duration) Result {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		code, out, err := shellcmd.Run(cctx, root, tmpDir, cmd)
		r := Result{ExitCode: code, Output: string(out), At: start}
		switch {
		case err == nil:
		case ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded):
			r.Err = fmt.Sprintf("timed out after %s", timeout)
		case code < 0:
			r.Err = err.Error()
		}
		return r
	}
}

// MaxOutputBytes is how much of a command's output a report carries.
const MaxOutputBytes = shellcmd.OutputBytes

// CleanOutput is output as a report may carry it: valid UTF-8 (a check may
// print anything, and a tail cut at a byte count can split a character;
// a protobuf string must be valid UTF-8 or the report cannot be sent), at
// most MaxOutputBytes, its end kept.
func CleanOutput(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > MaxOutputBytes {
		_, size := utf8.DecodeRuneInString(s)
		s = s[size:]
	}
	return s
}
