package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// everything returns every key and value in etcd, to look for secrets.
func everything(t *testing.T, c *clientv3.Client) string {
	t.Helper()
	resp, err := c.Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		b.WriteString(string(kv.Key) + "=" + string(kv.Value) + "\n")
	}
	return b.String()
}

func TestTokensAreStoredOnlyAsHashes(t *testing.T) {
	c := etcdtest.Client(t)
	u := New(Config{Client: c})
	ctx := context.Background()
	user, token, err := u.Create(ctx, "acme", "alice", pilotv1.Role_ROLE_MEMBER)
	if err != nil {
		t.Fatal(err)
	}
	if user.Name != "alice" || user.Tenant != "acme" || user.Role != pilotv1.Role_ROLE_MEMBER || user.CreatedAt == nil {
		t.Errorf("created %v", user)
	}
	if !strings.HasPrefix(token, "hgt_") || len(token) != len("hgt_")+43 {
		t.Errorf("token %q: want hgt_ and 32 bytes in base64url", token)
	}
	all := everything(t, c)
	if strings.Contains(all, token) || strings.Contains(all, strings.TrimPrefix(token, "hgt_")) {
		t.Fatalf("etcd holds the token in clear:\n%s", all)
	}
	sum := sha256.Sum256([]byte(token))
	if !strings.Contains(all, TokensPrefix+hex.EncodeToString(sum[:])+"=acme/alice") {
		t.Errorf("no token index entry for alice:\n%s", all)
	}
	p, err := u.Authenticate(ctx, token)
	if err != nil || p != (Principal{User: "alice", Tenant: "acme", Role: pilotv1.Role_ROLE_MEMBER}) {
		t.Errorf("Authenticate: %v %v", p, err)
	}
}

func TestAuthenticateRefusesEveryBadToken(t *testing.T) {
	c := etcdtest.Client(t)
	u := New(Config{Client: c})
	ctx := context.Background()
	_, good, err := u.Create(ctx, "acme", "alice", pilotv1.Role_ROLE_ADMIN)
	if err != nil {
		t.Fatal(err)
	}
	_, gone, err := u.Create(ctx, "acme", "bob", pilotv1.Role_ROLE_ADMIN)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(ctx, "acme", "bob"); err != nil {
		t.Fatal(err)
	}
	other, _ := NewToken()
	// An index entry pointing at alice for a token that is not hers (as a
	// stale or forged entry would) must not authenticate.
	forged, _ := NewToken()
	if _, err := c.Put(ctx, tokenKey(hashToken(forged)), "acme/alice"); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"empty":           "",
		"no prefix":       strings.TrimPrefix(good, "hgt_"),
		"truncated":       good[:len(good)-1],
		"not base64":      "hgt_" + strings.Repeat("!", 43),
		"unknown":         other,
		"deleted user":    gone,
		"forged index":    forged,
		"good with space": good + " ",
	} {
		if _, err := u.Authenticate(ctx, tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
	if _, err := u.Authenticate(ctx, good); err != nil {
		t.Errorf("good token: %v", err)
	}
}

func TestCreateValidatesAndRefusesDuplicates(t *testing.T) {
	u := New(Config{Client: etcdtest.Client(t)})
	ctx := context.Background()
	for _, tc := range []struct {
		tenant, name string
		role         pilotv1.Role
		want         string
	}{
		{"acme", "Alice", pilotv1.Role_ROLE_VIEWER, "user name"},
		{"acme", "a/b", pilotv1.Role_ROLE_VIEWER, "user name"},
		{"", "alice", pilotv1.Role_ROLE_VIEWER, "tenant"},
		{"ac/me", "alice", pilotv1.Role_ROLE_VIEWER, "tenant"},
		{"acme", "alice", pilotv1.Role_ROLE_UNSPECIFIED, "role"},
		{"acme", "alice", pilotv1.Role(42), "role"},
	} {
		if _, _, err := u.Create(ctx, tc.tenant, tc.name, tc.role); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%q, %q, %v): %v, want ErrInvalid naming %s", tc.tenant, tc.name, tc.role, err, tc.want)
		}
	}
	if _, _, err := u.Create(ctx, "acme", "alice", pilotv1.Role_ROLE_VIEWER); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.Create(ctx, "acme", "alice", pilotv1.Role_ROLE_ADMIN); !errors.Is(err, ErrExists) {
		t.Errorf("second alice: %v, want ErrExists", err)
	}
	// The same name in another tenant is another user.
	if _, _, err := u.Create(ctx, "other", "alice", pilotv1.Role_ROLE_ADMIN); err != nil {
		t.Errorf("alice in another tenant: %v", err)
	}
	list, err := u.List(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].Role != pilotv1.Role_ROLE_VIEWER {
		t.Errorf("List(acme) = %v, %v; want alice the viewer only", list, err)
	}
	if err := u.Delete(ctx, "acme", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a missing user: %v", err)
	}
}

