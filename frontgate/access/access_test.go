package access

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is an embedded etcd over mutual TLS, as the frontgate runs it, with
// auth bootstrapped for the frontgate fg-1.
type env struct {
	ca  *pki.CA
	url string
	own *clientv3.Client
	m   *Manager
}

func start(t *testing.T) *env {
	t.Helper()
	e := startWithoutAuth(t)
	if err := e.m.Bootstrap(ctx(t), "frontgate:fg-1"); err != nil {
		t.Fatal(err)
	}
	return e
}

// startWithoutAuth is start before the bootstrap.
func startWithoutAuth(t *testing.T) *env {
	t.Helper()
	ca := testca.New(t)
	fg := testca.Creds(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, time.Hour)
	info := &transport.TLSInfo{
		CertFile:       filepath.Join(fg.Dir(), tlsutil.CertFile),
		KeyFile:        filepath.Join(fg.Dir(), tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(fg.Dir(), tlsutil.CAFile),
		ClientCertAuth: true,
	}
	srv, err := etcdserver.Start(ctx(t), etcdserver.Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20, ClientTLS: info, PeerTLS: info})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	own, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	return &env{ca: ca, url: srv.ClientURL(), own: own, m: New(own, nil)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// drone returns an etcd client presenting node's certificate.
func (e *env) drone(t *testing.T, node, cluster string) *clientv3.Client {
	t.Helper()
	creds := testca.Drone(t, e.ca, node, cluster)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig("127.0.0.1", pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) put(t *testing.T, kvs ...string) {
	t.Helper()
	for i := 0; i+1 < len(kvs); i += 2 {
		if _, err := e.own.Put(ctx(t), kvs[i], kvs[i+1]); err != nil {
			t.Fatalf("frontgate put %s: %v", kvs[i], err)
		}
	}
}

// reads reports whether c may read key, failing the test on errors other
// than a refusal.
func reads(t *testing.T, c *clientv3.Client, key string) bool {
	t.Helper()
	resp, err := c.Get(ctx(t), key, clientv3.WithPrefix())
	if err == nil {
		return len(resp.Kvs) > 0
	}
	if refused(err) {
		return false
	}
	t.Fatalf("get %s: %v", key, err)
	return false
}

// refused is etcd's answer to a user without the permission, or to a
// certificate whose user does not exist (any more).
func refused(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserNotFound) ||
		errors.Is(err, rpctypes.ErrAuthFailed) || strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "user name not found")
}

func userRoles(t *testing.T, e *env, node string) ([]string, bool) {
	t.Helper()
	resp, err := e.own.UserGet(ctx(t), DroneUser(node))
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp.Roles, true
}

func TestDronesReadOnlyTheirClusters(t *testing.T) {
	e := start(t)
	e.put(t, "/clusters/a/env/port", "6379", "/clusters/b/env/port", "3306", "/clusters/ab/env/x", "1")
	if err := e.m.SetReaders(ctx(t), "a", []string{"cln-a1", "cln-b1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetReaders(ctx(t), "b", []string{"cln-b1"}); err != nil {
		t.Fatal(err)
	}
	a1, b1 := e.drone(t, "cln-a1", "a"), e.drone(t, "cln-b1", "b")

	tests := []struct {
		name   string
		client *clientv3.Client
		key    string
		want   bool
	}{
		{"own cluster", a1, "/clusters/a/", true},
		{"other cluster", a1, "/clusters/b/", false},
		// The prefix ends with a slash: cluster "a" does not cover "ab".
		{"cluster sharing a name prefix", a1, "/clusters/ab/", false},
		{"frontgate bookkeeping", a1, "/frontgate/", false},
		{"everything", a1, "/", false},
		{"own cluster of a linking node", b1, "/clusters/b/", true},
		{"linked cluster", b1, "/clusters/a/", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reads(t, tt.client, tt.key); got != tt.want {
				t.Fatalf("read %s = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
	// No drone writes anything, its own cluster included.
	for _, key := range []string{"/clusters/a/env/port", "/clusters/b/x", "/frontgate/revoked/cln-a1", "/x"} {
		if _, err := a1.Put(ctx(t), key, "evil"); err == nil || !refused(err) {
			t.Errorf("drone put %s = %v, want permission denied", key, err)
		}
		if _, err := a1.Delete(ctx(t), key); err == nil || !refused(err) {
			t.Errorf("drone delete %s = %v, want permission denied", key, err)
		}
	}
}

func TestReadersFollowTheListAndRepeatsChangeNothing(t *testing.T) {
	e := start(t)
	e.put(t, "/clusters/a/k", "1", "/clusters/b/k", "2")
	for range 2 {
		if err := e.m.SetReaders(ctx(t), "a", []string{"cln-1", "cln-2", "cln-shared"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.SetReaders(ctx(t), "b", []string{"cln-shared"}); err != nil {
		t.Fatal(err)
	}
	rev, err := e.own.AuthStatus(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// The same list again writes no user or role.
	if err := e.m.SetReaders(ctx(t), "a", []string{"cln-2", "cln-1", "cln-shared"}); err != nil {
		t.Fatal(err)
	}
	if again, err := e.own.AuthStatus(ctx(t)); err != nil || again.AuthRevision != rev.AuthRevision {
		t.Fatalf("re-applying the same readers moved the auth revision %d -> %d (%v)", rev.AuthRevision, again.AuthRevision, err)
	}

	c1, c2, shared := e.drone(t, "cln-1", "a"), e.drone(t, "cln-2", "a"), e.drone(t, "cln-shared", "b")
	if !reads(t, c1, "/clusters/a/") || !reads(t, c2, "/clusters/a/") || !reads(t, shared, "/clusters/a/") {
		t.Fatal("a listed reader cannot read")
	}

	// Dropped from the list: cln-1 loses its user (no role left), the
	// shared node keeps cluster b.
	if err := e.m.SetReaders(ctx(t), "a", []string{"cln-2"}); err != nil {
		t.Fatal(err)
	}
	if reads(t, c1, "/clusters/a/") || reads(t, shared, "/clusters/a/") {
		t.Fatal("a node no longer listed still reads cluster a")
	}
	if !reads(t, shared, "/clusters/b/") || !reads(t, c2, "/clusters/a/") {
		t.Fatal("a node still listed lost its access")
	}
	if _, ok := userRoles(t, e, "cln-1"); ok {
		t.Fatal("user drone:cln-1 kept with no role")
	}
	if roles, _ := userRoles(t, e, "cln-shared"); !slices.Equal(roles, []string{"cluster:b"}) {
		t.Fatalf("drone:cln-shared roles = %v, want [cluster:b]", roles)
	}

	// Deleting cluster b removes its role and its readers' users.
	if err := e.m.DeleteCluster(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeleteCluster(ctx(t), "b"); err != nil {
		t.Fatalf("deleting an absent cluster: %v", err)
	}
	if _, ok := userRoles(t, e, "cln-shared"); ok {
		t.Fatal("user drone:cln-shared kept after its last cluster was deleted")
	}
	if _, err := e.own.RoleGet(ctx(t), "cluster:b"); !errors.Is(err, rpctypes.ErrRoleNotFound) {
		t.Fatalf("role cluster:b after delete: %v", err)
	}
	if roles, _ := userRoles(t, e, "cln-2"); !slices.Equal(roles, []string{"cluster:a"}) {
		t.Fatalf("deleting cluster b touched cln-2 of cluster a: roles %v", roles)
	}

	// A cluster created again starts from nothing.
	if err := e.m.SetReaders(ctx(t), "b", []string{"cln-shared"}); err != nil {
		t.Fatal(err)
	}
	if !reads(t, shared, "/clusters/b/") {
		t.Fatal("reader of a re-created cluster cannot read it")
	}
}

func TestRevokedNodeLosesAndNeverRegainsAccess(t *testing.T) {
	e := start(t)
	e.put(t, "/clusters/a/k", "1")
	if err := e.m.SetReaders(ctx(t), "a", []string{"cln-1", "cln-2"}); err != nil {
		t.Fatal(err)
	}
	c1 := e.drone(t, "cln-1", "a")
	if !reads(t, c1, "/clusters/a/") {
		t.Fatal("reader cannot read before revocation")
	}
	if err := e.m.Revoke(ctx(t), "cln-1", "a"); err != nil {
		t.Fatal(err)
	}
	if reads(t, c1, "/clusters/a/") {
		t.Fatal("revoked node still reads")
	}
	// Pilot listing it again (or a fresh cluster naming it) grants nothing.
	if err := e.m.SetReaders(ctx(t), "a", []string{"cln-1", "cln-2"}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetReaders(ctx(t), "c", []string{"cln-1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := userRoles(t, e, "cln-1"); ok {
		t.Fatal("revoked node got a user again")
	}
	got, err := e.m.RevokedNodes(ctx(t))
	if err != nil || !slices.Equal(got, []string{"cln-1"}) {
		t.Fatalf("RevokedNodes = %v, %v; want [cln-1]", got, err)
	}
	// The revocation record is out of every drone's reach.
	if reads(t, e.drone(t, "cln-2", "a"), RevokedPrefix) {
		t.Fatal("a drone reads the revocation records")
	}
}

func TestBootstrapIsIdempotentAndKeepsOwnerAccess(t *testing.T) {
	e := start(t)
	st, err := e.own.AuthStatus(ctx(t))
	if err != nil || !st.Enabled {
		t.Fatalf("auth status %v, %v; want enabled", st, err)
	}
	if err := e.m.Bootstrap(ctx(t), "frontgate:fg-1"); err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	e.put(t, "/anything", "v")
	// A certificate of another frontgate is nobody here.
	other := testca.Creds(t, e.ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, time.Hour)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: other.ClientConfig("127.0.0.1", pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if reads(t, c, "/anything") {
		t.Fatal("another frontgate's certificate reads this etcd")
	}
}

func TestCheckEnabled(t *testing.T) {
	e := startWithoutAuth(t)
	if err := e.m.CheckEnabled(ctx(t)); err == nil || !strings.Contains(err.Error(), "etcd auth is not enabled") {
		t.Fatalf("CheckEnabled before Bootstrap = %v, want auth reported off", err)
	}
	if err := e.m.Bootstrap(ctx(t), "frontgate:fg-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.CheckEnabled(ctx(t)); err != nil {
		t.Fatalf("CheckEnabled after Bootstrap: %v", err)
	}
}

func TestInvalidIDs(t *testing.T) {
	m := New(nil, nil) // validation comes before any etcd call
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"bad cluster", m.SetReaders(context.Background(), "A/b", nil), `cluster_id "A/b"`},
		{"empty cluster", m.DeleteCluster(context.Background(), ""), "cluster_id is required"},
		{"bad reader", m.SetReaders(context.Background(), "a", []string{"cln-1", "../x"}), `reader_node_ids: invalid access request: node id "../x"`},
		{"bad revoked node", m.Revoke(context.Background(), "", "a"), `node id ""`},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrInvalid) || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid containing %s", tt.name, tt.err, tt.want)
		}
	}
}
