package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// AppCenter packages have no package.json: the push names them, and a
// cluster is then created from the stored archive under those names.
// OpenPitrix names may have capitals; locale files are served.
func TestPushPackagesAsTheyExist(t *testing.T) {
	s, st := newServer(t)
	noMeta := copyPackage(t, func(d string) {
		if err := os.Remove(filepath.Join(d, "package.json")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(d, "locale"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "locale", "zh-cn.json"), []byte(`{"Replicas": "副本"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	_, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: noMeta})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "package.json: missing") || !strings.Contains(err.Error(), "--name and --version") {
		t.Fatalf("push without names: %v", err)
	}
	if n := countKeys(t, st, "/hangar/app"); n != 0 {
		t.Fatalf("a refused push stored %d keys", n)
	}
	app, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: noMeta, Name: "kvc", Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	if app.Name != "kvc" || app.Version != "2.0" || app.Locales["zh-cn"].GetTexts()["Replicas"] != "副本" {
		t.Fatalf("pushed %s %s, locales %v", app.Name, app.Version, app.Locales)
	}
	got, err := s.GetApp(asMember(), &pilotv1.GetAppRequest{Name: "kvc"})
	if err != nil || got.Locales["zh-cn"] == nil {
		t.Fatalf("get app: %v, %v", got, err)
	}
	if _, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kvc"}); err != nil {
		t.Fatalf("create from a package without package.json: %v", err)
	}

	capital := copyPackage(t, func(d string) {
		replaceIn(t, filepath.Join(d, "package.json"), `"name": "kv"`, `"name": "KV"`)
	})
	app, err = s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: capital})
	if err != nil {
		t.Fatal(err)
	}
	if app.Name != "kv" || !strings.Contains(strings.Join(app.Warnings, "\n"), `name "KV" is kept in the catalog as "kv"`) {
		t.Fatalf("capitalised name: %s, warnings %q", app.Name, app.Warnings)
	}
	if _, err := s.CreateCluster(asMember(), &pilotv1.CreateClusterRequest{App: "kv"}); err != nil {
		t.Fatalf("create from a capitalised package: %v", err)
	}
}

// Bad input is refused naming file, field and line, and stores nothing.
func TestBadPackagesNameTheLine(t *testing.T) {
	s, st := newServer(t)
	for _, tc := range []struct {
		name string
		edit func(dir string)
		want []string
	}{
		{"pattern that does not compile", func(d string) {
			replaceIn(t, filepath.Join(d, "config.json"), `"type": "integer"`, `"type": "integer", "pattern": "(["`)
		}, []string{"config.json: line ", "pattern", "does not compile"}},
		{"wrong type in config.json", func(d string) {
			replaceIn(t, filepath.Join(d, "config.json"), `"type": "integer"`, `"type": "integer", "min": "one"`)
		}, []string{"config.json: line ", "min: "}},
		{"template syntax error", func(d string) {
			replaceIn(t, filepath.Join(d, "cluster.json.mustache"), `"nodes": [`, "\n\"nodes\": [,")
		}, []string{"cluster.json.mustache", "line "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PushApp(asMember(), &pilotv1.PushAppRequest{Archive: copyPackage(t, tc.edit)})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			if n := countKeys(t, st, "/hangar/app"); n != 0 {
				t.Fatalf("a refused push stored %d keys", n)
			}
		})
	}
}
