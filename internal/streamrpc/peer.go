// Package streamrpc runs Hangar's envelope protocol (api/streamv1) over one
// bidirectional gRPC stream: request/response correlation by id, deadlines
// carried in the request, cancellation, and heartbeats that detect a dead
// peer faster than TCP does. Both ends of both links (pilot⇄frontgate,
// frontgate⇄drone) use the same Peer, so either side may initiate requests.
package streamrpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Stream is the part of a generated gRPC bidi stream a Peer uses. Both
// grpc.BidiStreamingClient and grpc.BidiStreamingServer satisfy it.
type Stream interface {
	Send(*streamv1.Envelope) error
	Recv() (*streamv1.Envelope, error)
	Context() context.Context
}

// Handler serves one request from the peer. It returns the response body
// (the request id is filled in by the Peer). ctx ends at the request's
// deadline, when the peer cancels it, or when the stream closes.
type Handler func(ctx context.Context, req *streamv1.Request) *streamv1.Response

// Options tune a Peer.
type Options struct {
	Logger *slog.Logger
	// HeartbeatInterval is how often a heartbeat is sent (default 5s).
	HeartbeatInterval time.Duration
	// DeadAfter closes the stream when nothing arrived for this long
	// (default 3 heartbeat intervals).
	DeadAfter time.Duration
	// DefaultTimeout bounds a Call whose context has no deadline (default 1m).
	DefaultTimeout time.Duration
}

// Peer is one end of a link stream.
type Peer struct {
	stream  Stream
	handler Handler
	opts    Options
	log     *slog.Logger

	sendMu sync.Mutex

	mu       sync.Mutex
	pending  map[string]chan *streamv1.Response
	inflight map[string]context.CancelFunc
	closed   bool

	done    chan struct{}
	lastRx  chan struct{}
	handled sync.WaitGroup
	err     error
}

// NewPeer wraps s. Call Run to start it; h may be nil when this side serves
// no requests.
func NewPeer(s Stream, h Handler, opts Options) *Peer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = 3 * opts.HeartbeatInterval
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = time.Minute
	}
	return &Peer{
		stream:   s,
		handler:  h,
		opts:     opts,
		log:      opts.Logger,
		pending:  map[string]chan *streamv1.Response{},
		inflight: map[string]context.CancelFunc{},
		done:     make(chan struct{}),
		lastRx:   make(chan struct{}, 1),
	}
}

// Done is closed when Run has returned.
func (p *Peer) Done() <-chan struct{} { return p.done }

// Err is why the peer stopped (valid after Done is closed).
func (p *Peer) Err() error { <-p.done; return p.err }

// Run serves the stream until it ends, the peer goes silent, or ctx is done.
// It fails pending calls, cancels running handlers and waits for them before
// returning, so no goroutine outlives it.
func (p *Peer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	recvErr := make(chan error, 1)
	go func() { recvErr <- p.recvLoop(ctx) }()

	hb := time.NewTicker(p.opts.HeartbeatInterval)
	defer hb.Stop()
	dead := time.NewTimer(p.opts.DeadAfter)
	defer dead.Stop()

	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case err = <-recvErr:
			recvErr = nil
			break loop
		case <-p.lastRx:
			if !dead.Stop() {
				select {
				case <-dead.C:
				default:
				}
			}
			dead.Reset(p.opts.DeadAfter)
		case <-dead.C:
			err = fmt.Errorf("peer silent for %v", p.opts.DeadAfter)
			break loop
		case <-hb.C:
			if serr := p.send(&streamv1.Envelope{Kind: &streamv1.Envelope_Heartbeat{Heartbeat: &streamv1.Heartbeat{SentAt: timestamppb.Now()}}}); serr != nil {
				err = fmt.Errorf("send heartbeat: %w", serr)
				break loop
			}
		}
	}
	cancel()
	p.shutdown()
	p.handled.Wait()
	p.err = err
	close(p.done)
	// The receive goroutine may still sit in Recv: it ends when the stream's
	// owner ends the stream (the dialer cancels the stream's context, a
	// server returns from its RPC handler), which every owner does right
	// after Run returns. recvErr is buffered, so it never blocks on us.
	return err
}

func (p *Peer) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, ch := range p.pending {
		close(ch)
		delete(p.pending, id)
	}
	for _, c := range p.inflight {
		c()
	}
}

