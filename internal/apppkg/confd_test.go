package apppkg

import (
	"strings"
	"testing"
)

func TestConfdErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		parts []string
	}{
		{"bad toml", map[string]string{"confd/conf.d/kv.conf.toml": "[template\nsrc = 1"},
			[]string{"confd/conf.d/kv.conf.toml:"}},
		{"no template table", map[string]string{"confd/conf.d/kv.conf.toml": `src = "kv.conf.tmpl"`},
			[]string{"confd/conf.d/kv.conf.toml: unknown keys src"}},
		{"empty file", map[string]string{"confd/conf.d/kv.conf.toml": ``},
			[]string{"confd/conf.d/kv.conf.toml: missing the [template] table"}},
		{"missing src", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\ndest = \"/etc/x\"\n"},
			[]string{"confd/conf.d/kv.conf.toml: [template] src is required"}},
		{"src missing file", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"nope.tmpl\"\ndest = \"/etc/x\"\n"},
			[]string{`confd/conf.d/kv.conf.toml: [template] src "nope.tmpl": confd/templates/nope.tmpl does not exist`}},
		{"src escapes", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"../../config.json\"\ndest = \"/etc/x\"\n"},
			[]string{`src "../../config.json": must be a plain relative path`}},
		{"relative dest", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"etc/x\"\n"},
			[]string{`[template] dest "etc/x": must be an absolute path`}},
		{"dest leaves the instance", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/../../tmp/x\"\n"},
			[]string{`confd/conf.d/kv.conf.toml: [template] dest "/../../tmp/x": must be a clean absolute path`, "no '.', '..' or empty segments"}},
		{"setuid mode", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/etc/x\"\nmode = \"4755\"\n"},
			[]string{`confd/conf.d/kv.conf.toml: [template] mode "4755"`, "setuid, setgid and sticky bits are not allowed"}},
		{"unknown key", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/etc/x\"\nreload = \"x\"\n"},
			[]string{"unknown keys template.reload", "allowed in [template]: src, dest"}},
		{"bad mode", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/etc/x\"\nmode = \"rw\"\n"},
			[]string{`mode "rw": must be octal`}},
		{"key without slash", map[string]string{"confd/conf.d/kv.conf.toml": "[template]\nsrc = \"kv.conf.tmpl\"\ndest = \"/etc/x\"\nkeys = [\"hosts\"]\n"},
			[]string{`keys: "hosts" must start with '/'`}},
		{"unknown function", map[string]string{"confd/templates/kv.conf.tmpl": `{{frobnicate "/x"}}`},
			[]string{"confd/templates/kv.conf.tmpl", `function "frobnicate" not defined`}},
		{"template syntax", map[string]string{"confd/templates/kv.conf.tmpl": `{{range lsdir "/hosts"}}`},
			[]string{"confd/templates/kv.conf.tmpl", "unexpected EOF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := kvFiles()
			for k, v := range tt.files {
				files[k] = v
			}
			_, err := loadFiles(t, files)
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestConfdAccepts(t *testing.T) {
	files := kvFiles()
	files["confd/conf.d/sub.toml"] = "[template]\nsrc = \"app/01.env.tmpl\"\ndest = \"/opt/app/env\"\nuid = 0\ngid = 0\nowner = \"root\"\ncheck_cmd = \"true\"\nprefix = \"/self\"\n"
	files["confd/templates/app/01.env.tmpl"] = `{{range gets "/env/*"}}{{base .Key}}={{.Value}}
{{end}}{{if exists "/host/token"}}{{getv "/host/token" ""}}{{end}}{{add 1 (atoi "2")}}
{{range lsdir "/adding-hosts" | filter "x"}}{{.}}{{end}}{{toJson (max 1 2)}}{{toYaml (min "1" 2)}}{{lookupV4IP "localhost"}}`
	files["confd/conf.d/notes.txt"] = "x"
	p := mustLoad(t, files)
	if !hasWarning(p.Warnings, "confd/conf.d/notes.txt: confd reads only conf.d/*.toml") {
		t.Fatalf("warnings = %q", p.Warnings)
	}
	r, err := ParseConfdResource("sub.toml", []byte(files["confd/conf.d/sub.toml"]))
	if err != nil {
		t.Fatal(err)
	}
	if r.Src != "app/01.env.tmpl" || r.UID == nil || *r.UID != 0 || r.Owner != "root" || r.Prefix != "/self" {
		t.Fatalf("resource = %+v", r)
	}
}

// A template kept as a folder of fragments is assembled in name order, each
// fragment followed by a newline, and an error in it names the fragment
// and its line.
func TestConfdFragments(t *testing.T) {
	files := kvFiles()
	delete(files, "confd/templates/kv.conf.tmpl")
	files["confd/templates/kv.conf/02.main.tmpl"] = "port {{getv \"/env/port\"}}"
	files["confd/templates/kv.conf/01.header.tmpl"] = "# header\n# two lines"
	p := mustLoad(t, files)
	if got, want := string(p.Confd["templates/kv.conf.tmpl"]), "# header\n# two lines\nport {{getv \"/env/port\"}}\n"; got != want {
		t.Fatalf("assembled template = %q, want %q", got, want)
	}
	for n := range p.Confd {
		if strings.HasPrefix(n, "templates/kv.conf/") {
			t.Errorf("fragment %s is delivered as well", n)
		}
	}

	files["confd/templates/kv.conf/02.main.tmpl"] = "port\n{{getv \"/env/port\"}\n"
	_, err := loadFiles(t, files)
	wantErr(t, err, "confd/templates/kv.conf/02.main.tmpl: line 2:")

	// A template of the same name wins over the folder, which is reported.
	files["confd/templates/kv.conf/02.main.tmpl"] = "x"
	files["confd/templates/kv.conf.tmpl"] = "whole"
	p = mustLoad(t, files)
	if string(p.Confd["templates/kv.conf.tmpl"]) != "whole" || !hasWarning(p.Warnings, "confd/templates/kv.conf/", "used instead") {
		t.Fatalf("template = %q, warnings %q", p.Confd["templates/kv.conf.tmpl"], p.Warnings)
	}
}

// Templates reading keys the metadata can never hold are reported with
// the template and line; keys it can hold, patterns and variables are not.
func TestTemplateKeysTheMetadataCannotHold(t *testing.T) {
	files := kvFiles()
	files["confd/templates/kv.conf.tmpl"] = `port {{getv "/env/port"}}
{{getv "/env/typo"}}
{{range lsdir "/hosts/master"}}{{.}}{{end}}{{if exists "/host/tokn"}}x{{end}}
{{getv "/cluster/endpoints/kv/port" ""}}{{getv "/clustr/zone"}}{{range gets "/env/*"}}{{.Key}}{{end}}
{{$k := "/env/nope"}}{{getv $k ""}}{{getv "/host/reserved_ips/vip/value" ""}}`
	p := mustLoad(t, files)
	for _, w := range []string{
		`confd/templates/kv.conf.tmpl: line 2: getv "/env/typo": no env entry "typo"`,
		`confd/templates/kv.conf.tmpl: line 3: exists "/host/tokn": a host has no field "tokn"`,
		`confd/templates/kv.conf.tmpl: line 4: getv "/clustr/zone": /clustr is not an entry of the metadata`,
	} {
		if !hasWarning(p.Warnings, w) {
			t.Errorf("no warning %q in %q", w, p.Warnings)
		}
	}
	for _, ok := range []string{`"/env/port"`, `"/hosts/master"`, `"/cluster/endpoints`, `"/env/*"`, `/env/nope`, `"/host/reserved_ips`} {
		if hasWarning(p.Warnings, ok) {
			t.Errorf("warned about %s: %q", ok, p.Warnings)
		}
	}
}
