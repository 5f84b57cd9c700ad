package apppkg

import (
	"path/filepath"
	"reflect"
	"testing"
)

// A stored spec decodes to exactly what Render returned, parameter paths
// included, for both template kinds, a role-less app and examples/kv.
func TestStoredSpecRoundTrip(t *testing.T) {
	goFiles := kvFiles()
	delete(goFiles, "cluster.json.mustache")
	goFiles["cluster.json.tmpl"] = kvGoTemplate
	kv, err := LoadDir(filepath.Join("..", "..", "examples", "kv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		pkg    *Package
		params map[string]string
	}{
		{"mustache with service_params", mustLoad(t, kvFiles()), map[string]string{"env.requirepass": `p"w`}},
		{"go template", mustLoad(t, goFiles), nil},
		{"role-less", mustLoad(t, rolelessFiles()), nil},
		{"examples/kv", kv, map[string]string{"cluster.replica.count": "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.pkg.Resolve(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := tc.pkg.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			b, err := spec.Stored()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeStored(b)
			if err != nil {
				t.Fatal(err)
			}
			// The stored JSON is compacted; what it decodes to is the same.
			got.rendered, spec.rendered = nil, nil
			if !reflect.DeepEqual(got, spec) {
				t.Fatalf("decoded spec differs from the rendered one:\n got %+v\nwant %+v", got, spec)
			}
			if again, err := mustDecode(t, b).Stored(); err != nil || string(again) != string(b) {
				t.Fatalf("stored again: %s, %v; want %s", again, err, b)
			}
		})
	}
	paths := 0
	p := mustLoad(t, kvFiles())
	v, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range spec.Nodes {
		for _, s := range n.Services {
			paths += len(s.ParamPaths)
		}
	}
	if paths == 0 {
		t.Fatal("the fixture has no parameter paths: the round trip above proves nothing about them")
	}
}

func mustDecode(t *testing.T, b []byte) *ClusterSpec {
	t.Helper()
	s, err := DecodeStored(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoredSpecRefusesWhatRenderDidNotMake(t *testing.T) {
	if _, err := (&ClusterSpec{}).Stored(); err == nil {
		t.Fatal("a spec built by hand was stored")
	}
	for _, bad := range []string{`{`, `{"rendered": {"nodes": []}}`, `{"rendered": {"nodes": [{"role": "a", "count": 1, "container": {"type": "docker", "image": "x"}}]}, "param_paths": {"3": {"start": {"x": "y"}}}}`} {
		if _, err := DecodeStored([]byte(bad)); err == nil {
			t.Errorf("DecodeStored(%s): no error", bad)
		}
	}
}
