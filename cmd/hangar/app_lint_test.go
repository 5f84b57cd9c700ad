package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openPitrixPackage writes a one-role OpenPitrix package whose start
// command carries cluster.greeting as the shell reads it, on line 6.
func openPitrixPackage(t *testing.T, cmd string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"package.json": `{"name": "op", "version": "1.0.0"}`,
		"config.json": `{"type": "array", "properties": [{"key": "cluster", "type": "array", "properties": [
			{"key": "name", "type": "string", "default": "op"},
			{"key": "greeting", "type": "string", "default": "hello"}]}]}`,
		"cluster.json.tmpl": `{
  "name": "{{.cluster.name}}",
  "nodes": [{
    "container": {"type": "docker", "image": "x"},
    "count": 1, "cpu": 1, "memory": 128,
    "services": {"start": {"cmd": "` + cmd + `"}}
  }]
}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestAppLintWarnsAboutUnquotedParams(t *testing.T) {
	dir := openPitrixPackage(t, "echo {{.cluster.greeting}} > /tmp/greeting")
	res := runCLIEnv(t, testEnv(t), "app", "lint", dir)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout, "op 1.0.0 is a valid package", "Warnings (1):",
		"cluster.json.tmpl: line 6: parameter cluster.greeting is inserted into nodes[0].services.start.cmd without shell quoting")

	res = runCLIEnv(t, testEnv(t), "app", "lint", dir, "-o", "json")
	var app struct {
		Name, Version string
		Warnings      []string
	}
	if err := json.Unmarshal([]byte(res.stdout), &app); err != nil || res.code != 0 {
		t.Fatalf("exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if app.Name != "op" || len(app.Warnings) != 1 || !strings.Contains(app.Warnings[0], "cluster.greeting") {
		t.Fatalf("json output %+v", app)
	}

	res = runCLIEnv(t, testEnv(t), "app", "lint", openPitrixPackage(t, "echo hello"))
	if res.code != 0 || strings.Contains(res.stdout, "Warnings") {
		t.Fatalf("a package without warnings: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestAppLintRefusesAnInvalidPackage(t *testing.T) {
	dir := openPitrixPackage(t, "true")
	if err := os.MkdirAll(filepath.Join(dir, "confd", "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "confd", "conf.d", "x.toml"), []byte("[template]\nsrc = \"x.tmpl\"\ndest = \"/../../tmp/x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLIEnv(t, testEnv(t), "app", "lint", dir)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "stderr", res.stderr, `confd/conf.d/x.toml: [template] dest "/../../tmp/x": must be a clean absolute path`)
}
