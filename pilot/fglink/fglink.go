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

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Server implements streamv1.FrontgateLinkServer.
type Server struct {
	streamv1.UnimplementedFrontgateLinkServer

	log  *slog.Logger
	opts streamrpc.Options

	mu      sync.Mutex
	peers   map[string]*conn
	changed chan struct{} // closed and replaced on every connect/disconnect
}

type conn struct {
	peer  *streamrpc.Peer
	hello *streamv1.Hello
	since time.Time
}

// New returns a server. opts tune the heartbeats of each stream.
func New(log *slog.Logger, opts streamrpc.Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Logger = log
	return &Server{log: log, opts: opts, peers: map[string]*conn{}, changed: make(chan struct{})}
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Connect serves one frontgate's stream for as long as it lasts.
func (s *Server) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	hello, err := streamrpc.RecvHello(st, 10*time.Second)
	if err != nil {
		return err
	}
	if hello.Component != "frontgate" {
		return fmt.Errorf("hello: component %q cannot connect here; only frontgates can", hello.Component)
	}
	log := s.log.With("frontgate_id", hello.Id)
	p := streamrpc.NewPeer(st, nil, s.opts)
	c := &conn{peer: p, hello: hello, since: time.Now()}
	s.mu.Lock()
	old := s.peers[hello.Id]
	s.peers[hello.Id] = c
	s.notify()
	s.mu.Unlock()
	if old != nil {
		log.Info("frontgate reconnected; replacing its previous stream")
	} else {
		log.Info("frontgate connected", "version", hello.Version)
	}
	err = p.Run(st.Context())
	s.mu.Lock()
	if s.peers[hello.Id] == c {
		delete(s.peers, hello.Id)
		s.notify()
	}
	s.mu.Unlock()
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
