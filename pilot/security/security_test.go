package security

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/enroll"
	"github.com/hangarhq/hangar/pilot/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	sec    *Security
	tokens *enroll.Tokens
	st     *store.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := etcdtest.Client(t)
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	revs, err := enroll.NewRevocations(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(revs.Close)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := enroll.NewTokens(enroll.Config{Client: c, CA: ca, CommandPublicKey: pub, Revocations: revs})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(c)
	return &env{sec: New(Config{Store: st, Tokens: tokens, Revocations: revs}), tokens: tokens, st: st}
}

// cluster records a cluster of tenant acme on runtime local, served by
// frontgate fg.
func (e *env) cluster(t *testing.T, id, fg string) {
	t.Helper()
	ctx := context.Background()
	if err := e.st.Put(ctx, store.ClusterKey(id), &pilotv1.Cluster{Id: id, Tenant: "acme", Runtime: "local"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Put(ctx, store.NetworkKey("acme", "local", "default"), &pilotv1.Network{Id: "default", Runtime: "local", FrontgateId: fg}); err != nil {
		t.Fatal(err)
	}
}

func joinReq(t *testing.T, token string) *streamv1.Request {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	return &streamv1.Request{Body: &streamv1.Request_Join{Join: mustRequest(jointoken.Request(token, csr))}}
}

// A frontgate relays drones' joins, but only gets certificates for drones
// of clusters it serves, and never for anything but a drone: a stolen
// token is no way for a frontgate to obtain another identity.
func TestRelayedJoins(t *testing.T) {
	e := newEnv(t)
	e.cluster(t, "cl-1", "fg-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fg1 := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	fg2 := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}
	drone := pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}
	orphan := pki.Identity{Kind: pki.KindDrone, ID: "cln-9", Cluster: "cl-gone"}
	tests := []struct {
		name     string
		token    pki.Identity
		ips      []net.IP
		caller   pki.Identity
		wantCode string // "" for a certificate
		wantMsg  string
	}{
		{"its own drone", drone, nil, fg1, "", ""},
		{"another frontgate's drone", drone, nil, fg2, "permission_denied", "drone cln-1 is not served by frontgate fg-2"},
		{"a frontgate identity", fg2, []net.IP{net.ParseIP("10.0.0.2")}, fg1, "permission_denied", "drones only"},
		{"a drone of an unknown cluster", orphan, nil, fg1, "permission_denied", "not served by frontgate fg-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := e.tokens.Issue(ctx, tc.token, tc.ips, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			resp := e.sec.FrontgateRequest(ctx, tc.caller, joinReq(t, tok))
			if tc.wantCode == "" {
				cert := resp.GetCertificate()
				if resp.GetError() != nil || cert == nil {
					t.Fatalf("join = %v, want a certificate", resp)
				}
				c, err := pki.ParseCert([]byte(cert.CertificatePem))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := pki.IdentityOf(c); err != nil || got != tc.token {
					t.Fatalf("certificate for %v (%v), want %s", got, err, tc.token)
				}
				return
			}
			if resp.GetCertificate() != nil || resp.GetError().GetCode() != tc.wantCode || !strings.Contains(resp.GetError().GetMessage(), tc.wantMsg) {
				t.Fatalf("join = error %v, certificate given %v; want %s naming %q and no certificate", resp.GetError(), resp.GetCertificate() != nil, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestOnlyJoinAndRenewFromAFrontgate(t *testing.T) {
	e := newEnv(t)
	resp := e.sec.FrontgateRequest(context.Background(), pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"},
		&streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}})
	if resp.GetError().GetCode() != streamrpc.CodeInvalid {
		t.Fatalf("a list request from a frontgate = %v, want invalid", resp)
	}
}

func mustRequest(r *streamv1.JoinRequest, err error) *streamv1.JoinRequest {
	if err != nil {
		panic(err)
	}
	return r
}

// A bad revoke request is the caller's to fix: InvalidArgument naming the
// field and what it allows (the gateway answers 400), never "retry later",
// and nothing is recorded.
func TestRevokeRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  *pilotv1.RevokeRequest
		want string
	}{
		{"no kind", &pilotv1.RevokeRequest{Id: "fg-1"}, `kind "": want frontgate or drone`},
		{"pilot", &pilotv1.RevokeRequest{Kind: "pilot", Id: "pilot"}, "want frontgate or drone"},
		{"no id", &pilotv1.RevokeRequest{Kind: "frontgate"}, "id: required"},
		{"id with a slash", &pilotv1.RevokeRequest{Kind: "drone", Id: "../x"}, `id "../x": 1 to 128 letters, digits, '.', '_' and '-'`},
		{"id with a space", &pilotv1.RevokeRequest{Kind: "frontgate", Id: "fg 1"}, `id "fg 1"`},
		{"reason too long", &pilotv1.RevokeRequest{Kind: "frontgate", Id: "fg-1", Reason: strings.Repeat("r", 2000)}, "reason: 2000 bytes, at most 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sec.Revoke(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Revoke = %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
	list, err := e.sec.ListRevocations(ctx, &pilotv1.ListRevocationsRequest{})
	if err != nil || len(list.Revocations) != 0 {
		t.Fatalf("after refused revokes: %v, %v; want nothing recorded", list, err)
	}
}
