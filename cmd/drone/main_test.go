package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/enroll"
	"github.com/hangarhq/hangar/drone/executor/supervise"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

func TestMain(m *testing.M) {
	// run() starts command supervisors from its own binary: this one.
	if len(os.Args) > 1 && os.Args[1] == supervise.Arg {
		os.Exit(supervise.Main(os.Args[2:]))
	}
	goleak.VerifyTestMain(m)
}

func TestParse(t *testing.T) {
	t.Setenv("HANGAR_ROOT", "/srv/inst-1/root")
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		check   func(*options) string
	}{
		{name: "userdata required", args: []string{"--data-dir", "/d"}, wantErr: "--userdata is required"},
		{name: "data dir required", args: []string{"--userdata", "/u"}, wantErr: "--data-dir is required"},
		{name: "bad log format", args: []string{"--userdata", "/u", "--data-dir", "/d", "--log-format", "xml"}, wantErr: `--log-format "xml": allowed values are text and json`},
		{name: "bad log level", args: []string{"--userdata", "/u", "--data-dir", "/d", "--log-level", "loud"}, wantErr: `--log-level "loud"`},
		{name: "stray argument", args: []string{"--userdata", "/u", "--data-dir", "/d", "start"}, wantErr: `unexpected argument "start"`},
		{
			name: "root from the environment, baked templates under it",
			args: []string{"--userdata", "/u", "--data-dir", "/d"},
			check: func(o *options) string {
				if o.root != "/srv/inst-1/root" || o.confdDir != "/srv/inst-1/root/etc/confd" {
					return fmt.Sprintf("root %q confd %q", o.root, o.confdDir)
				}
				return ""
			},
		},
		{
			name: "explicit flags win",
			args: []string{"--userdata", "/u", "--data-dir", "/d", "--root", "/r", "--confd-dir", "/baked"},
			check: func(o *options) string {
				if o.root != "/r" || o.confdDir != "/baked" {
					return fmt.Sprintf("root %q confd %q", o.root, o.confdDir)
				}
				return ""
			},
		},
		{
			name: "relative paths are made absolute before the chdir",
			args: []string{"--userdata", "u.json", "--data-dir", "data"},
			check: func(o *options) string {
				if !filepath.IsAbs(o.userdata) || !filepath.IsAbs(o.dataDir) {
					return fmt.Sprintf("userdata %q data %q", o.userdata, o.dataDir)
				}
				return ""
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(o); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	for _, want := range []string{"agent in every app instance", "user data", "--userdata", "-data-dir"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"--data-dir", "/d"}, &out); code != 2 || !strings.Contains(out.String(), "--userdata is required") {
		t.Fatalf("missing flag: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--userdata", filepath.Join(t.TempDir(), "none.json"), "--data-dir", t.TempDir()}, &out); code != 1 || !strings.Contains(out.String(), "read user data") {
		t.Fatalf("missing user data file: exit %d, output %q", code, out.String())
	}
}

// frontgate is a minimal DroneLink server over TLS, as the real one: Join
// redeems the one join token (pilot's part, done here with the test CA),
// Connect needs a drone certificate matching the Hello, and each drone
// stream is handed to the test.
type frontgate struct {
	streamv1.UnimplementedDroneLinkServer
	ca     *pki.CA
	cmdKey ed25519.PublicKey
	peers  chan *streamrpc.Peer

	mu     sync.Mutex
	tokens map[string]pki.Identity
	joins  int
}

func (f *frontgate) Join(_ context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins++
	var id pki.Identity
	var tok string
	for t, tid := range f.tokens {
		if jointoken.Proves(t, req) {
			id, tok = tid, t
		}
	}
	if tok == "" {
		return nil, status.Error(codes.PermissionDenied, "join token is unknown, used or expired")
	}
	delete(f.tokens, tok)
	csr, err := pki.ParseCSR([]byte(req.GetCsrPem()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	certPEM, _, err := f.ca.Issue(csr.PublicKey, id, nil, nil, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &streamv1.Certificate{CertificatePem: string(certPEM), CaPem: string(f.ca.CertPEM()), CommandPublicKey: f.cmdKey}, nil
}

func (f *frontgate) joinCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins
}

func (f *frontgate) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	id, err := tlsutil.PeerIdentity(st.Context())
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "a drone certificate is required: %v", err)
	}
	h, err := streamrpc.RecvHello(st, 5*time.Second)
	if err != nil {
		return err
	}
	if id.Kind != pki.KindDrone || h.GetId() != id.ID || h.GetClusterId() != id.Cluster {
		return status.Errorf(codes.PermissionDenied, "hello %s/%s does not match the certificate %s", h.GetClusterId(), h.GetId(), id)
	}
	p := streamrpc.NewPeer(st, nil, streamrpc.Options{})
	select {
	case f.peers <- p:
	case <-st.Context().Done():
		return nil
	}
	_ = p.Run(st.Context())
	return nil
}

