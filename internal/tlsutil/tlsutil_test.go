package tlsutil

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func issue(t *testing.T, ca *pki.CA, id pki.Identity, ttl time.Duration) *Creds {
	t.Helper()
	key, _ := pki.NewKey()
	certPEM, _, err := ca.Issue(key.Public(), id, []net.IP{net.ParseIP("127.0.0.1")}, nil, ttl)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	c, err := Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// joinServer answers Join with the caller's identity, or the error.
type joinServer struct {
	streamv1.UnimplementedDroneLinkServer
}

func (joinServer) Join(ctx context.Context, _ *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	id, err := PeerIdentity(ctx)
	if err != nil {
		return &streamv1.Certificate{CertificatePem: "anonymous: " + err.Error()}, nil
	}
	return &streamv1.Certificate{CertificatePem: id.String()}, nil
}

func TestMutualTLSCarriesIdentityAndRotates(t *testing.T) {
	ca, _ := pki.LoadOrCreateCA(t.TempDir())
	server := issue(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, time.Hour)
	client := issue(t, ca, pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}, time.Hour)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(server.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterDroneLinkServer(gs, joinServer{})
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	call := func(cfg *tls.Config) string {
		t.Helper()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := streamv1.NewDroneLinkClient(conn).Join(ctx, &streamv1.JoinRequest{})
		if err != nil {
			return "error: " + err.Error()
		}
		return resp.CertificatePem
	}

	if got := call(client.ClientConfig("127.0.0.1", pki.Identity{})); got != "hangar://drone/cl-1/cln-1" {
		t.Fatalf("server saw %q, want the drone's identity", got)
	}
	anon, _ := AnonymousClientConfig(ca.CertPEM(), "127.0.0.1", pki.Identity{})
	if got := call(anon); got[:10] != "anonymous:" {
		t.Fatalf("anonymous caller seen as %q", got)
	}
	// A client trusting another CA refuses the server.
	other, _ := pki.LoadOrCreateCA(t.TempDir())
	wrong, _ := AnonymousClientConfig(other.CertPEM(), "127.0.0.1", pki.Identity{})
	if got := call(wrong); got[:6] != "error:" {
		t.Fatalf("a client with another CA connected: %q", got)
	}

	// Renewal swaps the certificate; the next handshake presents the new one.
	before := client.Leaf().SerialNumber
	err = RenewOnce(context.Background(), client, func(_ context.Context, csrPEM, currentPEM, proof []byte) ([]byte, []byte, error) {
		csr, err := pki.ParseCSR(csrPEM)
		if err != nil {
			return nil, nil, err
		}
		cur, id, err := ca.Verify(currentPEM)
		if err != nil {
			return nil, nil, err
		}
		if err := pki.VerifyProof(cur, csr.Raw, proof); err != nil {
			return nil, nil, err
		}
		cert, _, err := ca.Issue(csr.PublicKey, id, nil, nil, time.Hour)
		return cert, ca.CertPEM(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if client.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("renewal kept the old certificate")
	}
	reloaded, err := Load(client.Dir())
	if err != nil || reloaded.Leaf().SerialNumber.Cmp(client.Leaf().SerialNumber) != 0 {
		t.Fatalf("renewed certificate not saved: %v", err)
	}
	if got := call(client.ClientConfig("127.0.0.1", pki.Identity{})); got != "hangar://drone/cl-1/cln-1" {
		t.Fatalf("after renewal the server saw %q", got)
	}
}
