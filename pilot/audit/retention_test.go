package audit

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

const day = 24 * time.Hour

// foreignKeys sit next to the audit log; retention must never touch them.
var foreignKeys = []string{
	"/hangar/auditx/acme/0000000000000001-00000000",
	"/hangar/other/acme/0000000000000001-00000000",
	"/hangar/audit",
	"/hangar/audit/stray", // under Prefix but no <tenant>/<id>
}

// watchedKV records the size of every delete retention makes, and can
// fail reads or run a hook before the first delete.
type watchedKV struct {
	clientv3.KV
	mu           sync.Mutex
	gets         int
	deleted      []int64
	failGets     error
	beforeDelete func()
}

func (w *watchedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	w.mu.Lock()
	w.gets++
	err := w.failGets
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return w.KV.Get(ctx, key, opts...)
}

func (w *watchedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	w.mu.Lock()
	hook := w.beforeDelete
	w.beforeDelete = nil
	w.mu.Unlock()
	if hook != nil {
		hook()
	}
	resp, err := w.KV.Delete(ctx, key, opts...)
	if err == nil {
		w.mu.Lock()
		w.deleted = append(w.deleted, resp.Deleted)
		w.mu.Unlock()
	}
	return resp, err
}

func (w *watchedKV) getCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gets
}

// retentionLog is a Log over c with r, reading and deleting through a
// watchedKV, in batches of batch keys (0: the default).
func retentionLog(c *clientv3.Client, r Retention, batch int, logger *slog.Logger) (*Log, *watchedKV) {
	l := New(Config{Client: c, Retention: r, Logger: logger})
	w := &watchedKV{KV: c.KV}
	l.kv = w
	if batch > 0 {
		l.batch = batch
	}
	return l, w
}