// syncBuffer is a log sink the drone writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEtcd runs an etcd the way a frontgate does: https with client
// certificates only, auth on, the frontgate's user with the root role, and
// a read-only role per cluster granted to its drones' users. It returns
// the client URL and an admin client (the frontgate's identity).
func startEtcd(ctx context.Context, t *testing.T, fgDir string, fg *tlsutil.Creds) (string, *clientv3.Client) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cu, _ := url.Parse("https://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       filepath.Join(fgDir, tlsutil.CertFile),
		KeyFile:        filepath.Join(fgDir, tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(fgDir, tlsutil.CAFile),
		ClientCertAuth: true,
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	clientURL := "https://" + e.Clients[0].Addr().String()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, TLS: fg.ClientConfig("", pki.Identity{}), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })

	var pw [16]byte
	_, _ = rand.Read(pw[:])
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", hex.EncodeToString(pw[:])); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAddWithOptions(ctx, "frontgate:fg-1", "", noPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "frontgate:fg-1", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "cluster:cl-1"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "cluster:cl-1", "/clusters/cl-1/", clientv3.GetPrefixRangeEnd("/clusters/cl-1/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := admin.UserAddWithOptions(ctx, "drone:cln-1", "", noPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "drone:cln-1", "cluster:cl-1"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd auth: %v", err)
		}
	}
	return clientURL, admin
}

