// Package fglink is pilot's end of the frontgate streams: it serves
// FrontgateLink.Connect, keeps the connected frontgates by id, and lets the
// job engine call a frontgate by id, waiting for it to (re)connect and
// re-sending a request whose stream broke before the answer came. Re-sending
// is safe because every request pilot sends is idempotent (metadata applies
// are level-based; commands are de-duplicated by the drone per command id).
package fglink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Server implements streamv1.FrontgateLinkServer.
type Server struct {
	streamv1.UnimplementedFrontgateLinkServer

	log  *slog.Logger
	opts streamrpc.Options
	cfg  Config

	mu      sync.Mutex
	peers   map[string]*conn
	changed chan struct{} // closed and replaced on every connect/disconnect
}

type conn struct {
	peer   *streamrpc.Peer
	hello  *streamv1.Hello
	since  time.Time
	cancel context.CancelCauseFunc
}

// ErrRevoked is returned by Call and WaitConnected for a frontgate that has
// been revoked: it will not connect again, so retrying is pointless.
var ErrRevoked = errors.New("revoked: pilot refuses it; delete the clusters behind it with --force so their network gets a new frontgate")

// errRevoked is the cause a revocation cancels a stream with, so the
// frontgate is told why it was cut rather than seeing a bare EOF.
var errRevoked = errors.New("revoked")

// errReplaced is the cause a stream is cancelled with when a newer stream
// with the same identity takes its place. One frontgate holds one stream:
// keeping the old one open behind the new would leave a stream pilot no
// longer tracks, and whichever of the two ended first would decide
// whether pilot thinks the frontgate is there.
var errReplaced = errors.New("replaced by a newer stream with the same frontgate identity")

// Config holds what the link needs beyond the stream options.
type Config struct {
	// Identify returns the verified identity of the stream's peer (from its
	// client certificate). Required: a frontgate is who its certificate
	// says, never who its hello says.
	Identify func(ctx context.Context) (pki.Identity, error)
	// Revoked reports whether an identity has been revoked.
	Revoked func(pki.Identity) bool
	// Handler serves requests a frontgate sends pilot (certificate joins and
	// renewals); caller is the frontgate's verified identity.
	Handler func(ctx context.Context, caller pki.Identity, req *streamv1.Request) *streamv1.Response
}

