// Package fakepilot is a test stand-in for pilot's FrontgateLink: it
// accepts frontgate streams, records their Hellos and lets a test send
// requests down the current stream.
package fakepilot

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Pilot is a running fake pilot.
type Pilot struct {
	streamv1.UnimplementedFrontgateLinkServer

	addr string
	srv  *grpc.Server
	done chan struct{}
	base context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	peer    *streamrpc.Peer
	hellos  []*streamv1.Hello
	changed chan struct{}
}

// Start serves on addr ("127.0.0.1:0" for any port, or the address of a
// previous fake pilot to stand for a restarted one). It stops at test end.
func Start(t testing.TB, addr string) *Pilot {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("fake pilot: listen %s: %v", addr, err)
	}
	base, stop := context.WithCancel(context.Background())
	p := &Pilot{addr: ln.Addr().String(), srv: grpc.NewServer(), done: make(chan struct{}), base: base, stop: stop, changed: make(chan struct{})}
	streamv1.RegisterFrontgateLinkServer(p.srv, p)
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Addr is the address the fake pilot listens on.
func (p *Pilot) Addr() string { return p.addr }

// Stop ends every stream and the server, as a pilot crash would.
func (p *Pilot) Stop() {
	p.stop()
	p.srv.Stop()
	<-p.done
}

// Connect implements streamv1.FrontgateLinkServer.
func (p *Pilot) Connect(stream streamv1.FrontgateLink_ConnectServer) error {
	hello, err := streamrpc.RecvHello(stream, 5*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(p.base, cancel)()
	peer := streamrpc.NewPeer(stream, nil, streamrpc.Options{})
	p.mu.Lock()
	p.peer = peer
	p.hellos = append(p.hellos, hello)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	_ = peer.Run(ctx)
	p.mu.Lock()
	if p.peer == peer {
		p.peer = nil
	}
	p.mu.Unlock()
	return nil
}

// Hellos returns the Hellos received so far, one per stream.
func (p *Pilot) Hellos() []*streamv1.Hello {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*streamv1.Hello(nil), p.hellos...)
}

// WaitConnected waits until a frontgate stream is up and returns its Hello.
func (p *Pilot) WaitConnected(t testing.TB, timeout time.Duration) *streamv1.Hello {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		peer, changed := p.peer, p.changed
		var h *streamv1.Hello
		if len(p.hellos) > 0 {
			h = p.hellos[len(p.hellos)-1]
		}
		p.mu.Unlock()
		if peer != nil {
			return h
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("fake pilot %s: no frontgate connected within %v", p.addr, timeout)
		}
	}
}

// Call sends req to the connected frontgate.
func (p *Pilot) Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	p.mu.Lock()
	peer := p.peer
	p.mu.Unlock()
	if peer == nil {
		return nil, streamrpc.ErrClosed
	}
	return peer.Call(ctx, req)
}
