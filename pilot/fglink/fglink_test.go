package fglink

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPKI is a CA with pilot's server credentials.
type testPKI struct {
	ca    *pki.CA
	pilot *tlsutil.Creds
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, pilot: creds(t, ca, pki.Identity{Kind: pki.KindPilot, ID: "pilot"})}
}

func creds(t *testing.T, ca *pki.CA, id pki.Identity) *tlsutil.Creds {
	t.Helper()
	key, _ := pki.NewKey()
	certPEM, _, err := ca.Issue(key.Public(), id, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	c, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	revokedMu sync.Mutex
	revoked   = map[string]bool{}
)

func serve(t *testing.T) (*Server, string, *testPKI) {
	t.Helper()
	tp := newPKI(t)
	s := New(nil, streamrpc.Options{HeartbeatInterval: 100 * time.Millisecond}, Config{
		Identify: tlsutil.PeerIdentity,
		Revoked: func(id pki.Identity) bool {
			revokedMu.Lock()
			defer revokedMu.Unlock()
			return revoked[id.ID]
		},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tp.pilot.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterFrontgateLinkServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s, lis.Addr().String(), tp
}

// fakeFrontgate dials the server and answers requests with h until stopped.
type fakeFrontgate struct {
	stop func()
	done chan struct{}
	err  error // why the stream ended; read after done
}

func dial(t *testing.T, tp *testPKI, cert pki.Identity, addr, component, id string, h streamrpc.Handler) *fakeFrontgate {
	t.Helper()
	c := creds(t, tp.ca, cert)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c.ClientConfig("127.0.0.1", pki.Identity{}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A refused stream may already be closed when the hello goes out: the
	// peer then ends at once, which is what the refusal tests wait for.
	_ = streamrpc.SendHello(st, &streamv1.Hello{Component: component, Id: id})
	f := &fakeFrontgate{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = streamrpc.NewPeer(st, h, streamrpc.Options{HeartbeatInterval: 100 * time.Millisecond}).Run(ctx)
	}()
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); <-f.done; conn.Close() }) }
	t.Cleanup(f.stop)
	return f
}

func list(id string) *streamv1.Request {
	return &streamv1.Request{Id: id, Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}
}

func TestCallWaitsForTheFrontgate(t *testing.T) {
	s, addr, tp := serve(t)
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Call(ctx, "fg-1", list(""))
		if err == nil && resp.GetAck().GetMessage() != "fg-1 here" {
			err = errors.New("wrong answer: " + resp.String())
		}
		res <- err
	}()
	// The call is pending before the frontgate exists.
	dial(t, tp, fg1, addr, "frontgate", "fg-1", func(context.Context, *streamv1.Request) *streamv1.Response {
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "fg-1 here"}}}
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if !s.Connected("fg-1") || s.Count() != 1 {
		t.Fatalf("connected=%v count=%d", s.Connected("fg-1"), s.Count())
	}
}

func TestCallResendsAfterTheStreamBreaks(t *testing.T) {
	s, addr, tp := serve(t)
	var mu sync.Mutex
	seen := map[string]int{}
	first := make(chan struct{})
	var firstOnce sync.Once
	// The first frontgate receives the request and never answers.
	f1 := dial(t, tp, fg1, addr, "frontgate", "fg-1", func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
		mu.Lock()
		seen[req.Id]++
		mu.Unlock()
		firstOnce.Do(func() { close(first) })
		<-ctx.Done()
		return &streamv1.Response{}
	})
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Call(ctx, "fg-1", list("req-1"))
		if err == nil && resp.GetAck().GetMessage() != "second" {
			err = errors.New("answer from the wrong stream: " + resp.String())
		}
		res <- err
	}()
	<-first
	f1.stop()
	dial(t, tp, fg1, addr, "frontgate", "fg-1", func(_ context.Context, req *streamv1.Request) *streamv1.Response {
		mu.Lock()
		seen[req.Id]++
		mu.Unlock()
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "second"}}}
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["req-1"] != 2 {
		t.Fatalf("request req-1 reached frontgates %d times, want 2 (sent, then re-sent with the same id)", seen["req-1"])
	}
}

var fg1 = pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}

func TestOnlyCertifiedFrontgatesMayConnect(t *testing.T) {
	s, addr, tp := serve(t)
	for _, tc := range []struct {
		name      string
		cert      pki.Identity
		component string
		helloID   string
	}{
		{"a drone certificate", pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}, "drone", "cln-1"},
		{"a drone claiming to be a frontgate", pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}, "frontgate", "fg-1"},
		{"a frontgate claiming another id", fg1, "frontgate", "fg-2"},
		{"a revoked frontgate", pki.Identity{Kind: pki.KindFrontgate, ID: "fg-revoked"}, "frontgate", "fg-revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			revokedMu.Lock()
			revoked["fg-revoked"] = true
			revokedMu.Unlock()
			f := dial(t, tp, tc.cert, addr, tc.component, tc.helloID, nil)
			select {
			case <-f.done:
			case <-time.After(5 * time.Second):
				t.Fatal("stream was not refused")
			}
			if s.Count() != 0 {
				t.Fatalf("%d frontgates registered", s.Count())
			}
		})
	}
	// Without any client certificate the link refuses too.
	anon, _ := tlsutil.AnonymousClientConfig(tp.ca.CertPEM(), "127.0.0.1", pki.Identity{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(anon)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(ctx)
	if err == nil {
		_ = streamrpc.SendHello(st, &streamv1.Hello{Component: "frontgate", Id: "fg-1"})
		_, err = st.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("anonymous stream: %v, want a refusal naming the certificate", err)
	}
}

func TestDisconnectEndsTheStream(t *testing.T) {
	s, addr, tp := serve(t)
	f := dial(t, tp, fg1, addr, "frontgate", "fg-1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx, "fg-1"); err != nil {
		t.Fatal(err)
	}
	if !s.Disconnect("fg-1") {
		t.Fatal("Disconnect found no stream")
	}
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("disconnected frontgate's stream stayed up")
	}
	// The frontgate is told why, not left with a bare EOF.
	if status.Code(f.err) != codes.PermissionDenied || !strings.Contains(f.err.Error(), "revoked") {
		t.Fatalf("stream ended with %v, want PermissionDenied naming the revocation", f.err)
	}
}

