package render

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// resourceFiles is one template resource with toml lines of its own.
func resourceFiles(tmpl string, toml ...string) map[string][]byte {
	return map[string][]byte{
		"conf.d/x.toml":    []byte("[template]\nsrc = \"x.tmpl\"\nkeys = [\"/\"]\n" + strings.Join(toml, "\n") + "\n"),
		"templates/x.tmpl": []byte(tmpl),
	}
}

// install puts files in the data dir as a drone would have kept them,
// bypassing Configure's checks: what an older drone, or anyone who could
// write there, left.
func (f *fixture) install(t *testing.T, files map[string][]byte) {
	t.Helper()
	if err := install(filepath.Join(f.data, "confd"), files); err != nil {
		t.Fatal(err)
	}
}

// TestDestinationsStayInTheRoot renders resources whose dest, or the path
// to it, would lead outside the instance's root: none of them writes
// anything there, each fails naming its dest, and a good one still renders.
func TestDestinationsStayInTheRoot(t *testing.T) {
	outside := t.TempDir() // stands for the host's /tmp, /etc, ...
	tests := []struct {
		name  string
		dest  string
		setup func(t *testing.T, root string) // plants something in the root first
		want  string
	}{
		{name: "dest with ..", dest: "climb", want: `must be a clean absolute path`},
		{name: "relative dest", dest: "x.conf", want: `dest "x.conf": must be an absolute path`},
		{name: "symlinked folder", dest: "/etc/app/app.conf", want: "dest /etc/app/app.conf",
			setup: func(t *testing.T, root string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, outside, filepath.Join(root, "etc", "app"))
			}},
		{name: "relative symlink climbing out", dest: "/etc/app/app.conf", want: "dest /etc/app/app.conf",
			setup: func(t *testing.T, root string) {
				mkdir(t, filepath.Join(root, "etc"))
				rel, err := filepath.Rel(filepath.Join(root, "etc"), outside)
				if err != nil {
					t.Fatal(err)
				}
				symlink(t, rel, filepath.Join(root, "etc", "app"))
			}},
		{name: "symlinked root of the path", dest: "/opt/app.conf", want: "dest /opt/app.conf",
			setup: func(t *testing.T, root string) { symlink(t, outside, filepath.Join(root, "opt")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(t, f.root)
			}
			if tt.dest == "climb" {
				// The dest that filepath.Join(root, dest) put in outside.
				rel, err := filepath.Rel(f.root, outside)
				if err != nil {
					t.Fatal(err)
				}
				tt.dest = "/" + rel + "/x"
			}
			files := f.files(kvTmpl)
			files["conf.d/x.toml"] = fmt.Appendf(nil, "[template]\nsrc = \"x.tmpl\"\ndest = %q\nkeys = [\"/\"]\nreload_cmd = \"touch %s\"\n", tt.dest, filepath.Join(outside, "reloaded"))
			files["templates/x.tmpl"] = []byte("written")
			// Delivered: dests are checked first; paths through symlinks
			// only when written.
			r := f.renderer(t, "")
			err := r.Configure(context.Background(), files, nil)
			if err == nil || !strings.Contains(err.Error(), "conf.d/x.toml") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Configure: %v; want an error naming conf.d/x.toml and containing %q", err, tt.want)
			}
			// Installed without checks, as a restarted drone finds them.
			r.Close()
			f.install(t, files)
			r = f.renderer(t, "")
			err = r.Render(context.Background())
			if err == nil || !strings.Contains(err.Error(), "conf.d/x.toml") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render: %v; want an error naming conf.d/x.toml and containing %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("written outside the root: %v", entries)
			}
			for _, p := range []string{"x.conf", filepath.Join(f.root, "..", "x.conf")} {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("relative dest written at %s", p)
				}
			}
			if got := readFile(filepath.Join(f.root, "opt/kv/kv.conf")); tt.name != "symlinked root of the path" && !strings.HasPrefix(got, "me=10.0.0.1") {
				t.Fatalf("the good resource was not rendered: %q", got)
			}
		})
	}
}

// TestSymlinkAsDestIsReplaced: a dest that is itself a symlink (to a file
// outside) is replaced by the rendered file; the file it pointed to is not
// touched.
func TestSymlinkAsDestIsReplaced(t *testing.T) {
	f := newFixture(t)
	victim := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(victim, []byte("root:x:0:0"), 0o644); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(f.root, "etc"))
	symlink(t, victim, filepath.Join(f.root, "etc", "app.conf"))
	r := f.renderer(t, "")
	if err := r.Configure(context.Background(), resourceFiles("rendered", `dest = "/etc/app.conf"`), nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(victim); got != "root:x:0:0" {
		t.Fatalf("the symlink's target was written: %q", got)
	}
	fi, err := os.Lstat(filepath.Join(f.root, "etc", "app.conf"))
	if err != nil || !fi.Mode().IsRegular() || readFile(filepath.Join(f.root, "etc", "app.conf")) != "rendered" {
		t.Fatalf("dest: %v, %v; want a regular file with the output", fi, err)
	}
}

