package frontgate

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/internal/fakepilot"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fg1 = pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}

// config is a frontgate fg-1 of pilot p on loopback, with a join token
// pilot knows.
func config(t *testing.T, p *fakepilot.Pilot, dataDir string) Config {
	t.Helper()
	p.AddToken("tok-fg-1", fg1, testca.Loopback)
	return Config{
		FrontgateID:     "fg-1",
		PilotAddress:    p.Addr(),
		JoinToken:       "tok-fg-1",
		CAPEM:           p.CA().CertPEM(),
		DataDir:         dataDir,
		EtcdClientURL:   "https://127.0.0.1:0",
		EtcdPeerURL:     "https://127.0.0.1:0",
		DroneListen:     "127.0.0.1:0",
		MetricsListen:   "127.0.0.1:0",
		WALSegmentBytes: 1 << 20,
		Version:         "test",
	}
}

func start(t *testing.T, cfg Config) *Frontgate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fg, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fg.Stop)
	return fg
}

func startFrontgate(t *testing.T, p *fakepilot.Pilot) *Frontgate {
	t.Helper()
	return start(t, config(t, p, t.TempDir()))
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// etcdAs returns a client of the frontgate's etcd presenting creds (none
// when nil).
func etcdAs(t *testing.T, fg *Frontgate, ca *pki.CA, creds *tlsutil.Creds) *clientv3.Client {
	t.Helper()
	tc, err := tlsutil.AnonymousClientConfig(ca.CertPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	if creds != nil {
		tc = creds.ClientConfig("127.0.0.1", pki.Identity{})
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{fg.EtcdClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// etcdTree reads prefix as the frontgate itself (a certificate with its
// identity is its root user).
func etcdTree(t *testing.T, fg *Frontgate, ca *pki.CA, prefix string) map[string]string {
	t.Helper()
	resp, err := etcdAs(t, fg, ca, testca.Creds(t, ca, fg1, time.Hour)).Get(callCtx(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

// drone is a connected fake drone that answers every command with exit 0.
type drone struct {
	peer *streamrpc.Peer
	done chan struct{}
}

func dialDrone(t *testing.T, fg *Frontgate, ca *pki.CA, creds *tlsutil.Creds) *grpc.ClientConn {
	t.Helper()
	tc, err := tlsutil.AnonymousClientConfig(ca.CertPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	if creds != nil {
		tc = creds.ClientConfig("127.0.0.1", pki.Identity{})
	}
	cc, err := grpc.NewClient(fg.DroneAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// connectDrone connects as node of cluster with creds (a new certificate
// of ca when nil) and sends a matching hello.
func connectDrone(t *testing.T, fg *Frontgate, ca *pki.CA, node, cluster string, creds *tlsutil.Creds) *drone {
	t.Helper()
	if creds == nil {
		creds = testca.Drone(t, ca, node, cluster)
	}
	cc := dialDrone(t, fg, ca, creds)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := streamv1.NewDroneLinkClient(cc).Connect(ctx)
	if err == nil {
		err = streamrpc.SendHello(stream, &streamv1.Hello{Component: "drone", Id: node, ClusterId: cluster})
	}
	if err != nil {
		cancel()
		cc.Close()
		t.Fatal(err)
	}
	peer := streamrpc.NewPeer(stream, func(_ context.Context, req *streamv1.Request) *streamv1.Response {
		rc := req.GetRunCommand()
		return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{
			CommandId: rc.GetCommandId(), NodeId: node, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: []byte(rc.GetCmd()),
		}}}
	}, streamrpc.Options{})
	d := &drone{peer: peer, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		_ = peer.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-d.done
		cc.Close()
	})
	return d
}

func listed(t *testing.T, p *fakepilot.Pilot, cluster string) []string {
	t.Helper()
	resp, err := p.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: cluster}}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range resp.GetDroneList().GetDrones() {
		out = append(out, d.NodeId)
	}
	return out
}

func applyMetadata(t *testing.T, p *fakepilot.Pilot, cluster string, kvs map[string]string, readers ...string) {
	t.Helper()
	resp, err := p.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: cluster, Kvs: kvs, ReaderNodeIds: readers}}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("apply metadata of %s = %v, %v", cluster, resp, err)
	}
}

func TestFrontgateServesPilot(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	hello := pilot.WaitConnected(t, 15*time.Second)
	if hello.Id != "fg-1" || hello.Component != "frontgate" || !slices.Contains(hello.Capabilities, "apply_metadata") || !slices.Contains(hello.Capabilities, "revoke") {
		t.Fatalf("hello = %v", hello)
	}
	if id, _ := pki.IdentityOf(fg.Certificate()); id != fg1 || pilot.Joins() != 1 {
		t.Fatalf("frontgate runs as %s after %d joins, want %s enrolled once", id, pilot.Joins(), fg1)
	}
	if u, err := url.Parse(fg.EtcdClientURL()); err != nil || u.Scheme != "https" {
		t.Fatalf("etcd client URL %s, want https", fg.EtcdClientURL())
	}

	// Metadata lands in etcd under the cluster's prefix.
	applyMetadata(t, pilot, "cl-1", map[string]string{"hosts/master/i-1/ip": "10.0.0.1", "env/port": "6379"}, "cln-a")
	got := etcdTree(t, fg, pilot.CA(), "/clusters/cl-1/")
	if len(got) != 2 || got["/clusters/cl-1/hosts/master/i-1/ip"] != "10.0.0.1" || got["/clusters/cl-1/env/port"] != "6379" {
		t.Fatalf("etcd holds %v", got)
	}

	// A bad request is answered with a code naming the field.
	_, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: map[string]string{"../x": "1"}}}})
	if !streamrpc.IsCode(err, streamrpc.CodeInvalid) || !strings.Contains(err.Error(), `"../x"`) {
		t.Fatalf("apply with a bad key = %v, want invalid naming the key", err)
	}

	// Drones that connect are listed and reachable.
	connectDrone(t, fg, pilot.CA(), "cln-a", "cl-1", nil)
	connectDrone(t, fg, pilot.CA(), "cln-b", "cl-2", nil)
	var nodes []string
	waitFor(t, "drone cln-a listed", func() bool { nodes = listed(t, pilot, "cl-1"); return len(nodes) > 0 })
	if !slices.Equal(nodes, []string{"cln-a"}) {
		t.Fatalf("drones of cl-1 = %v, want [cln-a]", nodes)
	}
	resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{NodeId: "cln-b", CommandId: "c-1", Cmd: "hostname"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetCommandResult(); r.GetNodeId() != "cln-b" || string(r.GetOutput()) != "hostname" {
		t.Fatalf("run_command answered %v", resp)
	}

	if _, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: "cl-1"}}}); err != nil {
		t.Fatal(err)
	}
	if got := etcdTree(t, fg, pilot.CA(), "/clusters/cl-1/"); len(got) != 0 {
		t.Fatalf("after delete etcd holds %v", got)
	}

	body := scrape(t, fg.MetricsAddr())
	for _, want := range []string{
		"hangar_frontgate_connected_drones 2",
		"hangar_frontgate_pilot_link_up 1",
		`hangar_frontgate_relayed_requests_total{kind="apply_metadata",result="ok"} 1`,
		`hangar_frontgate_relayed_requests_total{kind="apply_metadata",result="invalid"} 1`,
		`hangar_frontgate_relayed_requests_total{kind="run_command",result="ok"} 1`,
		"go_gc_heap_live_bytes ", // the scale benchmark's live heap per drone
		"go_memstats_stack_inuse_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	return string(b)
}

