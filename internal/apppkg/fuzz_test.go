package apppkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The fuzz targets below feed what an uploader controls (a whole archive,
// one conf.d file, a cluster template, parameter values) to the code that
// checks it. None may panic or run unbounded, and every refusal must say
// what is wrong and where: mustName checks the error names a file, field or
// position.

// kvExample is the path of the example package the targets are seeded with.
var kvExample = filepath.Join("..", "..", "examples", "kv")

// mustName fails unless err has a message containing one of where.
func mustName(t *testing.T, err error, where ...string) {
	t.Helper()
	msg := err.Error()
	if strings.TrimSpace(msg) == "" {
		t.Fatalf("empty error message (%#v)", err)
	}
	for _, w := range where {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Fatalf("error %q names none of %q", msg, where)
}

// FuzzLoadConfig checks that no config.json makes the parser panic, and
// that a config it accepts resolves its own defaults without panicking.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(kvConfig))
	f.Add([]byte(rolelessFiles()["config.json"]))
	f.Add([]byte(`{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [{"key": "a", "type": "number", "default": 1e400}]}]}`))
	f.Add([]byte(`{"type": "array", "properties": [{"key": "env", "type": "array", "properties": [{"key": "a", "type": "string", "range": [[1]], "default": "x"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w warnings
		c, err := parseConfig(data, &w)
		if err != nil {
			mustName(t, err, fileConfig)
			return
		}
		p := &Package{Config: c}
		if v, err := p.resolve(nil, resolveLint); err == nil {
			_ = v.Strings()
		}
		_, _ = p.Resolve(map[string]string{"env.a": "1", "cluster.name": "x"})
	})
}

// FuzzRender checks that no cluster.json.mustache, with any value for one
// parameter, makes loading or rendering panic, and that a value never
// escapes its JSON literal: the rendered name is the given name.
func FuzzRender(f *testing.F) {
	f.Add(kvMustache, "kv")
	f.Add(`{"name": {{cluster.name}}, "nodes": [{"count": 1}]}`, `"}], "x": {`)
	f.Add(`{{#cluster.name}}{{/cluster.name}}`, "")
	f.Add(`{"name": {{{cluster.name}}}, "nodes": [{"count": {{cluster.master.count}}, "role": "m"}]}`, "\x00")
	f.Fuzz(func(t *testing.T, tmpl, name string) {
		files := map[string]file{
			fileMeta:     {data: []byte(kvMeta)},
			fileConfig:   {data: []byte(kvConfig)},
			fileMustache: {data: []byte(tmpl)},
		}
		p, err := load(files, LoadOptions{})
		if err != nil {
			mustName(t, err, fileMustache)
			return
		}
		v, err := p.Resolve(map[string]string{"cluster.name": name})
		if err != nil {
			mustName(t, err, "cluster.name")
			return
		}
		spec, err := p.Render(v)
		if err != nil {
			mustName(t, err, fileMustache)
			return
		}
		_ = spec.Roles()
		if strings.Contains(tmpl, `"name": {{cluster.name}}`) && strings.Count(tmpl, `"name"`) == 1 && spec.Name != name {
			t.Fatalf("rendered name %q, given %q", spec.Name, name)
		}
	})
}

// FuzzRenderGoTemplate is FuzzRender for the OpenPitrix form,
// cluster.json.tmpl, a Go template: it can loop and call templates, so it
// also checks that loading (which renders once) and rendering end.
func FuzzRenderGoTemplate(f *testing.F) {
	f.Add(kvGoTemplate, "kv")
	f.Add(`{"name": "{{.cluster.name}}", "nodes": [{"count": 1}]}`, `"}], "x": {`)
	f.Add(`{{range 100000000}}{{end}}`+kvGoTemplate, "")
	f.Add(`{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`, "x")
	f.Add(`{{$x := "ab"}}{{range 30}}{{$x = printf "%s%s" $x $x}}{{end}}`+kvGoTemplate, "y")
	f.Add(`{"name": "{{printf "%0999999d" 1}}"}`, "z")
	f.Add(`{{with .cluster}}{{range $k, $v := .}}{{$k}}{{end}}{{else}}{{break}}{{end}}`, "")
	f.Fuzz(func(t *testing.T, tmpl, name string) {
		files := map[string]file{
			fileMeta:   {data: []byte(kvMeta)},
			fileConfig: {data: []byte(kvConfig)},
			fileGoTmpl: {data: []byte(tmpl)},
		}
		p, err := load(files, LoadOptions{})
		if err != nil {
			mustName(t, err, fileGoTmpl)
			return
		}
		v, err := p.Resolve(map[string]string{"cluster.name": name})
		if err != nil {
			mustName(t, err, "cluster.name")
			return
		}
		spec, err := p.Render(v)
		if err != nil {
			mustName(t, err, fileGoTmpl)
			return
		}
		_ = spec.Roles()
		if tmpl == kvGoTemplate && spec.Name != name {
			t.Fatalf("rendered name %q, given %q", spec.Name, name)
		}
	})
}

// FuzzLoadArchive feeds arbitrary bytes to LoadArchive. Input that is not
// gzip is gzipped first, so the fuzzer also explores tar headers and file
// contents instead of stopping at gzip's checksum.
func FuzzLoadArchive(f *testing.F) {
	archive, err := ArchiveDir(kvExample)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(archive)
	f.Add(gunzip(f, archive))
	f.Add(tarOf(f, map[string]string{"pkg/package.json": kvMeta, "pkg/config.json": kvConfig, "pkg/cluster.json.mustache": kvMustache}))
	f.Add(tarOf(f, map[string]string{"../x": "", "/etc/passwd": ""}))
	f.Add(tarOf(f, kvFiles()))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			_, _ = gz.Write(data)
			_ = gz.Close()
			data = buf.Bytes()
		}
		p, err := LoadArchive(bytes.NewReader(data))
		if err != nil {
			mustName(t, err, "load archive", fileMeta, fileConfig, fileMustache, fileGoTmpl, "confd/", "locale/", "resolve default values")
			return
		}
		// A package that loads renders its defaults: load checked that.
		v, err := p.Resolve(nil)
		if err != nil {
			return // required parameters without defaults
		}
		if _, err := p.Render(v); err != nil {
			mustName(t, err, fileMustache, fileGoTmpl)
		}
	})
}