// TestModeIsAppliedAsValidated renders with each mode and reads the bits
// back: what push and the drone validated as octal is what the file has,
// whatever the umask. confd itself reads "640" as decimal.
func TestModeIsAppliedAsValidated(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, tt := range []struct {
		mode string
		want fs.FileMode
	}{
		{"640", 0o640},
		{"0640", 0o640},
		{"0755", 0o755},
		{"700", 0o700},
		{"0644", 0o644},
		{"0", 0},
		{"", 0o644}, // a new file without a mode
	} {
		t.Run("mode "+tt.mode, func(t *testing.T) {
			f := newFixture(t)
			r := f.renderer(t, "")
			toml := []string{`dest = "/etc/x.conf"`}
			if tt.mode != "" {
				toml = append(toml, fmt.Sprintf("mode = %q", tt.mode))
			}
			if err := r.Configure(context.Background(), resourceFiles("x", toml...), nil); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(f.root, "etc", "x.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.want {
				t.Fatalf("mode %q gave %v, want %v", tt.mode, fi.Mode(), tt.want)
			}
		})
	}
	t.Run("special bits are refused", func(t *testing.T) {
		f := newFixture(t)
		r := f.renderer(t, "")
		for _, mode := range []string{"4755", "2755", "1777", "04755"} {
			err := r.Configure(context.Background(), resourceFiles("x", `dest = "/etc/x.conf"`, fmt.Sprintf("mode = %q", mode)), nil)
			if err == nil || !strings.Contains(err.Error(), "setuid, setgid and sticky bits are not allowed") {
				t.Errorf("mode %q: %v", mode, err)
			}
		}
		if _, err := os.Stat(filepath.Join(f.root, "etc", "x.conf")); err == nil {
			t.Fatal("a refused resource was rendered")
		}
	})
}

// TestModeChangeAloneRewritesAndReloads: a file is in sync only with the
// right content and mode; without a mode an existing file keeps its own.
func TestModeChangeAloneRewritesAndReloads(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	dest := filepath.Join(f.root, "etc", "x.conf")
	reload := fmt.Sprintf("reload_cmd = \"echo r >> %s\"", f.reloads)
	steps := []struct {
		mode    string
		want    fs.FileMode
		reloads int
	}{
		{"0640", 0o640, 1},
		{"0640", 0o640, 1}, // unchanged: no write, no reload
		{"0600", 0o600, 2},
		{"", 0o600, 2}, // no mode: the file keeps its own
	}
	for i, s := range steps {
		toml := []string{`dest = "/etc/x.conf"`, reload}
		if s.mode != "" {
			toml = append(toml, fmt.Sprintf("mode = %q", s.mode))
		}
		if err := r.Configure(context.Background(), resourceFiles("same", toml...), nil); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dest)
		if err != nil || fi.Mode() != s.want {
			t.Fatalf("step %d: %v, %v; want mode %v", i, fi, err, s.want)
		}
		if n := lines(f.reloads); n != s.reloads {
			t.Fatalf("step %d: reload_cmd ran %d times, want %d", i, n, s.reloads)
		}
	}
}

// TestCheckCmdSeesTheStagedFile: check_cmd gets the staged output as
// {{.src}}; when it fails dest keeps its content, reload_cmd does not run,
// and no staged file is left.
func TestCheckCmdSeesTheStagedFile(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	ctx := context.Background()
	files := func(content string) map[string][]byte {
		return resourceFiles(content, `dest = "/etc/x.conf"`, `check_cmd = "grep -q good {{.src}}"`,
			fmt.Sprintf("reload_cmd = \"echo r >> %s\"", f.reloads))
	}
	if err := r.Configure(ctx, files("good 1"), nil); err != nil {
		t.Fatal(err)
	}
	err := r.Configure(ctx, files("bad"), nil)
	if err == nil || !strings.Contains(err.Error(), "check_cmd refused the output") || !strings.Contains(err.Error(), "conf.d/x.toml") {
		t.Fatalf("Configure with output check_cmd refuses: %v", err)
	}
	if got := readFile(filepath.Join(f.root, "etc", "x.conf")); got != "good 1" {
		t.Fatalf("dest now %q, want the last good output", got)
	}
	if n := lines(f.reloads); n != 1 {
		t.Fatalf("reload_cmd ran %d times, want 1", n)
	}
	entries, _ := os.ReadDir(filepath.Join(f.root, "etc"))
	if len(entries) != 1 {
		t.Fatalf("left beside dest: %v", entries)
	}
}

// TestCloseStopsAHangingReload: Close kills a reload_cmd that does not end.
func TestCloseStopsAHangingReload(t *testing.T) {
	f := newFixture(t)
	r := f.renderer(t, "")
	started := filepath.Join(f.root, "started")
	done := make(chan error, 1)
	go func() {
		done <- r.Configure(context.Background(), resourceFiles("x", `dest = "/etc/x.conf"`,
			fmt.Sprintf("reload_cmd = \"touch %s; sleep 600\"", started)), nil)
	}()
	waitFor(t, "reload_cmd to start", func() bool { _, err := os.Stat(started); return err == nil })
	r.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "renderer is closing") {
			t.Fatalf("Configure: %v; want the reload stopped", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not stop the reload_cmd")
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
