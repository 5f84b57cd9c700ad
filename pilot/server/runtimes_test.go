package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

func TestRuntimesDir(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(filepath.Dir(open), 0o711); err != nil {
		t.Fatal(err)
	}
	closed := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(closed), 0o711); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dataDir string
		euid          int
		want          string
	}{
		{"not root: next to the data", filepath.Join(closed, ".hangar", "pilot"), 1000, filepath.Join(closed, ".hangar", "pilot-runtimes")},
		{"root, reachable: next to the data", filepath.Join(open, "pilot"), 0, filepath.Join(open, "pilot-runtimes")},
		{"root, unreachable: under /var/lib/hangar", filepath.Join(closed, ".hangar", "pilot"), 0, systemRuntimesDir + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runtimesDir(tt.dataDir, tt.euid)
			if !strings.HasPrefix(got, tt.want) || (strings.HasSuffix(tt.want, "/") && got == tt.want) {
				t.Errorf("runtimesDir(%s, %d) = %s, want %s…", tt.dataDir, tt.euid, got, tt.want)
			}
		})
	}
	other := runtimesDir(filepath.Join(closed, ".hangar", "other"), 0)
	if other == runtimesDir(filepath.Join(closed, ".hangar", "pilot"), 0) {
		t.Errorf("two data directories share the runtimes directory %s", other)
	}
}

func TestLocalRuntimeDefaults(t *testing.T) {
	fill := localRuntimeDefaults("/srv/pilot-runtimes", "/opt/hangar/bin")
	rt := &pilotv1.Runtime{Id: "local", Provider: "local", Tenant: "default", Config: map[string]string{}}
	fill(rt)
	if rt.Config["root_dir"] != "/srv/pilot-runtimes/default/local" || rt.Config["bin_dir"] != "/opt/hangar/bin" {
		t.Errorf("defaults = %v", rt.Config)
	}
	given := &pilotv1.Runtime{Id: "x", Provider: "local", Tenant: "default", Config: map[string]string{"root_dir": "/r", "bin_dir": "/b"}}
	fill(given)
	if given.Config["root_dir"] != "/r" || given.Config["bin_dir"] != "/b" {
		t.Errorf("given values overwritten: %v", given.Config)
	}
	other := &pilotv1.Runtime{Id: "x", Provider: "docker", Config: map[string]string{}}
	fill(other)
	if len(other.Config) != 0 {
		t.Errorf("another provider got local defaults: %v", other.Config)
	}
}
