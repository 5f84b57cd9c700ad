package streamrpc

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// linkServer serves DroneLink.Connect with a Peer, handing each accepted
// peer to the test.
type linkServer struct {
	streamv1.UnimplementedDroneLinkServer
	handler Handler
	opts    Options
	peers   chan *Peer
	ended   chan error
}

func (s *linkServer) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	if _, err := RecvHello(st, 5*time.Second); err != nil {
		return err
	}
	p := NewPeer(st, s.handler, s.opts)
	s.peers <- p
	err := p.Run(st.Context())
	s.ended <- err
	return nil
}

type harness struct {
	srv    *linkServer
	raw    streamv1.DroneLink_ConnectClient // the client's stream when no client Peer runs
	client *Peer
	server *Peer
	stop   func()
}

func start(t testing.TB, serverHandler, clientHandler Handler, serverOpts, clientOpts Options, runClient bool) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := &linkServer{handler: serverHandler, opts: serverOpts, peers: make(chan *Peer, 1), ended: make(chan error, 1)}
	gs := grpc.NewServer()
	streamv1.RegisterDroneLinkServer(gs, ls)
	go func() { _ = gs.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := streamv1.NewDroneLinkClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := SendHello(st, &streamv1.Hello{Component: "drone", Id: "cln-1"}); err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: ls}
	clientDone := make(chan struct{})
	if runClient {
		h.client = NewPeer(st, clientHandler, clientOpts)
		go func() { defer close(clientDone); _ = h.client.Run(ctx) }()
	} else {
		h.raw = st
		close(clientDone)
	}
	select {
	case h.server = <-ls.peers:
	case <-time.After(5 * time.Second):
		t.Fatal("server never accepted the stream")
	}
	h.stop = func() {
		cancel()
		<-clientDone
		gs.Stop()
		conn.Close()
	}
	t.Cleanup(h.stop)
	return h
}

func ack(msg string) *streamv1.Response {
	return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: msg}}}
}

