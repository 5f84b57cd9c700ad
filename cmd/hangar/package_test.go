package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// untar returns the archive's files by name.
func untar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = string(body)
	}
}

// writePackage lays out a small app package in dir.
func writePackage(t *testing.T, dir string) {
	t.Helper()
	for name, body := range map[string]string{
		"package.json":            `{"name":"kv","version":"1.0.0"}`,
		"config.json":             `{"type":"array","properties":[]}`,
		"cluster.json.mustache":   `{"name": {{cluster.name}}}`,
		"confd/conf.d/kv.toml":    "[template]\n",
		"confd/templates/kv.tmpl": "port {{getv \"/env/port\"}}\n",
		".git/HEAD":               "ref: refs/heads/main\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
