package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/api/providerv1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// record is one captured slog record, attributes flattened.
type record struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

// recorder is a slog.Handler that keeps every record, for assertions.
type recorder struct {
	level slog.Level
	mu    *sync.Mutex
	recs  *[]record
	pre   []slog.Attr
}

func newRecorder(level slog.Level) *recorder {
	return &recorder{level: level, mu: &sync.Mutex{}, recs: &[]record{}}
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]any{}
	for _, a := range r.pre {
		attrs[a.Key] = a.Value.Any()
	}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.Any()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.recs = append(*r.recs, record{level: rec.Level, msg: rec.Message, attrs: attrs})
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.pre = append(append([]slog.Attr(nil), r.pre...), as...)
	return &c
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) find(msg string) (record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range *r.recs {
		if rec.msg == msg {
			return rec, true
		}
	}
	return record{}, false
}

func (r *recorder) findPrefix(prefix string) (record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range *r.recs {
		if strings.HasPrefix(rec.msg, prefix) {
			return rec, true
		}
	}
	return record{}, false
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func buildTestPlugin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testplugin")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", out, "./internal/testplugin")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test plugin: %v\n%s", err, b)
	}
	return out
}

func TestPluginRoundTripAndOutput(t *testing.T) {
	bin := buildTestPlugin(t)
	rec := newRecorder(slog.LevelDebug)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	c, err := Start(ctx, bin, slog.New(rec))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer c.Close()

	info, err := c.Info(ctx, &providerv1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.GetName() != "testplugin" {
		t.Errorf("Info name = %q, want testplugin", info.GetName())
	}
	if c.Exited() {
		t.Error("Exited() = true while the plugin is serving")
	}

	tests := []struct {
		msg    string
		level  slog.Level
		attrs  map[string]any
		prefix bool
	}{
		{msg: "info called", level: slog.LevelInfo, attrs: map[string]any{"caller": "test", "provider": "testplugin"}},
		{msg: "debug detail", level: slog.LevelDebug},
		{msg: "raw startup line", level: slog.LevelWarn, attrs: map[string]any{"stream": "stderr"}},
		{msg: "relayed stdout line", level: slog.LevelWarn, attrs: map[string]any{"stream": "stdout", "provider": "testplugin"}},
		{msg: "relayed stderr line", level: slog.LevelWarn, attrs: map[string]any{"stream": "stderr", "provider": "testplugin"}},
	}
	for _, tt := range tests {
		var got record
		waitFor(t, 10*time.Second, "log record "+tt.msg, func() bool {
			var ok bool
			got, ok = rec.find(tt.msg)
			return ok
		})
		if got.level != tt.level {
			t.Errorf("%q logged at %v, want %v", tt.msg, got.level, tt.level)
		}
		for k, v := range tt.attrs {
			if got.attrs[k] != v {
				t.Errorf("%q attr %s = %v, want %v (all: %v)", tt.msg, k, got.attrs[k], v, got.attrs)
			}
		}
	}
	if r, ok := rec.find("info called"); ok {
		if _, has := r.attrs["timestamp"]; has {
			t.Errorf("go-plugin's timestamp argument leaked into attrs: %v", r.attrs)
		}
	}

	c.Close()
	if !c.Exited() {
		t.Error("Exited() = false after Close")
	}
	c.Close() // idempotent
}

func TestPluginCrashIsReportedAndLogged(t *testing.T) {
	bin := buildTestPlugin(t)
	rec := newRecorder(slog.LevelInfo)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, bin, slog.New(rec))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer c.Close()

	_, err = c.ValidateRuntime(ctx, &providerv1.ValidateRuntimeRequest{
		Runtime: &providerv1.Runtime{Config: map[string]string{"crash": "yes"}},
	})
	if err == nil {
		t.Fatal("ValidateRuntime on a crashing plugin returned no error")
	}
	waitFor(t, 10*time.Second, "Exited() after crash", c.Exited)
	var got record
	waitFor(t, 10*time.Second, "panic line in the log", func() bool {
		var ok bool
		got, ok = rec.findPrefix("panic: testplugin asked to crash")
		return ok
	})
	if got.level < slog.LevelWarn {
		t.Errorf("panic line logged at %v, want WARN or above", got.level)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	notPlugin := filepath.Join(dir, "not-a-plugin")
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\necho hello\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		path string
		want string
	}{
		{name: "empty path", ctx: t.Context(), path: "", want: "path is required"},
		{name: "missing binary", ctx: t.Context(), path: filepath.Join(dir, "nope"), want: "nope"},
		{name: "not a plugin", ctx: t.Context(), path: notPlugin, want: "not-a-plugin"},
		{name: "canceled context", ctx: canceled, path: notPlugin, want: "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tt.ctx, 20*time.Second)
			defer cancel()
			c, err := Start(ctx, tt.path, nil)
			if err == nil {
				c.Close()
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestPluginRunByHandRefuses(t *testing.T) {
	bin := buildTestPlugin(t)
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("plugin run without the handshake cookie exited 0")
	}
	if !bytes.Contains(out, []byte("This binary is a plugin")) {
		t.Errorf("output does not explain it is a plugin:\n%s", out)
	}
}

func TestNewPluginLoggerWritesHCLogJSON(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{levelTrace, "trace"},
		{slog.LevelDebug, "debug"},
		{slog.LevelInfo, "info"},
		{slog.LevelWarn, "warn"},
		{slog.LevelError, "error"},
		{slog.LevelError + 4, "error"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := NewPluginLogger(&buf, levelTrace)
		l.Log(t.Context(), tt.level, "hello", "k", 1, slog.Group("g", "time", "x"))
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, buf.String())
		}
		if m["@level"] != tt.want || m["@message"] != "hello" || m["k"] != 1.0 {
			t.Errorf("level %v: got %v", tt.level, m)
		}
		ts, _ := m["@timestamp"].(string)
		if _, err := time.Parse(hclogTimeFormat, ts); err != nil {
			t.Errorf("@timestamp %q not in go-plugin's layout: %v", ts, err)
		}
		if g, _ := m["g"].(map[string]any); g["time"] != "x" {
			t.Errorf("grouped attr rewritten: %v", m["g"])
		}
	}
}

func TestHCLogAdapter(t *testing.T) {
	rec := newRecorder(slog.LevelInfo)
	l := newHCLogger(slog.New(rec), "myplugin")

	if got := l.GetLevel(); got != hclog.Info {
		t.Errorf("GetLevel = %v, want info", got)
	}
	if l.IsDebug() || !l.IsInfo() {
		t.Errorf("IsDebug=%v IsInfo=%v for an INFO handler", l.IsDebug(), l.IsInfo())
	}

	l.Debug("dropped")
	l.With("a", 1).Named("sub").Warn("structured", "b", 2)
	raw := l.Named("myplugin")
	raw.Debug("bare stderr line")
	raw.Debug("[DEBUG] prefixed line")
	raw.Info("from plugin", "k", "v", "timestamp", "2024-05-06T07:08:09.123Z")

	if _, ok := rec.find("dropped"); ok {
		t.Error("DEBUG record passed an INFO handler")
	}
	r, ok := rec.find("structured")
	if !ok || r.level != slog.LevelWarn || r.attrs["a"] != int64(1) || r.attrs["b"] != int64(2) || r.attrs["logger"] != "sub" {
		t.Errorf("structured record = %+v, %v", r, ok)
	}
	r, ok = rec.find("bare stderr line")
	if !ok || r.level != slog.LevelWarn || r.attrs["stream"] != "stderr" {
		t.Errorf("bare stderr line = %+v, %v; want WARN stream=stderr", r, ok)
	}
	if _, ok := rec.find("[DEBUG] prefixed line"); ok {
		t.Error("a line the plugin marked [DEBUG] was raised above DEBUG")
	}
	r, ok = rec.find("from plugin")
	if !ok || r.attrs["k"] != "v" {
		t.Errorf("forwarded record = %+v, %v", r, ok)
	}
	if _, has := r.attrs["timestamp"]; has {
		t.Errorf("timestamp argument kept as attr: %v", r.attrs)
	}

	off := newHCLogger(slog.New(slog.DiscardHandler), "")
	if got := off.GetLevel(); got != hclog.Off {
		t.Errorf("GetLevel of a discarding logger = %v, want off", got)
	}
}

func TestLineLogger(t *testing.T) {
	rec := newRecorder(slog.LevelDebug)
	w := newLineLogger(slog.New(rec), "stdout")
	for _, s := range []string{"one\ntw", "o\r\n", "\n", "three"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := rec.find("three"); ok {
		t.Error("partial line logged before Flush")
	}
	w.Flush()
	for _, want := range []string{"one", "two", "three"} {
		if _, ok := rec.find(want); !ok {
			t.Errorf("line %q not logged", want)
		}
	}
	rec.mu.Lock()
	n := len(*rec.recs)
	rec.mu.Unlock()
	if n != 3 {
		t.Errorf("%d records, want 3 (empty lines skipped)", n)
	}

	long := bytes.Repeat([]byte("x"), maxLine+10)
	if _, err := w.Write(long); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.findPrefix("xxxx"); !ok {
		t.Error("an over-long line without newline was held back")
	}
}
