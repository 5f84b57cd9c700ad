package api

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTenant = "default"

// asMember is a call of a member of testTenant, as the interceptors would
// hand it to the handlers.
func asMember() context.Context {
	return auth.NewContext(context.Background(), auth.Principal{User: "tester", Tenant: testTenant, Role: pilotv1.Role_ROLE_MEMBER})
}

// newServer is the API over a fresh etcd, with a runtime "local"; opts
// adjust its Config.
func newServer(t *testing.T, opts ...func(*Config)) (*Server, *store.Store) {
	t.Helper()
	c := etcdtest.Client(t)
	st := store.New(c)
	ops := clusterops.New(clusterops.Config{Store: st})
	engine := jobs.New(jobs.Config{Store: st, Handlers: ops.Handlers(), Finalizers: ops.Finalizers()})
	// The runtime exists; no provider is needed to reject bad input.
	if err := st.Create(context.Background(), store.RuntimeKey(testTenant, "local"), &pilotv1.Runtime{Id: "local", Provider: "local", Tenant: testTenant}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Engine: engine}
	for _, o := range opts {
		o(&cfg)
	}
	return New(cfg), st
}

// copyPackage copies examples/kv into a temp dir and applies edits.
func copyPackage(t *testing.T, edit func(dir string)) []byte {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "kv")
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(dst)
	}
	b, err := apppkg.ArchiveDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func countKeys(t *testing.T, st *store.Store, prefix string) int64 {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func TestBadPackagesAreRefusedByName(t *testing.T) {
	s, st := newServer(t)
	for _, tc := range []struct {
		name string
		edit func(dir string)
		want string
	}{
		{"malformed config.json", func(d string) {
			replaceIn(t, filepath.Join(d, "config.json"), `"type": "array"`, `"type": "array",,`)
		}, "config.json"},
		{"unknown item type", func(d string) {
			replaceIn(t, filepath.Join(d, "config.json"), `"type": "integer"`, `"type": "bignum"`)
		}, "bignum"},
		{"template tag with no parameter", func(d string) {
			replaceIn(t, filepath.Join(d, "cluster.json.mustache"), `{{env.motd}}`, `{{env.mood}}`)
		}, "env.mood"},
		{"spec does not render to JSON", func(d string) {
			replaceIn(t, filepath.Join(d, "cluster.json.mustache"), `"nodes": [`, `"nodes": [[`)
		}, "cluster.json"},
		{"unknown spec field", func(d string) {
			replaceIn(t, filepath.Join(d, "cluster.json.mustache"), `"services": {`, `"servics": {`)
		}, "servics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: copyPackage(t, tc.edit)})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument naming %q", err, tc.want)
			}
			if n := countKeys(t, st, "/hangar/app"); n != 0 {
				t.Fatalf("a refused push stored %d keys", n)
			}
		})
	}
}

func TestBadParametersCreateNothing(t *testing.T) {
	s, st := newServer(t)
	if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"undeclared parameter", map[string]string{"env.colour": "blue"}, "env.colour"},
		{"value out of range", map[string]string{"env.port": "80"}, "env.port"},
		{"value over max", map[string]string{"cluster.replica.count": "10"}, "cluster.replica.count"},
		{"value of the wrong type", map[string]string{"cluster.replica.count": "two"}, "cluster.replica.count"},
		{"value outside the enumeration", map[string]string{"cluster.primary.count": "2"}, "cluster.primary.count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv", Runtime: "local", Params: tc.params})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument naming %q", err, tc.want)
			}
			for _, prefix := range []string{store.ClustersPrefix, store.JobsPrefix} {
				if n := countKeys(t, st, prefix); n != 0 {
					t.Fatalf("a refused create stored %d keys under %s", n, prefix)
				}
			}
		})
	}
	// Unknown app and runtime are named too.
	if _, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "nope", Runtime: "local"}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown app: %v", err)
	}
	if _, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv", Runtime: "mars"}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "mars") {
		t.Fatalf("unknown runtime: %v", err)
	}
}

func TestCreateStoresClusterAndJobTogether(t *testing.T) {
	s, st := newServer(t)
	if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatal(err)
	}
	r, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"cluster.replica.count": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cluster.Nodes) != 4 {
		t.Fatalf("got %d nodes, want 1 primary + 3 replicas", len(r.Cluster.Nodes))
	}
	j := &pilotv1.Job{}
	if _, err := st.Get(context.Background(), store.JobKey(r.Job.Id), j); err != nil {
		t.Fatalf("job not stored with the cluster: %v", err)
	}
	// The start steps follow the roles' order: primary (1) before replica (2).
	var starts []string
	for _, task := range j.Tasks {
		if strings.HasPrefix(task.Title, "start ") {
			starts = append(starts, task.Title)
		}
	}
	if len(starts) != 2 || !strings.Contains(starts[0], "primary") || !strings.Contains(starts[1], "replica") {
		t.Fatalf("start steps %v, want primary then replica", starts)
	}
	// Pushing the same package again is a no-op; a changed one under the same version is refused.
	if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatalf("re-push of identical package: %v", err)
	}
	changed := copyPackage(t, func(d string) {
		replaceIn(t, filepath.Join(d, "config.json"), `"default": "hello from hangar"`, `"default": "hi"`)
	})
	if _, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: changed}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("changed package under the same version: %v, want AlreadyExists", err)
	}
}
