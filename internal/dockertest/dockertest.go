// Package dockertest gives tests a Docker Engine and the images that
// `make images` builds. Where there is no Engine a test skips, saying so,
// unless HANGAR_REQUIRE_DOCKER=1 (CI sets it), where it fails: a test that
// needs Docker must not pass by skipping there.
package dockertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Require returns a client of the local Docker Engine, or skips (fails
// under HANGAR_REQUIRE_DOCKER=1) when none answers.
func Require(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = c.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		if os.Getenv("HANGAR_REQUIRE_DOCKER") == "1" {
			t.Fatalf("HANGAR_REQUIRE_DOCKER=1 but the Docker Engine does not answer: %v", err)
		}
		t.Skipf("no Docker Engine (%v): skipping; set HANGAR_REQUIRE_DOCKER=1 to make this a failure", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Images makes sure the named images of scripts/images.sh (drone-base,
// frontgate, kv, redis, mariadb, haproxy) are built from this checkout.
// The script's caches (Go's, Docker's, its root filesystems) make a run
// with nothing to rebuild take seconds.
func Images(t testing.TB, names ...string) {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "images.sh")}, names...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/images.sh %v: %v\n%s", names, err, out)
	}
	t.Logf("scripts/images.sh %v:\n%s", names, out)
}

// RepoRoot is the directory of the module's go.mod, above the test's.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
