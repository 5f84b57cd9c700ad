package apppkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadDir(t *testing.T) {
	p := mustLoad(t, kvFiles())
	if p.Meta.Name != "kvstore" || p.Meta.Version != "1.0.0" || p.Meta.AppVersion != "7.2" {
		t.Fatalf("meta = %+v", p.Meta)
	}
	if want := []Maintainer{{Name: "ops"}, {Name: "Ada", Email: "ada@example.com"}}; !reflect.DeepEqual(p.Meta.Maintainers, want) {
		t.Fatalf("maintainers = %+v, want %+v", p.Meta.Maintainers, want)
	}
	if p.TemplateKind != KindMustache || p.Template != kvMustache {
		t.Fatalf("template kind %q", p.TemplateKind)
	}
	if string(p.Confd["conf.d/kv.conf.toml"]) != kvToml || string(p.Confd["templates/kv.conf.tmpl"]) != kvTemplate || len(p.Confd) != 2 {
		t.Fatalf("confd files = %v", p.Confd)
	}
	if p.Locales["zh-cn"]["repair"] != "修复" {
		t.Fatalf("locales = %v", p.Locales)
	}
	if got := p.Config.Roles(); !reflect.DeepEqual(got, []string{"master", "replica"}) {
		t.Fatalf("roles = %v", got)
	}
	it, ok := p.Config.Item("cluster.zk_service")
	if !ok || !reflect.DeepEqual(it.Limits, map[string][]string{"app-zk": {}}) || string(it.Form["tag"]) != `["ZK"]` {
		t.Fatalf("service item = %+v", it)
	}
	for _, w := range [][]string{
		{"multi_zone_policy", "platform hint", "no effect"},
	} {
		if !hasWarning(p.Warnings, w...) {
			t.Errorf("no warning with %q in %q", w, p.Warnings)
		}
	}
	if hasWarning(p.Warnings, "health_check") {
		t.Errorf("health_check is executed: no warning should name it: %q", p.Warnings)
	}
	if hasWarning(p.Warnings, "README.md") {
		t.Errorf("README.md should not be reported: %q", p.Warnings)
	}
}

