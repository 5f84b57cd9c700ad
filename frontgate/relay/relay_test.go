package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
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
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a DroneLink server over mutual TLS, like the frontgate's.
type testServer struct {
	addr string
	ca   *pki.CA
}

// serve starts a DroneLink server backed by a new Relay made from cfg.
func serve(t *testing.T, cfg ...Config) (*Relay, *testServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := testca.New(t)
	fg := testca.Creds(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, time.Hour)
	var c Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	r := New(c)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(fg.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterDroneLinkServer(srv, r)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		r.Close()
		srv.GracefulStop()
		<-done
	})
	return r, &testServer{addr: ln.Addr().String(), ca: ca}
}

// dial connects to the server presenting creds (none when nil).
func (s *testServer) dial(t *testing.T, creds *tlsutil.Creds) *grpc.ClientConn {
	t.Helper()
	tc, err := tlsutil.AnonymousClientConfig(s.ca.CertPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	if creds != nil {
		tc = creds.ClientConfig("127.0.0.1", pki.Identity{})
	}
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// fakeDrone executes a command id at most once and answers repeats from
// memory, like the real drone.
type fakeDrone struct {
	node, cluster string

	mu      sync.Mutex
	runs    map[string]int
	results map[string]*streamv1.CommandResult
	// hold, when set, is called after a command first ran and before its
	// result is returned.
	hold func(ctx context.Context, commandID string)
	// servedBy records which connection answered each command.
	servedBy map[string]int
}

func newFakeDrone(node, cluster string) *fakeDrone {
	return &fakeDrone{node: node, cluster: cluster, runs: map[string]int{}, results: map[string]*streamv1.CommandResult{}, servedBy: map[string]int{}}
}

func (d *fakeDrone) executions(commandID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runs[commandID]
}

func (d *fakeDrone) handler(connNo int) streamrpc.Handler {
	return func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
		rc := req.GetRunCommand()
		if rc == nil {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "fake drone runs commands only")
		}
		if rc.Cmd == "fail" {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "cmd %q refused", rc.Cmd)
		}
		d.mu.Lock()
		res, seen := d.results[rc.CommandId]
		if !seen {
			d.runs[rc.CommandId]++
			res = &streamv1.CommandResult{CommandId: rc.CommandId, NodeId: d.node, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: []byte(rc.Cmd)}
			d.results[rc.CommandId] = res
		}
		d.servedBy[rc.CommandId] = connNo
		hold := d.hold
		d.mu.Unlock()
		if !seen && hold != nil {
			hold(ctx, rc.CommandId)
		}
		return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: res}}
	}
}

// droneConn is one stream of a fake drone.
type droneConn struct {
	cc     *grpc.ClientConn
	peer   *streamrpc.Peer
	cancel context.CancelFunc
	done   chan struct{}
}

// cut ends the stream from the drone's side and waits for it. The
// connection is closed first, so that a handler woken by the cut cannot
// still send its answer.
func (c *droneConn) cut() {
	c.cc.Close()
	c.cancel()
	<-c.done
}

func connect(t *testing.T, srv *testServer, d *fakeDrone, connNo int) *droneConn {
	t.Helper()
	return connectHello(t, srv, &streamv1.Hello{Component: "drone", Id: d.node, ClusterId: d.cluster, Version: "test"}, d.handler(connNo))
}