// FuzzParseConfdResource checks that every conf.d toml is accepted or
// refused with an error naming the file, and that an accepted one keeps
// what the drone relies on: src stays inside templates/, dest is a clean
// absolute path, keys are absolute, mode is octal permission bits.
func FuzzParseConfdResource(f *testing.F) {
	f.Add([]byte(kvToml))
	if b, err := os.ReadFile(filepath.Join(kvExample, "confd", "conf.d", "kv.toml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[template]\nsrc = \"../../etc/shadow\"\ndest = \"x\"\n"))
	f.Add([]byte("[template]\nsrc = \"a\"\ndest = \"/a\"\nuid = 99999999999999999999\nmode = \"0999\"\n"))
	f.Add([]byte("[[template]]\nsrc = 1\n[x.y]\nz = [[1], [\"a\"]]\n"))
	f.Add([]byte(strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "confd/conf.d/x.toml"
		r, err := ParseConfdResource(name, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), name+": ") || len(err.Error()) <= len(name)+2 {
				t.Fatalf("error %q does not start with the file name and say what is wrong", err)
			}
			return
		}
		if c, skip, err := cleanName(r.Src); err != nil || skip || c != r.Src {
			t.Fatalf("accepted src %q that is not a plain relative path", r.Src)
		}
		if !strings.HasPrefix(r.Dest, "/") || path.Clean(r.Dest) != r.Dest || r.Dest == "/" {
			t.Fatalf("accepted dest %q that is not a clean absolute path", r.Dest)
		}
		for _, k := range r.Keys {
			if !strings.HasPrefix(k, "/") {
				t.Fatalf("accepted key %q", k)
			}
		}
		if r.Mode != "" {
			if m, err := strconv.ParseUint(r.Mode, 8, 32); err != nil || m > 0o777 || fs.FileMode(m) != r.Perm {
				t.Fatalf("accepted mode %q as %o", r.Mode, r.Perm)
			}
		}
	})
}

// FuzzResolveParams resolves arbitrary parameters against the kv example's
// config.json: one declared parameter with any value and one arbitrary
// key. A refusal names the parameter; accepted values survive the
// round trip Resolve(v.Strings()) that reloading stored values relies on,
// and render.
func FuzzResolveParams(f *testing.F) {
	p, err := LoadDir(kvExample)
	if err != nil {
		f.Fatal(err)
	}
	paths := p.Config.order
	f.Add(uint8(0), "my-kv", "", "")
	f.Add(uint8(3), "99999999999999999999999", "env.nope", "1")
	f.Add(uint8(5), "-1", "cluster.name", "\x00")
	f.Add(uint8(7), "1e309", "service_params.x.y", "NaN")
	f.Add(uint8(9), "a,b,,c", "cluster..x", "")
	f.Fuzz(func(t *testing.T, i uint8, val, key, val2 string) {
		path := paths[int(i)%len(paths)]
		params := map[string]string{path: val}
		if key != path {
			params[key] = val2
		}
		v, err := p.Resolve(params)
		if err != nil {
			names := []string{"config.json"}
			for k := range params {
				names = append(names, k, strconv.Quote(k))
			}
			mustName(t, err, names...)
			return
		}
		again, err := p.Resolve(v.Strings())
		if err != nil {
			t.Fatalf("resolving %q again: %v", v.Strings(), err)
		}
		if !maps.Equal(again.Strings(), v.Strings()) {
			t.Fatalf("round trip changed the values:\n%q\n%q", v.Strings(), again.Strings())
		}
		if _, err := p.Render(v); err != nil {
			mustName(t, err, fileMustache)
		}
	})
}

func gunzip(f *testing.F, data []byte) []byte {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		f.Fatal(err)
	}
	out, err := io.ReadAll(gz)
	if err != nil {
		f.Fatal(err)
	}
	return out
}

func tarOf(f *testing.F, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			f.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			f.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
