package api

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/store"
)

// etcdHolds reports whether any key or value in etcd contains s.
func etcdHolds(t *testing.T, st *store.Store, s string) bool {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Key, []byte(s)) || bytes.Contains(kv.Value, []byte(s)) {
			return true
		}
	}
	return false
}

func TestPasswordsAndCredentialsAreSealedAndNeverReturned(t *testing.T) {
	s, st := newServer(t)
	box, err := secretbox.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.Box = box
	s.cfg.Providers = fakeProviders{}
	s.cfg.Packages.Box = box
	ctx := asMember()

	// motd becomes a password parameter.
	pkg := copyPackage(t, func(d string) {
		replaceIn(t, filepath.Join(d, "config.json"), `"type": "string",
          "default": "hello from hangar"`, `"type": "password",
          "default": "hello from hangar"`)
	})
	if _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{Archive: pkg}); err != nil {
		t.Fatal(err)
	}
	const pw, pw2 = "correct-horse-battery", "staple-number-two"
	// A refused password is not repeated in the error (which reaches the
	// caller, the log and the audit log).
	for _, bad := range []string{"line one\nline two secret", "x\x00y-secret"} {
		_, err := s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.motd": bad}})
		if err == nil || !strings.Contains(err.Error(), "env.motd") || strings.Contains(err.Error(), "secret") {
			t.Errorf("refused password: %v, want an error naming env.motd without the value", err)
		}
	}
	r, err := s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.motd": pw}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Cluster.Params["env.motd"]; got != redacted {
		t.Errorf("create answered env.motd %q, want %q", got, redacted)
	}
	if etcdHolds(t, st, pw) {
		t.Fatalf("etcd holds the password in clear")
	}
	stored := &pilotv1.Cluster{}
	if _, err := st.Get(context.Background(), store.ClusterKey(r.Cluster.Id), stored); err != nil {
		t.Fatal(err)
	}
	if !secretbox.IsSealed(stored.Params["env.motd"]) || stored.Params["env.port"] == redacted {
		t.Errorf("stored params %v: want the password sealed, the rest as given", stored.Params)
	}
	// The job handlers get the clear value back.
	_, spec, err := s.cfg.Packages.Spec(context.Background(), stored)
	if err != nil || spec.Env["motd"] != pw {
		t.Errorf("spec env motd %q (%v), want the password", spec.Env["motd"], err)
	}
	got, err := s.GetCluster(ctx, &pilotv1.GetClusterRequest{Id: r.Cluster.Id})
	if err != nil || got.Params["env.motd"] != redacted {
		t.Errorf("GetCluster env.motd %q (%v)", got.GetParams()["env.motd"], err)
	}

	// An env update keeps it sealed, and changes it.
	if _, err := store.Update(context.Background(), st, store.ClusterKey(r.Cluster.Id), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
		c.Status, c.JobId = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateClusterEnv(ctx, &pilotv1.UpdateClusterEnvRequest{Id: r.Cluster.Id, Env: map[string]string{"motd": pw2}}); err != nil {
		t.Fatal(err)
	}
	if etcdHolds(t, st, pw2) {
		t.Fatalf("etcd holds the new password in clear")
	}
	if _, err := st.Get(context.Background(), store.ClusterKey(r.Cluster.Id), stored); err != nil {
		t.Fatal(err)
	}
	if _, spec, err := s.cfg.Packages.Spec(context.Background(), stored); err != nil || spec.Env["motd"] != pw2 {
		t.Errorf("after the update the spec has motd %q (%v)", spec.Env["motd"], err)
	}

	// Credentials: the provider sees them, the API returns their names.
	const secretKey = "AKIA-very-secret"
	rt, err := s.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "cloud", Provider: "fake", Credentials: map[string]string{"secret_key": secretKey, "access_key": "id"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rt.CredentialKeys, ",") != "access_key,secret_key" || strings.Contains(rt.String(), secretKey) {
		t.Errorf("CreateRuntime answered %v", rt)
	}
	if etcdHolds(t, st, secretKey) {
		t.Fatalf("etcd holds the credential in clear")
	}
	creds, err := clusterops.RuntimeCredentials(context.Background(), st, box, testTenant, "cloud")
	if err != nil || creds["secret_key"] != secretKey {
		t.Errorf("stored credentials open to %v (%v)", creds, err)
	}
	list, err := s.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	if err != nil || strings.Contains(list.String(), secretKey) {
		t.Errorf("ListRuntimes: %v %v", list, err)
	}
}