// connectHello connects with a certificate for the node and cluster the
// hello names (cluster cl-x when it names none) and sends hello.
func connectHello(t *testing.T, srv *testServer, hello *streamv1.Hello, h streamrpc.Handler) *droneConn {
	t.Helper()
	cluster := hello.ClusterId
	if cluster == "" {
		cluster = "cl-x"
	}
	cc := srv.dial(t, testca.Drone(t, srv.ca, hello.Id, cluster))
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := streamv1.NewDroneLinkClient(cc).Connect(ctx)
	if err != nil {
		cancel()
		cc.Close()
		t.Fatal(err)
	}
	// A server that refuses the stream may end it before the hello goes
	// out; Send then says only EOF, and the refusal surfaces at Recv, in
	// the peer's Run.
	if err := streamrpc.SendHello(stream, hello); err != nil && !errors.Is(err, io.EOF) {
		cancel()
		cc.Close()
		t.Fatal(err)
	}
	c := &droneConn{cc: cc, peer: streamrpc.NewPeer(stream, h, streamrpc.Options{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = c.peer.Run(ctx)
		cancel()
		cc.Close()
	}()
	t.Cleanup(c.cut)
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runCommand(node, commandID, cmd string) *streamv1.Request {
	return &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{NodeId: node, CommandId: commandID, Cmd: cmd}}}
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCallRoutesToNodeAndLists(t *testing.T) {
	r, addr := serve(t)
	a, b, c := newFakeDrone("cln-a", "cl-1"), newFakeDrone("cln-b", "cl-1"), newFakeDrone("cln-c", "cl-2")
	for _, d := range []*fakeDrone{a, b, c} {
		connect(t, addr, d, 1)
	}
	waitFor(t, "three drones", func() bool { return r.Count() == 3 })

	resp, err := r.Call(callCtx(t, 10*time.Second), "cln-b", runCommand("cln-b", "cmd-1", "echo hi"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetCommandResult().GetNodeId(); got != "cln-b" {
		t.Fatalf("answered by %q, want cln-b", got)
	}
	if a.executions("cmd-1") != 0 || c.executions("cmd-1") != 0 || b.executions("cmd-1") != 1 {
		t.Fatal("command ran on a node other than cln-b")
	}

	tests := []struct {
		cluster string
		want    []string
	}{
		{"cl-1", []string{"cln-a", "cln-b"}},
		{"cl-2", []string{"cln-c"}},
		{"", []string{"cln-a", "cln-b", "cln-c"}},
		{"cl-9", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, di := range r.List(tt.cluster) {
			got = append(got, di.NodeId)
			if di.Version != "test" || di.ConnectedAt == nil {
				t.Errorf("drone info %v lacks version or connected_at", di)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tt.cluster, got, tt.want)
		}
	}
}

func TestCallWaitsForNode(t *testing.T) {
	r, addr := serve(t)
	type result struct {
		resp *streamv1.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := r.Call(callCtx(t, 10*time.Second), "cln-late", runCommand("cln-late", "cmd-1", "true"))
		ch <- result{resp, err}
	}()
	select {
	case res := <-ch:
		t.Fatalf("Call returned before the node connected: %v, %v", res.resp, res.err)
	case <-time.After(50 * time.Millisecond):
	}
	connect(t, addr, newFakeDrone("cln-late", "cl-1"), 1)
	res := <-ch
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.resp.GetCommandResult().GetNodeId() != "cln-late" {
		t.Fatalf("response %v", res.resp)
	}
}

func TestResendAfterCut(t *testing.T) {
	r, addr := serve(t)
	d := newFakeDrone("cln-a", "cl-1")
	ran := make(chan struct{})
	d.hold = func(ctx context.Context, _ string) {
		close(ran)
		// The answer is lost: the stream is cut before it is sent.
		<-ctx.Done()
	}
	first := connect(t, addr, d, 1)
	waitFor(t, "drone", func() bool { return r.Count() == 1 })

	type result struct {
		resp *streamv1.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := r.Call(callCtx(t, 10*time.Second), "cln-a", runCommand("cln-a", "cmd-1", "make coffee"))
		ch <- result{resp, err}
	}()
	<-ran
	first.cut()
	connect(t, addr, d, 2)

	res := <-ch
	if res.err != nil {
		t.Fatalf("Call after a cut = %v, want the recorded result", res.err)
	}
	if got := string(res.resp.GetCommandResult().GetOutput()); got != "make coffee" {
		t.Fatalf("result output %q", got)
	}
	if n := d.executions("cmd-1"); n != 1 {
		t.Fatalf("command ran %d times, want once", n)
	}
	d.mu.Lock()
	served := d.servedBy["cmd-1"]
	d.mu.Unlock()
	if served != 2 {
		t.Fatalf("result came from connection %d, want the resend on connection 2", served)
	}
}

func TestNewStreamReplacesOld(t *testing.T) {
	r, addr := serve(t)
	d := newFakeDrone("cln-a", "cl-1")
	first := connect(t, addr, d, 1)
	waitFor(t, "drone", func() bool { return r.Count() == 1 })
	connect(t, addr, d, 2)
	select {
	case <-first.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the old stream was not ended when the node connected again")
	}
	if n := len(r.List("")); n != 1 {
		t.Fatalf("List has %d drones after a reconnect, want 1", n)
	}
	if _, err := r.Call(callCtx(t, 10*time.Second), "cln-a", runCommand("cln-a", "cmd-1", "true")); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	served := d.servedBy["cmd-1"]
	d.mu.Unlock()
	if served != 2 {
		t.Fatalf("served by connection %d, want 2", served)
	}
}

func TestCallUnknownNodeTimesOut(t *testing.T) {
	r, _ := serve(t)
	_, err := r.Call(callCtx(t, 200*time.Millisecond), "cln-ghost", runCommand("cln-ghost", "cmd-1", "true"))
	if !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, want ErrNotConnected and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "cln-ghost") {
		t.Fatalf("error %q does not name the node", err)
	}
}

func TestCallInvalid(t *testing.T) {
	r, _ := serve(t)
	ctx := callCtx(t, time.Second)
	if _, err := r.Call(ctx, "", runCommand("", "c", "true")); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node_id") {
		t.Fatalf("Call without node = %v", err)
	}
	if _, err := r.Call(ctx, "cln-a", &streamv1.Request{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Call without body = %v", err)
	}
}

func TestRemoteErrorIsReturned(t *testing.T) {
	r, addr := serve(t)
	connect(t, addr, newFakeDrone("cln-a", "cl-1"), 1)
	_, err := r.Call(callCtx(t, 10*time.Second), "cln-a", runCommand("cln-a", "cmd-1", "fail"))
	if !streamrpc.IsCode(err, streamrpc.CodeInvalid) {
		t.Fatalf("Call = %v, want the drone's invalid error", err)
	}
}

func TestHelloChecked(t *testing.T) {
	r, addr := serve(t)
	tests := []struct {
		name  string
		hello *streamv1.Hello
		want  string
	}{
		{"wrong component", &streamv1.Hello{Component: "frontgate", Id: "fg-1"}, `component "frontgate"`},
		{"no cluster", &streamv1.Hello{Component: "drone", Id: "cln-a"}, "cluster_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connectHello(t, addr, tt.hello, nil)
			<-c.done
			err := c.peer.Err()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("stream ended with %v, want InvalidArgument naming %s", err, tt.want)
			}
		})
	}
	if r.Count() != 0 {
		t.Fatalf("%d drones registered from bad hellos", r.Count())
	}
}

func TestCloseEndsStreams(t *testing.T) {
	r, addr := serve(t)
	c := connect(t, addr, newFakeDrone("cln-a", "cl-1"), 1)
	waitFor(t, "drone", func() bool { return r.Count() == 1 })
	r.Close()
	<-c.done
	if r.Count() != 0 {
		t.Fatalf("%d drones still listed after Close", r.Count())
	}
	if _, err := r.Call(callCtx(t, 10*time.Second), "cln-a", runCommand("cln-a", "c", "true")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close = %v, want ErrClosed", err)
	}
	late := connect(t, addr, newFakeDrone("cln-b", "cl-1"), 1)
	<-late.done
	if err := late.peer.Err(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after Close ended with %v, want Unavailable", err)
	}
}

// streamEnd opens a stream presenting creds (none when nil), sends hello
// and returns the error the stream ends with.
func streamEnd(t *testing.T, srv *testServer, creds *tlsutil.Creds, hello *streamv1.Hello) error {
	t.Helper()
	cc := srv.dial(t, creds)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := streamv1.NewDroneLinkClient(cc).Connect(ctx)
	if err != nil {
		return err
	}
	// The server may refuse before it reads the hello; the refusal then
	// surfaces at Recv.
	_ = streamrpc.SendHello(stream, hello)
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

func TestConnectNeedsMatchingDroneCertificate(t *testing.T) {
	r, srv := serve(t)
	hello := &streamv1.Hello{Component: "drone", Id: "cln-a", ClusterId: "cl-1"}
	otherCA := testca.New(t)
	tests := []struct {
		name  string
		creds *tlsutil.Creds
		hello *streamv1.Hello
		code  codes.Code
		want  string
	}{
		{"no certificate", nil, hello, codes.Unauthenticated, "needs the drone's client certificate"},
		{"frontgate certificate", testca.Creds(t, srv.ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, time.Hour), hello, codes.PermissionDenied, "serves drones"},
		{"other node", testca.Drone(t, srv.ca, "cln-b", "cl-1"), hello, codes.PermissionDenied, `hello says node "cln-a" of cluster "cl-1" but the certificate is hangar://drone/cl-1/cln-b`},
		{"other cluster", testca.Drone(t, srv.ca, "cln-a", "cl-2"), hello, codes.PermissionDenied, "but the certificate is hangar://drone/cl-2/cln-a"},
		// A certificate of another CA fails the handshake itself.
		{"foreign CA", testca.Drone(t, otherCA, "cln-a", "cl-1"), hello, codes.Unavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := streamEnd(t, srv, tt.creds, tt.hello)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("stream ended with %v, want %v containing %q", err, tt.code, tt.want)
			}
		})
	}
	if r.Count() != 0 {
		t.Fatalf("%d drones registered without a matching certificate", r.Count())
	}
}

func TestRefuseDropsAndRefusesNode(t *testing.T) {
	r, srv := serve(t)
	a := connect(t, srv, newFakeDrone("cln-a", "cl-1"), 1)
	connect(t, srv, newFakeDrone("cln-b", "cl-1"), 1)
	waitFor(t, "two drones", func() bool { return r.Count() == 2 })

	if !r.Refuse("cln-a") {
		t.Fatal("Refuse of a connected node reported no stream ended")
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked node's stream was not ended")
	}
	if got := r.List(""); len(got) != 1 || got[0].NodeId != "cln-b" {
		t.Fatalf("after revoking cln-a the drones are %v, want only cln-b", got)
	}
	err := streamEnd(t, srv, testca.Drone(t, srv.ca, "cln-a", "cl-1"), &streamv1.Hello{Component: "drone", Id: "cln-a", ClusterId: "cl-1"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "node cln-a is revoked") {
		t.Fatalf("reconnect of a revoked node ended with %v, want PermissionDenied naming it", err)
	}

	// A node revoked while away is refused when it comes back.
	if r.Refuse("cln-c") {
		t.Fatal("Refuse of an absent node reported a stream ended")
	}
	err = streamEnd(t, srv, testca.Drone(t, srv.ca, "cln-c", "cl-1"), &streamv1.Hello{Component: "drone", Id: "cln-c", ClusterId: "cl-1"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("connect of a node revoked while away ended with %v, want PermissionDenied", err)
	}
	if r.Count() != 1 {
		t.Fatalf("%d drones connected, want 1", r.Count())
	}
}

func TestDroneRequestsCarryTheCertificateIdentity(t *testing.T) {
	got := make(chan pki.Identity, 1)
	r, srv := serve(t, Config{Handler: func(_ context.Context, from pki.Identity, req *streamv1.Request) *streamv1.Response {
		got <- from
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "ok"}}}
	}})
	c := connect(t, srv, newFakeDrone("cln-a", "cl-1"), 1)
	waitFor(t, "drone", func() bool { return r.Count() == 1 })
	resp, err := c.peer.Call(callCtx(t, 10*time.Second), &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("drone's request = %v, %v", resp, err)
	}
	if id := <-got; id != (pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}) {
		t.Fatalf("handler saw %v, want the drone's certificate identity", id)
	}
}

