package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var droneID = pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connection is one drone stream as the fake frontgate sees it.
type connection struct {
	hello *streamv1.Hello
	peer  *streamrpc.Peer
	// identity and serial are those of the client certificate the drone
	// presented.
	identity pki.Identity
	serial   *big.Int
}

// fakeFrontgate serves DroneLink over TLS like the real frontgate: a
// stream needs a client certificate from the CA whose identity matches the
// Hello, and renewals are answered (as pilot would, behind it) with a
// certificate from the CA. It hands each connection to the test.
type fakeFrontgate struct {
	streamv1.UnimplementedDroneLinkServer
	ca    *pki.CA
	conns chan connection
	addr  string

	mu       sync.Mutex
	renewals int
	// renewAs and renewCA, when set, make renewals answer with a
	// certificate for another identity or from another CA.
	renewAs *pki.Identity
	renewCA *pki.CA
}

func (f *fakeFrontgate) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	id, err := tlsutil.PeerIdentity(st.Context())
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "a drone certificate is required: %v", err)
	}
	h, err := streamrpc.RecvHello(st, 5*time.Second)
	if err != nil {
		return err
	}
	if h.GetId() != id.ID || h.GetClusterId() != id.Cluster || id.Kind != pki.KindDrone {
		return status.Errorf(codes.PermissionDenied, "hello %s/%s does not match the certificate %s", h.GetClusterId(), h.GetId(), id)
	}
	pr, _ := peer.FromContext(st.Context())
	serial := pr.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber
	p := streamrpc.NewPeer(st, f.handle, streamrpc.Options{})
	select {
	case f.conns <- connection{hello: h, peer: p, identity: id, serial: serial}:
	case <-st.Context().Done():
		return nil
	}
	_ = p.Run(st.Context())
	return nil
}

// handle answers renew_certificate the way pilot does.
func (f *fakeFrontgate) handle(_ context.Context, req *streamv1.Request) *streamv1.Response {
	rc := req.GetRenewCertificate()
	if rc == nil {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "unexpected %T", req.GetBody())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	cur, id, err := f.ca.Verify([]byte(rc.GetCurrentCertificatePem()))
	if err != nil {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "current certificate: %v", err)
	}
	csr, err := pki.ParseCSR([]byte(rc.GetCsrPem()))
	if err != nil {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	}
	if err := pki.VerifyProof(cur, csr.Raw, rc.GetProof()); err != nil {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	}
	ca := f.ca
	if f.renewCA != nil {
		ca = f.renewCA
	}
	if f.renewAs != nil {
		id = *f.renewAs
	}
	certPEM, notAfter, err := ca.Issue(csr.PublicKey, id, nil, nil, time.Hour)
	if err != nil {
		return streamrpc.ErrorResponse(streamrpc.CodeInternal, "%v", err)
	}
	return &streamv1.Response{Body: &streamv1.Response_Certificate{Certificate: &streamv1.Certificate{
		CertificatePem: string(certPEM), CaPem: string(ca.CertPEM()), NotAfter: timestamppb.New(notAfter),
	}}}
}

func (f *fakeFrontgate) renewalCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renewals
}

// startFrontgate serves with a certificate from serverCA, and trusts and
// renews with ca.
func startFrontgate(t *testing.T, ca, serverCA *pki.CA) *fakeFrontgate {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFrontgate{ca: ca, conns: make(chan connection, 4), addr: lis.Addr().String()}
	fg := testca.Creds(t, serverCA, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, time.Hour)
	// The server trusts ca for client certificates even when serverCA
	// differs: only the drone's check of the server is under test then.
	stc := fg.ServerConfig(tls.VerifyClientCertIfGiven)
	stc.GetConfigForClient = nil
	stc.ClientCAs = ca.Pool()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(stc)))
	streamv1.RegisterDroneLinkServer(gs, f)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-served })
	return f
}

func (f *fakeFrontgate) next(t *testing.T) connection {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the drone never connected")
		return connection{}
	}
}

// fakeRenderer records deliveries and fails when told to.
type fakeRenderer struct {
	mu    sync.Mutex
	calls int
	files map[string][]byte
	key   []byte
	err   error
}

func (r *fakeRenderer) Configure(_ context.Context, files map[string][]byte, key []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.files, r.key = files, key
	return r.err
}

type drone struct {
	dir   string
	exec  *executor.Executor
	rend  *fakeRenderer
	creds *tlsutil.Creds
	// cmdKey signs commands as pilot would; the agent trusts its public
	// half unless an option says otherwise.
	cmdKey ed25519.PrivateKey
}

// startDrone runs an agent against addr until the test ends, with a
// certificate from ca valid for an hour.
func startDrone(t *testing.T, ca *pki.CA, addr string, opts ...func(*Config)) *drone {
	t.Helper()
	return startDroneWith(t, testca.Creds(t, ca, droneID, time.Hour), addr, opts...)
}

