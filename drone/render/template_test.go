package render

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/limits"
)

// TestOversizedOutputIsNotWritten delivers templates whose output would be
// too large: nothing of theirs reaches the disk (not even confd's staging
// file beside dest), their reload_cmd does not run, the error names them,
// and the other templates still render.
func TestOversizedOutputIsNotWritten(t *testing.T) {
	// 10 bytes per number, so n numbers make 10n bytes.
	perLine := `{{range seq 1 %d}}0123456789{{end}}`
	tests := []struct {
		name, tmpl, want string
	}{
		{"output over the limit", strings.Replace(perLine, "%d", "1000000", 1), "larger than the"},
		{"seq that cannot fit a file", `{{range seq 1 100000000000}}{{end}}`, "seq of more than"},
		{"getv repeated past the limit", `{{range seq 1 200}}{{getv "/env/big"}}{{end}}`, "larger than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			put(t, f.c, "env/big", strings.Repeat("b", 64<<10))
			r := f.renderer(t, "")
			files := f.files(kvTmpl)
			files["conf.d/big.toml"] = []byte("[template]\nsrc = \"big.tmpl\"\ndest = \"/etc/big/big.conf\"\nkeys = [\"/\"]\nreload_cmd = \"touch " + filepath.Join(f.root, "big-reloaded") + "\"\n")
			files["templates/big.tmpl"] = []byte(tt.tmpl)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := r.Configure(ctx, files, nil)
			if err == nil || !strings.Contains(err.Error(), "conf.d/big.toml") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming conf.d/big.toml and containing %q", err, tt.want)
			}
			entries, _ := os.ReadDir(filepath.Join(f.root, "etc/big"))
			if len(entries) != 0 {
				t.Fatalf("files written beside dest: %v", entries)
			}
			if _, err := os.Stat(filepath.Join(f.root, "big-reloaded")); err == nil {
				t.Fatal("reload_cmd of the refused template ran")
			}
			if got := readFile(filepath.Join(f.root, "opt/kv/kv.conf")); !strings.HasPrefix(got, "me=10.0.0.1") {
				t.Fatalf("the other template was not rendered: %q", got)
			}
		})
	}
}

// TestOutputUnderTheLimitIsWritten keeps the limit from refusing large but
// allowed files.
func TestOutputUnderTheLimitIsWritten(t *testing.T) {
	n := limits.MaxRenderedFileBytes/10 - 1
	f := newFixture(t)
	r := f.renderer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.Configure(ctx, f.files(`{{range seq 1 `+strconv.Itoa(n)+`}}0123456789{{end}}`), nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(f.root, "opt/kv/kv.conf"))
	if err != nil || fi.Size() != int64(10*n) {
		t.Fatalf("rendered file: %v, %v; want %d bytes", fi, err, 10*n)
	}
}
