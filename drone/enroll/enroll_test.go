package enroll

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var droneID = pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}

// gate is a listener that, while down, drops every connection it
// accepts: the frontgate's port as seen before the frontgate boots.
type gate struct {
	net.Listener
	down    atomic.Bool
	dropped atomic.Int32
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !g.down.Load() {
			return c, nil
		}
		g.dropped.Add(1)
		c.Close()
	}
}

// joinServer is a fake frontgate DroneLink: Join redeems single-use tokens
// for the identity each names, signing with the test CA, as pilot would —
// a used token again for the key that used it, and for no other.
type joinServer struct {
	streamv1.UnimplementedDroneLinkServer
	ca     *pki.CA
	cmdKey ed25519.PublicKey
	gate   *gate
	addr   string

	mu     sync.Mutex
	tokens map[string]pki.Identity
	usedBy map[string][sha256.Size]byte
	calls  int
	// granted are the SHA-256 of the keys of the joins granted, in order.
	granted [][sha256.Size]byte
	// loseAnswers is how many more granted joins lose their answer, as
	// when the frontgate's stream to pilot is cut after pilot redeemed.
	loseAnswers int
	// issueAs, when set, replaces the token's identity (a lying frontgate).
	issueAs *pki.Identity
}

// startJoinServer serves with a certificate from serverCA (the drone's CA
// unless a test wants an impostor).
func startJoinServer(t *testing.T, ca, serverCA *pki.CA) *joinServer {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &joinServer{ca: ca, cmdKey: pub, gate: &gate{Listener: lis}, addr: lis.Addr().String(), tokens: map[string]pki.Identity{"tok-1": droneID}, usedBy: map[string][sha256.Size]byte{}}
	fg := testca.Creds(t, serverCA, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, time.Hour)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(fg.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterDroneLinkServer(gs, s)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(s.gate) }()
	t.Cleanup(func() { gs.Stop(); <-served })
	return s
}

func (s *joinServer) Join(_ context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	csr, err := pki.ParseCSR([]byte(req.GetCsrPem()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	key := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	var tok string
	for t := range s.tokens {
		if jointoken.Proves(t, req) {
			tok = t
		}
	}
	id, ok := s.tokens[tok]
	if used, was := s.usedBy[tok]; !ok || (was && used != key) {
		return nil, status.Error(codes.PermissionDenied, "join token is unknown, used or expired")
	}
	s.usedBy[tok] = key
	s.granted = append(s.granted, key)
	if s.issueAs != nil {
		id = *s.issueAs
	}
	certPEM, notAfter, err := s.ca.Issue(csr.PublicKey, id, nil, nil, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if s.loseAnswers > 0 {
		s.loseAnswers--
		return nil, status.Error(codes.Unavailable, "join: the stream to pilot was cut")
	}
	return &streamv1.Certificate{CertificatePem: string(certPEM), CaPem: string(s.ca.CertPEM()), CommandPublicKey: s.cmdKey, NotAfter: timestamppb.New(notAfter)}, nil
}

func (s *joinServer) grantedKeys() [][sha256.Size]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.granted)
}

func (s *joinServer) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func config(t *testing.T, s *joinServer, ca *pki.CA, dir string) Config {
	return Config{
		Dir: dir, NodeID: "cln-1", ClusterID: "cl-1",
		FrontgateID: "fg-1", FrontgateAddress: s.addr, JoinToken: "tok-1", CAPEM: ca.CertPEM(),
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
		BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		CallTimeout: 5 * time.Second,
	}
}

func ensure(t *testing.T, cfg Config) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Ensure(ctx, cfg)
}

