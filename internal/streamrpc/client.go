package streamrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/backoff"
)

// ErrStopped is returned by Client.Call once Run has returned.
var ErrStopped = errors.New("link stopped")

// Defaults of ClientConfig.
const (
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultStableAfter = 10 * time.Second
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Name names the server in logs ("pilot", "frontgate"): "connected to
	// pilot", "cannot reach pilot".
	Name string
	// Target is its address, for logs and errors.
	Target string
	// Open makes one attempt: a fresh connection (a long-lived one would
	// apply gRPC's own reconnect backoff, up to two minutes, beneath ours,
	// and a new handshake is what presents a renewed certificate) and the
	// stream on it, whose context is ctx. done releases the connection
	// once the stream is over.
	Open func(ctx context.Context) (s Stream, done func(), err error)
	// Hello is sent first on every stream.
	Hello *streamv1.Hello
	// Handler serves the server's requests.
	Handler Handler
	// Peer tunes each stream (heartbeats, dead-peer detection).
	Peer   Options
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound the delay between attempts, with
	// jitter; it starts over once a stream stayed up for StableAfter.
	BackoffBase, BackoffMax, StableAfter time.Duration
	// Refused, when set, is logged at error level when the server turns
	// this peer away for who it is (PermissionDenied, Unauthenticated),
	// saying what to do; such a refusal waits BackoffMax before the next
	// attempt, since retrying soon cannot change it, but slowly enough
	// that an operator's fix is still picked up.
	Refused string
	// OnState, when set, is called with true when a stream is up and false
	// when it ends.
	OnState func(up bool)
}

// Client keeps one stream to a server, the dialing side of both links
// (frontgate → pilot, drone → frontgate): dial, hello, serve the server's
// requests, and on any end dial again after a jittered, growing delay, so
// that a restarted server is not met by every peer at once. Requests this
// side sends go over whichever stream is up.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
	up  atomic.Bool

	mu   sync.Mutex
	peer *Peer
	// changed is closed and replaced whenever peer changes, waking Calls
	// that wait for a stream.
	changed chan struct{}
	// stopped is closed when Run returns.
	stopped chan struct{}
}

// NewClient checks cfg and returns a Client; Run starts it.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.Open == nil:
		return nil, errors.New("stream client: Open is required")
	case cfg.Hello == nil:
		return nil, errors.New("stream client: Hello is required")
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
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = DefaultStableAfter
	}
	return &Client{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Connected reports whether a stream is up.
func (c *Client) Connected() bool { return c.up.Load() }

// Call sends req on the current stream, waiting for one until ctx ends,
// and returns the server's answer (a failure it reports is an *Error). It
// never re-sends: what this side asks for (a join redeems a single-use
// token) is not always safe to repeat, so a stream that ends before the
// answer fails the call with ErrNotConnected and the caller decides.
func (c *Client) Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	for {
		c.mu.Lock()
		p, changed := c.peer, c.changed
		c.mu.Unlock()
		if p != nil {
			resp, err := p.Call(ctx, req)
			if errors.Is(err, ErrClosed) {
				return nil, fmt.Errorf("the stream to %s %s ended before the answer: %w", c.cfg.Name, c.cfg.Target, ErrNotConnected)
			}
			return resp, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s %s: %w (%w)", c.cfg.Name, c.cfg.Target, ErrNotConnected, ctx.Err())
		case <-c.stopped:
			return nil, ErrStopped
		}
	}
}

func (c *Client) setPeer(p *Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peer = p
	close(c.changed)
	c.changed = make(chan struct{})
}

// Run keeps a stream up until ctx ends, then returns ctx's error once the
// stream and everything serving it have stopped. A Client runs once.
func (c *Client) Run(ctx context.Context) error {
	defer close(c.stopped)
	bo := backoff.New(c.cfg.BackoffBase, c.cfg.BackoffMax)
	for {
		upFor, err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if upFor >= c.cfg.StableAfter {
			bo.Reset()
		}
		delay := bo.Next()
		switch {
		case c.cfg.Refused != "" && refused(err):
			delay = c.cfg.BackoffMax
			c.log.Error(c.cfg.Refused, "target", c.cfg.Target, "err", err, "retry_in", delay.Round(time.Millisecond))
		case upFor > 0:
			c.log.Warn("stream to "+c.cfg.Name+" ended; reconnecting", "target", c.cfg.Target, "err", err, "up_for", upFor.Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond))
		default:
			c.log.Warn("cannot reach "+c.cfg.Name, "target", c.cfg.Target, "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		if err := backoff.Sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// refused reports whether the server turned this peer away for who it is,
// rather than the stream failing on its way.
func refused(err error) bool {
	code := status.Code(err)
	return code == codes.PermissionDenied || code == codes.Unauthenticated
}

// session runs one stream to its end. upFor is how long it was up after the
// Hello (0 when it never got that far).
func (c *Client) session(ctx context.Context) (upFor time.Duration, err error) {
	// Ending the stream's context is what stops the Peer's pending Recv.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, done, err := c.cfg.Open(sctx)
	if err != nil {
		return 0, err
	}
	// The stream ends before its connection is released.
	defer func() { cancel(); done() }()
	if err := SendHello(stream, c.cfg.Hello); err != nil {
		return 0, fmt.Errorf("hello to %s %s: %w", c.cfg.Name, c.cfg.Target, err)
	}
	// The stream counts as up from here. A server that refuses the Hello
	// ends the stream at once, and since only a stream that stayed up
	// StableAfter resets the backoff, such refusals still back off further
	// each time.
	peer := NewPeer(stream, c.cfg.Handler, c.cfg.Peer)
	start := time.Now()
	c.setPeer(peer)
	c.setUp(true)
	c.log.Info("connected to "+c.cfg.Name, "target", c.cfg.Target)
	err = peer.Run(sctx)
	c.setPeer(nil)
	c.setUp(false)
	return time.Since(start), err
}

func (c *Client) setUp(up bool) {
	c.up.Store(up)
	if c.cfg.OnState != nil {
		c.cfg.OnState(up)
	}
}
