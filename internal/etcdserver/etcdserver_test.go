package etcdserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func TestStartServeRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{DataDir: dir, WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	if size := dirSize(t, dir); size > 20<<20 {
		t.Errorf("fresh data dir is %d bytes; the small WAL segment was not applied", size)
	}

	// Data survives a restart on the same dir.
	s, err = Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err = s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart got %v, want /k=v", resp.Kvs)
	}
}

func TestStartNeedsDataDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("Start without a data dir succeeded")
	}
}

// tlsFiles writes a CA and a frontgate certificate for 127.0.0.1 to a new
// dir and returns etcd's view of them.
func tlsFiles(t *testing.T) (*transport.TLSInfo, *pki.CA) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := issue(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"})
	return &transport.TLSInfo{
		CertFile:       filepath.Join(creds.Dir(), tlsutil.CertFile),
		KeyFile:        filepath.Join(creds.Dir(), tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(creds.Dir(), tlsutil.CAFile),
		ClientCertAuth: true,
	}, ca
}

// issue saves a certificate of ca for id and 127.0.0.1 in a new dir.
func issue(t *testing.T, ca *pki.CA, id pki.Identity) *tlsutil.Creds {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(key.Public(), id, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := tlsutil.Save(t.TempDir(), keyPEM, certPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// handshake reports whether a TLS server at rawURL admits creds
// (testca.Admitted).
func handshake(ctx context.Context, rawURL string, creds *tlsutil.Creds) error {
	return testca.Admitted(ctx, rawURL, creds.ClientConfig("127.0.0.1", pki.Identity{}))
}

func TestMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, ca := tlsFiles(t)
	s, err := Start(ctx, Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, ClientTLS: info, PeerTLS: info})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.ClientURL(), "https://127.0.0.1:") {
		t.Fatalf("client URL %s, want https on 127.0.0.1", s.ClientURL())
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put with the server's certificate: %v", err)
	}

	// A client that trusts the CA but has no certificate of its own gets
	// no connection at all.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	anon, err := clientv3.New(clientv3.Config{
		Endpoints: []string{s.ClientURL()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := anon.Get(short, "/k"); err == nil {
		t.Fatal("a client without a certificate read etcd")
	}
}

func TestSchemeMustMatchTLS(t *testing.T) {
	info, _ := tlsFiles(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"http with client TLS", Config{ClientURL: "http://127.0.0.1:0", ClientTLS: info}, `client url "http://127.0.0.1:0": scheme must be https`},
		{"https without client TLS", Config{ClientURL: "https://127.0.0.1:0"}, `client url "https://127.0.0.1:0": scheme must be http`},
		{"http with peer TLS", Config{PeerURL: "http://127.0.0.1:0", PeerTLS: info}, `peer url "http://127.0.0.1:0": scheme must be https`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DataDir = t.TempDir()
			_, err := Start(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want an error containing %s", err, tt.want)
			}
		})
	}
}

func TestAllowedCNs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, ca := tlsFiles(t)
	only := *info
	only.AllowedCNs = []string{"frontgate:fg-1"}
	peerOnly := only
	s, err := Start(ctx, Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, ClientTLS: &only, PeerTLS: &peerOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The server's own client is admitted (its certificate has the CN).
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put with the allowed certificate: %v", err)
	}
	tests := []struct {
		name  string
		id    pki.Identity
		admit bool
	}{
		{"the allowed CN", pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, true},
		{"another frontgate", pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, false},
		{"a drone", pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}, false},
	}
	for _, tt := range tests {
		creds := issue(t, ca, tt.id)
		for port, u := range map[string]string{"client": s.ClientURL(), "peer": s.PeerURL()} {
			err := handshake(ctx, u, creds)
			if tt.admit && err != nil {
				t.Errorf("%s on the %s port: %v, want admitted", tt.name, port, err)
			}
			if !tt.admit && (err == nil || !strings.Contains(err.Error(), "bad certificate")) {
				t.Errorf("%s on the %s port: %v, want the certificate refused", tt.name, port, err)
			}
		}
	}
}

func TestStoredAuthEnabled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	check := func(want bool) {
		t.Helper()
		got, err := StoredAuthEnabled(dir)
		if err != nil || got != want {
			t.Fatalf("StoredAuthEnabled = %v, %v; want %v", got, err, want)
		}
	}
	check(false) // no member yet

	s, err := Start(ctx, Config{DataDir: dir, WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StoredAuthEnabled(dir); err == nil || !strings.Contains(err.Error(), "is a member running") {
		t.Errorf("StoredAuthEnabled on a running member = %v, want an error", err)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(ctx, "/k", "v")
	c.Close()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	check(false) // a member that never enabled auth

	s, err = Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err = s.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "pw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	s.Close()
	check(true)
}

// Old revisions are compacted away: without that, every overwritten value
// stays in the database of a long-running pilot or frontgate.
func TestCompactsHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, CompactionRetention: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.Put(ctx, "/k", "v0")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for i := 1; ; i++ {
		// Keep writing, so the compactor has newer revisions to keep.
		if _, err := c.Put(ctx, "/k", fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(ctx, "/k", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d still readable after 45s with 1s retention", first.Header.Revision)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// The client port speaks gRPC alone (served by gRPC's transport, not
// net/http's): etcd's HTTP endpoints are on a socket of their own.
func TestHTTPOffTheClientPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, _ := tlsFiles(t)
	s, err := Start(ctx, Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, ClientTLS: info, PeerTLS: info})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	creds, err := tlsutil.Load(filepath.Dir(info.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: creds.ClientConfig("127.0.0.1", pki.Identity{})}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(s.ClientURL() + "/version"); err == nil {
		resp.Body.Close()
		t.Errorf("the client port answered HTTP/1 GET /version: %s", resp.Status)
	}
	// …and on their socket, with the same mutual TLS.
	onSocket := &http.Transport{TLSClientConfig: creds.ClientConfig("127.0.0.1", pki.Identity{}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.httpSocket)
		}}
	defer onSocket.CloseIdleConnections()
	resp, err := (&http.Client{Transport: onSocket, Timeout: 5 * time.Second}).Get("https://127.0.0.1/version")
	if err != nil {
		t.Fatalf("etcd's /version on its HTTP socket %s: %v", s.httpSocket, err)
	}
	resp.Body.Close()
}
