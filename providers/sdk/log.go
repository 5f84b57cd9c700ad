package sdk

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Plugin logs cross the process boundary as hclog JSON lines on the plugin's
// stderr: go-plugin on pilot's side parses them and re-logs each entry at its
// level through the hclog.Logger given to the client, which here forwards to
// slog. Lines that are not hclog JSON (a panic, a stray fmt.Fprintln to fd 2)
// go through the same logger with no arguments.

// levelTrace is hclog's TRACE expressed as a slog level.
const levelTrace = slog.LevelDebug - 4

// hclogTimeFormat is the only @timestamp layout go-plugin accepts; anything
// else makes it treat the whole line as unstructured text.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// NewPluginLogger returns a slog logger for use inside a plugin binary. It
// writes hclog-compatible JSON to w (pass os.Stderr, before calling Serve:
// Serve swaps os.Stderr for a pipe), so pilot logs each record at its level
// with its attributes. A nil level means slog.LevelDebug: pilot's logger
// decides what is kept.
func NewPluginLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				if t, ok := a.Value.Any().(time.Time); ok {
					return slog.String("@timestamp", t.Format(hclogTimeFormat))
				}
			case slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String("@level", hclogLevelName(l))
				}
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	}))
}

func hclogLevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

func slogLevel(l hclog.Level) (slog.Level, bool) {
	switch l {
	case hclog.Trace:
		return levelTrace, true
	case hclog.Debug:
		return slog.LevelDebug, true
	case hclog.Warn:
		return slog.LevelWarn, true
	case hclog.Error:
		return slog.LevelError, true
	case hclog.Off:
		return 0, false
	default: // Info and NoLevel
		return slog.LevelInfo, true
	}
}

// HCLog adapts a slog logger to hclog.Logger, for handing to go-plugin (for
// example as Serve's logger, together with NewPluginLogger).
func HCLog(l *slog.Logger) hclog.Logger {
	return newHCLogger(l, "")
}

// newHCLogger returns the adapter; rawName is the sub-logger name go-plugin
// uses for the plugin's stderr (the binary's base name), whose argument-less
// messages are raw stderr lines.
func newHCLogger(l *slog.Logger, rawName string) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hcLogger{l: l, rawName: rawName}
}

type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
	rawName string
}

var _ hclog.Logger = (*hcLogger)(nil)

// raw reports whether this logger carries the plugin's stderr stream.
func (a *hcLogger) raw() bool { return a.rawName != "" && a.name == a.rawName }

func (a *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	lvl, ok := slogLevel(level)
	if !ok {
		return
	}
	t := time.Now()
	if a.raw() {
		if len(args) == 0 {
			// go-plugin logs unstructured stderr lines at DEBUG unless they
			// carry a [LEVEL] prefix or look like a panic; at a normal log
			// level they would vanish, and they are exactly what explains a
			// plugin crash.
			if lvl < slog.LevelWarn && !hasLevelPrefix(msg) {
				lvl = slog.LevelWarn
			}
			args = []any{"stream", "stderr"}
		} else if n := len(args); n >= 2 && args[n-2] == "timestamp" {
			// go-plugin appends the entry's own time; use it as the record's.
			if s, ok := args[n-1].(string); ok {
				if pt, err := time.Parse(hclog.TimeFormat, s); err == nil && !pt.IsZero() && pt.Year() > 1 {
					t = pt
				}
			}
			args = args[:n-2]
		}
	}
	ctx := context.Background()
	if !a.l.Enabled(ctx, lvl) {
		return
	}
	r := slog.NewRecord(t, lvl, msg, 0)
	r.Add(args...)
	// The raw stream's name is the binary's, already on every record.
	if a.name != "" && !a.raw() {
		r.AddAttrs(slog.String("logger", a.name))
	}
	_ = a.l.Handler().Handle(ctx, r)
}

func hasLevelPrefix(msg string) bool {
	for _, p := range []string{"[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[ERROR]"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (a *hcLogger) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hcLogger) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hcLogger) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hcLogger) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hcLogger) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hcLogger) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }

func (a *hcLogger) IsTrace() bool { return a.enabled(levelTrace) }
func (a *hcLogger) IsDebug() bool { return a.enabled(slog.LevelDebug) }
func (a *hcLogger) IsInfo() bool  { return a.enabled(slog.LevelInfo) }
func (a *hcLogger) IsWarn() bool  { return a.enabled(slog.LevelWarn) }
func (a *hcLogger) IsError() bool { return a.enabled(slog.LevelError) }

func (a *hcLogger) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

func (a *hcLogger) With(args ...any) hclog.Logger {
	c := *a
	c.l = a.l.With(args...)
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hcLogger) Name() string { return a.name }

func (a *hcLogger) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel is a no-op: the level belongs to the slog handler's owner.
func (a *hcLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the slog handler accepts; go-plugin uses
// it to skip parsing plugin log lines that would be dropped anyway.
func (a *hcLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		sl, _ := slogLevel(l)
		if a.enabled(sl) {
			return l
		}
	}
	return hclog.Off
}

func (a *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	level := slog.LevelInfo
	if opts != nil {
		if l, ok := slogLevel(opts.ForceLevel); ok && opts.ForceLevel != hclog.NoLevel {
			level = l
		}
	}
	h := a.l.Handler()
	if a.name != "" {
		h = h.WithAttrs([]slog.Attr{slog.String("logger", a.name)})
	}
	return slog.NewLogLogger(h, level)
}

func (a *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(opts).Writer()
}

// maxLine bounds a buffered partial line, so a plugin writing without
// newlines cannot grow pilot's memory without limit.
const maxLine = 64 << 10

// lineLogger turns a byte stream (the plugin's relayed stdout or stderr) into
// one WARN record per line: output outside the structured log is unusual and
// should be seen.
type lineLogger struct {
	mu     sync.Mutex
	l      *slog.Logger
	stream string
	buf    []byte
}

func newLineLogger(l *slog.Logger, stream string) *lineLogger {
	return &lineLogger{l: l, stream: stream}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) >= maxLine {
		w.emit(w.buf)
		w.buf = nil
	}
	// Drop the consumed prefix's backing array once empty.
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// Flush logs a trailing partial line.
func (w *lineLogger) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineLogger) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	if s == "" {
		return
	}
	w.l.Warn(s, "stream", w.stream)
}