func TestJoin(t *testing.T) {
	release := make(chan struct{})
	join := func(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
		switch req.TokenId {
		case "good":
			return &streamv1.Certificate{CertificatePem: "CERT for " + req.CsrPem, CaPem: "CA"}, nil
		case "used":
			return nil, &streamrpc.Error{Code: "permission_denied", Message: "join token already used"}
		case "hold":
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, ctx.Err()
		}
		return nil, errors.New("no stream to pilot")
	}
	_, srv := serve(t, Config{Join: join, MaxJoins: 1})
	cc := srv.dial(t, nil) // joins come from drones without a certificate
	defer cc.Close()
	client := streamv1.NewDroneLinkClient(cc)

	cert, err := client.Join(callCtx(t, 10*time.Second), &streamv1.JoinRequest{TokenId: "good", TokenProof: []byte("proof"), CsrPem: "CSR"})
	if err != nil || cert.CertificatePem != "CERT for CSR" || cert.CaPem != "CA" {
		t.Fatalf("Join = %v, %v; want the relayed certificate", cert, err)
	}
	tests := []struct {
		name string
		req  *streamv1.JoinRequest
		code codes.Code
		want string
	}{
		{"refused by pilot", &streamv1.JoinRequest{TokenId: "used", TokenProof: []byte("proof"), CsrPem: "CSR"}, codes.PermissionDenied, "join token already used"},
		{"pilot unreachable", &streamv1.JoinRequest{TokenId: "x", TokenProof: []byte("proof"), CsrPem: "CSR"}, codes.Unavailable, "no stream to pilot"},
		{"no token", &streamv1.JoinRequest{CsrPem: "CSR"}, codes.InvalidArgument, "token_id and token_proof are required"},
		{"no csr", &streamv1.JoinRequest{TokenId: "good", TokenProof: []byte("proof")}, codes.InvalidArgument, "csr_pem is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Join(callCtx(t, 10*time.Second), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Join = %v, want %v containing %q", err, tt.code, tt.want)
			}
		})
	}

	// Joins in progress are bounded: one more than MaxJoins is turned away.
	held := make(chan error, 1)
	go func() {
		_, err := client.Join(callCtx(t, 10*time.Second), &streamv1.JoinRequest{TokenId: "hold", TokenProof: []byte("proof"), CsrPem: "CSR"})
		held <- err
	}()
	waitFor(t, "a join turned away while another is in progress", func() bool {
		_, err := client.Join(callCtx(t, 10*time.Second), &streamv1.JoinRequest{TokenId: "good", TokenProof: []byte("proof"), CsrPem: "CSR"})
		return status.Code(err) == codes.ResourceExhausted
	})
	close(release)
	if err := <-held; err == nil {
		t.Fatal("the held join succeeded")
	}
}