// New returns a server. opts tune the heartbeats of each stream.
func New(log *slog.Logger, opts streamrpc.Options, cfg Config) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Logger = log
	return &Server{log: log, opts: opts, cfg: cfg, peers: map[string]*conn{}, changed: make(chan struct{})}
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Connect serves one frontgate's stream for as long as it lasts.
func (s *Server) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	if s.cfg.Identify == nil {
		return status.Error(codes.Unavailable, "frontgate link: no identity check configured")
	}
	id, err := s.cfg.Identify(st.Context())
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "frontgate link: %v; a frontgate must present the certificate pilot issued it", err)
	}
	if id.Kind != pki.KindFrontgate {
		return status.Errorf(codes.PermissionDenied, "frontgate link: %s is not a frontgate", id)
	}
	if s.cfg.Revoked != nil && s.cfg.Revoked(id) {
		s.log.Warn("revoked frontgate refused", "frontgate_id", id.ID)
		return status.Errorf(codes.PermissionDenied, "frontgate %s is revoked", id.ID)
	}
	hello, err := streamrpc.RecvHello(st, 10*time.Second)
	if err != nil {
		return err
	}
	if hello.Component != "frontgate" || hello.Id != id.ID {
		s.log.Warn("frontgate hello does not match its certificate", "certificate", id.String(), "hello_id", hello.Id, "hello_component", hello.Component)
		return status.Errorf(codes.PermissionDenied, "hello says %s %q but the certificate is %s", hello.Component, hello.Id, id)
	}
	log := s.log.With("frontgate_id", hello.Id)
	var handler streamrpc.Handler
	if s.cfg.Handler != nil {
		handler = func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
			return s.cfg.Handler(ctx, id, req)
		}
	}
	p := streamrpc.NewPeer(st, handler, s.opts)
	pctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	c := &conn{peer: p, hello: hello, since: time.Now(), cancel: cancel}
	s.mu.Lock()
	old := s.peers[hello.Id]
	s.peers[hello.Id] = c
	s.notify()
	s.mu.Unlock()
	if s.cfg.Revoked != nil && s.cfg.Revoked(id) {
		// Revoked while its hello was on the way: Disconnect may have run
		// before this stream was registered.
		cancel(errRevoked)
	}
	if old != nil {
		// Registered first, cut second: calls cut by this replacement find
		// the new stream when they re-send. A second stream while the first
		// is healthy means two holders of the frontgate's certificate (or a
		// frontgate that lost its stream without noticing): say so loudly.
		log.Warn("frontgate opened a new stream; replacing its previous stream", "previous_since", old.since, "version", hello.Version)
		old.cancel(errReplaced)
	} else {
		log.Info("frontgate connected", "version", hello.Version)
	}
	err = p.Run(pctx)
	s.mu.Lock()
	if s.peers[hello.Id] == c {
		delete(s.peers, hello.Id)
		s.notify()
	}
	s.mu.Unlock()
	switch cause := context.Cause(pctx); {
	case errors.Is(cause, errRevoked):
		log.Warn("revoked frontgate disconnected")
		return status.Errorf(codes.PermissionDenied, "frontgate %s is revoked", id.ID)
	case errors.Is(cause, errReplaced):
		log.Info("frontgate's previous stream ended", "since", c.since)
		// Aborted, not a refusal: the frontgate itself reconnects at once
		// (and, if the newer stream was not its own, takes its place back).
		return status.Errorf(codes.Aborted, "frontgate %s: this stream was %v; reconnect", id.ID, errReplaced)
	}
	log.Info("frontgate disconnected", "reason", err)
	return nil
}

// Connected reports whether the frontgate holds a stream now.
func (s *Server) Connected(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.peers[id]
	return ok
}

// WaitConnected blocks until the frontgate is connected or ctx ends.
func (s *Server) WaitConnected(ctx context.Context, id string) error {
	_, err := s.wait(ctx, id)
	return err
}

func (s *Server) wait(ctx context.Context, id string) (*streamrpc.Peer, error) {
	for {
		// A revoked frontgate will never be let back in: waiting for it
		// would only make every caller time out.
		if s.cfg.Revoked != nil && s.cfg.Revoked(pki.Identity{Kind: pki.KindFrontgate, ID: id}) {
			return nil, fmt.Errorf("frontgate %s: %w", id, ErrRevoked)
		}
		s.mu.Lock()
		c, ok := s.peers[id]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			select {
			case <-c.peer.Done():
				// Closing; the next change notification removes it.
			default:
				return c.peer, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("frontgate %s is not connected: %w", id, ctx.Err())
		}
	}
}

// Call sends req to the frontgate, waiting for it to be connected, and
// re-sends it on the next stream when the current one breaks first. Remote
// errors (*streamrpc.Error) are returned as they are.
func (s *Server) Call(ctx context.Context, id string, req *streamv1.Request) (*streamv1.Response, error) {
	if req.Id == "" {
		req.Id = streamrpc.NewID()
	}
	for {
		p, err := s.wait(ctx, id)
		if err != nil {
			return nil, err
		}
		resp, err := p.Call(ctx, req)
		if errors.Is(err, streamrpc.ErrClosed) && ctx.Err() == nil {
			s.log.Info("frontgate stream broke during a request; re-sending on the next one", "frontgate_id", id, "request_id", req.Id)
			continue
		}
		return resp, err
	}
}

// Count is the number of connected frontgates.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// Disconnect ends the frontgate's stream (after a revocation; the identity
// check refuses its reconnects).
func (s *Server) Disconnect(id string) bool {
	s.mu.Lock()
	c, ok := s.peers[id]
	// Wakes callers waiting for this frontgate to connect, so they see the
	// revocation now rather than at their deadline.
	s.notify()
	s.mu.Unlock()
	if ok {
		c.cancel(errRevoked)
	}
	return ok
}