// writeAged stores one entry per age (before now) for tenant, labelled
// with its age so the test can tell which survived.
func writeAged(t *testing.T, l *Log, now time.Time, tenant string, ages ...time.Duration) {
	t.Helper()
	for _, age := range ages {
		e := &pilotv1.AuditEntry{Tenant: tenant, User: "u", Method: "/m/" + age.String(), Result: "OK", Time: timestamppb.New(now.Add(-age))}
		if err := l.Log(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// kept lists tenant's remaining entries by age label, newest first.
func kept(t *testing.T, l *Log, tenant string) string {
	t.Helper()
	es, err := l.List(context.Background(), tenant, MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, strings.TrimPrefix(e.Method, "/m/"))
	}
	return strings.Join(got, " ")
}

// labels is what kept returns for ages: newest (smallest age) first.
func labels(ages ...time.Duration) string {
	ages = slices.Clone(ages)
	slices.Sort(ages)
	var out []string
	for _, a := range ages {
		out = append(out, a.String())
	}
	return strings.Join(out, " ")
}

// agesFrom is n ages, step apart, starting at first.
func agesFrom(first, step time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = first + time.Duration(i)*step
	}
	return out
}

func TestPrune(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		r           Retention
		batch       int
		entries     map[string][]time.Duration // tenant: ages at now
		want        map[string][]time.Duration // tenant: ages kept
		wantDeleted int
	}{
		{
			name:    "zero retention keeps everything",
			entries: map[string][]time.Duration{"acme": {time.Hour, 4000 * day}},
			want:    map[string][]time.Duration{"acme": {time.Hour, 4000 * day}},
		},
		{
			name:        "max age deletes older entries and keeps newer ones and the exact cutoff",
			r:           Retention{MaxAge: day},
			entries:     map[string][]time.Duration{"acme": {time.Minute, 23 * time.Hour, day, day + time.Nanosecond, 30 * day}, "beta": {2 * day}},
			want:        map[string][]time.Duration{"acme": {time.Minute, 23 * time.Hour, day}, "beta": nil},
			wantDeleted: 3,
		},
		{
			name: "cap keeps exactly the newest N of each tenant independently",
			r:    Retention{MaxEntriesPerTenant: 2},
			entries: map[string][]time.Duration{
				"acme":   agesFrom(time.Hour, time.Hour, 5),
				"acme-2": {time.Minute}, // sorts right next to acme's prefix
				"beta":   {10 * day, 20 * day, 30 * day},
			},
			want: map[string][]time.Duration{
				"acme":   {time.Hour, 2 * time.Hour},
				"acme-2": {time.Minute},
				"beta":   {10 * day, 20 * day},
			},
			wantDeleted: 4,
		},
		{
			name:        "age first, then the cap weighs what is left",
			r:           Retention{MaxAge: day, MaxEntriesPerTenant: 2},
			entries:     map[string][]time.Duration{"acme": {time.Hour, 2 * time.Hour, 3 * time.Hour, 2 * day}, "beta": {2 * day, 3 * day}},
			want:        map[string][]time.Duration{"acme": {time.Hour, 2 * time.Hour}, "beta": nil},
			wantDeleted: 4,
		},
		{
			name:        "max age across several batches",
			r:           Retention{MaxAge: day},
			batch:       3,
			entries:     map[string][]time.Duration{"acme": append(agesFrom(2*day, time.Hour, 10), time.Hour, 2*time.Hour)},
			want:        map[string][]time.Duration{"acme": {time.Hour, 2 * time.Hour}},
			wantDeleted: 10,
		},
		{
			name:        "max age on an exact multiple of the batch",
			r:           Retention{MaxAge: day},
			batch:       3,
			entries:     map[string][]time.Duration{"acme": append(agesFrom(2*day, time.Hour, 6), time.Hour)},
			want:        map[string][]time.Duration{"acme": {time.Hour}},
			wantDeleted: 6,
		},
		{
			name:        "cap across several batches",
			r:           Retention{MaxEntriesPerTenant: 1},
			batch:       3,
			entries:     map[string][]time.Duration{"acme": agesFrom(time.Hour, time.Hour, 8), "beta": agesFrom(time.Hour, time.Hour, 4)},
			want:        map[string][]time.Duration{"acme": {time.Hour}, "beta": {time.Hour}},
			wantDeleted: 10,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newLog(t)
			ctx := context.Background()
			for _, k := range foreignKeys {
				if _, err := c.Put(ctx, k, "keep"); err != nil {
					t.Fatal(err)
				}
			}
			l, w := retentionLog(c, tc.r, tc.batch, nil)
			for tenant, ages := range tc.entries {
				writeAged(t, l, now, tenant, ages...)
			}

			n, err := l.Prune(ctx, now)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if n != tc.wantDeleted || l.PrunedEntries() != uint64(tc.wantDeleted) {
				t.Errorf("Prune deleted %d (counter %d), want %d", n, l.PrunedEntries(), tc.wantDeleted)
			}
			for tenant := range tc.entries {
				if got, want := kept(t, l, tenant), labels(tc.want[tenant]...); got != want {
					t.Errorf("tenant %s keeps [%s], want [%s]", tenant, got, want)
				}
			}
			for _, k := range foreignKeys {
				if resp, err := c.Get(ctx, k); err != nil || len(resp.Kvs) != 1 {
					t.Errorf("%s was touched: %v %v", k, resp, err)
				}
			}
			batch := l.batch
			var sum int64
			for _, d := range w.deleted {
				sum += d
				if d > int64(batch) {
					t.Errorf("one delete removed %d keys, more than the batch of %d", d, batch)
				}
			}
			if sum != int64(tc.wantDeleted) {
				t.Errorf("deletes removed %d keys in all (%v), want %d", sum, w.deleted, tc.wantDeleted)
			}
		})
	}
}

// Two pruners at once (two pilots on one etcd) never leave a tenant with
// fewer than the cap: the second runs entirely between the first's
// count and its first delete.
func TestConcurrentPrunesKeepTheCap(t *testing.T) {
	_, c := newLog(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	r := Retention{MaxEntriesPerTenant: 2}
	first, w := retentionLog(c, r, 3, nil)
	second, _ := retentionLog(c, r, 3, nil)
	writeAged(t, first, now, "acme", agesFrom(time.Hour, time.Hour, 8)...)
	var secondErr error
	w.beforeDelete = func() { _, secondErr = second.Prune(context.Background(), now) }

	if _, err := first.Prune(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if secondErr != nil {
		t.Fatal(secondErr)
	}
	if got, want := kept(t, first, "acme"), labels(time.Hour, 2*time.Hour); got != want {
		t.Errorf("acme keeps [%s], want [%s]", got, want)
	}
}

func TestPruneRefusesNegativeRetention(t *testing.T) {
	for _, tc := range []struct {
		r    Retention
		want string
	}{
		{Retention{MaxAge: -time.Hour}, "max age -1h0m0s: must be 0"},
		{Retention{MaxEntriesPerTenant: -1}, "max entries per tenant -1: must be 0"},
	} {
		// Validation comes before any etcd request: no client needed.
		l := New(Config{Retention: tc.r})
		if _, err := l.Prune(context.Background(), time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Prune with %+v: %v, want an error containing %q", tc.r, err, tc.want)
		}
		if err := tc.r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate %+v: %v, want an error containing %q", tc.r, err, tc.want)
		}
	}
}

// logRecorder keeps every record logged through it.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// deletedLogged returns the "deleted" attribute of every record at level
// whose message starts with msg.
func (h *logRecorder) deletedLogged(level slog.Level, msg string) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []int64{}
	for _, r := range h.recs {
		if r.Level != level || !strings.HasPrefix(r.Message, msg) {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "deleted" {
				out = append(out, a.Value.Int64())
			}
			return true
		})
	}
	return out
}