// startDroneWith runs an agent with creds; opts adjust its Config last.
func startDroneWith(t *testing.T, creds *tlsutil.Creds, addr string, opts ...func(*Config)) *drone {
	t.Helper()
	d := &drone{dir: t.TempDir(), rend: &fakeRenderer{}, creds: creds, cmdKey: newCommandKey(t)}
	var err error
	d.exec, err = executor.New(executor.Config{DataDir: d.dir, NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NodeID: "cln-1", ClusterID: "cl-1", FrontgateID: "fg-1", FrontgateAddress: addr, Version: "test",
		Creds:    creds,
		Executor: d.exec, Renderer: d.rend,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
		BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		CommandPublicKey: d.cmdKey.Public().(ed25519.PublicKey),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		_ = d.exec.Close()
	})
	return d
}

func runCommand(rc *streamv1.RunCommand) *streamv1.Request {
	return &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}}
}

func call(t *testing.T, p *streamrpc.Peer, req *streamv1.Request) (*streamv1.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Call(ctx, req)
}

func TestServesRequests(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	d := startDrone(t, ca, fg.addr)
	c := fg.next(t)
	if c.hello.Component != "drone" || c.hello.Id != "cln-1" || c.hello.ClusterId != "cl-1" || c.hello.Version != "test" {
		t.Fatalf("hello: %v", c.hello)
	}
	if c.identity != droneID {
		t.Fatalf("the drone presented %s, want %s", c.identity, droneID)
	}

	resp, err := call(t, c.peer, d.signed(t, &streamv1.RunCommand{NodeId: "cln-1", CommandId: "c1", Cmd: "echo hi; exit 4"}))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetCommandResult()
	if res.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || res.GetExitCode() != 4 || string(res.GetOutput()) != "hi\n" {
		t.Fatalf("result: %v", res)
	}

	files := map[string][]byte{"conf.d/a.toml": []byte("x")}
	resp, err = call(t, c.peer, d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: files}))
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("configure: %v %v", resp, err)
	}
	d.rend.mu.Lock()
	got := d.rend.files
	d.rend.err = errors.New("render conf.d/a.toml (template a.tmpl): key does not exist")
	d.rend.mu.Unlock()
	if !bytes.Equal(got["conf.d/a.toml"], []byte("x")) {
		t.Fatalf("renderer got %v", got)
	}

	for _, tc := range []struct {
		name string
		req  *streamv1.Request
		code string
		want string
	}{
		{"render failure names the template", d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: files}), streamrpc.CodeInvalid, "a.tmpl"},
		{"command for another node", d.signed(t, &streamv1.RunCommand{NodeId: "cln-2", CommandId: "c2", Cmd: "true"}), streamrpc.CodeUnauthenticated, "cln-2"},
		{"bad command id", d.signed(t, &streamv1.RunCommand{NodeId: "cln-1", CommandId: "a/b", Cmd: "true"}), streamrpc.CodeInvalid, "command_id"},
		{"renderer for another cluster", d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-9"}), streamrpc.CodeUnauthenticated, "cl-9"},
		{"request a drone does not serve", &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}, streamrpc.CodeInvalid, "ListDrones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, c.peer, tc.req)
			if !streamrpc.IsCode(err, tc.code) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a %s error naming %q", err, tc.code, tc.want)
			}
		})
	}
}

// proxy relays TCP between the drone and the frontgate and can cut every
// connection it carries, as a network failure would.
type proxy struct {
	lis    net.Listener
	mu     sync.Mutex
	target string
	// attempts counts accepted connections, relayed or not.
	attempts int
	conns    []net.Conn
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.attempts++
		p.mu.Unlock()
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	// One direction ending ends the other too.
	dst.Close()
	src.Close()
}

// setTarget relays new connections to addr.
func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// cut closes every connection relayed so far.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) close() {
	p.lis.Close()
	p.cut()
	p.wg.Wait()
}

