package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindPilotBinary(t *testing.T) {
	writeFile := func(t *testing.T, path string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	onPath := func(p string) func(string) (string, error) {
		return func(name string) (string, error) {
			if name != "pilot" {
				return "", errors.New("looked up " + name)
			}
			return p, nil
		}
	}
	notOnPath := func(string) (string, error) { return "", errors.New("not found") }

	tests := []struct {
		name string
		// setup lays out files under root and returns the executable
		// path hangar reports (or an error) and the PATH lookup.
		setup   func(t *testing.T, root string) (func() (string, error), func(string) (string, error))
		want    string // relative to root
		wantErr []string
	}{
		{
			name: "next to hangar wins over PATH",
			setup: func(t *testing.T, root string) (func() (string, error), func(string) (string, error)) {
				writeFile(t, filepath.Join(root, "bin/pilot"), 0o755)
				writeFile(t, filepath.Join(root, "usr/pilot"), 0o755)
				return func() (string, error) { return filepath.Join(root, "bin/hangar"), nil }, onPath(filepath.Join(root, "usr/pilot"))
			},
			want: "bin/pilot",
		},
		{
			name: "not executable next to hangar: PATH",
			setup: func(t *testing.T, root string) (func() (string, error), func(string) (string, error)) {
				writeFile(t, filepath.Join(root, "bin/pilot"), 0o644)
				writeFile(t, filepath.Join(root, "usr/pilot"), 0o755)
				return func() (string, error) { return filepath.Join(root, "bin/hangar"), nil }, onPath(filepath.Join(root, "usr/pilot"))
			},
			want: "usr/pilot",
		},
		{
			name: "hangar reached through a symlink: next to its target",
			setup: func(t *testing.T, root string) (func() (string, error), func(string) (string, error)) {
				writeFile(t, filepath.Join(root, "opt/hangar"), 0o755)
				writeFile(t, filepath.Join(root, "opt/pilot"), 0o755)
				if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(root, "opt/hangar"), filepath.Join(root, "bin/hangar")); err != nil {
					t.Fatal(err)
				}
				return func() (string, error) { return filepath.Join(root, "bin/hangar"), nil }, notOnPath
			},
			want: "opt/pilot",
		},
		{
			name: "executable unknown: PATH",
			setup: func(t *testing.T, root string) (func() (string, error), func(string) (string, error)) {
				writeFile(t, filepath.Join(root, "usr/pilot"), 0o755)
				return func() (string, error) { return "", errors.New("unsupported") }, onPath(filepath.Join(root, "usr/pilot"))
			},
			want: "usr/pilot",
		},
		{
			name: "nowhere",
			setup: func(t *testing.T, root string) (func() (string, error), func(string) (string, error)) {
				return func() (string, error) { return filepath.Join(root, "bin/hangar"), nil }, notOnPath
			},
			wantErr: []string{"pilot binary not found", "bin/pilot", "PATH", "go build"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			exe, look := tt.setup(t, root)
			got, err := findPilotBinary(exe, look)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tt.want); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pilot.pid")
	if err := writePIDFile(p, 4242); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPIDFile(p); err != nil || pid != 4242 {
		t.Errorf("got %d, %v; want 4242", pid, err)
	}
	for _, bad := range []string{"", "abc", "-3", "0"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readPIDFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: err = %v, want one naming the file", bad, err)
		}
	}
}

func TestTailFileFromOffset(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("old 1\nold 2\nnew 1\nnew 2\nnew 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := tailFile(p, int64(len("old 1\nold 2\n")), 2), "new 2\nnew 3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := tailFile(filepath.Join(t.TempDir(), "missing"), 0, 5); got != "" {
		t.Errorf("missing file: got %q", got)
	}
}