func TestLoadWarnsUnusedFiles(t *testing.T) {
	files := kvFiles()
	files["replace_policy.json"] = "{}"
	files["confd/confd.toml"] = "backend = 'metad'"
	files["confd/templates/dump.rdb"] = "\x00\x01binary"
	p := mustLoad(t, files)
	for _, w := range []string{"replace_policy.json: not used by Hangar", "confd/confd.toml: not used by Hangar",
		"confd/templates/dump.rdb: no conf.d/*.toml uses this template"} {
		if !hasWarning(p.Warnings, w) {
			t.Errorf("no warning %q in %q", w, p.Warnings)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(f map[string]string)
		parts []string
	}{
		{"no package.json", func(f map[string]string) { delete(f, "package.json") }, []string{"package.json: missing"}},
		{"no config.json", func(f map[string]string) { delete(f, "config.json") }, []string{"config.json: missing"}},
		{"no template", func(f map[string]string) { delete(f, "cluster.json.mustache") }, []string{"no cluster.json.mustache"}},
		{"two templates", func(f map[string]string) { f["cluster.json.tmpl"] = "{}" }, []string{"both cluster.json.mustache and cluster.json.tmpl"}},
		{"meta bad json", func(f map[string]string) { f["package.json"] = "{\n\"name\": \"x\",\n}" }, []string{"package.json: invalid JSON at line 3, column 1"}},
		{"meta unknown field", func(f map[string]string) { f["package.json"] = `{"name":"x","version":"1","nmae":"y"}` }, []string{"package.json", `unknown field "nmae"`}},
		{"meta no version", func(f map[string]string) { f["package.json"] = `{"name":"x"}` }, []string{"package.json: version is required"}},
		{"meta bad name", func(f map[string]string) { f["package.json"] = `{"name":"a b","version":"1"}` }, []string{"package.json: name \"a b\""}},
		{"meta name with slash", func(f map[string]string) { f["package.json"] = `{"name":"a/b","version":"1"}` }, []string{"without spaces, '/'"}},
		{"meta maintainers wrong type", func(f map[string]string) { f["package.json"] = `{"name":"a","version":"1","maintainers":[3]}` }, []string{"package.json", "maintainer"}},
		{"meta icon escapes", func(f map[string]string) { f["package.json"] = `{"name":"a","version":"1","icon":"../x.png"}` }, []string{"icon", "relative path inside"}},
		{"locale not strings", func(f map[string]string) { f["locale/en.json"] = `{"a": 1}` }, []string{"locale/en.json: line 1, column 7", "want string"}},
		{"locale bad name", func(f map[string]string) { f["locale/en.txt"] = `{}` }, []string{"locale/en.txt", "locale/<language>.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := kvFiles()
			tt.mod(files)
			_, err := loadFiles(t, files)
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestLoadDirRefusesSymlinks(t *testing.T) {
	dir := writePkg(t, kvFiles())
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "confd", "templates", "link.tmpl")); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
	_, err := LoadDir(dir)
	wantErr(t, err, "confd/templates/link.tmpl", "symbolic links are not allowed")
}

func TestLoadDirSkipsDotEntries(t *testing.T) {
	files := kvFiles()
	files[".git/config"] = "[core]"
	files[".DS_Store"] = "junk"
	p := mustLoad(t, files)
	if hasWarning(p.Warnings, ".git") || hasWarning(p.Warnings, ".DS_Store") {
		t.Fatalf("dot entries should be skipped silently: %q", p.Warnings)
	}
}

func TestArchiveDirDeterministic(t *testing.T) {
	dir := writePkg(t, kvFiles())
	a, err := ArchiveDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A later modification time and a different file creation order must
	// not change the bytes.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "config.json"), later, later); err != nil {
		t.Fatal(err)
	}
	dir2 := writePkg(t, kvFiles())
	b, err := ArchiveDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ArchiveDir(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatal("ArchiveDir is not deterministic")
	}

	fromArchive, err := LoadArchive(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromArchive.Meta, fromDir.Meta) || fromArchive.Template != fromDir.Template ||
		!reflect.DeepEqual(fromArchive.Confd, fromDir.Confd) || !reflect.DeepEqual(fromArchive.Warnings, fromDir.Warnings) {
		t.Fatal("the archive loads differently from the folder")
	}
}

type entry struct {
	name     string
	typ      byte
	body     string
	linkname string
}

func makeArchive(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.linkname}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func kvEntries(prefix string) []entry {
	var out []entry
	for n, b := range kvFiles() {
		out = append(out, entry{name: prefix + n, body: b})
	}
	return out
}

func TestLoadArchiveTopFolder(t *testing.T) {
	entries := append([]entry{{name: "kv/", typ: tar.TypeDir}}, kvEntries("kv/")...)
	p, err := LoadArchive(bytes.NewReader(makeArchive(t, entries)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Meta.Name != "kvstore" {
		t.Fatalf("meta = %+v", p.Meta)
	}
	if _, err := LoadArchive(bytes.NewReader(makeArchive(t, kvEntries("./")))); err != nil {
		t.Fatalf("./ prefix: %v", err)
	}
}

func TestLoadArchiveRefuses(t *testing.T) {
	big := strings.Repeat("x", MaxFileBytes+1)
	many := kvEntries("")
	for i := 0; i < MaxFiles; i++ {
		many = append(many, entry{name: fmt.Sprintf("extra/%d.txt", i)})
	}
	tests := []struct {
		name    string
		entries []entry
		parts   []string
	}{
		{"parent path", append(kvEntries(""), entry{name: "../evil", body: "x"}), []string{`"../evil"`, "leaves the package"}},
		{"nested parent path", append(kvEntries(""), entry{name: "confd/../../evil", body: "x"}), []string{"leaves the package"}},
		{"absolute path", append(kvEntries(""), entry{name: "/etc/cron.d/x", body: "x"}), []string{`"/etc/cron.d/x"`, "absolute path"}},
		{"backslash", append(kvEntries(""), entry{name: `..\evil`, body: "x"}), []string{"backslash"}},
		{"symlink", append(kvEntries(""), entry{name: "confd/templates/x.tmpl", typ: tar.TypeSymlink, linkname: "/etc/shadow"}), []string{"confd/templates/x.tmpl", "links are not allowed"}},
		{"hard link", append(kvEntries(""), entry{name: "x", typ: tar.TypeLink, linkname: "config.json"}), []string{"links are not allowed"}},
		{"device", append(kvEntries(""), entry{name: "dev", typ: tar.TypeChar}), []string{"dev", "only regular files and folders"}},
		{"fifo", append(kvEntries(""), entry{name: "fifo", typ: tar.TypeFifo}), []string{"fifo", "only regular files"}},
		{"file too big", append(kvEntries(""), entry{name: "big.bin", body: big}), []string{"big.bin", "allowed for one file"}},
		{"too many files", many, []string{fmt.Sprintf("more than %d files", MaxFiles)}},
		{"duplicate", append(kvEntries(""), entry{name: "./config.json", body: "{}"}), []string{"config.json: appears twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadArchive(bytes.NewReader(makeArchive(t, tt.entries)))
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestLoadArchiveSizeLimit(t *testing.T) {
	// Random data does not compress, so three 3 MiB files make an archive
	// above MaxArchiveBytes while each file stays within its own limit.
	entries := kvEntries("")
	for i := 0; i < 3; i++ {
		b := make([]byte, 3<<20)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{name: fmt.Sprintf("blob%d", i), body: string(b)})
	}
	_, err := LoadArchive(bytes.NewReader(makeArchive(t, entries)))
	wantErr(t, err, fmt.Sprintf("more than the %d bytes allowed", MaxArchiveBytes))
}

func TestLoadArchiveTotalLimit(t *testing.T) {
	// Zeros compress ~1000:1: nine 3.9 MiB files stay far below the archive
	// limit but expand beyond MaxTotalBytes.
	entries := kvEntries("")
	zeros := strings.Repeat("\x00", MaxFileBytes-1024)
	for i := 0; i < MaxTotalBytes/len(zeros)+1; i++ {
		entries = append(entries, entry{name: fmt.Sprintf("z%d", i), body: zeros})
	}
	_, err := LoadArchive(bytes.NewReader(makeArchive(t, entries)))
	wantErr(t, err, fmt.Sprintf("more than %d bytes in all files", MaxTotalBytes))
}

func TestLoadArchiveNotGzip(t *testing.T) {
	_, err := LoadArchive(strings.NewReader("PK\x03\x04 a zip file"))
	wantErr(t, err, "not a gzip stream")
}

func TestArchiveDirRefusesSymlinks(t *testing.T) {
	dir := writePkg(t, kvFiles())
	if err := os.Symlink("config.json", filepath.Join(dir, "alias.json")); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
	_, err := ArchiveDir(dir)
	wantErr(t, err, "alias.json", "symbolic links")
}

// Problems in several files are reported together, each naming its file.
func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	files := kvFiles()
	files["package.json"] = `{"name": "kv", "version": "1", "colour": "red"}`
	files["config.json"] = edit(t, files["config.json"], `{"key": "admin_user", "type": "string"`, `{"key": "admin_user", "type": "strng"`)
	files["config.json"] = edit(t, files["config.json"], `"step": 10`, `"step": "ten"`)
	files["confd/conf.d/kv.conf.toml"] = "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"etc/kv\"\n"
	files["locale/fr.json"] = `{"a": 1}`
	_, err := loadFiles(t, files)
	wantErr(t, err, `package.json`, `unknown field "colour"`, `unknown type "strng"`, `step:`, `confd/conf.d/kv.conf.toml`, `locale/fr.json`)
}

// A template that does not parse and an unknown field of cluster.json are
// both reported, each with its file and line.
func TestLoadNamesTemplateAndSpecLines(t *testing.T) {
	files := kvFiles()
	files["confd/templates/kv.conf.tmpl"] = "ok\n{{getv \"/env/port\"\n"
	files["cluster.json.mustache"] = edit(t, files["cluster.json.mustache"], `"nodes": [`, `"colour": "red",`+"\n"+`"nodes": [`)
	_, err := loadFiles(t, files)
	wantErr(t, err, "confd/templates/kv.conf.tmpl: line 3: unclosed action started at kv.conf.tmpl:2", "cluster.json.mustache, rendered with the default values: line 8: colour: unknown field")
}