func TestJoinSavesCredentialsThenRestartLoadsThem(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	dir := filepath.Join(t.TempDir(), "tls")
	res, err := ensure(t, config(t, s, ca, dir))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Joined || res.Creds.Identity() != droneID || !bytes.Equal(res.CommandPublicKey, s.cmdKey) {
		t.Fatalf("joined %v as %s with command key %x", res.Joined, res.Creds.Identity(), res.CommandPublicKey)
	}
	for name, mode := range map[string]os.FileMode{tlsutil.KeyFile: 0o600, tlsutil.CertFile: 0o644, tlsutil.CAFile: 0o644, CommandKeyFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if !tlsutil.Exists(dir) {
		t.Fatal("no certificate saved")
	}

	// The token was single-use: a second join would be refused, so a
	// restart must not try one.
	again, err := ensure(t, config(t, s, ca, dir))
	if err != nil {
		t.Fatal(err)
	}
	if again.Joined || s.callCount() != 1 {
		t.Fatalf("restart joined %v, Join called %d times", again.Joined, s.callCount())
	}
	if again.Creds.Leaf().SerialNumber.Cmp(res.Creds.Leaf().SerialNumber) != 0 || !bytes.Equal(again.CommandPublicKey, s.cmdKey) {
		t.Fatal("restart loaded other credentials than the join saved")
	}
}

func TestRefusedTokenStopsAtOnce(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	cfg := config(t, s, ca, filepath.Join(t.TempDir(), "tls"))
	cfg.JoinToken = "used-or-unknown"
	_, err := ensure(t, cfg)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "unknown, used or expired") || !strings.Contains(err.Error(), "recreate the instance") {
		t.Fatalf("got %v, want ErrRefused with pilot's reason and what to do", err)
	}
	if s.callCount() != 1 {
		t.Fatalf("Join called %d times, want no retry", s.callCount())
	}
	if tlsutil.Exists(cfg.Dir) {
		t.Fatal("a certificate was saved")
	}
}

func TestRetriesUntilTheFrontgateIsUp(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	s.gate.down.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := ensure(t, config(t, s, ca, filepath.Join(t.TempDir(), "tls")))
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.gate.dropped.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the drone did not retry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.gate.down.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the join never succeeded")
	}
	if s.callCount() != 1 {
		t.Fatalf("Join reached the frontgate %d times, want once", s.callCount())
	}
}