// denied is etcd's refusal of a user without the permission, or of a
// certificate whose user does not exist.
func denied(err error) bool {
	return err != nil && (errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserNotFound) ||
		errors.Is(err, rpctypes.ErrAuthFailed) || strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "user name not found"))
}

func TestMetadataIsolation(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	pilot.WaitConnected(t, 15*time.Second)
	ca := pilot.CA()
	applyMetadata(t, pilot, "a", map[string]string{"env/port": "6379"}, "cln-a1")
	applyMetadata(t, pilot, "b", map[string]string{"env/port": "3306"}, "cln-b1")
	a1 := etcdAs(t, fg, ca, testca.Drone(t, ca, "cln-a1", "a"))

	resp, err := a1.Get(callCtx(t), "/clusters/a/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "6379" {
		t.Fatalf("drone of a reading /clusters/a/: %v, %v", resp, err)
	}
	if _, err := a1.Get(callCtx(t), "/clusters/b/", clientv3.WithPrefix()); !denied(err) {
		t.Fatalf("drone of a reading /clusters/b/ = %v, want permission denied", err)
	}
	for _, key := range []string{"/clusters/a/env/port", "/clusters/b/env/port", "/frontgate/revoked/cln-a1", "/elsewhere"} {
		if _, err := a1.Put(callCtx(t), key, "x"); !denied(err) {
			t.Errorf("drone of a writing %s = %v, want permission denied", key, err)
		}
	}

	// Without a certificate there is no connection at all.
	anon := etcdAs(t, fg, ca, nil)
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := anon.Get(short, "/clusters/a/", clientv3.WithPrefix()); err == nil || denied(err) {
		t.Fatalf("client without a certificate = %v, want no connection (not an etcd answer)", err)
	}
	// Nor over plain HTTP, the JSON gateway included.
	if resp, err := http.Post(strings.Replace(fg.EtcdClientURL(), "https", "http", 1)+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Lw=="}`)); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "kvs") {
			t.Fatalf("plain HTTP read etcd: %s", body)
		}
	}
	http.DefaultClient.CloseIdleConnections()

	// Once the cluster is gone, so is its readers' access.
	if _, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: "a"}}}); err != nil {
		t.Fatal(err)
	}
	applyMetadata(t, pilot, "a", map[string]string{"env/port": "1"}, "cln-other")
	if _, err := a1.Get(callCtx(t), "/clusters/a/", clientv3.WithPrefix()); !denied(err) {
		t.Fatalf("a reader of a deleted cluster reading its re-created namesake = %v, want permission denied", err)
	}
}

