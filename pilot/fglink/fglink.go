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
	hub  *streamrpc.Hub[*streamv1.Hello]
}

// ErrRevoked is returned by Call and WaitConnected for a frontgate that has
// been revoked: it will not connect again, so retrying is pointless.
var ErrRevoked = errors.New("revoked: pilot refuses it; delete the clusters behind it with --force so their network gets a new frontgate")

// errRevoked is the cause a revocation cancels a stream with, so the
// frontgate is told why it was cut rather than seeing a bare EOF.
var errRevoked = errors.New("revoked")

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
	s := &Server{log: log, opts: opts, cfg: cfg}
	s.hub = streamrpc.NewHub[*streamv1.Hello](streamrpc.HubConfig{Logger: log, Gone: func(id string) error {
		// A revoked frontgate will never be let back in: waiting for it
		// would only make every caller time out.
		if cfg.Revoked != nil && cfg.Revoked(pki.Identity{Kind: pki.KindFrontgate, ID: id}) {
			return fmt.Errorf("frontgate %s: %w", id, ErrRevoked)
		}
		return nil
	}})
	return s
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
	c, old, err := s.hub.Admit(hello.Id, p, hello, cancel)
	if err != nil {
		// Revoked while its hello was on the way.
		log.Warn("revoked frontgate refused")
		return status.Errorf(codes.PermissionDenied, "frontgate %s is revoked", id.ID)
	}
	if old != nil {
		// A second stream while the first is healthy means two holders of
		// the frontgate's certificate (or a frontgate that lost its stream
		// without noticing): say so loudly.
		log.Warn("frontgate opened a new stream; replacing its previous stream", "previous_since", old.Since, "version", hello.Version)
	} else {
		log.Info("frontgate connected", "version", hello.Version)
	}
	err = p.Run(pctx)
	s.hub.Leave(c)
	switch cause := context.Cause(pctx); {
	case errors.Is(cause, errRevoked):
		log.Warn("revoked frontgate disconnected")
		return status.Errorf(codes.PermissionDenied, "frontgate %s is revoked", id.ID)
	case errors.Is(cause, streamrpc.ErrReplaced):
		log.Info("frontgate's previous stream ended", "since", c.Since)
		// Aborted, not a refusal: the frontgate itself reconnects at once
		// (and, if the newer stream was not its own, takes its place back).
		return status.Errorf(codes.Aborted, "frontgate %s: this stream was %v; reconnect", id.ID, cause)
	}
	log.Info("frontgate disconnected", "reason", err)
	return nil
}

// Connected reports whether the frontgate holds a stream now.
func (s *Server) Connected(id string) bool {
	_, ok := s.hub.Get(id)
	return ok
}

// WaitConnected blocks until the frontgate is connected or ctx ends.
func (s *Server) WaitConnected(ctx context.Context, id string) error {
	_, err := s.hub.Await(ctx, id, nil)
	return s.callError(id, err)
}

// Call sends req to the frontgate, waiting for it to be connected, and
// re-sends it on the next stream when the current one breaks first. Remote
// errors (*streamrpc.Error) are returned as they are.
func (s *Server) Call(ctx context.Context, id string, req *streamv1.Request) (*streamv1.Response, error) {
	resp, err := s.hub.Call(ctx, id, req)
	return resp, s.callError(id, err)
}

// callError names the frontgate in a failure to reach it; errors the
// frontgate reported, and revocations (which name it), stay as they are.
func (s *Server) callError(id string, err error) error {
	var remote *streamrpc.Error
	if err == nil || errors.As(err, &remote) || errors.Is(err, ErrRevoked) {
		return err
	}
	return fmt.Errorf("frontgate %s: %w", id, err)
}

// Count is the number of connected frontgates.
func (s *Server) Count() int { return s.hub.Count() }

// Disconnect ends the frontgate's stream (after a revocation; the identity
// check refuses its reconnects). Callers waiting for it see the revocation
// now rather than at their deadline.
func (s *Server) Disconnect(id string) bool { return s.hub.Disconnect(id, errRevoked) }
