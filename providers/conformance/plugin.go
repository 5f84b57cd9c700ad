package conformance

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/providers/sdk"
)

// StartPlugin starts the plugin binary bin as pilot does (sdk.Start) for
// the rest of the test, with the plugin's warnings and errors in the
// test's log: what a provider author's test hands Run.
func StartPlugin(t testing.TB, bin string) *sdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := sdk.Start(ctx, bin, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("start plugin %s: %v", bin, err)
	}
	t.Cleanup(c.Close)
	return c
}

// testLog writes to the test's log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