func TestDroneLinkNeedsMatchingCertificate(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	ca := pilot.CA()
	tests := []struct {
		name  string
		creds *tlsutil.Creds
		code  codes.Code
	}{
		{"no certificate", nil, codes.Unauthenticated},
		{"certificate of another node", testca.Drone(t, ca, "cln-x", "cl-1"), codes.PermissionDenied},
		{"certificate of another cluster", testca.Drone(t, ca, "cln-a", "cl-9"), codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := dialDrone(t, fg, ca, tt.creds)
			defer cc.Close()
			stream, err := streamv1.NewDroneLinkClient(cc).Connect(callCtx(t))
			if err == nil {
				_ = streamrpc.SendHello(stream, &streamv1.Hello{Component: "drone", Id: "cln-a", ClusterId: "cl-1"})
				_, err = stream.Recv()
			}
			if status.Code(err) != tt.code {
				t.Fatalf("Connect = %v, want %v", err, tt.code)
			}
		})
	}
	if n := fg.relay.Count(); n != 0 {
		t.Fatalf("%d drones admitted", n)
	}
}

func TestDroneJoinRelayedToPilot(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	pilot.WaitConnected(t, 15*time.Second)
	ca := pilot.CA()
	want := pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}
	pilot.AddToken("tok-a", want)

	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	cc := dialDrone(t, fg, ca, nil) // a joining drone has no certificate yet
	defer cc.Close()
	client := streamv1.NewDroneLinkClient(cc)
	cert, err := client.Join(callCtx(t), joinRequest(t, "tok-a", csr))
	if err != nil {
		t.Fatal(err)
	}
	if cert.CaPem != string(ca.CertPEM()) || !slices.Equal(cert.CommandPublicKey, pilot.CommandKey()) {
		t.Fatal("the join answer lacks pilot's CA or command key")
	}
	_, id, err := ca.Verify([]byte(cert.CertificatePem))
	if err != nil || id != want {
		t.Fatalf("joined certificate is %s (%v), want %s", id, err, want)
	}

	// The certificate opens DroneLink.Connect.
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := tlsutil.Save(t.TempDir(), keyPEM, []byte(cert.CertificatePem), ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	connectDrone(t, fg, ca, "cln-a", "cl-1", creds)
	waitFor(t, "the joined drone listed", func() bool { return slices.Equal(listed(t, pilot, ""), []string{"cln-a"}) })

	// The token worked once: another key is refused. (The same key may
	// join again, to recover a lost answer.)
	otherKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherCSR, err := pki.NewCSR(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Join(callCtx(t), joinRequest(t, "tok-a", otherCSR))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second join with the token = %v, want pilot's PermissionDenied", err)
	}
	if _, err := client.Join(callCtx(t), joinRequest(t, "tok-a", csr)); err != nil {
		t.Fatalf("a re-join with the same key: %v", err)
	}
}

