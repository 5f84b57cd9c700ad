package main

import (
	"context"
	"errors"
	"time"
)

// errPollTimeout is returned by pollUntil when the condition never held.
var errPollTimeout = errors.New("timed out")

// pollUntil checks cond every interval, at once first, until it holds, it
// fails, ctx ends or timeout passes (errPollTimeout).
func pollUntil(ctx context.Context, interval, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errPollTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}
