package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

// Attacks through what an app package's confd files and templates make a
// drone do, and through what a drone's etcd certificate allows.

const confdApp = "tests/e2e/testdata/confdapp"

// copyPackage copies the package folder src (relative to the repo root)
// into a new temporary folder, applying edits (file name -> new content).
func copyPackage(t *testing.T, src string, edits map[string]string) string {
	t.Helper()
	from := filepath.Join(repoRoot(t), src)
	dir := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return writeFile(filepath.Join(dir, rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range edits {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// TestAttackConfdDestEscapes: a confd destination must not lead the drone
// out of the instance's root. Pilot refuses a package whose dest climbs out
// (or is relative), naming the file and the field. And a symlink the app's
// own init plants in the root (/opt/app -> the instance's directory) does
// not carry a later render out either: the drone writes through an os.Root
// and refuses the path. (Delivering a hostile dest to a drone without
// pilot is covered in drone/render's TestDestinationsStayInTheRoot:
// ConfigureRenderer is becoming pilot-signed, so only pilot can send one.)
func TestAttackConfdDestEscapes(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)

	unique := fmt.Sprintf("hangar-attack-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join("/tmp", unique)) })
	for _, tc := range []struct{ dest, want string }{
		{"/../../tmp/" + unique, "must be a clean absolute path"},
		{"tmp/" + unique, "must be an absolute path"},
	} {
		dir := copyPackage(t, confdApp, map[string]string{
			"confd/conf.d/b-motd.toml": fmt.Sprintf("[template]\nsrc = \"motd.tmpl\"\ndest = %q\nkeys = [\"/env\"]\n", tc.dest),
		})
		out, err := p.hangar("app", "push", dir)
		if err == nil {
			t.Fatalf("push of a package with dest %q was accepted:\n%s", tc.dest, out)
		}
		for _, want := range []string{"confd/conf.d/b-motd.toml", "[template] dest", tc.dest, tc.want} {
			if !strings.Contains(out, want) {
				t.Errorf("push with dest %q: the error does not say %q:\n%s", tc.dest, want, out)
			}
		}
	}

	p.mustHangar("app", "push", confdApp)
	c, job := createCluster(t, p, "confdapp", nil)
	mustSucceed(t, job)
	inst := p.instanceDir(c.Nodes[0].InstanceId)
	root := p.instanceRoot(c.Nodes[0].InstanceId)
	if fi, err := os.Lstat(filepath.Join(root, "opt", "app")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("init did not plant its symlink: %v, %v", fi, err)
	}
	// A change of the metadata renders every file again; b-motd.toml
	// comes after a-link.toml in the same pass. --wait waits for the
	// drone's render report, which names the refused destination.
	if out, err := p.hangar("cluster", "update-env", c.Id, "motd=changed", "--wait"); err == nil || !strings.Contains(out, "path escapes from parent") {
		t.Fatalf("update-env --wait did not report the refused dest (err %v):\n%s", err, out)
	}
	waitFor(t, time.Minute, "the re-render of motd.conf", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(root, "etc", "confdapp", "motd.conf"))
		return strings.Contains(string(b), "changed"), string(b)
	})
	if b, err := os.ReadFile(filepath.Join(inst, "escaped.conf")); err == nil {
		t.Fatalf("the drone followed the planted symlink and wrote %s outside the root: %q", filepath.Join(inst, "escaped.conf"), b)
	}
	// And it said why.
	waitFor(t, time.Minute, "the drone to log the refused dest", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(inst, "agent.log"))
		return strings.Contains(string(b), "/opt/app/escaped.conf") && strings.Contains(string(b), "path escapes from parent"), tail(string(b), 2048)
	})
}

// TestAttackConfdModeDecimal: a mode is octal where it is checked and
// where it is applied. confd parses "700" as decimal (0o1274, so
// --w-rwxr--); the drone gives exactly the bits validated.
func TestAttackConfdModeDecimal(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", confdApp)
	c, job := createCluster(t, p, "confdapp", nil)
	mustSucceed(t, job)
	root := p.instanceRoot(c.Nodes[0].InstanceId)
	for file, want := range map[string]fs.FileMode{
		"opt/confdapp/run.sh":    0o700, // mode = "700"
		"etc/confdapp/motd.conf": 0o640, // mode = "0640"
	} {
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if fi.Mode() != want {
			t.Errorf("/%s has mode %v, want %v", file, fi.Mode(), want)
		}
	}
	// A package asking for setuid is refused at push.
	dir := copyPackage(t, confdApp, map[string]string{
		"package.json":            `{"name": "confdapp", "version": "1.0.1"}`,
		"confd/conf.d/c-run.toml": "[template]\nsrc = \"run.sh.tmpl\"\ndest = \"/opt/confdapp/run.sh\"\nmode = \"4755\"\n",
	})
	if out, err := p.hangar("app", "push", dir); err == nil || !strings.Contains(out, `confd/conf.d/c-run.toml: [template] mode "4755"`) || !strings.Contains(out, "setuid") {
		t.Fatalf("push of a setuid mode: %v\n%s", err, out)
	}
}

// TestAttackDroneGrantsLeases: a drone's etcd certificate reads its
// cluster and nothing more. etcd's RBAC does not cover leases or
// maintenance (20,000 long leases grew a frontgate's etcd 30x); the
// frontgate refuses them, and every other call but Range and Watch, to any
// certificate but its own.
func TestAttackDroneGrantsLeases(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", confdApp)
	c, job := createCluster(t, p, "confdapp", nil)
	mustSucceed(t, job)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	node := c.Nodes[0]
	ud, err := userdata.ReadDrone(filepath.Join(p.instanceDir(node.InstanceId), "userdata.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The real drone's own credentials, from its instance.
	creds, err := tlsutil.Load(filepath.Join(p.instanceDir(node.InstanceId), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	host := ud.EtcdEndpoints[0]
	host = strings.TrimPrefix(host, "https://")
	host = host[:strings.LastIndex(host, ":")]
	d, err := clientv3.New(clientv3.Config{Endpoints: ud.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig(host, pki.Identity{})})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	// What a drone needs keeps working: reading and watching its cluster,
	// progress notifications included.
	prefix := "/clusters/" + c.Id + "/"
	if got, err := d.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || got.Count == 0 {
		t.Fatalf("the drone reading its cluster: %v, %v", got, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := d.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify(), clientv3.WithProgressNotify())
	if wr := <-wch; wr.Err() != nil || !wr.Created {
		t.Fatalf("the drone watching its cluster: %+v, %v", wr, wr.Err())
	}
	if err := d.RequestProgress(ctx); err != nil {
		t.Fatalf("the drone asking watch progress: %v", err)
	}
	// No --wait: confdapp plants a symlink its render refuses (above), so
	// the wait would report that; the watch below is what is tested.
	p.mustHangar("cluster", "update-env", c.Id, "motd=watched")
	for seen := false; !seen; {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			t.Fatalf("the drone's watch ended: %v", wr.Err())
		}
		for _, ev := range wr.Events {
			seen = seen || strings.Contains(string(ev.Kv.Value), "watched")
		}
	}

	for _, tc := range []struct {
		call string
		op   func() error
	}{
		{"LeaseGrant", func() error { _, err := d.Grant(ctx, 86400); return err }},
		{"LeaseKeepAlive", func() error { _, err := d.KeepAliveOnce(ctx, 1); return err }},
		{"LeaseRevoke", func() error { _, err := d.Revoke(ctx, 1); return err }},
		{"LeaseLeases", func() error { _, err := d.Leases(ctx); return err }},
		{"Put", func() error { _, err := d.Put(ctx, prefix+"env/motd", "x"); return err }},
		{"Status", func() error { _, err := d.Status(ctx, ud.EtcdEndpoints[0]); return err }},
		{"AlarmList", func() error { _, err := d.AlarmList(ctx); return err }},
		{"Defragment", func() error { _, err := d.Defragment(ctx, ud.EtcdEndpoints[0]); return err }},
		{"MemberList", func() error { _, err := d.MemberList(ctx); return err }},
		{"MemberAdd", func() error { _, err := d.MemberAdd(ctx, []string{"https://127.0.0.1:1"}); return err }},
		{"Snapshot", func() error {
			rc, err := d.Snapshot(ctx)
			if err == nil {
				_, err = rc.Read(make([]byte, 1))
				rc.Close()
			}
			return err
		}},
	} {
		if err := tc.op(); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the drone's %s: %v; want permission denied", tc.call, err)
		}
	}
}

// TestAttackUnquotedParamInCmd: in an OpenPitrix cluster.json.tmpl a
// parameter printed into a command runs in the node's shell as root
// ("$(id > /tmp/x)"). Lint and push say so, naming the file, the line and
// the parameter.
func TestAttackUnquotedParamInCmd(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"package.json": `{"name": "oppkg", "version": "1.0.0"}`,
		"config.json": `{"type": "array", "properties": [{"key": "cluster", "type": "array", "properties": [
			{"key": "name", "type": "string", "default": "oppkg"},
			{"key": "x", "type": "string", "default": "hello"},
			{"key": "node", "type": "array", "properties": [{"key": "count", "type": "integer", "default": 1}]}]}]}`,
		"cluster.json.tmpl": `{
  "name": "{{.cluster.name}}",
  "nodes": [{
    "role": "node",
    "container": {"type": "docker", "image": "x"}, "count": "{{.cluster.node.count}}", "cpu": 1, "memory": 128,
    "services": {"init": {"cmd": "echo {{.cluster.x}} > /tmp/oppkg-greeting"}, "start": {"cmd": "true"}}
  }]
}`,
	} {
		if err := writeFile(filepath.Join(dir, name), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	const want = "cluster.json.tmpl: line 6: parameter cluster.x is inserted into nodes[0].services.init.cmd without shell quoting"

	p := startPilot(t)
	lint, err := p.hangar("app", "lint", dir)
	if err != nil || !strings.Contains(lint, want) {
		t.Errorf("hangar app lint: %v; want a warning %q:\n%s", err, want, lint)
	}
	push, err := p.hangar("app", "push", dir)
	if err != nil || !strings.Contains(push, want) {
		t.Errorf("hangar app push: %v; want a warning %q:\n%s", err, want, push)
	}
}