func TestNeverSendsTheTokenToAnImpostor(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, testca.New(t))
	cfg := config(t, s, ca, filepath.Join(t.TempDir(), "tls"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Ensure(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want to keep retrying until the context ends", err)
	}
	if s.callCount() != 0 {
		t.Fatal("the token reached a frontgate whose certificate pilot's CA did not issue")
	}
}

func TestRefusesACertificateForAnotherNode(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	s.issueAs = &pki.Identity{Kind: pki.KindDrone, ID: "cln-2", Cluster: "cl-1"}
	cfg := config(t, s, ca, filepath.Join(t.TempDir(), "tls"))
	_, err := ensure(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "cln-2") {
		t.Fatalf("got %v, want a refusal naming the wrong node", err)
	}
	if tlsutil.Exists(cfg.Dir) {
		t.Fatal("the wrong certificate was saved")
	}
}

func TestLoadChecks(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	// save writes credentials as a past join would have.
	save := func(t *testing.T, id pki.Identity, ttl time.Duration, withKey bool) string {
		dir := filepath.Join(t.TempDir(), "tls")
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _, err := ca.Issue(key.Public(), id, nil, nil, ttl)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		if withKey {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := writeCommandKey(filepath.Join(dir, CommandKeyFile), s.cmdKey); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tlsutil.Save(dir, keyPEM, certPEM, ca.CertPEM()); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name    string
		id      pki.Identity
		ttl     time.Duration
		withKey bool
		want    string
	}{
		{"valid", droneID, time.Hour, true, ""},
		{"another node's certificate", pki.Identity{Kind: pki.KindDrone, ID: "cln-9", Cluster: "cl-1"}, time.Hour, true, "cln-9"},
		{"expired", droneID, -time.Second, true, "expired"},
		{"no command key", droneID, time.Hour, false, "command public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, s, ca, save(t, tc.id, tc.ttl, tc.withKey))
			cfg.JoinToken = ""
			res, err := ensure(t, cfg)
			if tc.want == "" {
				if err != nil || res.Joined {
					t.Fatalf("got %v (joined %v)", err, res != nil && res.Joined)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if s.callCount() != 0 {
		t.Fatal("a start with saved credentials called Join")
	}
}

func TestFirstStartNeedsTokenAndCA(t *testing.T) {
	ca := testca.New(t)
	s := startJoinServer(t, ca, ca)
	for _, tc := range []struct {
		want   string
		mutate func(*Config)
	}{
		{"join_token", func(c *Config) { c.JoinToken = "" }},
		{"ca_pem", func(c *Config) { c.CAPEM = nil }},
		{"ca_pem", func(c *Config) { c.CAPEM = []byte("not a certificate") }},
		{"host:port", func(c *Config) { c.FrontgateAddress = "no-port" }},
		{"NodeID", func(c *Config) { c.NodeID = "" }},
	} {
		cfg := config(t, s, ca, filepath.Join(t.TempDir(), "tls"))
		tc.mutate(&cfg)
		if _, err := ensure(t, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error naming %s", err, tc.want)
		}
	}
	if s.callCount() != 0 {
		t.Fatal("Join was called with an incomplete config")
	}
}

// A join whose answer is lost after pilot marked the token used completes
// with the same key: on the next attempt, or on the next start when the
// drone stopped before it. Another key still finds the token used.
func TestLostJoinAnswerCompletesWithTheSameKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"retried in the same start", false},
		{"retried by the next start", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testca.New(t)
			s := startJoinServer(t, ca, ca)
			s.mu.Lock()
			s.loseAnswers = 1
			s.mu.Unlock()
			dir := filepath.Join(t.TempDir(), "tls")

			var pendingPEM []byte
			if tc.restart {
				pendingPEM = stopAfterLostAnswer(t, s, config(t, s, ca, dir))
			}
			res, err := ensure(t, config(t, s, ca, dir))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Joined || res.Creds.Identity() != droneID {
				t.Fatalf("joined %v as %s, want a join as %s", res.Joined, res.Creds.Identity(), droneID)
			}
			keys := s.grantedKeys()
			leafKey := sha256.Sum256(res.Creds.Leaf().RawSubjectPublicKeyInfo)
			if len(keys) != 2 || keys[0] != leafKey || keys[1] != leafKey {
				t.Fatalf("%d joins granted; want 2 (the lost one, then the retry), both for the saved key", len(keys))
			}
			if tc.restart {
				saved, err := os.ReadFile(filepath.Join(dir, tlsutil.KeyFile))
				if err != nil || !bytes.Equal(saved, pendingPEM) {
					t.Fatalf("saved key: %v; want the pending key of the first start", err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, join.PendingKeyFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("pending key after the certificate was saved: %v; want it removed", err)
			}
			_, err = ensure(t, config(t, s, ca, filepath.Join(t.TempDir(), "tls")))
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("join with another key = %v, want ErrRefused", err)
			}
		})
	}
}

// stopAfterLostAnswer runs a first start whose join is granted but whose
// answer is lost, and stops it before it retries (the next retry is an
// hour away), as a crash would. It returns the pending key left behind.
func stopAfterLostAnswer(t *testing.T, s *joinServer, cfg Config) []byte {
	t.Helper()
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Ensure(ctx, cfg)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.grantedKeys()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first start never reached the frontgate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("first start = %v, want it stopped while waiting to retry", err)
	}
	if tlsutil.Exists(cfg.Dir) {
		t.Fatal("the first start saved a certificate it never received")
	}
	path := filepath.Join(cfg.Dir, join.PendingKeyFile)
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the first start left no pending key: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pending key: %v, want mode 0600", err)
	}
	return keyPEM
}
