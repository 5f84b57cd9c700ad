// Package pilotlink keeps the frontgate's one stream to pilot: it dials
// pilot's FrontgateLink over mutual TLS, introduces the frontgate with a
// Hello, serves pilot's requests on the stream, carries the frontgate's own
// requests to pilot (joins relayed for drones, certificate renewals) and,
// whenever the stream ends, dials again after a jittered, growing delay, so
// that a pilot restart is not met by every frontgate at the same instant.
package pilotlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Defaults of Config.
const (
	DefaultBackoffBase = streamrpc.DefaultBackoffBase
	DefaultBackoffMax  = streamrpc.DefaultBackoffMax
	DefaultResetAfter  = streamrpc.DefaultStableAfter
)

// ErrNotConnected is returned by Call when no stream to pilot came up
// before its context ended, or the stream ended before the answer.
var ErrNotConnected = streamrpc.ErrNotConnected

// ErrStopped is returned by Call once Run has returned.
var ErrStopped = streamrpc.ErrStopped

// Config configures a Link.
type Config struct {
	// PilotAddress is host:port of pilot's gRPC endpoint.
	PilotAddress string
	// Credentials secure every connection to pilot: in production
	// credentials.NewTLS(creds.ClientConfig(<pilot host>, tlsutil.PilotIdentity)),
	// which presents the frontgate's current certificate at each new
	// handshake.
	Credentials credentials.TransportCredentials
	// FrontgateID names this frontgate in its Hello.
	FrontgateID  string
	Version      string
	Capabilities []string
	// Handler serves pilot's requests.
	Handler streamrpc.Handler
	// Peer tunes the stream (heartbeats, dead-peer detection).
	Peer   streamrpc.Options
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound the delay between attempts; the delay
	// starts over once a stream stayed up for ResetAfter.
	BackoffBase, BackoffMax, ResetAfter time.Duration
	// OnState, when set, is called with true when a stream to pilot is up
	// and false when it ends.
	OnState func(up bool)
}

// Link is the frontgate's side of FrontgateLink: a streamrpc.Client that
// dials pilot.
type Link struct {
	*streamrpc.Client
}

// refusedMsg is what the frontgate logs when pilot will not have it.
const refusedMsg = "pilot refuses this frontgate; if it was revoked, delete the clusters behind it with --force and stop this instance, otherwise check its certificate"

// New checks cfg and returns a Link; Run starts it.
func New(cfg Config) (*Link, error) {
	if cfg.PilotAddress == "" {
		return nil, errors.New("pilot link: pilot address is required")
	}
	if cfg.FrontgateID == "" {
		return nil, errors.New("pilot link: frontgate id is required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("pilot link: handler is required")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("pilot link: transport credentials are required (mutual TLS with the frontgate's certificate)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := streamrpc.NewClient(streamrpc.ClientConfig{
		Name:   "pilot",
		Target: cfg.PilotAddress,
		Open: func(ctx context.Context) (streamrpc.Stream, func(), error) {
			cc, err := grpc.NewClient(cfg.PilotAddress, append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(cfg.Credentials))...)
			if err != nil {
				return nil, nil, fmt.Errorf("dial pilot %s: %w", cfg.PilotAddress, err)
			}
			st, err := streamv1.NewFrontgateLinkClient(cc).Connect(ctx)
			if err != nil {
				cc.Close()
				return nil, nil, fmt.Errorf("open stream to pilot %s: %w", cfg.PilotAddress, err)
			}
			return st, func() { cc.Close() }, nil
		},
		Hello:       &streamv1.Hello{Component: "frontgate", Id: cfg.FrontgateID, Version: cfg.Version, Capabilities: cfg.Capabilities},
		Handler:     cfg.Handler,
		Peer:        cfg.Peer,
		Logger:      cfg.Logger.With("frontgate_id", cfg.FrontgateID),
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, StableAfter: cfg.ResetAfter,
		Refused: refusedMsg,
		OnState: cfg.OnState,
	})
	if err != nil {
		return nil, fmt.Errorf("pilot link: %w", err)
	}
	return &Link{c}, nil
}
