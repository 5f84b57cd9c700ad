package streamrpc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// hubServer serves DroneLink.Connect into a hub, as pilot's frontgate link
// and the frontgate's relay do; ended receives each stream's cause.
type hubServer struct {
	streamv1.UnimplementedDroneLinkServer
	hub   *Hub[string]
	ended chan error
}

func (s *hubServer) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	hello, err := RecvHello(st, 5*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	p := NewPeer(st, nil, Options{})
	c, _, err := s.hub.Admit(hello.Id, p, hello.Version, cancel)
	if err != nil {
		return err
	}
	_ = p.Run(ctx)
	s.hub.Leave(c)
	s.ended <- context.Cause(ctx)
	return nil
}

type hubEnv struct {
	srv  *hubServer
	addr string
}

func startHub(t *testing.T, cfg HubConfig) *hubEnv {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hubServer{hub: NewHub[string](cfg), ended: make(chan error, 8)}
	gs := grpc.NewServer()
	streamv1.RegisterDroneLinkServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return &hubEnv{srv: s, addr: lis.Addr().String()}
}

// client connects as id, answering every request with its name, or, when
// held is given, signalling on it and holding the request until the stream
// ends; stop cuts it.
func (e *hubEnv) client(t *testing.T, id, name string, held chan<- struct{}) (stop func()) {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := streamv1.NewDroneLinkClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := SendHello(st, &streamv1.Hello{Component: "drone", Id: id, Version: name}); err != nil {
		t.Fatal(err)
	}
	p := NewPeer(st, func(ctx context.Context, _ *streamv1.Request) *streamv1.Response {
		if held != nil {
			held <- struct{}{}
			<-ctx.Done()
		}
		return ack(name)
	}, Options{})
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			conn.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

func (e *hubEnv) waitFor(t *testing.T, id, version string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, ok := e.srv.hub.Get(id); ok && c.Info == version {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (%s) never connected", id, version)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// answer reads the ack of a call's result.
func answer(t *testing.T) func(*streamv1.Response, error) string {
	return func(resp *streamv1.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetAck().GetMessage()
	}
}

// One identity holds one stream: a newer one cuts the older (told
// ErrReplaced), the older one's end does not unregister the newer, and
// calls go to the newer.
func TestHubReplacesAndKeepsTheNewest(t *testing.T) {
	e := startHub(t, HubConfig{})
	e.client(t, "n1", "first", nil)
	e.waitFor(t, "n1", "first")
	if got := answer(t)(e.srv.hub.Call(callCtx(t), "n1", &streamv1.Request{Body: &streamv1.Request_ListDrones{}})); got != "first" {
		t.Fatalf("answered by %q", got)
	}
	stopSecond := e.client(t, "n1", "second", nil)
	if cause := <-e.srv.ended; !errors.Is(cause, ErrReplaced) {
		t.Fatalf("the first stream ended with %v, want ErrReplaced", cause)
	}
	e.waitFor(t, "n1", "second")
	if n := e.srv.hub.Count(); n != 1 {
		t.Fatalf("%d connected after the replacement, want 1", n)
	}
	if got := answer(t)(e.srv.hub.Call(callCtx(t), "n1", &streamv1.Request{Body: &streamv1.Request_ListDrones{}})); got != "second" {
		t.Fatalf("answered by %q, want the newer stream", got)
	}
	stopSecond()
	<-e.srv.ended
	if n := e.srv.hub.Count(); n != 0 {
		t.Fatalf("%d connected after the last stream ended", n)
	}
}

// A request whose stream ends before the answer is sent again on the
// identity's next stream, and answered there.
func TestHubCallResendsOnTheNextStream(t *testing.T) {
	e := startHub(t, HubConfig{})
	held := make(chan struct{}, 1)
	stopHolder := e.client(t, "n1", "holder", held)
	e.waitFor(t, "n1", "holder")
	type result struct {
		resp *streamv1.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := e.srv.hub.Call(callCtx(t), "n1", &streamv1.Request{Id: "r1", Body: &streamv1.Request_ListDrones{}})
		got <- result{resp, err}
	}()
	<-held
	stopHolder()
	e.client(t, "n1", "next", nil)
	r := <-got
	if a := answer(t)(r.resp, r.err); a != "next" {
		t.Fatalf("answered by %q, want the next stream", a)
	}
}

// Waiting for an identity ends at once when it is refused, here or by
// Gone, or when the hub closes, and at the deadline otherwise.
func TestHubAwaitEnds(t *testing.T) {
	revoked := errors.New("revoked elsewhere")
	h := NewHub[string](HubConfig{Gone: func(id string) error {
		if id == "gone" {
			return revoked
		}
		return nil
	}})
	waiting := make(chan error, 1)
	go func() { _, err := h.Await(context.Background(), "n1", nil); waiting <- err }()
	h.Refuse("n1", errors.New("test"))
	if err := <-waiting; !errors.Is(err, ErrRefused) {
		t.Fatalf("a waiter of a refused identity: %v, want ErrRefused", err)
	}
	if _, _, err := h.Admit("n1", nil, "", func(error) {}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Admit of a refused identity: %v", err)
	}
	if _, err := h.Await(context.Background(), "gone", nil); !errors.Is(err, revoked) {
		t.Fatalf("Await of a gone identity: %v, want Gone's error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Await(ctx, "n2", nil); !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Await past its deadline: %v", err)
	}
	go func() { _, err := h.Await(context.Background(), "n2", nil); waiting <- err }()
	h.Close()
	if err := <-waiting; !errors.Is(err, ErrHubClosed) {
		t.Fatalf("a waiter when the hub closes: %v", err)
	}
}