func TestCommandSurvivesAConnectionCut(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	px := startProxy(t, fg.addr)
	d := startDrone(t, ca, px.addr())
	first := fg.next(t)

	marker := filepath.Join(d.dir, "marker")
	req := &streamv1.RunCommand{NodeId: "cln-1", CommandId: "job-1.task-3", Cmd: fmt.Sprintf("sleep 1; echo ran >> %s", marker), TimeoutSeconds: 30}
	signedReq := d.signed(t, req)
	callErr := make(chan error, 1)
	go func() {
		_, err := call(t, first.peer, signedReq)
		callErr <- err
	}()

	// Cut the network once the command is running on the drone.
	record := filepath.Join(d.dir, "commands", req.CommandId+".json")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(record); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	px.cut()
	select {
	case err := <-callErr:
		if err == nil {
			t.Fatal("the call on the cut stream succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call on the cut stream never failed")
	}

	// The drone comes back, and the frontgate asks again with the same id.
	second := fg.next(t)
	resp, err := call(t, second.peer, signedReq)
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetCommandResult()
	if res.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || res.GetExitCode() != 0 {
		t.Fatalf("result after reconnect: %v", res)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "ran\n" {
		t.Fatalf("marker %q: the command must have run exactly once", b)
	}
}

func TestConnectsOnceTheFrontgateIsUp(t *testing.T) {
	// Nothing listens behind the proxy at first: a port just released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	px := startProxy(t, closed)
	ca := testca.New(t)
	d := startDrone(t, ca, px.addr())

	// Let the drone fail a few attempts, then bring the frontgate up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		px.mu.Lock()
		tried := px.attempts
		px.mu.Unlock()
		if tried >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drone did not retry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fg := startFrontgate(t, ca, ca)
	px.setTarget(fg.addr)
	c := fg.next(t)
	if _, err := call(t, c.peer, d.signed(t, &streamv1.RunCommand{NodeId: "cln-1", CommandId: "late", Cmd: "true"})); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	ca := testca.New(t)
	full := Config{NodeID: "cln-1", ClusterID: "cl-1", FrontgateID: "fg-1", FrontgateAddress: "a:1", Creds: testca.Creds(t, ca, droneID, time.Hour), Executor: &executor.Executor{}, Renderer: &fakeRenderer{}}
	for _, tc := range []struct {
		want   string
		mutate func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"ClusterID", func(c *Config) { c.ClusterID = "" }},
		{"FrontgateID", func(c *Config) { c.FrontgateID = "" }},
		{"FrontgateAddress", func(c *Config) { c.FrontgateAddress = "" }},
		{"host:port", func(c *Config) { c.FrontgateAddress = "no-port" }},
		{"Executor", func(c *Config) { c.Executor = nil }},
		{"Renderer", func(c *Config) { c.Renderer = nil }},
		{"Creds", func(c *Config) { c.Creds = nil }},
		{"not drone cln-2", func(c *Config) { c.NodeID = "cln-2" }},
		{"hangar://drone/cl-1/cln-1", func(c *Config) { c.ClusterID = "cl-2" }},
	} {
		cfg := full
		tc.mutate(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %s: %v", tc.want, err)
		}
	}
	if _, err := New(full); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesAFrontgateOutsideTheCA(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, testca.New(t))
	px := startProxy(t, fg.addr)
	startDrone(t, ca, px.addr())
	// Each attempt reaches the impostor's TLS handshake, none its Connect.
	waitFor(t, "three connection attempts", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return px.attempts >= 3
	})
	select {
	case c := <-fg.conns:
		t.Fatalf("the drone opened a stream to a frontgate pilot's CA did not certify: %v", c.hello)
	default:
	}
}

func TestRenewsThroughTheStreamWithoutDroppingIt(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	px := startProxy(t, fg.addr)
	// Certificates start a minute in the past; with 30s left of 90 the
	// renewal is due at once.
	d := startDroneWith(t, testca.Creds(t, ca, droneID, 30*time.Second), px.addr())
	first := fg.next(t)
	old := d.creds.Leaf().SerialNumber
	waitFor(t, "the renewed certificate", func() bool { return d.creds.Leaf().SerialNumber.Cmp(old) != 0 })
	renewed := d.creds.Leaf()
	if id := d.creds.Identity(); id != droneID || time.Until(renewed.NotAfter) < 50*time.Minute {
		t.Fatalf("renewed as %s until %s", id, renewed.NotAfter)
	}

	// The stream opened with the old certificate still serves: the drone
	// answers (here, that it serves no such request) rather than the
	// stream being gone.
	if _, err := call(t, first.peer, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}); !streamrpc.IsCode(err, streamrpc.CodeInvalid) {
		t.Fatalf("the first stream after renewal: %v", err)
	}
	// The next handshake presents the new one.
	px.cut()
	second := fg.next(t)
	if second.serial.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("reconnected with certificate %v, want the renewed %v", second.serial, renewed.SerialNumber)
	}
}

func TestRejectsABadRenewal(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(f *fakeFrontgate)
	}{
		{"certificate for another node", func(f *fakeFrontgate) {
			f.renewAs = &pki.Identity{Kind: pki.KindDrone, ID: "cln-2", Cluster: "cl-1"}
		}},
		{"certificate from another CA", func(f *fakeFrontgate) { f.renewCA = testca.New(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testca.New(t)
			fg := startFrontgate(t, ca, ca)
			fg.mu.Lock()
			tc.set(fg)
			fg.mu.Unlock()
			d := startDroneWith(t, testca.Creds(t, ca, droneID, 30*time.Second), fg.addr)
			old := d.creds.Leaf().SerialNumber
			fg.next(t)
			// A second request means the answer to the first was handled.
			waitFor(t, "a retried renewal", func() bool { return fg.renewalCount() >= 2 })
			if d.creds.Leaf().SerialNumber.Cmp(old) != 0 || d.creds.Identity() != droneID {
				t.Fatalf("the drone took the bad certificate (%s)", d.creds.Identity())
			}
		})
	}
}