// TestDroneEndToEnd runs the whole drone against a frontgate-like etcd and
// a fake frontgate: on the first start it joins with its token, renders
// delivered templates from the metadata (read with its own certificate)
// and runs a command, then stops cleanly on cancellation; a second start
// uses the saved certificate without joining again.
func TestDroneEndToEnd(t *testing.T) {
	t.Setenv("HANGAR_ROOT", "") // no chdir in the test process
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fgDir := t.TempDir()
	fgKey, _ := pki.NewKey()
	fgCert, _, err := ca.Issue(fgKey.Public(), pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fgKeyPEM, _ := pki.EncodeKey(fgKey)
	fgCreds, err := tlsutil.Save(fgDir, fgKeyPEM, fgCert, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}

	etcdURL, admin := startEtcd(ctx, t, fgDir, fgCreds)
	for k, v := range map[string]string{
		"/clusters/cl-1/hosts/kv/i-1/node_id": "cln-1",
		"/clusters/cl-1/hosts/kv/i-1/ip":      "127.1.0.5",
		"/clusters/cl-2/env/secret":           "not for cln-1",
	} {
		if _, err := admin.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}

	cmdKey, cmdPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// command is a RunCommand for cln-1 signed as pilot signs it.
	command := func(priv ed25519.PrivateKey, id, cmd string) *streamv1.Request {
		rc := &streamv1.RunCommand{NodeId: "cln-1", CommandId: id, Cmd: cmd, TimeoutSeconds: 30, ExpiresAt: timestamppb.New(cmdsign.ExpiresAt(time.Now(), 30))}
		if err := cmdsign.Sign(priv, rc); err != nil {
			t.Fatal(err)
		}
		return &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := &frontgate{ca: ca, cmdKey: cmdKey, peers: make(chan *streamrpc.Peer, 1), tokens: map[string]pki.Identity{
		"tok-1": {Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"},
	}}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(fgCreds.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterDroneLinkServer(gs, fg)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	udPath := filepath.Join(dir, "userdata.json")
	ud := userdata.Drone{
		ClusterID: "cl-1", NodeID: "cln-1", FrontgateID: "fg-1", FrontgateAddress: lis.Addr().String(),
		// As user data written before etcd had TLS: still dialed with TLS.
		EtcdEndpoints: []string{strings.Replace(etcdURL, "https://", "http://", 1)},
		JoinToken:     "tok-1", CAPEM: string(ca.CertPEM()),
	}
	if err := os.WriteFile(udPath, userdata.Encode(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--userdata", udPath, "--data-dir", dataDir, "--confd-dir", filepath.Join(dir, "no-baked"), "--log-format", "json"}

	// startDrone runs the drone until the returned stop is called, and
	// hands back its stream.
	startDrone := func(logs *syncBuffer) (*streamrpc.Peer, func()) {
		droneCtx, stopDrone := context.WithCancel(ctx)
		exited := make(chan int, 1)
		go func() { exited <- run(droneCtx, args, logs) }()
		stop := func() {
			stopDrone()
			select {
			case code := <-exited:
				if code != 0 {
					t.Fatalf("exit code %d; logs:\n%s", code, logs.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the drone did not stop")
			}
		}
		select {
		case p := <-fg.peers:
			return p, stop
		case code := <-exited:
			t.Fatalf("the drone exited with %d; logs:\n%s", code, logs.String())
		case <-time.After(20 * time.Second):
			stopDrone()
			t.Fatalf("the drone never connected; logs:\n%s", logs.String())
		}
		return nil, nil
	}

	var logs syncBuffer
	peer, stop := startDrone(&logs)
	if fg.joinCount() != 1 {
		t.Fatalf("Join called %d times on the first start", fg.joinCount())
	}
	key, err := enroll.ReadCommandKey(filepath.Join(dataDir, "tls", enroll.CommandKeyFile))
	if err != nil || !key.Equal(cmdKey) {
		t.Fatalf("saved command key %x (%v), want pilot's", key, err)
	}

	dest := filepath.Join(dir, "out", "app.conf")
	// Pilot seals the metadata key to the key of the certificate the
	// drone just saved, and signs the whole configuration.
	saved, err := tlsutil.Load(filepath.Join(dataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	metaKey := bytes.Repeat([]byte{9}, 32)
	box, err := seal.To(saved.Key().Public(), seal.MetadataKeyInfo("cl-1", "cln-1"), metaKey)
	if err != nil {
		t.Fatal(err)
	}
	cr := &streamv1.ConfigureRenderer{
		NodeId: "cln-1", ClusterId: "cl-1",
		Files: map[string][]byte{
			"conf.d/app.toml":    fmt.Appendf(nil, "[template]\nsrc = \"app.tmpl\"\ndest = %q\nkeys = [\"/host\"]\n", dest),
			"templates/app.tmpl": []byte(`bind {{getv "/host/ip"}}`),
		},
		SealedMetadataKey: box,
		ExpiresAt:         timestamppb.New(time.Now().Add(cmdsign.RendererLifetime)),
	}
	if err := cmdsign.SignRenderer(cmdPriv, cr); err != nil {
		t.Fatal(err)
	}
	resp, err := peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("configure renderer: %v %v", resp, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, "metadata.key")); !bytes.Equal(b, metaKey) {
		t.Fatalf("kept metadata key %x, want the one pilot sealed (%x)", b, metaKey)
	}
	if b, _ := os.ReadFile(dest); string(b) != "bind 127.1.0.5" {
		t.Fatalf("rendered %q", b)
	}

	signed := command(cmdPriv, "c-1", "cat "+dest)
	resp, err = peer.Call(ctx, signed)
	if err != nil {
		t.Fatal(err)
	}
	if res := resp.GetCommandResult(); res.GetExitCode() != 0 || string(res.GetOutput()) != "bind 127.1.0.5" {
		t.Fatalf("command result: %v", res)
	}
	// The drone verifies with the key it got at join, not any key.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := peer.Call(ctx, command(otherPriv, "c-2", "true")); !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) {
		t.Fatalf("a command signed with another key: %v, want %s", err, streamrpc.CodeUnauthenticated)
	}

	// The certificate the drone saved is what etcd knows it by: its own
	// cluster is readable, another cluster is not, and nothing is writable.
	creds, err := tlsutil.Load(filepath.Join(dataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, TLS: creds.ClientConfig("", pki.Identity{}), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	if r, err := dc.Get(ctx, "/clusters/cl-1/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 2 {
		t.Fatalf("own cluster as the drone: %v %v", r, err)
	}
	if _, err := dc.Get(ctx, "/clusters/cl-2/", clientv3.WithPrefix()); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("another cluster as the drone: %v, want permission denied", err)
	}
	if _, err := dc.Put(ctx, "/clusters/cl-1/hosts/kv/i-1/ip", "6.6.6.6"); err == nil {
		t.Fatal("the drone could write its cluster's metadata")
	}

	stop()
	if !strings.Contains(logs.String(), `"node_id":"cln-1"`) {
		t.Fatalf("logs lack the node id:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "tok-1") {
		t.Fatalf("the join token was logged:\n%s", logs.String())
	}

	// The token is spent; a restart must come back on the saved certificate.
	var again syncBuffer
	peer, stop = startDrone(&again)
	defer stop()
	if fg.joinCount() != 1 {
		t.Fatalf("the restarted drone called Join (%d calls)", fg.joinCount())
	}
	// The command key was loaded from disk: a signed command still runs.
	resp, err = peer.Call(ctx, command(cmdPriv, "c-3", "cat "+dest))
	if err != nil || string(resp.GetCommandResult().GetOutput()) != "bind 127.1.0.5" {
		t.Fatalf("after restart: %v %v", resp, err)
	}
}

func TestRefusedJoinExitsWithTheReason(t *testing.T) {
	t.Setenv("HANGAR_ROOT", "")
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	certPEM, _, err := ca.Issue(key.Public(), pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	fgCreds, err := tlsutil.Save("", keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := &frontgate{ca: ca, tokens: map[string]pki.Identity{}}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(fgCreds.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterDroneLinkServer(gs, fg)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()

	dir := t.TempDir()
	udPath := filepath.Join(dir, "userdata.json")
	ud := userdata.Drone{ClusterID: "cl-1", NodeID: "cln-1", FrontgateID: "fg-1", FrontgateAddress: lis.Addr().String(), EtcdEndpoints: []string{"https://127.0.0.1:1"}, JoinToken: "spent", CAPEM: string(ca.CertPEM())}
	if err := os.WriteFile(udPath, userdata.Encode(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs syncBuffer
	code := run(ctx, []string{"--userdata", udPath, "--data-dir", filepath.Join(dir, "data"), "--log-format", "text"}, &logs)
	if code != 1 || !strings.Contains(logs.String(), "join refused") || !strings.Contains(logs.String(), "recreate the instance") {
		t.Fatalf("exit %d, logs:\n%s", code, logs.String())
	}
	if fg.joinCount() != 1 {
		t.Fatalf("Join called %d times, want once", fg.joinCount())
	}
}
