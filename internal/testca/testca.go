// Package testca gives tests a certificate authority like pilot's, and
// credentials issued by it, so that every test speaks the same mutual TLS
// as production.
package testca

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// Loopback is the address test servers listen on and certify.
var Loopback = net.ParseIP("127.0.0.1")

// New returns a CA kept in a test directory.
func New(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatalf("test CA: %v", err)
	}
	return ca
}

// Creds issues a certificate for id (valid ttl, for 127.0.0.1 unless ips
// are given) and returns it saved in a new test directory.
func Creds(t testing.TB, ca *pki.CA, id pki.Identity, ttl time.Duration, ips ...net.IP) *tlsutil.Creds {
	t.Helper()
	if len(ips) == 0 {
		ips = []net.IP{Loopback}
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(key.Public(), id, ips, nil, ttl)
	if err != nil {
		t.Fatalf("issue %s: %v", id, err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatalf("save credentials of %s: %v", id, err)
	}
	return c
}

// Drone returns credentials of node in cluster.
func Drone(t testing.TB, ca *pki.CA, node, cluster string) *tlsutil.Creds {
	t.Helper()
	return Creds(t, ca, pki.Identity{Kind: pki.KindDrone, ID: node, Cluster: cluster}, time.Hour)
}

// Admitted reports whether the TLS server at rawURL (scheme://host:port)
// admits a client with cfg: it completes the handshake and reads the
// server's first bytes, which is where TLS 1.3 delivers a refusal of the
// client's certificate ("remote error: tls: bad certificate"). It offers
// HTTP/2 and writes its connection preface, which a gRPC server answers
// with its settings and an HTTP server with its settings or an error page:
// bytes either way.
func Admitted(ctx context.Context, rawURL string, cfg *tls.Config) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
