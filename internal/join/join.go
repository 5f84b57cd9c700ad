// Package join is the client side of enrollment shared by frontgates and
// drones: make a fresh key and certificate request, then call Join until
// pilot answers or refuses. A refusal (used, expired, unknown or revoked
// token; a malformed request) is final; anything else — the peer not up yet,
// pilot busy — is retried with backoff, because agents often boot before
// the component they join through.
package join

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/pki"
)

// ErrRefused is wrapped by Retry's error when pilot refused the join.
var ErrRefused = errors.New("join refused")

// NewRequest makes a key and a join request for it; the key (PEM) is kept
// by the caller and saved with the certificate the join returns.
func NewRequest(token string) (keyPEM []byte, req *streamv1.JoinRequest, err error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = pki.EncodeKey(key); err != nil {
		return nil, nil, err
	}
	csrPEM, err := pki.NewCSR(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, &streamv1.JoinRequest{Token: token, CsrPem: string(csrPEM)}, nil
}

// Options tune Retry.
type Options struct {
	BackoffBase, BackoffMax time.Duration
	// CallTimeout bounds one call.
	CallTimeout time.Duration
	// Where names the peer in errors and logs ("pilot 10.0.0.5:7400").
	Where string
	// RefusedHint says what to do after a refusal.
	RefusedHint string
	Logger      *slog.Logger
}

// Retry calls call until it succeeds, is refused (ErrRefused), or ctx ends.
func Retry(ctx context.Context, o Options, call func(ctx context.Context) (*streamv1.Certificate, error)) (*streamv1.Certificate, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := backoff.New(o.BackoffBase, o.BackoffMax)
	for {
		cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
		cert, err := call(cctx)
		cancel()
		if err == nil {
			return cert, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("join via %s: %w", o.Where, ctx.Err())
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
			return nil, fmt.Errorf("%w (via %s): %s; %s", ErrRefused, o.Where, status.Convert(err).Message(), o.RefusedHint)
		}
		wait := bo.Next()
		log.Warn("cannot join yet; retrying", "via", o.Where, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("join via %s: %w", o.Where, ctx.Err())
		case <-t.C:
		}
	}
}
