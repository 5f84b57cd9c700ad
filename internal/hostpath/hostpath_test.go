package hostpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithinAndOverlap(t *testing.T) {
	tests := []struct {
		p, dir  string
		within  bool
		overlap bool
	}{
		{"/a/b", "/a/b", true, true},
		{"/a/b/c", "/a/b", true, true},
		{"/a/b", "/a/b/c", false, true},
		{"/a/bc", "/a/b", false, false},
		{"/a/b", "/a/bc", false, false},
		{"/x", "/", true, true},
		{"/", "/x", false, true},
		{"/x/y", "/z", false, false},
	}
	for _, tt := range tests {
		if got := Within(tt.p, tt.dir); got != tt.within {
			t.Errorf("Within(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.within)
		}
		if got := Overlap(tt.p, tt.dir); got != tt.overlap {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.overlap)
		}
	}
}

func TestResolveFollowsLinksOfTheExistingPart(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(base, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "innocent")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		link + "/not/yet":      secret + "/not/yet",
		link:                   secret,
		base + "/a/../missing": base + "/missing",
		"/does-not-exist/x":    "/does-not-exist/x",
	} {
		got, err := Resolve(in)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSearchableByOthers(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	closed := filepath.Join(base, "closed")
	for d, mode := range map[string]os.FileMode{open: 0o711, closed: 0o700} {
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SearchableByOthers(filepath.Join(open, "not", "created")); err != nil {
		t.Errorf("open dir: %v", err)
	}
	err := SearchableByOthers(filepath.Join(closed, "x"))
	var ns *NotSearchableError
	if !errors.As(err, &ns) || ns.Dir != closed || !strings.Contains(err.Error(), "0700") {
		t.Errorf("closed dir: %v, want a NotSearchableError naming %s and its mode", err, closed)
	}
}

func TestPrivate(t *testing.T) {
	uid := os.Geteuid()
	base := t.TempDir()

	fresh := filepath.Join(base, "a", "claims")
	if err := Private(fresh, uid, "claims"); err != nil {
		t.Fatalf("Private of a missing dir: %v", err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v (%v), want mode 0700", fi, err)
	}

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := Private(open, uid, "claims"); err == nil || !strings.Contains(err.Error(), open) || !strings.Contains(err.Error(), "other users may write") {
		t.Errorf("world-writable dir: %v, want a refusal naming it", err)
	}

	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	if err := Private(link, uid, "claims"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v, want a refusal", err)
	}

	if err := CheckPrivate(fresh, uid+1, "claims"); err == nil || !strings.Contains(err.Error(), "owned by uid") {
		t.Errorf("dir of another uid: %v, want a refusal", err)
	}
}