func TestRevokeDropsDroneAndSurvivesRestart(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	dataDir := t.TempDir()
	cfg := config(t, pilot, dataDir)
	fg := start(t, cfg)
	pilot.WaitConnected(t, 15*time.Second)
	ca := pilot.CA()
	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "1"}, "cln-a", "cln-b")
	credsA := testca.Drone(t, ca, "cln-a", "cl-1")
	a := connectDrone(t, fg, ca, "cln-a", "cl-1", credsA)
	connectDrone(t, fg, ca, "cln-b", "cl-1", nil)
	waitFor(t, "two drones", func() bool { return len(listed(t, pilot, "cl-1")) == 2 })

	resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_Revoke{Revoke: &streamv1.Revoke{NodeId: "cln-a", ClusterId: "cl-1"}}})
	if err != nil || !strings.Contains(resp.GetAck().GetMessage(), "its stream was ended") {
		t.Fatalf("revoke = %v, %v", resp, err)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked drone's stream was not ended")
	}
	if got := listed(t, pilot, "cl-1"); !slices.Equal(got, []string{"cln-b"}) {
		t.Fatalf("drones after revoking cln-a: %v", got)
	}
	refusedConnect := func(fg *Frontgate) error {
		cc := dialDrone(t, fg, ca, credsA)
		defer cc.Close()
		stream, err := streamv1.NewDroneLinkClient(cc).Connect(callCtx(t))
		if err == nil {
			_ = streamrpc.SendHello(stream, &streamv1.Hello{Component: "drone", Id: "cln-a", ClusterId: "cl-1"})
			_, err = stream.Recv()
		}
		return err
	}
	if err := refusedConnect(fg); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("reconnect of the revoked drone = %v, want PermissionDenied", err)
	}
	// Its etcd user is gone, and re-listing it does not bring it back.
	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "2"}, "cln-a", "cln-b")
	if _, err := etcdAs(t, fg, ca, credsA).Get(callCtx(t), "/clusters/cl-1/", clientv3.WithPrefix()); !denied(err) {
		t.Fatalf("revoked drone reading its cluster = %v, want refused", err)
	}

	// A restart on the same data dir loads the certificate (no new join)
	// and still refuses the node.
	fg.Stop()
	cfg.JoinToken = ""
	fg = start(t, cfg)
	pilot.WaitConnected(t, 15*time.Second)
	if pilot.Joins() != 1 {
		t.Fatalf("pilot saw %d joins, want the certificate reused", pilot.Joins())
	}
	if err := refusedConnect(fg); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("reconnect of the revoked drone after a restart = %v, want PermissionDenied", err)
	}
	connectDrone(t, fg, ca, "cln-b", "cl-1", nil)
	waitFor(t, "cln-b back", func() bool { return slices.Equal(listed(t, pilot, "cl-1"), []string{"cln-b"}) })
}

// serverSerial is the serial of the certificate served at addr.
func serverSerial(t *testing.T, addr string, ca *pki.CA, client *tlsutil.Creds) *big.Int {
	t.Helper()
	tc := client.ClientConfig("127.0.0.1", pki.Identity{})
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(callCtx(t), "tcp", addr)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
}

