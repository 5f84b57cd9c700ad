package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	client *clientv3.Client
	ca     *pki.CA
	revs   *Revocations
	tokens *Tokens
	cmdKey ed25519.PublicKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := etcdtest.Client(t)
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	revs, err := NewRevocations(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(revs.Close)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(Config{Client: c, CA: ca, CommandPublicKey: pub, Revocations: revs})
	if err != nil {
		t.Fatal(err)
	}
	return &env{client: c, ca: ca, revs: revs, tokens: tokens, cmdKey: pub}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newCSR(t *testing.T) (crypto.Signer, []byte) {
	t.Helper()
	k, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, csr
}

// hostileCSR asks for everything a caller should not get: pilot's identity,
// another address, a DNS name.
func hostileCSR(t *testing.T) ([]byte, crypto.PublicKey) {
	t.Helper()
	k, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "pilot:pilot"},
		URIs:        []*url.URL{{Scheme: "hangar", Host: "pilot", Path: "/pilot"}},
		IPAddresses: []net.IP{net.ParseIP("6.6.6.6")},
		DNSNames:    []string{"pilot.example"},
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), k.Public()
}

func TestRedeemCertifiesTheTokensIdentityWhateverTheCSRSays(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		id   pki.Identity
		ips  []net.IP
	}{
		{"frontgate", pki.Identity{Kind: pki.KindFrontgate, ID: "fg-net-1"}, []net.IP{net.ParseIP("10.0.0.5")}},
		{"drone", pki.Identity{Kind: pki.KindDrone, ID: "cln-abc", Cluster: "cl-1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := e.tokens.Issue(ctx, tc.id, tc.ips, DefaultTokenTTL)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(token, TokenPrefix) || len(token) != len(TokenPrefix)+43 {
				t.Fatalf("token %q: want hjt_ + 43 base64url characters", token)
			}
			csrPEM, pub := hostileCSR(t)
			before := time.Now()
			got, id, err := e.tokens.Redeem(ctx, joinReq(token, csrPEM))
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.id {
				t.Fatalf("identity %s, want %s", id, tc.id)
			}
			cert, cid, err := e.ca.Verify([]byte(got.CertificatePem))
			if err != nil {
				t.Fatalf("issued certificate does not verify: %v", err)
			}
			if cid != tc.id || cert.Subject.CommonName != tc.id.CommonName() || len(cert.URIs) != 1 {
				t.Fatalf("certificate is %s (CN %q, %d URIs), want only %s", cid, cert.Subject.CommonName, len(cert.URIs), tc.id)
			}
			if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != len(tc.ips) {
				t.Fatalf("certificate names %v %v, want IPs %v and no DNS names", cert.IPAddresses, cert.DNSNames, tc.ips)
			}
			for i := range tc.ips {
				if !cert.IPAddresses[i].Equal(tc.ips[i]) {
					t.Fatalf("certificate IPs %v, want %v", cert.IPAddresses, tc.ips)
				}
			}
			if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("certificate is not for the CSR's key")
			}
			if got.CaPem != string(e.ca.CertPEM()) || !bytes.Equal(got.CommandPublicKey, e.cmdKey) {
				t.Fatal("answer lacks the CA certificate or the command public key")
			}
			na := got.NotAfter.AsTime()
			if !na.Equal(cert.NotAfter) || na.Before(before.Add(DefaultCertTTL-time.Minute)) || na.After(time.Now().Add(DefaultCertTTL)) {
				t.Fatalf("not_after %v (certificate %v), want about now+%v", na, cert.NotAfter, DefaultCertTTL)
			}
		})
	}
}

