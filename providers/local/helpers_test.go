package local

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/api/providerv1"
)

func TestMain(m *testing.M) {
	// Instances of a provider not running as root start through this test
	// binary as their launcher.
	MaybeLaunch()
	goleak.VerifyTestMain(m)
}

// openDir is t.TempDir with its parent made traversable by others: as root
// the provider runs instances as users of their own, who must reach their
// directory and the agents (the test's temporary directories are 0700).
func openDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Fake agents: they log what they were given and sleep. The drone also
// detaches a daemon with setsid, as apps do, which DeleteInstance must find.
const (
	fakeDrone = `#!/bin/sh
echo "args: $*"
echo "env: id=$HANGAR_INSTANCE_ID addr=$HANGAR_ADDRESS root=$HANGAR_ROOT cookie=${HANGAR_PROVIDER_PLUGIN:-none}"
echo "path: $PATH"
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
exec sleep 1000
`
	fakeFrontgate = `#!/bin/sh
echo "frontgate args: $*"
exec sleep 1000
`
	// stubbornDrone ignores SIGTERM (and so does the sleep it becomes).
	stubbornDrone = `#!/bin/sh
trap '' TERM
exec sleep 1000
`
)

func writeBinDir(t *testing.T, drone, frontgate string) string {
	t.Helper()
	dir := openDir(t)
	for name, body := range map[string]string{droneBinary: drone, frontgateBinary: frontgate} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newRuntime returns a runtime with its own root_dir and ranges_dir (so
// range numbers are predictable) over the given bin_dir. Any process left
// under root_dir when the test ends is killed.
func newRuntime(t *testing.T, binDir string) *providerv1.Runtime {
	t.Helper()
	root := openDir(t)
	killLeftovers(t, root)
	return &providerv1.Runtime{
		Id: "rt-test",
		Config: map[string]string{
			keyRootDir:   root,
			keyBinDir:    binDir,
			keyRangesDir: filepath.Join(t.TempDir(), "ranges"),
		},
	}
}

// killLeftovers makes a failing test clean up after itself: instance
// processes outlive everything by design.
func killLeftovers(t *testing.T, root string) {
	t.Cleanup(func() {
		for _, pid := range scanProcs(EnvRoot + "=" + root + "/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// scanProcs lists processes with an environment entry starting with
// prefix. It is deliberately independent of processesWithEnv.
func scanProcs(prefix string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.HasPrefix(kv, []byte(prefix)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func instanceProcs(id string) []int { return scanProcs(EnvInstanceID + "=" + id) }

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the instance's agent.log contains want.
func waitLog(t *testing.T, dir, want string) string {
	t.Helper()
	var got string
	waitFor(t, 10*time.Second, "agent.log to contain "+want, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, agentLog))
		got = string(b)
		return strings.Contains(got, want)
	})
	return got
}
