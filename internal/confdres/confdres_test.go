package confdres

import (
	"io/fs"
	"strings"
	"testing"
)

func TestParseChecksEveryPath(t *testing.T) {
	const name = "confd/conf.d/x.toml"
	base := "[template]\nsrc = \"x.tmpl\"\n"
	tests := []struct {
		name, extra string
		want        string // "" means accepted
	}{
		{"plain", `dest = "/etc/app/x.conf"`, ""},
		{"escaping dest", `dest = "/../../tmp/x"`, `[template] dest "/../../tmp/x": must be a clean absolute path`},
		{"dotdot inside", `dest = "/etc/app/../../x"`, `[template] dest "/etc/app/../../x": must be a clean absolute path`},
		{"dot segment", `dest = "/etc/./x"`, `[template] dest "/etc/./x": must be a clean`},
		{"empty segment", `dest = "/etc//x"`, `[template] dest "/etc//x": must be a clean`},
		{"trailing slash", `dest = "/etc/x/"`, `[template] dest "/etc/x/": must be a clean`},
		{"root itself", `dest = "/"`, `[template] dest "/": must be a clean`},
		{"relative", `dest = "etc/x"`, `[template] dest "etc/x": must be an absolute path`},
		{"relative dotdot", `dest = "../x"`, `[template] dest "../x": must be an absolute path`},
		{"NUL", `dest = "/etc/x\u0000y"`, `must be a clean absolute path`},
		{"missing", ``, `[template] dest "": required`},
		{"key escapes", `dest = "/x"` + "\nkeys = [\"/../clusters\"]", `keys: "/../clusters" must start with '/' and have no '..' segment`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(name, []byte(base+tt.extra+"\n"))
			check(t, err, name, tt.want)
		})
	}
	for _, src := range []string{"../x", "/x", "a/../b", "./a", "a//b", "a/", ".hidden", `a\b`} {
		_, err := Parse(name, []byte("[template]\nsrc = '"+src+"'\ndest = \"/x\"\n"))
		check(t, err, name, "[template] src")
	}
}

func TestParseModeIsOctalPermissionBits(t *testing.T) {
	tests := []struct {
		mode string
		want fs.FileMode
		err  string
	}{
		{"640", 0o640, ""},
		{"0640", 0o640, ""},
		{"0755", 0o755, ""},
		{"700", 0o700, ""},
		{"0", 0, ""},
		{"0777", 0o777, ""},
		{"4755", 0, "setuid, setgid and sticky bits are not allowed"},
		{"2755", 0, "setuid, setgid and sticky bits are not allowed"},
		{"1777", 0, "setuid, setgid and sticky bits are not allowed"},
		{"0999", 0, "must be octal"},
		{"rw", 0, "must be octal"},
		{"0o644", 0, "must be octal"},
		{"+644", 0, "must be octal"},
		{"0x1ff", 0, "must be octal"},
		{"", 0, "must be octal"},
		{"0000000644", 0, "must be octal"},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.mode)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseMode(%q) = %o, %v; want %o", tt.mode, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseMode(%q) = %o, %v; want an error containing %q", tt.mode, got, err, tt.err)
		}
	}
	r, err := Parse("x.toml", []byte("[template]\nsrc = \"x\"\ndest = \"/x\"\nmode = \"600\"\n"))
	if err != nil || r.Perm != 0o600 || r.Mode != "600" {
		t.Fatalf("Parse with mode 600: %+v, %v", r, err)
	}
	_, err = Parse("x.toml", []byte("[template]\nsrc = \"x\"\ndest = \"/x\"\nmode = \"4755\"\n"))
	check(t, err, "x.toml", `[template] mode "4755": 4755: setuid, setgid and sticky bits are not allowed`)
	// Perm is not a key a package can set.
	_, err = Parse("x.toml", []byte("[template]\nsrc = \"x\"\ndest = \"/x\"\nperm = 2541\n"))
	check(t, err, "x.toml", "unknown keys template.perm")
}

func check(t *testing.T, err error, name, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err == nil || !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error starting with %q containing %q", err, name, want)
	}
}