func TestJoinUnimplementedWithoutJoinFunc(t *testing.T) {
	_, srv := serve(t)
	cc := srv.dial(t, nil)
	defer cc.Close()
	_, err := streamv1.NewDroneLinkClient(cc).Join(callCtx(t, 10*time.Second), &streamv1.JoinRequest{TokenId: "t", TokenProof: []byte("proof"), CsrPem: "c"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Join = %v, want Unimplemented", err)
	}
}

// A render report shows in List, survives the drone's reconnect, and an
// older report arriving late never hides a newer one.
func TestRenderedMergedIntoList(t *testing.T) {
	r, addr := serve(t)
	d := newFakeDrone("cln-a", "cl-1")
	connect(t, addr, d, 1)
	waitFor(t, "drone", func() bool { return r.Count() == 1 })

	rendered := func() (int64, string) {
		l := r.List("cl-1")
		if len(l) != 1 {
			t.Fatalf("List = %v", l)
		}
		return l[0].RenderedRevision, l[0].RenderError
	}
	if rev, _ := rendered(); rev != 0 {
		t.Fatalf("rendered revision %d before any report", rev)
	}
	r.Rendered("cln-a", &streamv1.RenderReport{Revision: 7})
	r.Rendered("cln-a", &streamv1.RenderReport{Revision: 5, Error: "stale"})
	if rev, msg := rendered(); rev != 7 || msg != "" {
		t.Fatalf("rendered = %d %q, want 7 and no error", rev, msg)
	}
	r.Rendered("cln-a", &streamv1.RenderReport{Revision: 9, Error: "reload_cmd exit 1"})
	if rev, msg := rendered(); rev != 9 || msg != "reload_cmd exit 1" {
		t.Fatalf("rendered = %d %q, want 9 with its error", rev, msg)
	}

	if h := r.List("cl-1")[0].Health; h != nil {
		t.Fatalf("health %v before any report", h)
	}
	at := func(sec int64) *streamv1.CommandRun {
		return &streamv1.CommandRun{At: timestamppb.New(time.Unix(sec, 0))}
	}
	r.Healthed("cln-a", &streamv1.HealthReport{Status: "unhealthy", Check: at(20)})
	r.Healthed("cln-a", &streamv1.HealthReport{Status: "healthy", Check: at(10)}) // crossed on a reconnect
	if h := r.List("cl-1")[0].Health; h.GetStatus() != "unhealthy" {
		t.Fatalf("health %v, want the later check's unhealthy", h)
	}
	r.Healthed("cln-a", &streamv1.HealthReport{Status: "healthy", Check: at(30)})
	if h := r.List("cl-1")[0].Health; h.GetStatus() != "healthy" {
		t.Fatalf("health %v, want healthy", h)
	}

	if m := r.List("cl-1")[0].Metrics; m != nil {
		t.Fatalf("metrics %v before any report", m)
	}
	r.Measured("cln-a", &streamv1.MetricsReport{At: timestamppb.New(time.Unix(20, 0)), CpuPercent: 20})
	r.Measured("cln-a", &streamv1.MetricsReport{At: timestamppb.New(time.Unix(10, 0)), CpuPercent: 10}) // crossed on a reconnect
	if m := r.List("cl-1")[0].Metrics; m.GetCpuPercent() != 20 {
		t.Fatalf("metrics %v, want the later sample's", m)
	}
}