func TestCallsFlowBothWays(t *testing.T) {
	echo := func(side string) Handler {
		return func(_ context.Context, req *streamv1.Request) *streamv1.Response {
			return ack(side + ":" + req.GetListDrones().GetClusterId())
		}
	}
	h := start(t, echo("server"), echo("client"), Options{}, Options{}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name string
		from *Peer
		want string
	}{
		{"client to server", h.client, "server:c1"},
		{"server to client", h.server, "client:c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.from.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: "c1"}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetAck().GetMessage(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRemoteErrorIsTyped(t *testing.T) {
	h := start(t, func(context.Context, *streamv1.Request) *streamv1.Response {
		return ErrorResponse(CodeNotFound, "no drone %s", "cln-9")
	}, nil, Options{}, Options{}, true)
	_, err := h.client.Call(context.Background(), &streamv1.Request{})
	if !IsCode(err, CodeNotFound) || !strings.Contains(err.Error(), "cln-9") {
		t.Fatalf("got %v, want a not_found error naming cln-9", err)
	}
}

func TestDeadlineReachesHandlerAndCancels(t *testing.T) {
	handlerCtxDone := make(chan error, 1)
	h := start(t, func(ctx context.Context, _ *streamv1.Request) *streamv1.Response {
		if _, ok := ctx.Deadline(); !ok {
			handlerCtxDone <- errors.New("handler context has no deadline")
			return ack("")
		}
		<-ctx.Done()
		handlerCtxDone <- ctx.Err()
		return ErrorResponse(CodeDeadline, "gave up")
	}, nil, Options{}, Options{}, true)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// Both ends share the deadline: whichever notices first, the call fails
	// with a deadline error, never with a result.
	_, err := h.client.Call(ctx, &streamv1.Request{})
	if !errors.Is(err, context.DeadlineExceeded) && !IsCode(err, CodeDeadline) {
		t.Fatalf("Call: got %v, want a deadline error", err)
	}
	select {
	case err := <-handlerCtxDone:
		if err == nil || (!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)) {
			t.Fatalf("handler context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context never ended")
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	release := make(chan struct{})
	h := start(t, func(ctx context.Context, _ *streamv1.Request) *streamv1.Response {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ack("")
	}, nil, Options{}, Options{}, true)
	defer close(release)

	errc := make(chan error, 1)
	go func() {
		_, err := h.client.Call(context.Background(), &streamv1.Request{})
		errc <- err
	}()
	// Wait until the request is in flight on the server, then end the stream.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.server.mu.Lock()
		n := len(h.server.inflight)
		h.server.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.stop()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call never failed")
	}
	if _, err := h.client.Call(context.Background(), &streamv1.Request{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: got %v, want ErrClosed", err)
	}
}

func TestSilentPeerIsDropped(t *testing.T) {
	// The client sends its hello and then nothing: no heartbeats.
	h := start(t, nil, nil, Options{HeartbeatInterval: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond}, Options{}, false)
	select {
	case err := <-h.srv.ended:
		if err == nil || !strings.Contains(err.Error(), "silent") {
			t.Fatalf("server peer ended with %v, want a silence error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer was never dropped")
	}
	_ = h.server
}

func TestHeartbeatsKeepIdlePeerAlive(t *testing.T) {
	opts := Options{HeartbeatInterval: 30 * time.Millisecond, DeadAfter: 150 * time.Millisecond}
	h := start(t, func(context.Context, *streamv1.Request) *streamv1.Response { return ack("ok") }, nil, opts, opts, true)
	// Idle for several DeadAfter periods; heartbeats must keep both alive.
	idle := time.NewTimer(600 * time.Millisecond)
	defer idle.Stop()
	select {
	case err := <-h.srv.ended:
		t.Fatalf("idle but healthy peer dropped: %v", err)
	case <-idle.C:
	}
	if _, err := h.client.Call(context.Background(), &streamv1.Request{}); err != nil {
		t.Fatalf("call after idle period: %v", err)
	}
}

// Request ids are unique per stream; a duplicate must neither run nor take
// over the first request's cancellation.
func TestDuplicateRequestIDs(t *testing.T) {
	started := make(chan struct{}, 2)
	cancelled := make(chan struct{})
	h := start(t, func(ctx context.Context, _ *streamv1.Request) *streamv1.Response {
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return ack("cancelled")
	}, nil, Options{}, Options{}, false)
	send := func(env *streamv1.Envelope) {
		t.Helper()
		if err := h.raw.Send(env); err != nil {
			t.Fatal(err)
		}
	}
	req := func() *streamv1.Envelope {
		return &streamv1.Envelope{Kind: &streamv1.Envelope_Request{Request: &streamv1.Request{Id: "r-1"}}}
	}
	send(req())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request never started")
	}
	send(req())
	env, err := h.raw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	resp := env.GetResponse()
	if resp.GetRequestId() != "r-1" || resp.GetError().GetCode() != CodeUnavailable || !strings.Contains(resp.GetError().GetMessage(), "already in flight") {
		t.Fatalf("the duplicate got %v, want an unavailable error naming the id", env)
	}
	// The first request is still cancellable by its id.
	send(&streamv1.Envelope{Kind: &streamv1.Envelope_Cancel{Cancel: &streamv1.Cancel{RequestId: "r-1"}}})
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling r-1 did not reach the first request")
	}
	if len(started) != 0 {
		t.Fatal("the duplicate request ran")
	}
}

func TestCallRefusesAnIDAlreadyWaiting(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := start(t, func(ctx context.Context, _ *streamv1.Request) *streamv1.Response {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ack("ok")
	}, nil, Options{}, Options{}, true)
	first := make(chan error, 1)
	go func() {
		_, err := h.client.Call(context.Background(), &streamv1.Request{Id: "same"})
		first <- err
	}()
	select {
	case <-started: // the first call is registered and waiting
	case <-time.After(5 * time.Second):
		t.Fatal("the first call never reached the handler")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.client.Call(ctx, &streamv1.Request{Id: "same"}); !IsCode(err, CodeUnavailable) || !strings.Contains(err.Error(), "already waiting") {
		t.Fatalf("second call with the same id: %v, want a refusal", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first call failed: %v", err)
	}
}
