package rootpath

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMap(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"opt/app/bin/reload.sh", "etc/app/app.conf"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := func(p string) string { return filepath.Join(root, p) }
	tests := []struct{ root, cmd, want string }{
		{root, "/opt/app/bin/reload.sh", r("/opt/app/bin/reload.sh")},
		{root, "/opt/app/bin/reload.sh; appctl reload", r("/opt/app/bin/reload.sh") + "; appctl reload"},
		{root, "cat /etc/app/app.conf>/dev/null", "cat " + r("/etc/app/app.conf") + ">/dev/null"},
		{root, `sh -c "/opt/app/bin/reload.sh x"`, `sh -c "` + r("/opt/app/bin/reload.sh") + ` x"`},
		{root, "CONF=/etc/app/app.conf /bin/sh", "CONF=" + r("/etc/app/app.conf") + " /bin/sh"},
		{root, "/bin/sh -c true", "/bin/sh -c true"},                 // not under the root: the host's
		{root, "/opt/app/bin/missing.sh", "/opt/app/bin/missing.sh"}, // nothing there
		{root, "echo a/etc/app/app.conf", "echo a/etc/app/app.conf"}, // not a path of its own
		{root, r("/etc/app/app.conf"), r("/etc/app/app.conf")},       // already mapped
		{root, "test -f /etc/app", "test -f " + r("/etc/app")},       // a directory
		{"", "/opt/app/bin/reload.sh", "/opt/app/bin/reload.sh"},     // no root
		{"/", "/opt/app/bin/reload.sh", "/opt/app/bin/reload.sh"},    // the real root
	}
	for _, tt := range tests {
		if got := Map(tt.root, tt.cmd); got != tt.want {
			t.Errorf("Map(%q, %q) = %q, want %q", tt.root, tt.cmd, got, tt.want)
		}
	}
}
