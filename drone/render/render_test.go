package render

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/secretbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func put(t *testing.T, c *clientv3.Client, kvs ...string) int64 {
	t.Helper()
	var ops []clientv3.Op
	for i := 0; i+1 < len(kvs); i += 2 {
		ops = append(ops, clientv3.OpPut("/clusters/cl-1/"+kvs[i], kvs[i+1]))
	}
	resp, err := c.Txn(context.Background()).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// seen waits until v's copy of the tree reflects revision rev: Render
// renders what the view has seen.
func seen(t *testing.T, v *metaview.View, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := v.WaitChange(ctx, rev-1); err != nil || got < rev {
		t.Fatalf("view at revision %d (%v), want %d", got, err, rev)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

type fixture struct {
	c       *clientv3.Client
	view    *metaview.View
	data    string
	root    string
	reloads string // the reload_cmd appends a line here
}

func newFixture(t *testing.T) *fixture {
	c := etcdtest.Client(t)
	put(t, c,
		"hosts/master/i-1/node_id", "cln-1", "hosts/master/i-1/ip", "10.0.0.1",
		"hosts/replica/i-2/node_id", "cln-2", "hosts/replica/i-2/ip", "10.0.0.2",
		"env/port", "7000", "roles/master/env/port", "7001",
		"cluster/zone", "z1")
	v, err := metaview.New(metaview.Config{Client: c, ClusterID: "cl-1", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return &fixture{c: c, view: v, data: filepath.Join(dir, "data"), root: root, reloads: filepath.Join(dir, "reloads")}
}

func (f *fixture) renderer(t *testing.T, baked string) *Renderer {
	t.Helper()
	r, err := New(context.Background(), Config{DataDir: f.data, RootDir: f.root, BakedDir: baked, View: f.view, Settle: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func (f *fixture) files(tmpl string) map[string][]byte {
	return map[string][]byte{
		"conf.d/kv.toml": fmt.Appendf(nil, `[template]
src = "kv.conf.tmpl"
dest = "/opt/kv/kv.conf"
keys = ["/"]
reload_cmd = "echo reloaded >> %s"
`, f.reloads),
		"templates/kv.conf.tmpl": []byte(tmpl),
	}
}

const kvTmpl = `me={{getv "/host/ip"}} port={{getv "/env/port"}}
{{range $dir := lsdir "/hosts/replica"}}replica={{getv (printf "/hosts/replica/%s/ip" $dir)}}
{{end}}`

func lines(path string) int { return bytes.Count([]byte(readFile(path)), []byte("\n")) }

// waitReloads waits until the reload_cmd ran n times in all, and fails if it
// ran more: renders are sequential, so a spurious reload would already show.
func waitReloads(t *testing.T, path string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("reload #%d", n), func() bool { return lines(path) >= n })
	if got := lines(path); got != n {
		t.Fatalf("reload_cmd ran %d times, want %d", got, n)
	}
}

func TestRenderRerenderAndResume(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Configure(ctx, f.files(kvTmpl), nil); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(f.root, "opt/kv/kv.conf")
	want := "me=10.0.0.1 port=7001\nreplica=10.0.0.2\n"
	if got := readFile(dest); got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	if n := lines(f.reloads); n != 1 {
		t.Fatalf("reload ran %d times, want 1", n)
	}
	// The persisted resource is kept as delivered: its dest is the
	// instance's path, placed under the root only when written.
	var tc struct {
		Template struct {
			Dest      string   `toml:"dest"`
			Keys      []string `toml:"keys"`
			ReloadCmd string   `toml:"reload_cmd"`
		} `toml:"template"`
	}
	if _, err := toml.DecodeFile(filepath.Join(f.data, "confd/conf.d/kv.toml"), &tc); err != nil {
		t.Fatal(err)
	}
	if tc.Template.Dest != "/opt/kv/kv.conf" || len(tc.Template.Keys) != 1 || !strings.Contains(tc.Template.ReloadCmd, f.reloads) {
		t.Fatalf("persisted resource: %+v", tc.Template)
	}

	// A change that does not alter the output renders but does not reload;
	// one that does is rendered and reloaded.
	put(t, f.c, "cluster/zone", "z2")
	put(t, f.c, "hosts/replica/i-2/ip", "10.0.0.22")
	want = "me=10.0.0.1 port=7001\nreplica=10.0.0.22\n"
	waitFor(t, "re-render", func() bool { return readFile(dest) == want })
	waitReloads(t, f.reloads, 2)

	// New hosts appear too.
	put(t, f.c, "hosts/replica/i-3/node_id", "cln-3", "hosts/replica/i-3/ip", "10.0.0.3")
	want += "replica=10.0.0.3\n"
	waitFor(t, "re-render with a new host", func() bool { return readFile(dest) == want })
	waitReloads(t, f.reloads, 3)

	// A new Renderer on the same data dir resumes the delivered files.
	r.Close()
	f.renderer(t, "")
	put(t, f.c, "hosts/master/i-1/ip", "10.0.0.11")
	want = strings.Replace(want, "me=10.0.0.1 ", "me=10.0.0.11 ", 1)
	waitFor(t, "re-render after restart", func() bool { return readFile(dest) == want })
	waitReloads(t, f.reloads, 4)
}

func TestConfigureReportsTheFailingTemplate(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	ctx := context.Background()
	files := f.files(kvTmpl)
	files["conf.d/bad.toml"] = []byte("[template]\nsrc = \"bad.tmpl\"\ndest = \"/etc/bad.conf\"\nkeys = [\"/\"]\n")
	files["templates/bad.tmpl"] = []byte(`{{getv "/host/no_such_field"}}`)
	err := r.Configure(ctx, files, nil)
	if err == nil || !strings.Contains(err.Error(), "conf.d/bad.toml") || !strings.Contains(err.Error(), "bad.tmpl") {
		t.Fatalf("got %v, want an error naming conf.d/bad.toml and bad.tmpl", err)
	}
	// The good one was still rendered.
	if got := readFile(filepath.Join(f.root, "opt/kv/kv.conf")); !strings.HasPrefix(got, "me=10.0.0.1") {
		t.Fatalf("good template not rendered: %q", got)
	}
	// Fixing the metadata fixes the render, without a new delivery.
	put(t, f.c, "hosts/master/i-1/no_such_field", "now-here")
	waitFor(t, "bad template rendered once its key exists", func() bool {
		return readFile(filepath.Join(f.root, "etc/bad.conf")) == "now-here"
	})
}

func TestConfigureRejectsBadFiles(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	good := f.files(kvTmpl)
	with := func(name, data string) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range good {
			m[k] = v
		}
		m[name] = []byte(data)
		return m
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"empty", nil, "files: empty"},
		{"escaping path", with("templates/../../x", "x"), `files["templates/../../x"]`},
		{"absolute path", with("/etc/passwd", "x"), `files["/etc/passwd"]`},
		{"other folder", with("bin/x", "x"), `files["bin/x"]`},
		{"toml not toml", with("conf.d/x.toml", "[[["), `files["conf.d/x.toml"]: toml:`},
		{"no template table", with("conf.d/x.toml", "a = 1"), `files["conf.d/x.toml"]: unknown keys a`},
		{"empty toml", with("conf.d/x.toml", ""), `files["conf.d/x.toml"]: missing the [template] table`},
		{"no dest", with("conf.d/x.toml", "[template]\nsrc = \"kv.conf.tmpl\""), `files["conf.d/x.toml"]: [template] dest "": required`},
		{"src escapes", with("conf.d/x.toml", "[template]\nsrc = \"../x\"\ndest = \"/x\""), `[template] src "../x": must be a plain relative path`},
		{"src missing", with("conf.d/x.toml", "[template]\nsrc = \"nope.tmpl\"\ndest = \"/x\""), `[template] src "nope.tmpl" is not among the files`},
		{"dest escapes", with("conf.d/x.toml", "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/../../tmp/x\""), `files["conf.d/x.toml"]: [template] dest "/../../tmp/x": must be a clean absolute path`},
		{"relative dest", with("conf.d/x.toml", "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"x.conf\""), `files["conf.d/x.toml"]: [template] dest "x.conf": must be an absolute path`},
		{"setuid mode", with("conf.d/x.toml", "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/x\"\nmode = \"4755\""), `files["conf.d/x.toml"]: [template] mode "4755"`},
		{"only templates", map[string][]byte{"templates/a": []byte("x")}, "no conf.d/<name>.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Configure(context.Background(), tc.files, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Nothing was installed by the rejected deliveries.
	if isDir(filepath.Join(f.data, "confd")) {
		t.Fatal("a rejected delivery was installed")
	}
}

func TestBakedTemplates(t *testing.T) {
	f := newFixture(t)
	baked := filepath.Join(t.TempDir(), "etc", "confd")
	for name, data := range f.files(`zone={{getv "/cluster/zone"}}`) {
		p := filepath.Join(baked, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.renderer(t, baked)
	dest := filepath.Join(f.root, "opt/kv/kv.conf")
	waitFor(t, "baked template rendered", func() bool { return readFile(dest) == "zone=z1" })
	put(t, f.c, "cluster/zone", "z9")
	waitFor(t, "baked template re-rendered", func() bool { return readFile(dest) == "zone=z9" })
}

func TestBrokenBakedTemplatesDoNotStopTheDrone(t *testing.T) {
	f := newFixture(t)
	baked := t.TempDir()
	if err := os.MkdirAll(filepath.Join(baked, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(baked, "conf.d", "x.toml"), []byte("[template]\nsrc = \"missing.tmpl\"\ndest = \"/x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.renderer(t, baked)
	if r.active != "" {
		t.Fatalf("active dir %q, want none", r.active)
	}
	if err := r.Configure(context.Background(), f.files(`ok`), nil); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveredFilesWinOverBaked(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	if err := r.Configure(context.Background(), f.files(`delivered`), nil); err != nil {
		t.Fatal(err)
	}
	r.Close()
	baked := t.TempDir()
	if err := os.MkdirAll(filepath.Join(baked, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	r2 := f.renderer(t, baked)
	if r2.active != r2.delivered {
		t.Fatalf("active dir %s, want the delivered one", r2.active)
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"conf.d/a.toml":     true,
		"conf.d/sub/a.toml": true,
		"templates/a.tmpl":  true,
		"templates/sub/a":   true,
		"conf.d/a.conf":     false,
		"conf.d/.toml":      false,
		"templates/":        false,
		"templates//a":      false,
		"templates/./a":     false,
		"conf.d/../a.toml":  false,
		"a.toml":            false,
		`templates\a`:       false,
		"/templates/a.tmpl": false,
	} {
		if err := checkName(name); (err == nil) != ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestSealedPasswordsRenderInClear(t *testing.T) {
	f := newFixture(t)
	master, err := secretbox.New(bytes.Repeat([]byte{6}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	mbox, err := master.Metadata("cl-1")
	if err != nil {
		t.Fatal(err)
	}
	// As pilot writes them: sealed with the cluster's key, bound to the key.
	put(t, f.c,
		"env/requirepass", mbox.Seal("s3cret", "/clusters/cl-1/env/requirepass"),
		"roles/master/env/admin_pass", mbox.Seal("adm1n", "/clusters/cl-1/roles/master/env/admin_pass"))
	files := f.files(`pass={{getv "/env/requirepass"}} admin={{getv "/env/admin_pass"}} port={{getv "/env/port"}}`)
	dest := filepath.Join(f.root, "opt/kv/kv.conf")
	want := "pass=s3cret admin=adm1n port=7001"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := f.renderer(t, "")
	// Without the key the render fails naming the value; nothing is
	// written with ciphertext in it.
	if err := r.Configure(ctx, files, nil); err == nil || !strings.Contains(err.Error(), "/clusters/cl-1/env/requirepass") {
		t.Fatalf("Configure without a key: err = %v, want one naming /clusters/cl-1/env/requirepass", err)
	}
	if got := readFile(dest); got != "" {
		t.Fatalf("rendered without a key: %q", got)
	}
	if err := r.Configure(ctx, files, mbox.Key()[:8]); err == nil || !strings.Contains(err.Error(), "metadata_key") {
		t.Fatalf("Configure with a short key: err = %v", err)
	}

	if err := r.Configure(ctx, files, mbox.Key()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(dest); got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	resp, err := f.c.Get(ctx, "/clusters/cl-1/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), "s3cret") || strings.Contains(string(kv.Value), "adm1n") {
			t.Fatalf("etcd holds a password in clear at %s", kv.Key)
		}
	}
	if !strings.HasPrefix(etcdValue(t, f.c, "/clusters/cl-1/env/requirepass"), secretbox.Prefix) {
		t.Fatal("env/requirepass is not sealed in etcd")
	}
	fi, err := os.Stat(filepath.Join(f.data, "metadata.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("metadata key kept with mode %o, want 600", fi.Mode().Perm())
	}

	// A changed password re-renders through the watch loop.
	put(t, f.c, "env/requirepass", mbox.Seal("n3w", "/clusters/cl-1/env/requirepass"))
	want = "pass=n3w admin=adm1n port=7001"
	waitFor(t, "re-render of a changed password", func() bool { return readFile(dest) == want })

	// A restarted drone (a fresh view, no key in memory) uses the kept key.
	r.Close()
	v2, err := metaview.New(metaview.Config{Client: f.c, ClusterID: "cl-1", NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	f.view = v2
	r2 := f.renderer(t, "")
	put(t, f.c, "env/requirepass", mbox.Seal("again", "/clusters/cl-1/env/requirepass"))
	want = "pass=again admin=adm1n port=7001"
	waitFor(t, "render after restart with the kept key", func() bool { return readFile(dest) == want })

	// A tampered value, or one copied from another key, fails the render
	// naming it; the file keeps its last good content.
	for name, bad := range map[string]string{
		"tampered":  strings.Replace(etcdValue(t, f.c, "/clusters/cl-1/env/requirepass"), secretbox.Prefix+"A", secretbox.Prefix+"B", 1) + "AAAA",
		"copied":    etcdValue(t, f.c, "/clusters/cl-1/roles/master/env/admin_pass"),
		"other key": master.Seal("x", "/clusters/cl-1/env/requirepass"),
	} {
		seen(t, v2, put(t, f.c, "env/requirepass", bad))
		err := r2.Render(ctx)
		if err == nil || !strings.Contains(err.Error(), "/clusters/cl-1/env/requirepass") {
			t.Errorf("%s: Render err = %v, want one naming /clusters/cl-1/env/requirepass", name, err)
		}
		if got := readFile(dest); got != want {
			t.Errorf("%s: file now %q, want the last good %q", name, got, want)
		}
	}
}

func TestKeyOnlyDeliveryForBakedTemplates(t *testing.T) {
	f := newFixture(t)
	mbox, err := secretbox.New(bytes.Repeat([]byte{8}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	put(t, f.c, "env/requirepass", mbox.Seal("s3cret", "/clusters/cl-1/env/requirepass"))
	baked := filepath.Join(t.TempDir(), "etc", "confd")
	for name, data := range f.files(`pass={{getv "/env/requirepass"}}`) {
		p := filepath.Join(baked, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := f.renderer(t, baked)
	if err := r.Render(context.Background()); err == nil {
		t.Fatal("baked template with a sealed value rendered without a key")
	}
	if err := r.Configure(context.Background(), nil, mbox.Key()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(filepath.Join(f.root, "opt/kv/kv.conf")); got != "pass=s3cret" {
		t.Fatalf("baked template rendered %q, want pass=s3cret", got)
	}
	if r.active != r.baked {
		t.Fatalf("a key-only delivery changed the active dir to %s", r.active)
	}
}

func etcdValue(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	resp, err := c.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v (%d kvs)", key, err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}
