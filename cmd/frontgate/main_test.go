package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
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
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv(string) string { return "" }

func execute(ctx context.Context, getenv func(string) string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := newCommand(ctx, &out, getenv)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeUserdata(t *testing.T, ud userdata.Frontgate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "userdata.json")
	if err := os.WriteFile(p, userdata.Encode(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelpExplainsFrontgate(t *testing.T) {
	out, err := execute(context.Background(), noEnv, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"network (VPC)", "9611", "2379", "2380", "--userdata", "--metrics-listen", "join_token", "DIR/tls", "client certificate required"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestBadInvocations(t *testing.T) {
	ud := writeUserdata(t, userdata.Frontgate{FrontgateID: "fg-1", PilotAddress: "127.0.0.1:1", CAPEM: "x"})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, `"data-dir", "userdata" not set`},
		{"bad log format", []string{"--userdata", ud, "--data-dir", t.TempDir(), "--log-format", "xml"}, `--log-format "xml"`},
		{"bad address", []string{"--userdata", ud, "--data-dir", t.TempDir(), "--address", "localhost"}, `--address "localhost"`},
		{"missing user data", []string{"--userdata", "/nonexistent/ud.json", "--data-dir", t.TempDir()}, "--userdata /nonexistent/ud.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(context.Background(), noEnv, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %s", err, tt.want)
			}
		})
	}
}

// testPilot is pilot as a frontgate sees it: a CA, EnrollmentService.Join
// that certifies fg-1 for addr once, and FrontgateLink reporting each
// Hello from a certified frontgate.
type testPilot struct {
	streamv1.UnimplementedFrontgateLinkServer
	pilotv1.UnimplementedEnrollmentServiceServer
	ca     *pki.CA
	ip     net.IP
	hellos chan *streamv1.Hello

	mu   sync.Mutex
	used bool
}

const token = "tok-1"

func startPilot(t *testing.T, frontgateIP string) (*testPilot, string) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(key.Public(), pki.Identity{Kind: pki.KindPilot, ID: "pilot"}, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	self, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPilot{ca: ca, ip: net.ParseIP(frontgateIP), hellos: make(chan *streamv1.Hello, 10)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(self.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterFrontgateLinkServer(srv, p)
	pilotv1.RegisterEnrollmentServiceServer(srv, p)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return p, ln.Addr().String()
}

func (p *testPilot) Join(_ context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	p.mu.Lock()
	ok := jointoken.Proves(token, req) && !p.used
	p.used = true
	p.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "join token unknown, expired or already used")
	}
	csr, err := pki.ParseCSR([]byte(req.CsrPem))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	certPEM, _, err := p.ca.Issue(csr.PublicKey, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, []net.IP{p.ip}, nil, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &streamv1.Certificate{CertificatePem: string(certPEM), CaPem: string(p.ca.CertPEM())}, nil
}

func (p *testPilot) Connect(s streamv1.FrontgateLink_ConnectServer) error {
	id, err := tlsutil.PeerIdentity(s.Context())
	if err != nil || id.Kind != pki.KindFrontgate {
		return status.Error(codes.Unauthenticated, "frontgate certificate required")
	}
	h, err := streamrpc.RecvHello(s, 5*time.Second)
	if err != nil {
		return err
	}
	p.hellos <- h
	<-s.Context().Done()
	return nil
}

// loopbackAddr is a loopback address of the test's own, as the local
// provider gives each instance, so the fixed ports collide with nothing.
func loopbackAddr() string {
	return fmt.Sprintf("127.88.%d.%d", os.Getpid()%250+1, time.Now().UnixNano()%250+1)
}

func TestRunsUntilCancelled(t *testing.T) {
	addr := loopbackAddr()
	pilot, pilotAddr := startPilot(t, addr)
	getenv := func(k string) string {
		if k == "HANGAR_ADDRESS" {
			return addr
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	dataDir := t.TempDir()
	ud := writeUserdata(t, userdata.Frontgate{FrontgateID: "fg-1", PilotAddress: pilotAddr, JoinToken: token, CAPEM: string(pilot.ca.CertPEM())})
	go func() {
		_, err := execute(ctx, getenv, "--userdata", ud, "--data-dir", dataDir, "--log-format", "json")
		errc <- err
	}()

	select {
	case h := <-pilot.hellos:
		if h.Id != "fg-1" || h.Component != "frontgate" {
			t.Fatalf("hello = %v", h)
		}
	case err := <-errc:
		t.Fatalf("frontgate exited early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the frontgate did not connect to pilot")
	}
	// Every port is served at the address from $HANGAR_ADDRESS, over TLS
	// with the certificate pilot issued for that address.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pilot.ca.CertPEM())
	for _, port := range []int{userdata.FrontgateDronePort, userdata.FrontgateEtcdPort, userdata.FrontgatePeerPort} {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: addr, MinVersion: tls.VersionTLS12}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err != nil {
			// etcd's ports want a client certificate: TLS 1.3 reports
			// that at the first read, and a verified server is what is
			// checked here.
			t.Errorf("port %d: %v", port, err)
			continue
		}
		if id, err := pki.IdentityOf(c.(*tls.Conn).ConnectionState().PeerCertificates[0]); err != nil || id.ID != "fg-1" {
			t.Errorf("port %d serves %v (%v), want the frontgate's certificate", port, id, err)
		}
		c.Close()
	}
	for _, sub := range []string{"etcd", "tls/cert.pem", "tls/key.pem", "tls/ca.pem"} {
		if _, err := os.Stat(filepath.Join(dataDir, sub)); err != nil {
			t.Errorf("%s not under the data dir: %v", sub, err)
		}
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("graceful stop returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the frontgate did not stop")
	}
}

func TestRefusedJoinExplains(t *testing.T) {
	addr := loopbackAddr()
	pilot, pilotAddr := startPilot(t, addr)
	getenv := func(k string) string {
		if k == "HANGAR_ADDRESS" {
			return addr
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ud := writeUserdata(t, userdata.Frontgate{FrontgateID: "fg-1", PilotAddress: pilotAddr, JoinToken: "wrong", CAPEM: string(pilot.ca.CertPEM())})
	_, err := execute(ctx, getenv, "--userdata", ud, "--data-dir", t.TempDir(), "--log-format", "json")
	if err == nil || !strings.Contains(err.Error(), "pilot must recreate this frontgate") {
		t.Fatalf("frontgate with a refused token = %v, want the refusal explained", err)
	}
}