// Callers waiting for a revoked frontgate are told at once (and those
// already waiting when it is revoked, as soon as it is), instead of timing
// out, since it will never connect again.
func TestCallsToARevokedFrontgateFailFast(t *testing.T) {
	s, _, _ := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waiting := make(chan error, 1)
	go func() { _, err := s.Call(ctx, "fg-later", list("r1")); waiting <- err }()

	revokedMu.Lock()
	revoked["fg-gone"] = true
	revoked["fg-later"] = true
	revokedMu.Unlock()
	if _, err := s.Call(ctx, "fg-gone", list("r2")); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Call to a revoked frontgate = %v, want ErrRevoked", err)
	}
	if err := s.WaitConnected(ctx, "fg-gone"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("WaitConnected for a revoked frontgate = %v, want ErrRevoked", err)
	}
	s.Disconnect("fg-later") // what the revoke does, though it is not connected
	if err := <-waiting; !errors.Is(err, ErrRevoked) {
		t.Fatalf("a Call already waiting when its frontgate was revoked = %v, want ErrRevoked", err)
	}
}

// answering is a frontgate handler that names itself in every answer, so a
// test can tell which stream served a call.
func answering(name string) streamrpc.Handler {
	return func(context.Context, *streamv1.Request) *streamv1.Response {
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: name}}}
	}
}

// servedBy calls fg-1 and returns the name of the stream that answered.
func servedBy(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Call(ctx, "fg-1", list(""))
	if err != nil {
		t.Fatalf("call fg-1: %v", err)
	}
	return resp.GetAck().GetMessage()
}

func waitEnded(t *testing.T, f *fakeFrontgate, what string) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the stream is still up", what)
	}
}

func waitCount(t *testing.T, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d frontgates connected, want %d", s.Count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A second stream with a frontgate's identity replaces the first: the
// first is cut, telling its frontgate why (Aborted, so a real frontgate
// reconnects at once rather than backing off as from a refusal), and the
// frontgate stays connected through the second. The old stream's end is
// processed first here; the newer stream's end decides.
func TestSecondStreamReplacesFirstAndOldEndsFirst(t *testing.T) {
	s, addr, tp := serve(t)
	first := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("first"))
	if got := servedBy(t, s); got != "first" {
		t.Fatalf("served by %q, want first", got)
	}
	second := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("second"))
	waitEnded(t, first, "a second stream with the same identity")
	if status.Code(first.err) != codes.Aborted || !strings.Contains(first.err.Error(), "replaced by a newer stream") {
		t.Fatalf("the replaced stream ended with %v, want Aborted saying it was replaced", first.err)
	}
	// The old stream's end did not take the frontgate with it.
	if !s.Connected("fg-1") || s.Count() != 1 {
		t.Fatalf("after the old stream ended: connected=%v count=%d, want the newer stream kept", s.Connected("fg-1"), s.Count())
	}
	if got := servedBy(t, s); got != "second" {
		t.Fatalf("served by %q, want second", got)
	}
	second.stop()
	waitCount(t, s, 0)
}

// The other order: the newer stream (an intruder's, say) ends while the
// frontgate it cut has already reconnected. Pilot keeps the frontgate's
// own stream: the intruder's end does not mark it gone.
func TestSecondStreamReplacesFirstAndNewEndsFirst(t *testing.T) {
	s, addr, tp := serve(t)
	own := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("real"))
	if got := servedBy(t, s); got != "real" {
		t.Fatalf("served by %q, want real", got)
	}
	intruder := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("intruder"))
	waitEnded(t, own, "the intruder's stream")
	// The real frontgate reconnects, as it does after any Aborted end,
	// which cuts the intruder in turn.
	back := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("real again"))
	waitEnded(t, intruder, "the frontgate's reconnect")
	if status.Code(intruder.err) != codes.Aborted {
		t.Fatalf("the intruder's stream ended with %v, want Aborted", intruder.err)
	}
	intruder.stop()
	if !s.Connected("fg-1") || s.Count() != 1 {
		t.Fatalf("after the intruder's stream ended: connected=%v count=%d, want the frontgate kept", s.Connected("fg-1"), s.Count())
	}
	if got := servedBy(t, s); got != "real again" {
		t.Fatalf("served by %q, want the frontgate's own stream", got)
	}
	back.stop()
	waitCount(t, s, 0)
}

// The attack as reported: a second stream opens and closes again at once.
// The first stream must not stay open behind a pilot that believes the
// frontgate gone: it is cut, so its frontgate reconnects.
func TestShortLivedSecondStreamLeavesNoGhost(t *testing.T) {
	s, addr, tp := serve(t)
	first := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("first"))
	if got := servedBy(t, s); got != "first" {
		t.Fatalf("served by %q, want first", got)
	}
	second := dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("second"))
	waitEnded(t, first, "a second stream with the same identity")
	second.stop()
	waitCount(t, s, 0)
	dial(t, tp, fg1, addr, "frontgate", "fg-1", answering("first again"))
	if got := servedBy(t, s); got != "first again" {
		t.Fatalf("served by %q, want the reconnected frontgate", got)
	}
}
