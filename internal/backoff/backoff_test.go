package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextStaysWithinBoundsAndGrows(t *testing.T) {
	b := New(100*time.Millisecond, 2*time.Second)
	var maxSeen time.Duration
	for i := 0; i < 50; i++ {
		d := b.Next()
		if d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("attempt %d: delay %v outside [50ms, 2s]", i, d)
		}
		maxSeen = max(maxSeen, d)
	}
	if maxSeen <= 200*time.Millisecond {
		t.Fatalf("delays never grew past 200ms in 50 attempts (max %v)", maxSeen)
	}
}

func TestCeilingDoublesPerAttempt(t *testing.T) {
	b := New(100*time.Millisecond, time.Hour)
	// Always pick the top of the range to observe the ceiling.
	b.rand = func(n int64) int64 { return n - 1 }
	want := []time.Duration{100, 200, 400, 800}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("attempt %d: got %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Fatalf("after Reset: got %v, want 100ms", got)
	}
}

func TestJitterSpreadsPeers(t *testing.T) {
	// Many peers losing the same pilot at once must not all pick one delay.
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		b := New(time.Second, time.Minute)
		b.Next()
		seen[b.Next()] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct delays among 100 peers", len(seen))
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("a sleep that ran out: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("a sleep whose context ended: %v", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("a zero sleep of an ended context: %v", err)
	}
}