func TestTokenIsStoredOnlyAsItsHash(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, []net.IP{net.ParseIP("10.1.1.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Get(ctx, TokensPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != TokenKey(token) {
		t.Fatalf("token records %v, want one at %s", resp.Kvs, TokenKey(token))
	}
	kv := resp.Kvs[0]
	body := strings.TrimPrefix(token, TokenPrefix)
	if strings.Contains(string(kv.Key), body) || strings.Contains(string(kv.Value), body) {
		t.Fatal("etcd holds the token itself")
	}
	if kv.Lease == 0 {
		t.Fatal("token record has no lease: old records would pile up")
	}
	var rec map[string]any
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["identity"] != "hangar://frontgate/fg-1" || rec["used_at"] != nil || rec["expires_at"] == nil {
		t.Fatalf("record %s", kv.Value)
	}
}

func TestSecondRedeemIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	if _, _, err := e.tokens.Redeem(ctx, joinReq(token, csr)); err != nil {
		t.Fatal(err)
	}
	_, csr2 := newCSR(t)
	_, _, err = e.tokens.Redeem(ctx, joinReq(token, csr2))
	if !errors.Is(err, ErrTokenUsed) || err.Error() != "join token already used" {
		t.Fatalf("second redeem: %v, want %q", err, ErrTokenUsed)
	}
	resp, err := e.client.Get(ctx, TokenKey(token))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kvs[0].Lease == 0 {
		t.Fatal("marking the token used dropped its lease")
	}
}

func TestExpiredTokenIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, nil, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	eventually(t, "the token's expiry", func() bool { return time.Since(issued) > 5*time.Millisecond })
	_, csr := newCSR(t)
	_, _, err = e.tokens.Redeem(ctx, joinReq(token, csr))
	if !errors.Is(err, ErrTokenExpired) || !strings.HasPrefix(err.Error(), "join token expired at ") || !strings.HasSuffix(err.Error(), "; ask pilot for a new instance") {
		t.Fatalf("redeem of an expired token: %v", err)
	}
}

func TestConcurrentRedeemsSucceedExactlyOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	csrs := make([][]byte, n)
	for i := range csrs {
		_, csrs[i] = newCSR(t)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = e.tokens.Redeem(ctx, joinReq(token, csrs[i]))
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrTokenUsed):
			t.Errorf("redeem %d: %v, want success or %v", i, err, ErrTokenUsed)
		}
	}
	if ok != 1 {
		t.Fatalf("%d redeems succeeded, want exactly 1", ok)
	}
}

func TestRedeemRefusesBadTokensAndCSRs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	// A CSR whose signature does not match its key.
	blk, _ := pem.Decode(csr)
	bad := bytes.Clone(blk.Bytes)
	bad[len(bad)-3] ^= 0xff
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad})
	unknown := TokenPrefix + strings.Repeat("A", 43)

	for _, tc := range []struct {
		name    string
		token   string
		csr     []byte
		want    error
		message string
	}{
		{"unknown token", unknown, csr, ErrTokenUnknown, "join token not recognised"},
		{"malformed token", "hjt_short", csr, ErrTokenUnknown, "join token not recognised"},
		{"user token", "hgt_" + strings.Repeat("A", 43), csr, ErrTokenUnknown, "join token not recognised"},
		{"no token", "", csr, ErrInvalid, "token_id and token_proof: required"},
		{"no csr", good, nil, ErrInvalid, "csr_pem: required"},
		{"not pem", good, []byte("hello"), ErrInvalid, "csr_pem: "},
		{"bad signature", good, badSig, ErrInvalid, "csr_pem: certificate request: bad signature"},
		{"huge csr", good, bytes.Repeat([]byte("A"), maxCSRBytes+1), ErrInvalid, "csr_pem: 16385 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.tokens.Redeem(ctx, joinReq(tc.token, tc.csr))
			if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), tc.message) {
				t.Fatalf("err %v, want %v starting %q", err, tc.want, tc.message)
			}
		})
	}
	// None of the bad CSRs used the token up.
	if _, _, err := e.tokens.Redeem(ctx, joinReq(good, csr)); err != nil {
		t.Fatalf("token after refused requests: %v", err)
	}
}

