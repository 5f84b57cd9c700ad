package render

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A reload_cmd that runs the script it just rendered works where the
// instance's root is a dir of the host: the script's path means the file
// under the root. A failing reload_cmd's error carries its output.
func TestReloadRunsTheRenderedScript(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	files := map[string][]byte{
		"conf.d/reload.toml": []byte(`[template]
src = "reload.sh.tmpl"
dest = "/opt/app/bin/reload.sh"
mode = "0755"
keys = ["/"]
reload_cmd = "/opt/app/bin/reload.sh"
`),
		"templates/reload.sh.tmpl": []byte("#!/bin/sh\necho \"ip={{getv \"/host/ip\"}}\" > reloaded.txt\n"),
	}
	if err := r.Configure(context.Background(), files, nil); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if got := readFile(filepath.Join(f.root, "reloaded.txt")); got != "ip=10.0.0.1\n" {
		t.Fatalf("the rendered reload script wrote %q", got)
	}

	files["templates/reload.sh.tmpl"] = []byte("#!/bin/sh\necho \"cannot reach {{getv \"/host/ip\"}}\" >&2\nexit 3\n")
	err := r.Configure(context.Background(), files, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "cannot reach 10.0.0.1") {
		t.Fatalf("got %v, want the exit status and the output of the failing reload_cmd", err)
	}
}
