package etcdserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// etcd's warnings and errors reach the component's log, with their
// fields; its chatter does not.
func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	z := newZapLogger(slog.New(slog.NewTextHandler(&buf, nil))).With(zap.String("member", "m1"))
	z.Info("chatter")
	z.Error("failed to write WAL", zap.Error(errNoSpace{}))
	got := buf.String()
	for _, want := range []string{"level=ERROR", "failed to write WAL", "no space left on device", "member=m1"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chatter") {
		t.Errorf("info-level chatter was logged:\n%s", got)
	}
	if newZapLogger(nil) == nil {
		t.Fatal("a nil logger gives no zap logger")
	}
}

type errNoSpace struct{}

func (errNoSpace) Error() string { return "write wal: no space left on device" }
