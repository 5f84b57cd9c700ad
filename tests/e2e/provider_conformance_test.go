package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangarhq/hangar/internal/dockertest"
	"github.com/hangarhq/hangar/providers/conformance"
)

// hangarLocal runs the built hangar CLI with no pilot: `hangar provider
// test` needs none.
func hangarLocal(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "hangar"), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProviderTestCommand runs `hangar provider test` as a provider author
// would, against the plugin binaries: the example provider, the local
// provider and the docker provider pass; a provider that creates a second
// instance on a retried token fails, and the report names that rule.
func TestProviderTestCommand(t *testing.T) {
	bin := binaries(t)
	t.Run("example passes", func(t *testing.T) {
		out, err := hangarLocal(t, "provider", "test", filepath.Join(bin, "hangar-provider-example"), "--credential", "api_key=example-key")
		if err != nil || !strings.Contains(out, "0 failed") {
			t.Fatalf("hangar provider test of the example provider: %v\n%s", err, out)
		}
		if strings.Contains(out, "example-key") {
			t.Errorf("the report prints a credential:\n%s", out)
		}
	})
	t.Run("local passes", func(t *testing.T) {
		// The local provider runs bin_dir's agents; the suite gives them
		// no real user data, so stand-ins that only wait serve here.
		dir := t.TempDir()
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
		agents := filepath.Join(dir, "bin")
		if err := os.MkdirAll(agents, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"drone", "frontgate"} {
			if err := os.WriteFile(filepath.Join(agents, name), []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cfg, _ := json.Marshal(map[string]any{"id": "conformance-local", "zone": "local",
			"config": map[string]string{"root_dir": filepath.Join(dir, "root"), "bin_dir": agents, "ranges_dir": filepath.Join(dir, "ranges")}})
		file := filepath.Join(dir, "runtime.json")
		if err := os.WriteFile(file, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := hangarLocal(t, "provider", "test", filepath.Join(bin, "hangar-provider-local"), "--config", file)
		if err != nil || !strings.Contains(out, "0 failed") {
			t.Fatalf("hangar provider test of the local provider: %v\n%s", err, out)
		}
	})
	t.Run("docker passes", func(t *testing.T) {
		dockertest.Require(t)
		dockertest.Images(t, "drone-base", "frontgate", "conformance")
		out, err := hangarLocal(t, "provider", "test", filepath.Join(bin, "hangar-provider-docker"), "--zone", "docker", "--image", "hangar/conformance:latest", "-o", "json")
		var rep conformance.Report
		if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); jerr != nil {
			t.Fatalf("hangar provider test -o json: %v (%v)\n%s", jerr, err, out)
		}
		if err != nil || len(rep.Failed()) > 0 || len(rep.Results) == 0 {
			t.Fatalf("hangar provider test of the docker provider: %v, failed %v\n%s", err, rep.Failed(), out)
		}
	})
	t.Run("broken provider fails naming the rule", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "brokenprovider")
		build := exec.Command("go", "build", "-o", broken, "./tests/e2e/testdata/brokenprovider")
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		out, err := hangarLocal(t, "provider", "test", broken, "--credential", "api_key=example-key")
		if err == nil {
			t.Fatalf("hangar provider test passed a provider that ignores idempotency tokens:\n%s", out)
		}
		rule := conformance.Rule("RunInstanceIdempotent")
		if !strings.Contains(out, "FAIL    RunInstanceIdempotent") || !strings.Contains(out, rule) || !strings.Contains(out, "checks failed: RunInstanceIdempotent") {
			t.Errorf("the report does not name the broken rule %q:\n%s", rule, out)
		}
	})
}