// eventually waits for cond with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startRetention runs l.RunRetention in a goroutine and returns its stop:
// cancel, then wait (with a deadline) for the loop to return.
func startRetention(t *testing.T, l *Log, every time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.RunRetention(ctx, every)
	}()
	return func() {
		t.Helper()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("RunRetention did not return after its context ended")
		}
	}
}

func TestRunRetentionPrunesAtStartThenPeriodicallyAndStops(t *testing.T) {
	_, c := newLog(t)
	now := time.Now()
	rec := &logRecorder{}
	l, w := retentionLog(c, Retention{MaxAge: day}, 0, slog.New(rec))
	writeAged(t, l, now, "acme", time.Minute, 2*day, 3*day, 4*day)
	leaks := goleak.IgnoreCurrent()

	stop := startRetention(t, l, 20*time.Millisecond)
	eventually(t, "the old entries are pruned at start", func() bool { return kept(t, l, "acme") == labels(time.Minute) })
	// Let several runs with nothing to delete go by: they log nothing.
	gets := w.getCount()
	eventually(t, "more runs happen", func() bool { return w.getCount() >= gets+6 })
	writeAged(t, l, time.Now(), "acme", 5*day)
	eventually(t, "a later run prunes a new old entry", func() bool { return kept(t, l, "acme") == labels(time.Minute) })
	stop()
	goleak.VerifyNone(t, leaks)

	if got := rec.deletedLogged(slog.LevelInfo, "audit entries pruned"); !slices.Equal(got, []int64{3, 1}) {
		t.Errorf("Info logs of pruned entries = %v, want [3 1]: one per run that deleted something, none otherwise", got)
	}
	if got := rec.deletedLogged(slog.LevelWarn, ""); len(got) != 0 {
		t.Errorf("warnings logged: %v", got)
	}
	if l.PrunedEntries() != 4 {
		t.Errorf("PrunedEntries = %d, want 4", l.PrunedEntries())
	}
}

func TestRunRetentionWarnsAndKeepsGoingOnErrors(t *testing.T) {
	_, c := newLog(t)
	rec := &logRecorder{}
	l, w := retentionLog(c, Retention{MaxEntriesPerTenant: 1}, 0, slog.New(rec))
	w.failGets = errors.New("etcdserver: request timed out")

	stop := startRetention(t, l, 10*time.Millisecond)
	eventually(t, "two failed runs are logged", func() bool { return len(rec.deletedLogged(slog.LevelWarn, "audit retention run failed")) >= 2 })
	stop()
	if l.FailedPruneRuns() < 2 {
		t.Errorf("FailedPruneRuns = %d, want at least 2", l.FailedPruneRuns())
	}
}

func TestRunRetentionOffReturnsAtOnce(t *testing.T) {
	_, c := newLog(t)
	l, w := retentionLog(c, Retention{}, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.RunRetention(ctx, time.Millisecond)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunRetention with no limits did not return while its context is live")
	}
	if n := w.getCount(); n != 0 {
		t.Errorf("retention off still read etcd %d times", n)
	}
}

func TestPruneStopsWhenItsContextEnds(t *testing.T) {
	_, c := newLog(t)
	l, _ := retentionLog(c, Retention{MaxAge: day}, 0, nil)
	writeAged(t, l, time.Now(), "acme", 2*day)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Prune(ctx, time.Now()); !errors.Is(err, context.Canceled) {
		t.Errorf("Prune with an ended context: %v, want context.Canceled", err)
	}
	if got := kept(t, l, "acme"); got != labels(2*day) {
		t.Errorf("acme keeps [%s] after a cancelled Prune", got)
	}
}