func (p *Peer) recvLoop(ctx context.Context) error {
	for {
		env, err := p.stream.Recv()
		if err != nil {
			return err
		}
		select {
		case p.lastRx <- struct{}{}:
		default:
		}
		switch k := env.Kind.(type) {
		case *streamv1.Envelope_Request:
			p.serve(ctx, k.Request)
		case *streamv1.Envelope_Response:
			p.mu.Lock()
			ch, ok := p.pending[k.Response.RequestId]
			delete(p.pending, k.Response.RequestId)
			p.mu.Unlock()
			if ok {
				ch <- k.Response
			} else {
				p.log.Debug("response for unknown request", "request_id", k.Response.RequestId)
			}
		case *streamv1.Envelope_Cancel:
			p.mu.Lock()
			if c, ok := p.inflight[k.Cancel.RequestId]; ok {
				c()
			}
			p.mu.Unlock()
		case *streamv1.Envelope_Heartbeat:
		case *streamv1.Envelope_Hello:
			p.log.Warn("unexpected hello after handshake")
		}
	}
}

func (p *Peer) serve(ctx context.Context, req *streamv1.Request) {
	if p.handler == nil || req.GetId() == "" {
		p.reply(req.GetId(), ErrorResponse(CodeInvalid, "this peer serves no requests"))
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	if d := req.GetDeadline(); d != nil {
		var c2 context.CancelFunc
		hctx, c2 = context.WithDeadline(hctx, d.AsTime())
		prev := cancel
		cancel = func() { c2(); prev() }
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cancel()
		return
	}
	if _, dup := p.inflight[req.Id]; dup {
		// A second request with a running one's id would take over its
		// cancel entry (and lose it when either ends). Ids are reused only
		// to retry the same request, so the retry is told to come back
		// once the first has answered, and the first runs on.
		p.mu.Unlock()
		cancel()
		p.log.Warn("request id already in flight; refused", "request_id", req.Id)
		p.reply(req.Id, ErrorResponse(CodeUnavailable, "request id %s is already in flight on this stream; retry after its answer", req.Id))
		return
	}
	p.inflight[req.Id] = cancel
	p.handled.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.handled.Done()
		resp := p.handler(hctx, req)
		// The id is free again before the answer goes out, so a retry sent
		// on receiving it is never mistaken for a duplicate.
		p.mu.Lock()
		delete(p.inflight, req.Id)
		p.mu.Unlock()
		cancel()
		if ctx.Err() != nil {
			// The stream is going away: the handler was cut short, so its
			// answer is not the request's result. The requester re-sends
			// on its next stream.
			return
		}
		if resp == nil {
			resp = ErrorResponse(CodeInternal, "handler returned no response")
		}
		p.reply(req.Id, resp)
	}()
}

func (p *Peer) reply(id string, resp *streamv1.Response) {
	resp.RequestId = id
	if err := p.send(&streamv1.Envelope{Kind: &streamv1.Envelope_Response{Response: resp}}); err != nil {
		p.log.Debug("send response", "request_id", id, "err", err)
	}
}

func (p *Peer) send(env *streamv1.Envelope) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	return p.stream.Send(env)
}

// Call sends req and waits for its response. An empty req.Id gets a random
// one; the deadline sent is ctx's (or DefaultTimeout from now). When ctx ends
// first, a Cancel is sent. A remote failure is returned as *Error.
func (p *Peer) Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	if req.Id == "" {
		req.Id = NewID()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.DefaultTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	req.Deadline = timestamppb.New(dl)

	ch := make(chan *streamv1.Response, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := p.pending[req.Id]; dup {
		p.mu.Unlock()
		// Typed as unavailable, like the remote refusal of a duplicate: a
		// relay passes it on as an answer and the origin retries later.
		return nil, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("request id %s is already waiting for an answer on this stream; retry after its answer", req.Id)}
	}
	p.pending[req.Id] = ch
	p.mu.Unlock()

	if err := p.send(&streamv1.Envelope{Kind: &streamv1.Envelope_Request{Request: req}}); err != nil {
		p.forget(req.Id)
		return nil, fmt.Errorf("send request: %w", err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if e := resp.GetError(); e != nil {
			return resp, &Error{Code: e.Code, Message: e.Message}
		}
		return resp, nil
	case <-ctx.Done():
		p.forget(req.Id)
		_ = p.send(&streamv1.Envelope{Kind: &streamv1.Envelope_Cancel{Cancel: &streamv1.Cancel{RequestId: req.Id}}})
		return nil, ctx.Err()
	case <-p.done:
		return nil, ErrClosed
	}
}

func (p *Peer) forget(id string) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

// NewID returns a random 128-bit hex id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
