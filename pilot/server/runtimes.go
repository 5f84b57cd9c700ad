package server

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/hostpath"
)

// systemRuntimesDir holds the local runtimes of a pilot running as root
// whose data directory others cannot traverse (see runtimesDir).
const systemRuntimesDir = "/var/lib/hangar/runtimes"

// runtimesDir is where local runtimes get their root_dir when none is
// given: next to pilot's data directory, never inside it, since pilot
// refuses runtime directories that overlap its data. A local provider
// running as root runs every instance as a user of its own, which must be
// able to traverse the path to its directory; when the data directory's
// parent does not let it (say /root/.hangar, under /root with mode 0700),
// the runtimes go to systemRuntimesDir, in a directory named after the data
// directory so that two pilots never share one.
func runtimesDir(dataDir string, euid int) string {
	sibling := dataDir + "-runtimes"
	if euid != 0 || hostpath.SearchableByOthers(filepath.Dir(sibling)) == nil {
		return sibling
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(systemRuntimesDir, hex.EncodeToString(sum[:6]))
}

// localRuntimeDefaults fills the local provider's root_dir and bin_dir when
// the runtime leaves them empty.
func localRuntimeDefaults(runtimes, pluginDir string) func(rt *pilotv1.Runtime) {
	return func(rt *pilotv1.Runtime) {
		if rt.Provider != "local" {
			return
		}
		if rt.Config["root_dir"] == "" {
			rt.Config["root_dir"] = filepath.Join(runtimes, rt.Tenant, rt.Id)
		}
		if rt.Config["bin_dir"] == "" {
			rt.Config["bin_dir"] = pluginDir
		}
	}
}

// protectedDirs are pilot's own directories and files no runtime directory
// may overlap.
func protectedDirs(cfg Config) []string {
	dirs := []string{cfg.DataDir}
	if cfg.SecretKeyFile != "" {
		if abs, err := filepath.Abs(cfg.SecretKeyFile); err == nil {
			dirs = append(dirs, abs)
		}
	}
	return dirs
}
