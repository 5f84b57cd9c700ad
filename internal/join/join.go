// Package join is the client side of enrollment shared by frontgates and
// drones: make a key and certificate request, then call Join until pilot
// answers or refuses. A refusal (used, expired, unknown or revoked token; a
// malformed request) is final; anything else — the peer not up yet, pilot
// busy, an answer lost on the way — is retried with backoff, because agents
// often boot before the component they join through.
//
// Every attempt carries the same key. Pilot marks a token used when it
// redeems it, but certifies the key that used it again for as long as the
// token is valid, so a join whose answer was lost succeeds on a retry with
// the same key and only with it. The key is therefore saved (PendingKeyFile,
// 0600) before the first attempt and reused by a restart until the
// certificate is saved next to it; then ForgetPendingKey removes it.
//
// Enroll runs that whole first join for a component, and LoadIssued checks
// the credentials a past one saved; the frontgate and the drone differ
// only in the endpoint they call and what they keep besides.
package join

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// ErrRefused is wrapped by Retry's error when pilot refused the join.
var ErrRefused = errors.New("join refused")

// PendingKeyFile is the name, in a credentials dir, of the key a join is
// under way for.
const PendingKeyFile = "pending-key.pem"

// PendingRequest returns the key in dir's PendingKeyFile and a join request
// for it. When there is none it makes a key and saves it there first (0600,
// written to a temporary file and renamed; dir is created 0700), so that
// whatever happens after the request leaves — an answer lost, a crash before
// the certificate is saved — the next start asks again with the same key,
// which pilot certifies again for a token it already used. reused reports
// whether the key was an earlier start's.
func PendingRequest(dir, token string) (keyPEM []byte, req *streamv1.JoinRequest, reused bool, err error) {
	path := filepath.Join(dir, PendingKeyFile)
	key, keyPEM, err := readPendingKey(path)
	switch {
	case err == nil:
		reused = true
	case errors.Is(err, fs.ErrNotExist):
		if key, keyPEM, err = newPendingKey(dir, path); err != nil {
			return nil, nil, false, err
		}
	default:
		return nil, nil, false, err
	}
	req, err = requestFor(token, key)
	if err != nil {
		return nil, nil, false, err
	}
	return keyPEM, req, reused, nil
}

// ForgetPendingKey removes dir's pending key, if any: once the certificate
// is saved the key lives on as the credentials' own, and a start that finds
// a certificate calls it too, in case a crash came between the two.
func ForgetPendingKey(dir string) error {
	if err := os.Remove(filepath.Join(dir, PendingKeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the pending join key: %w", err)
	}
	return nil
}

// Pending is PendingRequest for a component starting up: it says in log
// when it resumes an earlier start's unfinished join.
func Pending(dir, token string, log *slog.Logger) ([]byte, *streamv1.JoinRequest, error) {
	keyPEM, req, reused, err := PendingRequest(dir, token)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	if reused {
		log.Info("joining with the key of an earlier, unfinished join", "dir", dir)
	}
	return keyPEM, req, nil
}

// Finished removes the pending key once the certificate is saved. Failing
// to is no reason to stop: the key is a copy of the one the credentials
// hold, and the next start tries again; it is logged.
func Finished(dir string, log *slog.Logger) {
	if err := ForgetPendingKey(dir); err != nil {
		log.Warn("cannot remove the pending join key", "dir", dir, "err", err)
	}
}

func readPendingKey(path string) (crypto.Signer, []byte, error) {
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the pending join key: %w", err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		// Not replaced silently: if its join went through, pilot
		// certifies no other key for the token.
		return nil, nil, fmt.Errorf("pending join key %s: %w; remove it to join with a new key (accepted only if the join token was not used yet)", path, err)
	}
	return key, keyPEM, nil
}

func newPendingKey(dir, path string) (crypto.Signer, []byte, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("make a join key: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("save the pending join key: %w", err)
	}
	if err := atomicfile.Write(path, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("save the pending join key: %w", err)
	}
	return key, keyPEM, nil
}

func requestFor(token string, key crypto.Signer) (*streamv1.JoinRequest, error) {
	csrPEM, err := pki.NewCSR(key)
	if err != nil {
		return nil, err
	}
	return jointoken.Request(token, csrPEM)
}

// Options tune Retry. Zero values take the defaults below.
type Options struct {
	// BackoffBase and BackoffMax bound the delay between attempts while
	// the peer is unreachable (default 500ms and 30s).
	BackoffBase, BackoffMax time.Duration
	// CallTimeout bounds one call (default 30s): a relayed join waits for
	// pilot's answer.
	CallTimeout time.Duration
	// Where names the peer in errors and logs ("pilot 10.0.0.5:7400").
	Where string
	// RefusedHint says what to do after a refusal.
	RefusedHint string
	Logger      *slog.Logger
}

// Retry calls call until it succeeds, is refused (ErrRefused), or ctx ends.
// call must send the same request (the same key) every time: pilot answers
// a retry of a join whose answer was lost only for the key that used the
// token.
func Retry(ctx context.Context, o Options, call func(ctx context.Context) (*streamv1.Certificate, error)) (*streamv1.Certificate, error) {
	o = o.withDefaults()
	log := o.Logger
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
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("join via %s: %w", o.Where, err)
		}
	}
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	return o
}

// Ensure is a component's start: when dir holds a certificate it returns
// what load reads (and removes a pending key a crash may have left between
// saving the certificate and forgetting the key), else what enroll
// obtains by joining.
func Ensure[T any](ctx context.Context, dir string, log *slog.Logger, load func() (T, error), enroll func(context.Context) (T, error)) (T, error) {
	if tlsutil.Exists(dir) {
		res, err := load()
		if err == nil {
			Finished(dir, log)
		}
		return res, err
	}
	return enroll(ctx)
}