func TestRenewalSwapsCertificateWithoutDroppingStreams(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	// Certificates are backdated a minute, so renewal at two thirds of
	// the lifetime comes about 2s after issue for a 33s certificate.
	pilot.SetCertTTL(33 * time.Second)
	fg := startFrontgate(t, pilot)
	pilot.WaitConnected(t, 15*time.Second)
	ca := pilot.CA()
	d := connectDrone(t, fg, ca, "cln-a", "cl-1", testca.Drone(t, ca, "cln-a", "cl-1"))
	waitFor(t, "drone", func() bool { return len(listed(t, pilot, "")) == 1 })
	probe := testca.Drone(t, ca, "cln-probe", "cl-1")
	etcdAddr := strings.TrimPrefix(fg.EtcdClientURL(), "https://")
	// The first renewal is due about now, so it may land during the probe:
	// what DroneLink serves must be the certificate of just before or just
	// after it.
	before := fg.Certificate().SerialNumber
	first := serverSerial(t, fg.DroneAddr(), ca, probe)
	if first.Cmp(before) != 0 && first.Cmp(fg.Certificate().SerialNumber) != 0 {
		t.Fatal("DroneLink does not serve the frontgate's certificate")
	}

	waitFor(t, "a renewal", func() bool { return pilot.Renewals(fg1) >= 1 && fg.Certificate().SerialNumber.Cmp(first) != 0 })
	if id, _ := pki.IdentityOf(fg.Certificate()); id != fg1 {
		t.Fatalf("renewed certificate is for %s", id)
	}
	// New handshakes get the new certificate: DroneLink, and etcd, which
	// re-reads the files.
	if s := serverSerial(t, fg.DroneAddr(), ca, probe); s.Cmp(first) == 0 {
		t.Fatal("DroneLink still serves the old certificate")
	}
	if s := serverSerial(t, etcdAddr, ca, probe); s.Cmp(first) == 0 {
		t.Fatal("etcd still serves the old certificate")
	}
	onDisk, err := tlsutil.Load(filepath.Join(fg.creds.Dir()))
	if err != nil || onDisk.Leaf().SerialNumber.Cmp(first) == 0 {
		t.Fatalf("credentials on disk not renewed (%v)", err)
	}
	// The frontgate's own etcd client keeps working with the new files.
	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "1"}, "cln-a")

	// Open streams carry on: the drone's, and the link to pilot.
	select {
	case <-d.done:
		t.Fatal("the drone's stream ended during the renewal")
	default:
	}
	resp, err := pilot.Call(callCtx(t), &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{NodeId: "cln-a", CommandId: "c-1", Cmd: "true"}}})
	if err != nil || resp.GetCommandResult().GetNodeId() != "cln-a" {
		t.Fatalf("command after renewal = %v, %v", resp, err)
	}
	if n := len(pilot.Hellos()); n != 1 {
		t.Fatalf("the link to pilot reconnected (%d hellos) during renewal", n)
	}
}

func TestDroneRenewalRelayed(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	pilot.WaitConnected(t, 15*time.Second)
	ca := pilot.CA()
	id := pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}
	creds := testca.Drone(t, ca, "cln-a", "cl-1")
	d := connectDrone(t, fg, ca, "cln-a", "cl-1", creds)
	before := creds.Leaf().SerialNumber
	err := tlsutil.RenewOnce(callCtx(t), creds, func(ctx context.Context, csrPEM, currentPEM, proof []byte) ([]byte, []byte, error) {
		resp, err := d.peer.Call(ctx, &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: &streamv1.RenewCertificate{
			CsrPem: string(csrPEM), CurrentCertificatePem: string(currentPEM), Proof: proof,
		}}})
		if err != nil {
			return nil, nil, err
		}
		return []byte(resp.GetCertificate().GetCertificatePem()), ca.CertPEM(), nil
	})
	if err != nil {
		t.Fatalf("drone renewal through the frontgate: %v", err)
	}
	if creds.Leaf().SerialNumber.Cmp(before) == 0 || creds.Identity() != id || pilot.Renewals(id) != 1 {
		t.Fatalf("renewed %s (renewals at pilot: %d)", creds.Identity(), pilot.Renewals(id))
	}
}

func TestFrontgateReconnectsToRestartedPilot(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	fg := startFrontgate(t, pilot)
	pilot.WaitConnected(t, 15*time.Second)

	pilot.Stop()
	waitFor(t, "the frontgate to notice pilot is gone", func() bool { return !fg.PilotConnected() })
	pilot = fakepilot.Start(t, pilot.Addr(), pilot.CA())
	pilot.WaitConnected(t, 15*time.Second)

	applyMetadata(t, pilot, "cl-1", map[string]string{"env/a": "1"})
	if got := etcdTree(t, fg, pilot.CA(), "/clusters/cl-1/"); got["/clusters/cl-1/env/a"] != "1" {
		t.Fatalf("etcd holds %v", got)
	}
}

func TestStartWithRefusedTokenSaysRecreate(t *testing.T) {
	pilot := fakepilot.Start(t, "127.0.0.1:0", nil)
	cfg := config(t, pilot, t.TempDir())
	cfg.JoinToken = "not-issued"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "pilot must recreate this frontgate") {
		t.Fatalf("Start = %v, want the refusal explained", err)
	}
}

func TestStartChecksConfig(t *testing.T) {
	_, err := Start(context.Background(), Config{FrontgateID: "fg-1", PilotAddress: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "data dir is required") {
		t.Fatalf("Start = %v, want the missing data dir named", err)
	}
}

// joinRequest is what a drone holding token sends to join with csr.
func joinRequest(t *testing.T, token string, csr []byte) *streamv1.JoinRequest {
	t.Helper()
	r, err := jointoken.Request(token, csr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
