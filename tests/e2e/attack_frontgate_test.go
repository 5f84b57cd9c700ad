package e2e

// Attacks by a compromised frontgate (or anyone holding a frontgate's
// certificate) on the drones behind it and on the secrets pilot sends them.
// A frontgate relays; it must not be able to command, read sealed secrets,
// or pass for another frontgate.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

// killFrontgate stops the real frontgate process of instance fgInstance,
// as an attacker who took its machine would, and waits until it is gone.
// When the test ends the frontgate is revoked, as an operator would after
// a compromise, so that the forced deletes of the clean-up do not wait
// for it.
//
// Pilot's reconciler starts a lost frontgate again within a pass, so the
// attacker's listeners may find its ports taken: the returned evict kills
// whatever of the instance runs again, and serveEtcd and serveDroneLink
// call it before each attempt to bind (once they hold the ports a revived
// frontgate cannot start).
func killFrontgate(t *testing.T, p *pilot, fgInstance, fgID string) (evict func()) {
	t.Helper()
	t.Cleanup(func() { _, _ = p.hangar("revoke", "frontgate", fgID, "--reason", "compromised in a test") })
	evict = func() {
		for _, pid := range processesOf(fgInstance) {
			n, _ := strconv.Atoi(pid)
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
	evict()
	waitFor(t, 30*time.Second, "the frontgate process to exit", func() (bool, string) {
		left := processesOf(fgInstance)
		return len(left) == 0, strconv.Itoa(len(left)) + " left"
	})
	return evict
}

// serveEtcd starts an etcd of the attacker's at the frontgate's etcd
// address, with the frontgate's certificate and no auth, so drones can
// read (nothing) and render: what stops the attack must be the drone's
// own checks, not a dead frontgate.
func serveEtcd(t *testing.T, fgInstanceDir, host string, evict func()) {
	t.Helper()
	tlsDir := filepath.Join(fgInstanceDir, "data", "tls")
	info := &transport.TLSInfo{
		CertFile:       filepath.Join(tlsDir, tlsutil.CertFile),
		KeyFile:        filepath.Join(tlsDir, tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(tlsDir, tlsutil.CAFile),
		ClientCertAuth: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var srv *etcdserver.Server
	waitFor(t, 30*time.Second, "the attacker's etcd to start at the frontgate's address", func() (bool, string) {
		evict()
		var err error
		srv, err = etcdserver.Start(ctx, etcdserver.Config{
			DataDir:         t.TempDir(),
			ClientURL:       "https://" + net.JoinHostPort(host, strconv.Itoa(userdata.FrontgateEtcdPort)),
			ClientTLS:       info,
			WALSegmentBytes: 1 << 20,
		})
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(srv.Close)
}

// fakeDroneLink is a DroneLink server an attacker runs at the frontgate's
// address: it counts TLS connections and hands over every stream that
// gets as far as a hello.
type fakeDroneLink struct {
	streamv1.UnimplementedDroneLinkServer
	mu       sync.Mutex
	accepted int
	peers    chan *streamrpc.Peer
	// join, when set, serves drones' first joins (a frontgate relays them
	// to pilot).
	join func(context.Context, *streamv1.JoinRequest) (*streamv1.Certificate, error)
}

func (f *fakeDroneLink) Join(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	if f.join == nil {
		return f.UnimplementedDroneLinkServer.Join(ctx, req)
	}
	return f.join(ctx, req)
}

type countingListener struct {
	net.Listener
	f *fakeDroneLink
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.f.mu.Lock()
		l.f.accepted++
		l.f.mu.Unlock()
	}
	return c, err
}

func (f *fakeDroneLink) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	if _, err := streamrpc.RecvHello(st, 10*time.Second); err != nil {
		return err
	}
	p := streamrpc.NewPeer(st, nil, streamrpc.Options{})
	select {
	case f.peers <- p:
	default:
	}
	return p.Run(st.Context())
}

func (f *fakeDroneLink) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// serveDroneLink listens at addr (the frontgate's DroneLink address) with
// the server certificate cert.
func serveDroneLink(t *testing.T, addr string, cert tls.Certificate, clientCAs *tlsutil.Creds, evict func()) *fakeDroneLink {
	t.Helper()
	return serveDroneLinkWith(t, addr, cert, clientCAs, evict, &fakeDroneLink{})
}

func serveDroneLinkWith(t *testing.T, addr string, cert tls.Certificate, clientCAs *tlsutil.Creds, evict func(), f *fakeDroneLink) *fakeDroneLink {
	t.Helper()
	var lis net.Listener
	var err error
	// The killed frontgate's socket may take a moment to be released.
	waitFor(t, 30*time.Second, "the frontgate's address to be free", func() (bool, string) {
		evict()
		lis, err = net.Listen("tcp", addr)
		return err == nil, fmt.Sprint(err)
	})
	f.peers = make(chan *streamrpc.Peer, 1)
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs.Pool()}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	streamv1.RegisterDroneLinkServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(countingListener{lis, f}) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return f
}

func (f *fakeDroneLink) next(t *testing.T) *streamrpc.Peer {
	t.Helper()
	select {
	case p := <-f.peers:
		return p
	case <-time.After(60 * time.Second):
		t.Fatal("the drone never opened a stream to the frontgate's address")
		return nil
	}
}

// A frontgate sends a drone a renderer configuration of its own whose
// check and reload commands write a marker. Before the fix the drone ran
// them (as root); now it refuses anything pilot did not sign.
func TestAttackFrontgateConfiguresRenderer(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	c, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	node := c.Nodes[0]
	droneUD := frontgateOf(t, p, node)
	fgInstance, fgUD := frontgateInstance(t, p)
	fgCreds, err := tlsutil.Load(filepath.Join(p.instanceDir(fgInstance), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	evict := killFrontgate(t, p, fgInstance, fgUD.FrontgateID)
	// The attacker holds the frontgate's own certificate and address.
	host, _, _ := net.SplitHostPort(droneUD.FrontgateAddress)
	serveEtcd(t, p.instanceDir(fgInstance), host, evict)
	fake := serveDroneLink(t, droneUD.FrontgateAddress, fgCreds.ServerConfig(tls.VerifyClientCertIfGiven).Certificates[0], fgCreds, evict)
	peer := fake.next(t)

	// Anyone may write here, so only the signature check can keep the
	// marker from appearing, whatever user the drone runs as.
	markDir := t.TempDir()
	if err := os.Chmod(markDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(markDir, "pwned")
	toml := "[template]\nsrc = \"x.tmpl\"\ndest = \"/x.conf\"\ncheck_cmd = \"id > " + marker + "\"\nreload_cmd = \"id > " + marker + "\"\n"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{
		NodeId: node.Id, ClusterId: c.Id,
		Files: map[string][]byte{"conf.d/x.toml": []byte(toml), "templates/x.tmpl": []byte("x")},
	}}})
	if !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) {
		t.Errorf("an unsigned renderer configuration from the frontgate: %v, want %s", err, streamrpc.CodeUnauthenticated)
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("the drone ran the frontgate's check/reload command: %s", b)
	}
	if _, err := os.Stat(filepath.Join(p.instanceRoot(node.InstanceId), "x.conf")); err == nil {
		t.Fatal("the drone wrote the frontgate's destination")
	}
}

// A drone must talk only to the frontgate its user data names. Pilot's CA
// certifies every frontgate, so an attacker holding any one frontgate's
// certificate valid for the address (another network's, a revoked one, one
// that held this address before) could otherwise pass for it.
func TestAttackForeignFrontgateCertificate(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	c, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	droneUD := frontgateOf(t, p, c.Nodes[0])
	fgInstance, fgUD := frontgateInstance(t, p)
	host, _, _ := net.SplitHostPort(droneUD.FrontgateAddress)

	// A certificate pilot's CA issued to another frontgate, valid for this
	// frontgate's address.
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-impostor"}
	certPEM, _, err := p.ca().Issue(key.Public(), other, []net.IP{net.ParseIP(host)}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	fgCreds, err := tlsutil.Load(filepath.Join(p.instanceDir(fgInstance), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	evict := killFrontgate(t, p, fgInstance, fgUD.FrontgateID)
	fake := serveDroneLink(t, droneUD.FrontgateAddress, cert, fgCreds, evict)

	// The drone keeps trying (three handshakes) and never opens a stream.
	deadline := time.Now().Add(60 * time.Second)
	for fake.connections() < 3 {
		select {
		case <-fake.peers:
			t.Fatalf("the drone of %s opened its stream to a server presenting %s's certificate", fgUD.FrontgateID, other.ID)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drone stopped trying to reach its frontgate (%d connections)", fake.connections())
		}
	}
	select {
	case <-fake.peers:
		t.Fatalf("the drone opened its stream to a server presenting %s's certificate", other.ID)
	default:
	}
}

// fakeFrontgateLink connects to pilot as the frontgate whose credentials
// it holds and answers pilot's requests itself, keeping every
// ConfigureRenderer it is asked to relay, as a compromised frontgate would.
type fakeFrontgateLink struct {
	p         *pilot
	mu        sync.Mutex
	renderers [][]byte // each ConfigureRenderer as it came off the wire
}

func (f *fakeFrontgateLink) handle(ctx context.Context, req *streamv1.Request) *streamv1.Response {
	ack := &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{}}}
	switch b := req.GetBody().(type) {
	case *streamv1.Request_ConfigureRenderer:
		raw, _ := proto.Marshal(b.ConfigureRenderer)
		f.mu.Lock()
		f.renderers = append(f.renderers, raw)
		f.mu.Unlock()
		return ack
	case *streamv1.Request_ListDrones:
		// Claim every drone of the cluster is connected, so that pilot
		// goes on to deliver the renderer configuration.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := f.p.clusters.GetCluster(cctx, &pilotv1.GetClusterRequest{Id: b.ListDrones.ClusterId})
		if err != nil {
			return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "%v", err)
		}
		var list streamv1.DroneList
		for _, n := range r.GetNodes() {
			list.Drones = append(list.Drones, &streamv1.DroneInfo{NodeId: n.Id, ClusterId: b.ListDrones.ClusterId})
		}
		return &streamv1.Response{Body: &streamv1.Response_DroneList{DroneList: &list}}
	case *streamv1.Request_RunCommand:
		return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "not relaying")
	}
	return ack
}

// A frontgate relays the metadata key pilot hands each drone; before the
// fix the key travelled in clear, so the frontgate could open the
// cluster's passwords; and it relays the drones' joins, which carried the
// join token in clear, so it could have pilot certify its own key as a
// drone's (and have secrets sealed to it). The attacker here plays the whole frontgate with its
// stolen certificate — it relays the drones' joins to pilot and claims
// they are connected — and keeps what pilot asks it to relay: nothing it
// gets holds the key.
func TestAttackFrontgateReadsMetadataKey(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	p.mustHangar("app", "push", "tests/e2e/testdata/testapp")
	first, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	fgInstance, fgUD := frontgateInstance(t, p)
	fgCreds, err := tlsutil.Load(filepath.Join(p.instanceDir(fgInstance), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	droneAddr := frontgateOf(t, p, first.Nodes[0]).FrontgateAddress
	evict := killFrontgate(t, p, fgInstance, fgUD.FrontgateID)

	// The attacker takes the frontgate's place on pilot's link...
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(fgCreds.ClientConfig("127.0.0.1", pki.Identity{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := streamrpc.SendHello(st, &streamv1.Hello{Component: "frontgate", Id: fgUD.FrontgateID}); err != nil {
		t.Fatal(err)
	}
	fake := &fakeFrontgateLink{p: p}
	peer := streamrpc.NewPeer(st, fake.handle, streamrpc.Options{})
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = peer.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	// ...and at its address, relaying joins as a frontgate does — after
	// first trying to redeem each drone's join for a key of its own, so
	// that pilot would seal the drones' secrets to the attacker.
	attackerKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	attackerCSR, err := pki.NewCSR(attackerKey)
	if err != nil {
		t.Fatal(err)
	}
	var hijacks []error
	relay := func(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
		resp, err := peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_Join{Join: req}})
		if err != nil {
			return nil, err
		}
		return resp.GetCertificate(), nil
	}
	serveDroneLinkWith(t, droneAddr, fgCreds.ServerConfig(tls.VerifyClientCertIfGiven).Certificates[0], fgCreds, evict, &fakeDroneLink{
		join: func(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
			hijack := proto.Clone(req).(*streamv1.JoinRequest)
			hijack.CsrPem = string(attackerCSR)
			_, err := relay(ctx, hijack)
			fake.mu.Lock()
			hijacks = append(hijacks, err)
			fake.mu.Unlock()
			return relay(ctx, req)
		},
	})

	const password = "pw-Kf4sV8nQ2x"
	r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "testapp", Runtime: "local",
		Params: map[string]string{"env.exit_code": "0", "env.secret": password}})
	if err != nil {
		t.Fatal(err)
	}
	// The create cannot finish behind the attacker. Revoking the frontgate
	// ends it at once; it must have ended before the clean-up deletes the
	// clusters, or its instances outlive the test.
	t.Cleanup(func() {
		_, _ = p.hangar("revoke", "frontgate", fgUD.FrontgateID, "--reason", "compromised in a test")
		wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p.waitJob(wctx, r.Job.Id)
	})
	waitFor(t, time.Minute, "a drone's join relayed and a renderer configuration sent by pilot", func() (bool, string) {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(hijacks) > 0 && len(fake.renderers) > 0, fmt.Sprintf("%d joins, %d renderer configurations", len(hijacks), len(fake.renderers))
	})

	master, err := secretbox.ReadKeyFile(filepath.Join(p.dataDir, "pilot", "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(master)
	if err != nil {
		t.Fatal(err)
	}
	mbox, err := box.Metadata(r.Cluster.Id)
	if err != nil {
		t.Fatal(err)
	}
	metaKey := mbox.Key()
	fake.mu.Lock()
	defer fake.mu.Unlock()
	t.Run("a relayed join is not certified for the relay's key", func(t *testing.T) {
		for _, err := range hijacks {
			if err == nil {
				t.Fatal("pilot certified the attacker's key for a drone whose join it relayed")
			}
		}
	})
	t.Run("the metadata key is not relayed in clear", func(t *testing.T) {
		for _, raw := range fake.renderers {
			if bytes.Contains(raw, metaKey) {
				t.Fatal("the renderer configuration relayed by the frontgate carries the cluster's metadata key in clear")
			}
			var cr streamv1.ConfigureRenderer
			if err := proto.Unmarshal(raw, &cr); err != nil {
				t.Fatal(err)
			}
			if len(cr.GetSealedMetadataKey()) == 0 || len(cr.GetSignature()) == 0 {
				t.Fatalf("renderer configuration without a sealed key or a signature: %v", &cr)
			}
			if _, err := seal.Open(attackerKey, seal.MetadataKeyInfo(cr.GetClusterId(), cr.GetNodeId()), cr.GetSealedMetadataKey()); err == nil {
				t.Fatal("the metadata key was sealed to the attacker's key")
			}
		}
	})
}