func TestRedeemRefusesARevokedIdentity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.revs.Revoke(ctx, pki.KindDrone, "n1", "stolen", "admin"); err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	if _, _, err := e.tokens.Redeem(ctx, joinReq(token, csr)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("redeem for a revoked node: %v, want %v", err, ErrRevoked)
	}
}

func TestIssueValidatesItsInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		id   pki.Identity
		ips  []net.IP
		ttl  time.Duration
		want string
	}{
		{"pilot", pki.Identity{Kind: pki.KindPilot, ID: "pilot"}, nil, time.Hour, "only frontgates and drones join"},
		{"bad id", pki.Identity{Kind: pki.KindFrontgate, ID: "a/b"}, nil, time.Hour, "letters, digits"},
		{"drone without cluster", pki.Identity{Kind: pki.KindDrone, ID: "n"}, nil, time.Hour, "cluster"},
		{"zero ttl", pki.Identity{Kind: pki.KindFrontgate, ID: "f"}, nil, 0, "ttl 0s must be positive"},
		{"bad ip", pki.Identity{Kind: pki.KindFrontgate, ID: "f"}, []net.IP{{1, 2}}, time.Hour, "ips[0] is not an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.tokens.Issue(ctx, tc.id, tc.ips, tc.ttl); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewTokensChecksConfig(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &clientv3.Client{}
	revs := &Revocations{}
	key := make([]byte, ed25519.PublicKeySize)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{CA: ca, Revocations: revs, CommandPublicKey: key}, "Config.Client"},
		{"no CA", Config{Client: c, Revocations: revs, CommandPublicKey: key}, "Config.CA"},
		{"no revocations", Config{Client: c, CA: ca, CommandPublicKey: key}, "Config.Revocations"},
		{"negative ttl", Config{Client: c, CA: ca, Revocations: revs, CommandPublicKey: key, CertTTL: -1}, "Config.CertTTL"},
		{"short command key", Config{Client: c, CA: ca, Revocations: revs, CommandPublicKey: key[:5]}, "Config.CommandPublicKey has 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewTokens(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// joinReq is what a component holding token sends to join with csrPEM:
// the token's id and its proof over the CSR, never the token.
func joinReq(token string, csrPEM []byte) *streamv1.JoinRequest {
	r := &streamv1.JoinRequest{CsrPem: string(csrPEM)}
	if token != "" {
		r.TokenId = jointoken.ID(token)
		der := csrPEM
		if c, err := pki.ParseCSR(csrPEM); err == nil {
			der = c.Raw
		}
		r.TokenProof = jointoken.Prove(token, der)
	}
	return r
}

// A drone's join goes through its frontgate. The frontgate sees the
// request but not the token, so it can neither swap in a certificate
// request of its own nor forge a proof; none of it uses the token up.
func TestRedeemNeedsAProofOfTheToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, droneCSR := newCSR(t)
	_, relayCSR := newCSR(t)
	swapped := joinReq(token, droneCSR)
	swapped.CsrPem = string(relayCSR)
	other, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	forged := joinReq(other, relayCSR)
	forged.TokenId = jointoken.ID(token)
	badID := joinReq(token, droneCSR)
	badID.TokenId = "zz"
	noProof := joinReq(token, droneCSR)
	noProof.TokenProof = nil
	for name, tc := range map[string]struct {
		req  *streamv1.JoinRequest
		want error
	}{
		"the relay's CSR with the drone's proof": {swapped, ErrTokenUnknown},
		"a proof by another token":               {forged, ErrTokenUnknown},
		"a malformed token id":                   {badID, ErrTokenUnknown},
		"no proof":                               {noProof, ErrInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := e.tokens.Redeem(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	if _, _, err := e.tokens.Redeem(ctx, joinReq(token, droneCSR)); err != nil {
		t.Fatalf("the drone's own join after the attempts: %v", err)
	}
}
