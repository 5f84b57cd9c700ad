// Package loadgen is a bounded HTTP load generator: a fixed number of
// clients, each sending GET requests one after the other until stopped,
// counting successes per backend (the body of a 200 answer names the
// backend that served it) and failures by cause. The load-balancer tests
// run it through HAProxy while the membership behind it changes; hangar-web
// load runs it where the tests cannot reach (a docker runtime's network).
package loadgen

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config of a run.
type Config struct {
	URL string
	// Clients is the number of concurrent clients (default 8).
	Clients int
	// Timeout bounds each request (default 5 s).
	Timeout time.Duration
}

// Stats are a run's counts.
type Stats struct {
	Requests int `json:"requests"`
	Failures int `json:"failures"`
	// ByBackend counts the successes of each backend.
	ByBackend map[string]int `json:"by_backend"`
	// FirstSeen is when each backend first answered in this run.
	FirstSeen map[string]time.Time `json:"first_seen"`
	// Errors counts the failures by cause (an error's text, or the
	// status of an answer other than 200).
	Errors  map[string]int `json:"errors,omitempty"`
	Started time.Time      `json:"started"`
	Elapsed float64        `json:"elapsed_sec"`
}

// String is one line for a test's log.
func (s Stats) String() string {
	names := make([]string, 0, len(s.ByBackend))
	for n := range s.ByBackend {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %.1fs (%.0f/s), %d failed; per backend:", s.Requests, s.Elapsed, float64(s.Requests)/max(s.Elapsed, 1e-9), s.Failures)
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, s.ByBackend[n])
	}
	for e, n := range s.Errors {
		fmt.Fprintf(&b, "; %d× %s", n, e)
	}
	return b.String()
}

// Run is a load in progress.
type Run struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	client *http.Client

	mu    sync.Mutex
	stats Stats
}

// Start starts cfg.Clients clients; Stop ends them.
func Start(cfg Config) *Run {
	if cfg.Clients <= 0 {
		cfg.Clients = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{
		cancel: cancel,
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}},
		stats:  Stats{ByBackend: map[string]int{}, FirstSeen: map[string]time.Time{}, Errors: map[string]int{}, Started: time.Now()},
	}
	for range cfg.Clients {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for ctx.Err() == nil {
				backend, err := r.get(ctx, cfg.URL)
				if ctx.Err() != nil {
					return // a request cut by Stop counts for nothing
				}
				r.record(backend, err)
			}
		}()
	}
	return r
}

func (r *Run) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

func (r *Run) record(backend string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Requests++
	if err != nil {
		r.stats.Failures++
		r.stats.Errors[errorKind(err)]++
		return
	}
	if r.stats.ByBackend[backend]++; r.stats.ByBackend[backend] == 1 {
		r.stats.FirstSeen[backend] = time.Now()
	}
}

// errorKind cuts what varies (ports, addresses) off an error so that
// failures group by cause.
func errorKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 80 {
		return s[i+2:]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// Snapshot returns the counts so far.
func (r *Run) Snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.ByBackend = maps.Clone(r.stats.ByBackend)
	s.Errors = maps.Clone(r.stats.Errors)
	s.FirstSeen = maps.Clone(r.stats.FirstSeen)
	s.Elapsed = time.Since(s.Started).Seconds()
	return s
}

// Stop ends the clients, waits for them, and returns the counts.
func (r *Run) Stop() Stats {
	r.cancel()
	r.wg.Wait()
	r.client.CloseIdleConnections()
	return r.Snapshot()
}
