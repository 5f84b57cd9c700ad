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
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Defaults of Config.
const (
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultResetAfter  = 10 * time.Second
)

// ErrNotConnected is returned by Call when no stream to pilot came up
// before its context ended, or the stream ended before the answer.
var ErrNotConnected = errors.New("no stream to pilot")

// ErrStopped is returned by Call once Run has returned.
var ErrStopped = errors.New("pilot link stopped")

// Config configures a Link.
type Config struct {
	// PilotAddress is host:port of pilot's gRPC endpoint.
	PilotAddress string
	// Credentials secure every connection to pilot: in production
	// credentials.NewTLS(creds.ClientConfig(<pilot host>)), which presents
	// the frontgate's current certificate at each new handshake.
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

// Link is the frontgate's side of FrontgateLink.
type Link struct {
	cfg Config
	log *slog.Logger
	up  atomic.Bool

	mu   sync.Mutex
	peer *streamrpc.Peer
	// changed is closed and replaced whenever peer changes, waking Calls
	// that wait for a stream.
	changed chan struct{}
	// stopped is closed when Run returns.
	stopped chan struct{}
}

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
	if cfg.Peer.Logger == nil {
		cfg.Peer.Logger = cfg.Logger
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.ResetAfter <= 0 {
		cfg.ResetAfter = DefaultResetAfter
	}
	return &Link{cfg: cfg, log: cfg.Logger.With("pilot", cfg.PilotAddress), changed: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Connected reports whether a stream to pilot is up.
func (l *Link) Connected() bool { return l.up.Load() }

// Call sends req to pilot on the current stream, waiting for one until ctx
// ends, and returns pilot's answer (a failure pilot reports is a
// *streamrpc.Error). It never resends: what the frontgate asks pilot for
// (a join redeems a single-use token) is not always safe to repeat, so a
// stream that ends before the answer fails the call with ErrNotConnected
// and the caller decides.
func (l *Link) Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	for {
		l.mu.Lock()
		p, changed := l.peer, l.changed
		l.mu.Unlock()
		if p != nil {
			resp, err := p.Call(ctx, req)
			if errors.Is(err, streamrpc.ErrClosed) {
				return nil, fmt.Errorf("the stream to pilot %s ended before the answer: %w", l.cfg.PilotAddress, ErrNotConnected)
			}
			return resp, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("pilot %s: %w (%w)", l.cfg.PilotAddress, ErrNotConnected, ctx.Err())
		case <-l.stopped:
			return nil, ErrStopped
		}
	}
}

func (l *Link) setPeer(p *streamrpc.Peer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peer = p
	close(l.changed)
	l.changed = make(chan struct{})
}

// Run keeps a stream to pilot until ctx ends, then returns ctx's error
// once the stream and everything serving it have stopped. A Link runs once.
func (l *Link) Run(ctx context.Context) error {
	defer close(l.stopped)
	bo := backoff.New(l.cfg.BackoffBase, l.cfg.BackoffMax)
	for {
		upFor, err := l.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if upFor >= l.cfg.ResetAfter {
			bo.Reset()
		}
		delay := bo.Next()
		if refused(err) {
			// Pilot knows this frontgate and will not have it (revoked, or a
			// certificate it no longer accepts). Retrying soon cannot change
			// that; retry slowly so an operator's fix is still picked up.
			delay = l.cfg.BackoffMax
			l.log.Error("pilot refuses this frontgate; if it was revoked, delete the clusters behind it with --force and stop this instance, otherwise check its certificate",
				"err", err, "retry_in", delay.Round(time.Millisecond))
		} else if upFor > 0 {
			l.log.Warn("pilot stream ended; reconnecting", "err", err, "up_for", upFor.Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond))
		} else {
			l.log.Warn("cannot reach pilot", "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// refused reports whether pilot turned this frontgate away for who it is,
// rather than the stream failing on its way.
func refused(err error) bool {
	c := status.Code(err)
	return c == codes.PermissionDenied || c == codes.Unauthenticated
}

// session runs one stream to its end. upFor is how long it was up after the
// Hello (0 when it never got that far).
func (l *Link) session(ctx context.Context) (upFor time.Duration, err error) {
	cc, err := l.dial()
	if err != nil {
		return 0, err
	}
	defer cc.Close()

	sctx, cancel := context.WithCancel(ctx)
	// Ending the stream's context is what stops the Peer's pending Recv.
	defer cancel()
	stream, err := streamv1.NewFrontgateLinkClient(cc).Connect(sctx)
	if err != nil {
		return 0, fmt.Errorf("open stream to pilot %s: %w", l.cfg.PilotAddress, err)
	}
	hello := &streamv1.Hello{
		Component:    "frontgate",
		Id:           l.cfg.FrontgateID,
		Version:      l.cfg.Version,
		Capabilities: l.cfg.Capabilities,
	}
	if err := streamrpc.SendHello(stream, hello); err != nil {
		return 0, fmt.Errorf("hello to pilot %s: %w", l.cfg.PilotAddress, err)
	}
	// The stream counts as up from here. A pilot that refuses the Hello ends
	// the stream at once, and since only a stream that stayed up ResetAfter
	// resets the backoff, such refusals still back off further each time.
	peer := streamrpc.NewPeer(stream, l.cfg.Handler, l.cfg.Peer)
	start := time.Now()
	l.setPeer(peer)
	l.setUp(true)
	l.log.Info("connected to pilot", "frontgate_id", l.cfg.FrontgateID)
	err = peer.Run(sctx)
	l.setPeer(nil)
	l.setUp(false)
	return time.Since(start), err
}

func (l *Link) setUp(up bool) {
	l.up.Store(up)
	if l.cfg.OnState != nil {
		l.cfg.OnState(up)
	}
}

// dial is the one place the connection to pilot is made.
//
// Each attempt gets a fresh connection: a long-lived ClientConn would apply
// gRPC's own reconnect backoff (up to two minutes) underneath ours. It is
// also what makes a renewed certificate reach pilot: a new connection means
// a new handshake.
func (l *Link) dial() (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(l.cfg.PilotAddress, append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(l.cfg.Credentials))...)
	if err != nil {
		return nil, fmt.Errorf("dial pilot %s: %w", l.cfg.PilotAddress, err)
	}
	return cc, nil
}