func TestBootstrapCreatesTheFirstAdminOnce(t *testing.T) {
	c := etcdtest.Client(t)
	var logs bytes.Buffer
	u := New(Config{Client: c, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pilot")
	if err := u.Bootstrap(ctx, dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	token := strings.TrimSpace(string(b))
	p, err := u.Authenticate(ctx, token)
	if err != nil || p != (Principal{User: "admin", Tenant: DefaultTenant, Role: pilotv1.Role_ROLE_ADMIN}) {
		t.Fatalf("the token in admin.token: %v %v", p, err)
	}
	// A restart changes nothing; neither does one after the admin was
	// deleted (the platform team decided so).
	if err := u.Bootstrap(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Errorf("second start rewrote admin.token")
	}
	if err := u.Delete(ctx, DefaultTenant, "admin"); err != nil {
		t.Fatal(err)
	}
	if err := u.Bootstrap(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if list, _ := u.List(ctx, DefaultTenant); len(list) != 0 {
		t.Errorf("deleted admin came back: %v", list)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), strings.TrimPrefix(token, "hgt_")) {
		t.Errorf("the admin token was logged:\n%s", logs.String())
	}
}

// callAs runs the unary interceptor for method with the given
// authorization values, returning the principal the handler saw.
func callAs(u *Users, methods map[string]Rule, method string, auth ...string) (Principal, error) {
	ctx := context.Background()
	if len(auth) > 0 {
		md := metadata.MD{}
		for _, a := range auth {
			md.Append("authorization", a)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	var seen Principal
	_, err := u.UnaryInterceptor(methods)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		seen, _ = FromContext(ctx)
		return nil, nil
	})
	return seen, err
}

func TestInterceptorParsesBearerAndChecksRoles(t *testing.T) {
	u := New(Config{Client: etcdtest.Client(t)})
	ctx := context.Background()
	_, viewerTok, _ := u.Create(ctx, "acme", "vic", pilotv1.Role_ROLE_VIEWER)
	_, adminTok, _ := u.Create(ctx, "acme", "ada", pilotv1.Role_ROLE_ADMIN)
	_, rootTok, _ := u.Create(ctx, DefaultTenant, "root", pilotv1.Role_ROLE_ADMIN)
	m := Methods()
	list := pilotv1.ClusterService_ListClusters_FullMethodName
	for _, tc := range []struct {
		name   string
		method string
		auth   []string
		want   codes.Code
		user   string
	}{
		{"bearer", list, []string{"Bearer " + viewerTok}, codes.OK, "vic"},
		{"scheme in lower case", list, []string{"bearer " + viewerTok}, codes.OK, "vic"},
		{"no header", list, nil, codes.Unauthenticated, ""},
		{"basic scheme", list, []string{"Basic " + viewerTok}, codes.Unauthenticated, ""},
		{"token alone", list, []string{viewerTok}, codes.Unauthenticated, ""},
		{"two headers", list, []string{"Bearer " + viewerTok, "Bearer " + adminTok}, codes.Unauthenticated, ""},
		{"viewer mutates", pilotv1.ClusterService_DeleteCluster_FullMethodName, []string{"Bearer " + viewerTok}, codes.PermissionDenied, ""},
		{"viewer lists users", pilotv1.UserService_ListUsers_FullMethodName, []string{"Bearer " + viewerTok}, codes.PermissionDenied, ""},
		{"viewer asks who", pilotv1.UserService_WhoAmI_FullMethodName, []string{"Bearer " + viewerTok}, codes.OK, "vic"},
		{"tenant admin revokes", pilotv1.SecurityService_Revoke_FullMethodName, []string{"Bearer " + adminTok}, codes.PermissionDenied, ""},
		{"platform admin revokes", pilotv1.SecurityService_Revoke_FullMethodName, []string{"Bearer " + rootTok}, codes.OK, "root"},
		{"method without a rule", "/hangar.pilot.v1.NewService/Do", []string{"Bearer " + rootTok}, codes.PermissionDenied, ""},
		{"join needs no token", pilotv1.EnrollmentService_Join_FullMethodName, nil, codes.OK, ""},
		{"frontgate link needs no token", "/hangar.stream.v1.FrontgateLink/Connect", nil, codes.OK, ""},
	} {
		p, err := callAs(u, m, tc.method, tc.auth...)
		if status.Code(err) != tc.want || p.User != tc.user {
			t.Errorf("%s: %v as %q, want %s as %q", tc.name, err, p.User, tc.want, tc.user)
		}
	}
	// A method's rule cannot make it public: only the allow-list can.
	m[pilotv1.ClusterService_DeleteCluster_FullMethodName] = Rule{}
	if _, err := callAs(u, m, pilotv1.ClusterService_DeleteCluster_FullMethodName); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a zero rule let a call without a token through: %v", err)
	}
	if Methods()[pilotv1.ClusterService_DeleteCluster_FullMethodName].Role != pilotv1.Role_ROLE_MEMBER {
		t.Errorf("changing one Methods() map changed the next")
	}
}

type recorded struct {
	method string
	user   string
	code   codes.Code
}

type fakeRecorder struct{ got []recorded }

func (f *fakeRecorder) Record(ctx context.Context, method string, _, _ any, err error) {
	p, _ := FromContext(ctx)
	f.got = append(f.got, recorded{method, p.User, status.Code(err)})
}

func TestRefusedChangesAreAudited(t *testing.T) {
	rec := &fakeRecorder{}
	u := New(Config{Client: etcdtest.Client(t), Audit: rec})
	_, tok, _ := u.Create(context.Background(), "acme", "vic", pilotv1.Role_ROLE_VIEWER)
	if _, err := callAs(u, Methods(), pilotv1.ClusterService_DeleteCluster_FullMethodName, "Bearer "+tok); status.Code(err) != codes.PermissionDenied {
		t.Fatal(err)
	}
	// A refused read is not a change: not audited.
	if _, err := callAs(u, Methods(), pilotv1.UserService_ListUsers_FullMethodName, "Bearer "+tok); status.Code(err) != codes.PermissionDenied {
		t.Fatal(err)
	}
	want := []recorded{{pilotv1.ClusterService_DeleteCluster_FullMethodName, "vic", codes.PermissionDenied}}
	if len(rec.got) != 1 || rec.got[0] != want[0] {
		t.Errorf("recorded %v, want %v", rec.got, want)
	}
}

func TestStreamInterceptorCarriesThePrincipal(t *testing.T) {
	u := New(Config{Client: etcdtest.Client(t)})
	_, tok, _ := u.Create(context.Background(), "acme", "vic", pilotv1.Role_ROLE_VIEWER)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	var seen Principal
	err := u.StreamInterceptor(Methods())(nil, &fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: pilotv1.JobService_WatchJob_FullMethodName},
		func(_ any, ss grpc.ServerStream) error {
			seen, _ = FromContext(ss.Context())
			return nil
		})
	if err != nil || seen.User != "vic" || seen.Tenant != "acme" {
		t.Errorf("stream saw %v, %v", seen, err)
	}
	if err := u.StreamInterceptor(Methods())(nil, &fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: pilotv1.JobService_WatchJob_FullMethodName},
		func(any, grpc.ServerStream) error { t.Error("handler ran without a token"); return nil }); status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream without a token: %v", err)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func TestRequireHTTP(t *testing.T) {
	u := New(Config{Client: etcdtest.Client(t)})
	ctx := context.Background()
	_, viewerTok, _ := u.Create(ctx, "acme", "vic", pilotv1.Role_ROLE_VIEWER)
	_, adminTok, _ := u.Create(ctx, "acme", "ada", pilotv1.Role_ROLE_ADMIN)
	_, platformTok, _ := u.Create(ctx, DefaultTenant, "ops", pilotv1.Role_ROLE_ADMIN)
	_, platformViewerTok, _ := u.Create(ctx, DefaultTenant, "intern", pilotv1.Role_ROLE_VIEWER)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := FromContext(r.Context())
		_, _ = w.Write([]byte("hello " + p.User))
	})
	admin := Rule{Role: pilotv1.Role_ROLE_ADMIN}
	platform := Rule{Role: pilotv1.Role_ROLE_ADMIN, DefaultTenantOnly: true}
	for _, tc := range []struct {
		name string
		rule Rule
		auth string
		code int
		body string
	}{
		{"no token", admin, "", http.StatusUnauthorized, "HANGAR_TOKEN"},
		{"unknown token", admin, "Bearer hgt_nope", http.StatusUnauthorized, "HANGAR_TOKEN"},
		{"a viewer where admins are asked", admin, "Bearer " + viewerTok, http.StatusForbidden, "role admin"},
		{"an admin", admin, "Bearer " + adminTok, http.StatusOK, "hello ada"},
		{"a tenant's viewer, platform only", platform, "Bearer " + viewerTok, http.StatusForbidden, "needs role admin"},
		{"a tenant's admin, platform only", platform, "Bearer " + adminTok, http.StatusForbidden, "reserved to admins of tenant default; you are admin of tenant acme"},
		{"the platform's viewer, platform only", platform, "Bearer " + platformViewerTok, http.StatusForbidden, "needs role admin"},
		{"a platform admin", platform, "Bearer " + platformTok, http.StatusOK, "hello ops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			u.RequireHTTP(tc.rule, hello).ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("%d %q, want %d holding %q", rec.Code, rec.Body.String(), tc.code, tc.body)
			}
		})
	}
}

