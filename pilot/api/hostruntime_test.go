package api

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/store"
)

// A provider whose instances run on pilot's host is for the platform team
// only, whatever the caller's role in another tenant.
func TestHostRuntimeNeedsPlatformAdmin(t *testing.T) {
	h := newHarness(t)
	h.addUser(t, auth.DefaultTenant, "member", pilotv1.Role_ROLE_MEMBER)
	cl := pilotv1.NewRuntimeServiceClient(h.conn)
	dir := t.TempDir()

	for _, who := range []struct{ tenant, user string }{
		{alpha, "member"}, {alpha, "admin"}, {auth.DefaultTenant, "member"},
	} {
		_, err := cl.CreateRuntime(h.as(t, who.tenant, who.user), &pilotv1.CreateRuntimeRequest{
			Id: "host", Provider: "fakehost", Config: map[string]string{"root_dir": filepath.Join(dir, who.tenant+who.user)}})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only admins of tenant default") ||
			!strings.Contains(err.Error(), "pilot's own host") {
			t.Errorf("%s of %s creating a host runtime: %v, want PermissionDenied saying who may", who.user, who.tenant, err)
		}
	}
	// Nothing was stored for any of them.
	for _, tn := range []string{alpha, auth.DefaultTenant} {
		if _, err := h.st.Get(t.Context(), "/hangar/runtimes/"+tn+"/host", &pilotv1.Runtime{}); err == nil {
			t.Errorf("a refused runtime was stored in tenant %s", tn)
		}
	}
	// Providers that do not run on pilot's host stay open to members.
	if _, err := cl.CreateRuntime(h.as(t, alpha, "member"), &pilotv1.CreateRuntimeRequest{Id: "cloud", Provider: "fake"}); err != nil {
		t.Errorf("member creating a runtime of a remote provider: %v", err)
	}
	if _, err := cl.CreateRuntime(h.as(t, auth.DefaultTenant, "admin"), &pilotv1.CreateRuntimeRequest{
		Id: "host", Provider: "fakehost", Config: map[string]string{"root_dir": filepath.Join(dir, "platform")}}); err != nil {
		t.Errorf("platform admin creating a host runtime: %v", err)
	}
}

func TestHostRuntimeDirectories(t *testing.T) {
	h := newHarness(t)
	cl := pilotv1.NewRuntimeServiceClient(h.conn)
	ctx := h.as(t, auth.DefaultTenant, "admin")
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(base, "first")
	if err := os.MkdirAll(first, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "bin")
	if _, err := cl.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "first", Provider: "fakehost",
		Config: map[string]string{"root_dir": first, "bin_dir": bin}}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(first, link); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		config  map[string]string
		mention []string
	}{
		{"root_dir inside pilot's data", map[string]string{"root_dir": harnessPilotData + "/runtimes/x"},
			[]string{"runtime.config.root_dir", harnessPilotData, "pilot's own data"}},
		{"root_dir around pilot's data", map[string]string{"root_dir": filepath.Dir(harnessPilotData)},
			[]string{"runtime.config.root_dir", harnessPilotData}},
		{"bin_dir inside pilot's data", map[string]string{"root_dir": filepath.Join(base, "ok"), "bin_dir": harnessPilotData + "/bin"},
			[]string{"runtime.config.bin_dir", harnessPilotData}},
		{"the same root_dir", map[string]string{"root_dir": first},
			[]string{"runtime.config.root_dir " + first, "runtime first of tenant default"}},
		{"root_dir inside another's", map[string]string{"root_dir": filepath.Join(first, "instances", "i-1")},
			[]string{"runtime.config.root_dir", "runtime first of tenant default"}},
		{"root_dir around another's", map[string]string{"root_dir": base},
			[]string{"runtime.config.root_dir", "runtime first"}},
		{"root_dir through a link into another's", map[string]string{"root_dir": filepath.Join(link, "sub")},
			[]string{"runtime.config.root_dir", first}},
		{"bin_dir inside another's root_dir", map[string]string{"root_dir": filepath.Join(base, "ok"), "bin_dir": filepath.Join(first, "instances")},
			[]string{"runtime.config.bin_dir", "runtime.config.root_dir must not share"}},
		{"root_dir around another's bin_dir", map[string]string{"root_dir": filepath.Join(bin, "..", "bin")},
			[]string{"runtime.config.root_dir", "runtime.config.bin_dir " + bin}},
		{"own bin_dir inside own root_dir", map[string]string{"root_dir": filepath.Join(base, "own"), "bin_dir": filepath.Join(base, "own", "bin")},
			[]string{"runtime.config.root_dir", "runtime.config.bin_dir", "overlap"}},
		{"relative root_dir", map[string]string{"root_dir": "rel/dir"},
			[]string{"runtime.config.root_dir must be an absolute path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "second", Provider: "fakehost", Config: tt.config})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	// Runtimes may share binaries: bin_dir is not exclusive.
	if _, err := cl.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "second", Provider: "fakehost",
		Config: map[string]string{"root_dir": filepath.Join(base, "second"), "bin_dir": bin}}); err != nil {
		t.Errorf("a second runtime with its own root_dir and the shared bin_dir: %v", err)
	}
}

// Host runtimes stored before the checks existed (a tenant's own, one in
// pilot's data dir) take no new clusters.
func TestStoredHostRuntimeTakesNoNewClusters(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, rt := range []*pilotv1.Runtime{
		{Id: "old", Provider: "fakehost", Tenant: alpha, Config: map[string]string{"root_dir": "/srv/alpha"}},
		{Id: "inside", Provider: "fakehost", Tenant: auth.DefaultTenant, Config: map[string]string{"root_dir": harnessPilotData + "/runtimes/default/inside"}},
	} {
		if err := h.st.CreateAll(ctx, map[string]proto.Message{store.RuntimeKey(rt.Tenant, rt.Id): rt}, nil); err != nil {
			t.Fatal(err)
		}
	}
	archive := copyPackage(t, nil)
	for _, tn := range []struct{ tenant, user string }{{alpha, "member"}, {auth.DefaultTenant, "admin"}} {
		if _, err := pilotv1.NewAppServiceClient(h.conn).PushApp(h.as(t, tn.tenant, tn.user), &pilotv1.PushAppRequest{Archive: archive}); err != nil {
			t.Fatal(err)
		}
	}
	cl := pilotv1.NewClusterServiceClient(h.conn)
	for _, tc := range []struct {
		tenant, user, runtime string
		mention               []string
	}{
		{alpha, "member", "old", []string{"runtime old", "reserved to admins of tenant default"}},
		{auth.DefaultTenant, "admin", "inside", []string{"runtime inside", "runtime.config.root_dir", harnessPilotData}},
	} {
		_, err := cl.CreateCluster(h.as(t, tc.tenant, tc.user), &pilotv1.CreateClusterRequest{App: "kv", Runtime: tc.runtime})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("cluster on runtime %s: %v, want FailedPrecondition", tc.runtime, err)
		}
		for _, m := range tc.mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("error %q does not mention %q", err, m)
			}
		}
	}
}
