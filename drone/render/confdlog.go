package render

import (
	"context"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// RouteConfdLogs sends the log of the confd library, which writes through
// logrus's process-wide logger, to l instead of stderr in confd's own
// format. It changes process-wide state: call it once, from main.
func RouteConfdLogs(l *slog.Logger) {
	std := logrus.StandardLogger()
	std.SetOutput(io.Discard)
	std.SetFormatter(nopFormatter{})
	if l.Enabled(context.Background(), slog.LevelDebug) {
		std.SetLevel(logrus.DebugLevel)
	} else {
		std.SetLevel(logrus.InfoLevel)
	}
	hooks := logrus.LevelHooks{}
	hooks.Add(slogHook{l.With("component", "confd")})
	std.ReplaceHooks(hooks)
}

type slogHook struct{ l *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	lvl := slog.LevelInfo
	switch {
	case e.Level <= logrus.ErrorLevel:
		lvl = slog.LevelError
	case e.Level == logrus.WarnLevel:
		lvl = slog.LevelWarn
	case e.Level >= logrus.DebugLevel:
		lvl = slog.LevelDebug
	}
	h.l.Log(context.Background(), lvl, e.Message)
	return nil
}

// nopFormatter skips confd's formatter, which looks up the hostname on
// every line only for the output to be discarded.
type nopFormatter struct{}

func (nopFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }
