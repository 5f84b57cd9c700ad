package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
)

var update = flag.Bool("update", false, "rewrite the golden files of the render tests")

func TestAppInitWritesAPackageThatLintsClean(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		app   string
		roles []string
	}{
		{"one role named after the folder", nil, "myapp", []string{"server"}},
		{"named, three roles", []string{"--name", "cache-2", "--roles", "primary,replica,arbiter"}, "cache-2", []string{"primary", "replica", "arbiter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "myapp")
			res := runCLIEnv(t, testEnv(t), append([]string{"app", "init", dir}, tc.args...)...)
			if res.code != 0 {
				t.Fatalf("init: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			mustContain(t, "init output", res.stdout, "Wrote app "+tc.app+" 0.1.0", "package.json", "confd/conf.d/"+tc.app+".toml")

			res = runCLIEnv(t, testEnv(t), "app", "lint", dir, "-o", "json")
			if res.code != 0 {
				t.Fatalf("lint: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			var app struct {
				Name     string
				Roles    []string
				Warnings []string
			}
			if err := json.Unmarshal([]byte(res.stdout), &app); err != nil {
				t.Fatal(err)
			}
			if app.Name != tc.app || strings.Join(app.Roles, ",") != strings.Join(tc.roles, ",") || len(app.Warnings) != 0 {
				t.Fatalf("lint of the new package: %+v", app)
			}

			// Every role renders its file, listing every node.
			for _, role := range tc.roles {
				res = runCLIEnv(t, testEnv(t), "app", "render", dir, "--role", role)
				if res.code != 0 {
					t.Fatalf("render --role %s: exit %d\n%s%s", role, res.code, res.stdout, res.stderr)
				}
				mustContain(t, "render --role "+role, res.stdout, "role = "+role, "greeting = hello", "server.1 = 192.0.2.1:8080")
			}
		})
	}
}

func TestAppInitRefusals(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"non-empty folder", []string{full, "--name", "x"}, "the folder is not empty (it has notes.txt)"},
		{"bad name", []string{t.TempDir(), "--name", "My_App"}, `--name "My_App": use lowercase letters`},
		{"bad role", []string{t.TempDir(), "--name", "x", "--roles", "a/b"}, `--roles: role "a/b"`},
		{"repeated role", []string{t.TempDir(), "--name", "x", "--roles", "a,a"}, `role "a" is given twice`},
		{"folder name that is no app name", []string{filepath.Join(t.TempDir(), "Not An App")}, `give one with --name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLIEnv(t, testEnv(t), append([]string{"app", "init"}, tc.args...)...)
			if res.code == 0 {
				t.Fatalf("init %v succeeded:\n%s", tc.args, res.stdout)
			}
			mustContain(t, "stderr", res.stderr, tc.want)
		})
	}

	// --force writes the package's files and leaves the others alone.
	res := runCLIEnv(t, testEnv(t), "app", "init", full, "--name", "x", "--force")
	if res.code != 0 {
		t.Fatalf("init --force: exit %d\n%s", res.code, res.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(full, "notes.txt")); err != nil || string(b) != "mine" {
		t.Fatalf("init --force touched notes.txt: %q, %v", b, err)
	}
	if _, err := apppkg.LoadDir(full); err != nil {
		t.Fatalf("the package written with --force: %v", err)
	}
}

func TestAppPackageMakesTheArchivePushSends(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "myapp")
	if res := runCLIEnv(t, testEnv(t), "app", "init", dir, "--roles", "a,b"); res.code != 0 {
		t.Fatalf("init: %s", res.stderr)
	}
	out := filepath.Join(t.TempDir(), "out.tar.gz")
	res := runCLIEnv(t, testEnv(t), "app", "package", dir, "--out", out)
	if res.code != 0 {
		t.Fatalf("package: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout, "out.tar.gz", "Roles:        a, b", "hangar app push")

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := readPackage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, sent) {
		t.Fatalf("the archive (%d bytes) differs from what push sends for the folder (%d bytes)", len(b), len(sent))
	}
	fromArchive, err := apppkg.LoadArchive(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := apppkg.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fromArchive.Meta.Name != fromDir.Meta.Name || fromArchive.Meta.Version != fromDir.Meta.Version ||
		fromArchive.Template != fromDir.Template || !bytes.Equal(fromArchive.Config.Raw, fromDir.Config.Raw) ||
		!maps.EqualFunc(fromArchive.Confd, fromDir.Confd, bytes.Equal) || len(fromArchive.Confd) != 2 {
		t.Fatalf("the archive's package differs from the folder's:\n%+v\n%+v", fromArchive.Meta, fromDir.Meta)
	}
	files := untar(t, b)
	if files["README.md"] == "" || len(files) != 6 {
		t.Fatalf("archive files: %v", slicesSorted(files))
	}

	// The default name, in the current folder.
	t.Chdir(t.TempDir())
	if res := runCLIEnv(t, testEnv(t), "app", "package", dir); res.code != 0 {
		t.Fatalf("package: %s", res.stderr)
	}
	if _, err := os.Stat("myapp-0.1.0.tar.gz"); err != nil {
		t.Fatalf("default archive name: %v", err)
	}
}

func slicesSorted(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestAppPackageRefusesAPackageWithErrors(t *testing.T) {
	dir := openPitrixPackage(t, "true")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"type": "array", "properties": [{"key": "cluster", "type": "array", "properties": [{"key": "name", "type": "strnig"}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.tar.gz")
	res := runCLIEnv(t, testEnv(t), "app", "package", dir, "--out", out)
	if res.code == 0 {
		t.Fatalf("a package with a bad type was packaged:\n%s", res.stdout)
	}
	mustContain(t, "stderr", res.stderr, "config.json", "strnig")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("an archive was written for a refused package: %v", err)
	}
}

// TestAppRenderGolden renders testdata/render/renderapp as each case's node
// would and compares with the expected output (go test -run
// TestAppRenderGolden -update rewrites it).
func TestAppRenderGolden(t *testing.T) {
	pkg := filepath.Join("testdata", "render", "renderapp")
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"default.golden", nil},
		{"worker.golden", []string{"--role", "worker", "--param", "env.log_level=debug"}},
		{"node3.golden", []string{"--node", "i-3", "--count", "worker=3", "-p", "cluster.worker.memory=1024"}},
		{"leader.json.golden", []string{"--role", "leader", "-o", "json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			res := runCLIEnv(t, testEnv(t), append([]string{"app", "render", pkg}, tc.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			golden := filepath.Join("testdata", "render", tc.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(res.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if res.stdout != string(want) {
				t.Fatalf("render %v differs from %s (run with -update after checking):\n%s", tc.args, golden, res.stdout)
			}
		})
	}
}

func TestAppRenderErrors(t *testing.T) {
	pkg := filepath.Join("testdata", "render", "renderapp")
	typo := filepath.Join(t.TempDir(), "typo")
	if err := os.CopyFS(typo, os.DirFS(pkg)); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(typo, "confd", "templates", "env.sh.tmpl")
	if err := os.WriteFile(tmpl, []byte("line one\n{{getv \"/env/typo\"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a key the metadata lacks", []string{typo}, []string{"confd/templates/env.sh.tmpl:2", "/env/typo"}},
		{"unknown role", []string{pkg, "--role", "db"}, []string{`--role "db": the app has no such role (it has "leader", "worker")`}},
		{"a role without nodes", []string{pkg, "--role", "worker", "--count", "worker=0"}, []string{"--role worker: the role has no nodes", "--count worker=N"}},
		{"a bad parameter", []string{pkg, "--param", "env.log_level=loud"}, []string{"env.log_level"}},
		{"count and param both", []string{pkg, "--count", "worker=1", "-p", "cluster.worker.count=2"}, []string{"cluster.worker.count is also given with --param"}},
		{"no such node", []string{pkg, "--node", "7"}, []string{`--node "7": no such node; the cluster has sids 1 to 3`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLIEnv(t, testEnv(t), append([]string{"app", "render"}, tc.args...)...)
			if res.code == 0 {
				t.Fatalf("render %v succeeded:\n%s", tc.args, res.stdout)
			}
			mustContain(t, "stderr", res.stderr, tc.want...)
		})
	}
}

func TestAppListShowsVersionsSideBySideWithTheirClusters(t *testing.T) {
	s := newFakeState()
	s.appList = []*pilotv1.App{
		{Name: "redis", Version: "2.0.0", Roles: []string{"master"}, CreatedAt: at(20)},
		{Name: "kv", Version: "1.0.0", Roles: []string{"primary"}, CreatedAt: at(5)},
		{Name: "redis", Version: "1.0.0", Roles: []string{"master"}, CreatedAt: at(10)},
	}
	s.appUsers = []*pilotv1.AppVersionUsers{{Name: "redis", Version: "1.0.0", ClusterIds: []string{"cl-a", "cl-b"}}}
	addr := startFake(t, s)
	res := runCLI(t, addr, "app", "list")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 versions:\n%s", res.stdout)
	}
	for i, want := range [][]string{{"kv", "1.0.0", "-"}, {"redis", "1.0.0", "cl-a, cl-b"}, {"redis", "2.0.0", "-"}} {
		mustContain(t, "line "+fmt.Sprint(i+1), lines[i+1], want...)
	}
	mustContain(t, "header", lines[0], "USED BY")

	res = runCLI(t, addr, "app", "list", "-o", "json")
	var out struct {
		Users []struct {
			Name, Version string
			ClusterIDs    []string `json:"clusterIds"`
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil || len(out.Users) != 1 || len(out.Users[0].ClusterIDs) != 2 {
		t.Fatalf("json: %v\n%s", err, res.stdout)
	}
}

func TestAppDelete(t *testing.T) {
	s := newFakeState()
	s.appUsers = []*pilotv1.AppVersionUsers{{Name: "redis", Version: "1.0.0", ClusterIds: []string{"cl-a"}}}
	addr := startFake(t, s)
	res := runCLI(t, addr, "app", "delete", "redis", "2.0.0")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	mustContain(t, "output", res.stdout, "Deleted redis 2.0.0.")
	res = runCLI(t, addr, "app", "delete", "redis", "1.0.0")
	if res.code == 0 {
		t.Fatalf("delete of a version in use succeeded:\n%s", res.stdout)
	}
	mustContain(t, "stderr", res.stderr, "delete app redis 1.0.0", "cl-a")
	if res := runCLI(t, addr, "app", "delete", "redis"); res.code == 0 {
		t.Fatal("delete without a version succeeded")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deleteAppReqs) != 2 || s.deleteAppReqs[0].GetVersion() != "2.0.0" {
		t.Fatalf("delete requests %v", s.deleteAppReqs)
	}
}
