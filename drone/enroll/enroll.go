// Package enroll gives a drone its identity. On the first start it makes a
// key, asks its frontgate's DroneLink.Join (relayed to pilot) to certify it
// in exchange for the single-use join token from the user data, and keeps
// the certificate and pilot's command public key under the data dir; every
// later start loads them from there. The join is the one call a drone makes
// without a certificate, so it trusts the frontgate only through the CA
// certificate in the user data.
//
// The key is saved (join.PendingKeyFile, 0600) before the first attempt,
// and every retry and every start until the certificate is saved asks with
// it: pilot marks the token used when it answers, then certifies only that
// key again, so a join whose answer was lost (the frontgate's stream cut,
// the drone stopped before saving) completes without a new token.
package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// CommandKeyFile is the name, in the credentials dir, of pilot's command
// public key (PEM "PUBLIC KEY", PKIX).
const CommandKeyFile = "command.pub"

// ErrRefused is wrapped by the error returned when pilot refuses the join
// token (used, expired, unknown or revoked) or the request: retrying cannot
// help, the instance must be recreated with a new token.
var ErrRefused = join.ErrRefused

// Config describes a drone's enrollment.
type Config struct {
	// Dir keeps the credentials (key.pem, cert.pem, ca.pem, command.pub,
	// and while a join is unfinished pending-key.pem): <data-dir>/tls.
	Dir string
	// NodeID and ClusterID are the identity the user data names; the
	// certificate must carry exactly this one.
	NodeID    string
	ClusterID string
	// FrontgateID is the frontgate the user data names: the join is made
	// only with a server whose certificate is that frontgate's.
	FrontgateID string
	// FrontgateAddress is host:port of the frontgate's DroneLink; its host
	// must be in the frontgate's certificate.
	FrontgateAddress string
	// JoinToken and CAPEM come from the user data. The token is needed only
	// while Dir holds no certificate.
	JoinToken string
	CAPEM     []byte
	Logger    *slog.Logger
	// BackoffBase and BackoffMax bound the delay between join attempts
	// while the frontgate is unreachable (default 500ms and 30s).
	BackoffBase, BackoffMax time.Duration
	// CallTimeout bounds one Join call (default 30s): the frontgate relays
	// it to pilot and waits for the answer.
	CallTimeout time.Duration
}

// Result is the drone's identity.
type Result struct {
	Creds *tlsutil.Creds
	// CommandPublicKey verifies pilot's signature on every command.
	CommandPublicKey ed25519.PublicKey
	// Joined is true when this start enrolled (false: loaded from Dir).
	Joined bool
}

// Ensure returns the drone's credentials: loaded from cfg.Dir when a
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
	case cfg.NodeID == "":
		return errors.New("enroll: NodeID is required")
	case cfg.ClusterID == "":
		return errors.New("enroll: ClusterID is required")
	case cfg.FrontgateID == "":
		return errors.New("enroll: FrontgateID is required (user data frontgate_id)")
	case cfg.FrontgateAddress == "":
		return errors.New("enroll: FrontgateAddress is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Backoff and call timeout defaults are join.Options'.
	return nil
}

func (cfg *Config) identity() pki.Identity {
	return pki.Identity{Kind: pki.KindDrone, ID: cfg.NodeID, Cluster: cfg.ClusterID}
}

func load(cfg Config) (*Result, error) {
	creds, err := join.LoadIssued(cfg.Dir, cfg.identity(), "recreate the instance")
	if err != nil {
		return nil, err
	}
	key, err := ReadCommandKey(filepath.Join(cfg.Dir, CommandKeyFile))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	cfg.Logger.Info("loaded the drone's certificate", "dir", cfg.Dir, "identity", creds.Identity().String(), "not_after", creds.Leaf().NotAfter)
	return &Result{Creds: creds, CommandPublicKey: key}, nil
}

func enroll(ctx context.Context, cfg Config) (*Result, error) {
	var cmdKey ed25519.PublicKey
	creds, err := join.Enroll(ctx, join.Enrollment{
		Dir: cfg.Dir, Token: cfg.JoinToken, CAPEM: cfg.CAPEM,
		Peer: "frontgate", Address: cfg.FrontgateAddress,
		Server: pki.Identity{Kind: pki.KindFrontgate, ID: cfg.FrontgateID},
		Want:   cfg.identity(),
		Options: join.Options{
			BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, CallTimeout: cfg.CallTimeout,
			RefusedHint: "the token works once and for an hour only: recreate the instance",
			Logger:      cfg.Logger,
		},
		Call: func(ctx context.Context, tc *tls.Config, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
			conn, err := grpc.NewClient(cfg.FrontgateAddress, append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))...)
			if err != nil {
				return nil, fmt.Errorf("dial frontgate %s: %w", cfg.FrontgateAddress, err)
			}
			defer conn.Close()
			return streamv1.NewDroneLinkClient(conn).Join(ctx, req)
		},
		BeforeSave: func(cert *streamv1.Certificate) error {
			cmdKey = ed25519.PublicKey(cert.GetCommandPublicKey())
			if len(cmdKey) != ed25519.PublicKeySize {
				return fmt.Errorf("the join returned a command public key of %d bytes, want %d (Ed25519)", len(cmdKey), ed25519.PublicKeySize)
			}
			if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", cfg.Dir, err)
			}
			return writeCommandKey(filepath.Join(cfg.Dir, CommandKeyFile), cmdKey)
		},
	})
	if err != nil {
		return nil, err
	}
	return &Result{Creds: creds, CommandPublicKey: cmdKey, Joined: true}, nil
}

func writeCommandKey(path string, key ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return fmt.Errorf("encode command public key: %w", err)
	}
	return atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// ReadCommandKey reads pilot's command public key as Ensure saved it.
func ReadCommandKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read command public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("command public key %s: not a PEM PUBLIC KEY", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("command public key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("command public key %s: %T, want Ed25519", path, k)
	}
	return ek, nil
}
