// Package backoff computes reconnect delays: exponential growth with full
// jitter, so that when pilot (or a frontgate) restarts, the hundreds of peers
// that lost it spread their reconnects out instead of arriving as one storm.
// Sleep is the one way Hangar waits out such a delay: it ends with its
// context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits d, or until ctx ends, whichever comes first, and returns
// ctx's error in the second case. A d of zero or less returns at once
// (ctx's error, if it has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff yields successive delays. The zero value is not usable; use New.
// It is not safe for concurrent use: each reconnect loop owns its own.
type Backoff struct {
	base, max time.Duration
	attempt   int
	rand      func(int64) int64
}

// New returns a Backoff starting near base and never exceeding max.
func New(base, max time.Duration) *Backoff {
	return &Backoff{base: base, max: max, rand: rand.Int64N}
}

// Next returns the delay before the next attempt: uniformly random in
// [base/2, min(max, base*2^attempt)], the "full jitter" scheme with a floor
// so a healthy peer never spins.
func (b *Backoff) Next() time.Duration {
	ceil := b.base << min(b.attempt, 30)
	if ceil > b.max || ceil <= 0 {
		ceil = b.max
	}
	b.attempt++
	floor := b.base / 2
	if ceil <= floor {
		return ceil
	}
	return floor + time.Duration(b.rand(int64(ceil-floor)+1))
}

// Reset starts over after a connection that stayed up.
func (b *Backoff) Reset() { b.attempt = 0 }