// AuthenticateHTTP looks at the header only: a body is never read, so a
// caller without a token cannot make pilot buffer it.
func TestAuthenticateHTTPReadsNoBody(t *testing.T) {
	u := New(Config{Client: etcdtest.Client(t)})
	body := &countingReader{}
	req := httptest.NewRequest(http.MethodPost, "/v1/apps", body)
	_, err := u.AuthenticateHTTP(req)
	if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != unauthenticatedMsg {
		t.Fatalf("AuthenticateHTTP without a token: %v, want Unauthenticated worded as the gRPC API words it", err)
	}
	if body.n != 0 {
		t.Fatalf("%d bytes of the body were read", body.n)
	}
}

// countingReader is an endless body that counts what was read of it.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n += len(p)
	return len(p), nil
}

func TestTapHandle(t *testing.T) {
	u := New(Config{})
	wellFormed := TokenPrefix + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name   string
		method string
		auth   []string
		ok     bool
	}{
		{"no token", pilotv1.AppService_PushApp_FullMethodName, nil, false},
		{"empty", pilotv1.AppService_PushApp_FullMethodName, []string{""}, false},
		{"another scheme", pilotv1.AppService_PushApp_FullMethodName, []string{"Basic " + wellFormed}, false},
		{"not a pilot token", pilotv1.AppService_PushApp_FullMethodName, []string{"Bearer hgt_short"}, false},
		{"two tokens", pilotv1.AppService_PushApp_FullMethodName, []string{"Bearer " + wellFormed, "Bearer " + wellFormed}, false},
		{"a well-formed token (checked later, against the users)", pilotv1.AppService_PushApp_FullMethodName, []string{"Bearer " + wellFormed}, true},
		{"lower-case scheme", pilotv1.ClusterService_ListClusters_FullMethodName, []string{"bearer " + wellFormed}, true},
		{"a join, which carries its own credential", pilotv1.EnrollmentService_Join_FullMethodName, nil, true},
		{"the frontgate link, ditto", streamv1.FrontgateLink_Connect_FullMethodName, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := metadata.MD{}
			for _, a := range tc.auth {
				md.Append("authorization", a)
			}
			_, err := u.TapHandle(context.Background(), &tap.Info{FullMethodName: tc.method, Header: md})
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != unauthenticatedMsg) {
				t.Fatalf("got %v, want Unauthenticated worded as the interceptors word it", err)
			}
		})
	}
}
