package etcdserver

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog is a zap core that hands etcd's warnings and errors to a slog
// logger. etcd reports why it stops (a full disk, a corrupt WAL) through
// its zap logger and then exits: discarded, the process ended with status
// 1 and no word.
type zapToSlog struct {
	log    *slog.Logger
	fields []zapcore.Field
}

// newZapLogger is a zap logger writing etcd's warnings and worse to log.
func newZapLogger(log *slog.Logger) *zap.Logger {
	if log == nil {
		return zap.NewNop()
	}
	return zap.New(&zapToSlog{log: log})
}

func (z *zapToSlog) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (z *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToSlog{log: z.log, fields: append(append([]zapcore.Field{}, z.fields...), fields...)}
}

func (z *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field{}, z.fields...), fields...) {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	z.log.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}

func (z *zapToSlog) Sync() error { return nil }
