package clusterops

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
)

// secretPkg is an app with a cluster password (also published under a
// second env name), a role password and a plain port.
func secretPkg(t *testing.T) *apppkg.Package {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"package.json": `{"name": "sec", "version": "1.0.0", "app_version": "1.0", "description": "d"}`,
		"config.json": `{"type": "array", "properties": [
  {"key": "cluster", "type": "array", "properties": [
    {"key": "name", "type": "string", "default": "sec"},
    {"key": "db", "type": "array", "properties": [
      {"key": "count", "type": "integer", "default": 1}]}]},
  {"key": "env", "type": "array", "properties": [
    {"key": "port", "type": "integer", "default": 6379},
    {"key": "requirepass", "type": "password", "default": "", "required": "yes"},
    {"key": "db", "type": "array", "properties": [
      {"key": "admin_pass", "type": "password", "default": "adm1n"}]}]}]}`,
		"cluster.json.mustache": `{
  "name": {{cluster.name}},
  "nodes": [{"role": "db", "container": {"type": "docker", "image": "x"}, "count": {{cluster.db.count}},
    "env": {"admin_pass": {{env.db.admin_pass}}}}],
  "env": {"port": {{env.port}}, "requirepass": {{env.requirepass}}, "auth": {{env.requirepass}}}
}`,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkg, err := apppkg.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func masterBox(t *testing.T) *secretbox.Box {
	t.Helper()
	b, err := secretbox.New(bytes.Repeat([]byte{5}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// secretCluster is a cluster of secretPkg whose parameters are stored as
// pilot stores them: the password sealed.
func secretCluster(t *testing.T, box *secretbox.Box, pkg *apppkg.Package) *pilotv1.Cluster {
	t.Helper()
	params := map[string]string{"env.requirepass": "s3cret-pw", "env.port": "6380"}
	return &pilotv1.Cluster{
		Id: "cl-sec", App: "sec", AppVersion: "1.0.0",
		Params: secretbox.SealParams(box, "cl-sec", params, SecretParam(pkg)),
		Nodes:  []*pilotv1.Node{{Id: "cln-1", Role: "db", InstanceId: "i-1", Address: "10.0.0.1", Sid: 1}},
	}
}

// cachedPackages serves pkg as app sec 1.0.0 without a store.
func cachedPackages(box *secretbox.Box, pkg *apppkg.Package) *Packages {
	p := NewPackages(nil)
	p.Box = box
	p.m["sec/1.0.0"] = cachedPackage{pkg: pkg}
	return p
}

func TestSpecOpensSealedParams(t *testing.T) {
	box, pkg := masterBox(t), secretPkg(t)
	c := secretCluster(t, box, pkg)
	if !secretbox.IsSealed(c.Params["env.requirepass"]) || c.Params["env.port"] != "6380" {
		t.Fatalf("stored params %v: want only the password sealed", c.Params)
	}
	_, spec, err := cachedPackages(box, pkg).Spec(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Env["requirepass"] != "s3cret-pw" || spec.Env["port"] != "6380" {
		t.Fatalf("spec env %v: want the opened password and the port", spec.Env)
	}

	// Without the key, or with another cluster's sealed value, Spec fails
	// naming the parameter instead of rendering ciphertext.
	if _, _, err := cachedPackages(nil, pkg).Spec(context.Background(), c); err == nil || !strings.Contains(err.Error(), "env.requirepass") {
		t.Fatalf("Spec without a key: err = %v", err)
	}
	moved := secretCluster(t, box, pkg)
	moved.Id = "cl-other"
	if _, _, err := cachedPackages(box, pkg).Spec(context.Background(), moved); err == nil || !strings.Contains(err.Error(), "env.requirepass") {
		t.Fatalf("Spec of a value sealed for another cluster: err = %v", err)
	}
}

func TestMetadataTreeSealsPasswords(t *testing.T) {
	box, pkg := masterBox(t), secretPkg(t)
	c := secretCluster(t, box, pkg)
	_, spec, err := cachedPackages(box, pkg).Spec(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := MetadataTree(c, nil, pkg, spec, box)
	if err != nil {
		t.Fatal(err)
	}
	mbox, err := box.Metadata(c.Id)
	if err != nil {
		t.Fatal(err)
	}
	sealed := map[string]string{
		"env/requirepass":         "s3cret-pw",
		"env/auth":                "s3cret-pw", // a password under another env name
		"roles/db/env/admin_pass": "adm1n",     // a role's password, from its default
	}
	for k, want := range sealed {
		v := tree[k]
		if !secretbox.IsSealed(v) {
			t.Errorf("%s = %q, want it sealed", k, v)
			continue
		}
		got, err := mbox.Open(v, "/clusters/cl-sec/"+k)
		if err != nil || got != want {
			t.Errorf("open %s = %q, %v; want %q", k, got, err, want)
		}
	}
	for k, want := range map[string]string{"env/port": "6380", "hosts/db/i-1/ip": "10.0.0.1", "cluster/cluster_id": "cl-sec"} {
		if tree[k] != want {
			t.Errorf("%s = %q, want %q in clear", k, tree[k], want)
		}
	}
	for k, v := range tree {
		if strings.Contains(v, "s3cret-pw") || strings.Contains(v, "adm1n") {
			t.Errorf("%s holds a password in clear: %q", k, v)
		}
	}

	// The master key itself does not open metadata values: drones get only
	// their cluster's derived key.
	if _, err := box.Open(tree["env/requirepass"], "/clusters/cl-sec/env/requirepass"); err == nil {
		t.Error("the master key opened a metadata value")
	}

	// No box: nothing sealed (tests and pilots without sealing).
	clear, err := MetadataTree(c, nil, pkg, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clear["env/requirepass"] != "s3cret-pw" {
		t.Errorf("without a box env/requirepass = %q", clear["env/requirepass"])
	}
}

func TestEnvLeaf(t *testing.T) {
	tests := []struct {
		key, role, name string
		ok              bool
	}{
		{"env/port", "", "port", true},
		{"env/a%2Fb", "", "a/b", true},
		{"roles/db/env/pass", "db", "pass", true},
		{"roles/db/env/", "", "", false},
		{"env/", "", "", false},
		{"hosts/db/i-1/ip", "", "", false},
		{"links/x/env/pass", "", "", false},
	}
	for _, tc := range tests {
		role, name, ok := envLeaf(tc.key)
		if role != tc.role || name != tc.name || ok != tc.ok {
			t.Errorf("envLeaf(%q) = %q, %q, %v; want %q, %q, %v", tc.key, role, name, ok, tc.role, tc.name, tc.ok)
		}
	}
}
