// Package enroll gives a frontgate its identity. On the first start it
// makes a key and asks pilot's EnrollmentService.Join to certify it in
// exchange for the single-use join token from the user data; the
// certificate, key and CA are kept in <data-dir>/tls, and every later start
// loads them from there. The join is the one call a frontgate makes without
// a certificate, so it trusts pilot only through the CA certificate in the
// user data.
//
// The key is saved (join.PendingKeyFile, 0600) before the first attempt,
// and every retry and every start until the certificate is saved asks with
// it: pilot marks the token used when it answers, then certifies only that
// key again, so a join whose answer was lost (the call cut, the process
// stopped before saving) completes without a new token.
package enroll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// ErrRefused is wrapped by the error returned when pilot refuses the join
// (token used, expired, unknown, or the request malformed): retrying cannot
// help, pilot must recreate the instance with a new token.
var ErrRefused = join.ErrRefused

// Config describes a frontgate's enrollment.
type Config struct {
	// Dir keeps the credentials (key.pem, cert.pem, ca.pem, and while a
	// join is unfinished pending-key.pem): <data-dir>/tls.
	Dir string
	// FrontgateID is the identity the user data names; the certificate
	// must carry exactly this one.
	FrontgateID string
	// PilotAddress is host:port of pilot's gRPC endpoint; its host must be
	// in pilot's certificate.
	PilotAddress string
	// JoinToken and CAPEM come from the user data. The token is needed
	// only while Dir holds no certificate.
	JoinToken string
	CAPEM     []byte
	Logger    *slog.Logger
	// BackoffBase and BackoffMax bound the delay between join attempts
	// while pilot is unreachable (default 500ms and 30s).
	BackoffBase, BackoffMax time.Duration
	// CallTimeout bounds one Join call (default 30s).
	CallTimeout time.Duration
}

// Result is the frontgate's identity.
type Result struct {
	Creds *tlsutil.Creds
	// Joined is true when this start enrolled (false: loaded from Dir).
	Joined bool
}

// Ensure returns the frontgate's credentials: loaded from cfg.Dir when a
// certificate is there, else obtained by joining, which is retried with
// backoff until it succeeds, pilot refuses it (ErrRefused), or ctx ends.
func Ensure(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return join.Ensure(ctx, cfg.Dir, cfg.Logger,
		func() (*Result, error) { return load(cfg) },
		func(ctx context.Context) (*Result, error) { return enroll(ctx, cfg) })
}

func (cfg *Config) check() error {
	switch {
	case cfg.Dir == "":
		return errors.New("enroll: Dir is required")
	case cfg.FrontgateID == "":
		return errors.New("enroll: FrontgateID is required")
	case cfg.PilotAddress == "":
		return errors.New("enroll: PilotAddress is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Backoff and call timeout defaults are join.Options'.
	return nil
}

func (cfg *Config) identity() pki.Identity {
	return pki.Identity{Kind: pki.KindFrontgate, ID: cfg.FrontgateID}
}

// PilotHost is the host part of a pilot address: the name pilot's
// certificate must carry.
func PilotHost(address string) (string, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return "", fmt.Errorf("pilot address %q: want host:port", address)
	}
	return host, nil
}

func load(cfg Config) (*Result, error) {
	creds, err := join.LoadIssued(cfg.Dir, cfg.identity(), "pilot must recreate this frontgate")
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("loaded the frontgate's certificate", "dir", cfg.Dir, "identity", creds.Identity().String(), "not_after", creds.Leaf().NotAfter)
	return &Result{Creds: creds}, nil
}

func enroll(ctx context.Context, cfg Config) (*Result, error) {
	creds, err := join.Enroll(ctx, join.Enrollment{
		Dir: cfg.Dir, Token: cfg.JoinToken, CAPEM: cfg.CAPEM,
		Peer: "pilot", Address: cfg.PilotAddress,
		Server: tlsutil.PilotIdentity,
		Want:   cfg.identity(),
		Usages: serverUsage,
		Options: join.Options{
			BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, CallTimeout: cfg.CallTimeout,
			RefusedHint: "a join token works once and for an hour only: pilot must recreate this frontgate",
			Logger:      cfg.Logger,
		},
		Call: func(ctx context.Context, tc *tls.Config, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
			cc, err := grpc.NewClient(cfg.PilotAddress, append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))...)
			if err != nil {
				return nil, fmt.Errorf("dial pilot %s: %w", cfg.PilotAddress, err)
			}
			defer cc.Close()
			return pilotv1.NewEnrollmentServiceClient(cc).Join(ctx, req)
		},
	})
	if err != nil {
		return nil, err
	}
	return &Result{Creds: creds, Joined: true}, nil
}

// serverUsage: a frontgate also serves, its drones and its etcd.
var serverUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
