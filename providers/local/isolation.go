package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/internal/hostpath"
)

// isolation is how instances are kept from pilot and from each other.
// Instances run on pilot's host: with pilot's privileges, a cluster's
// command could read pilot's CA key and tokens, and every other instance.
type isolation int

const (
	// isolationNone: neither root nor Landlock; no instance may start.
	isolationNone isolation = iota
	// isolationUser: the provider runs as root and runs every instance as
	// an unprivileged user of its own (see uids.go), owning its directory
	// (mode 0700).
	isolationUser
	// isolationLandlock: the provider runs as pilot's user and starts
	// every instance through a launcher that confines it with Landlock to
	// its directory, the binaries and read-only system directories.
	isolationLandlock
)

func (i isolation) String() string {
	switch i {
	case isolationUser:
		return "a user of its own per instance"
	case isolationLandlock:
		return "Landlock"
	}
	return "none"
}

// detectIsolation picks the isolation this process can provide.
func detectIsolation(euid, landlock int) isolation {
	switch {
	case euid == 0:
		return isolationUser
	case landlock >= 1:
		return isolationLandlock
	}
	return isolationNone
}

// errNoIsolation is why no instance may start without isolation.
func errNoIsolation() error {
	return status.Error(codes.FailedPrecondition,
		"the local provider cannot isolate instances on this host: it needs to run as root (each instance then runs as an unprivileged user of its own) or a kernel with Landlock enabled (Linux 5.13 or later, with \"landlock\" in the lsm= boot parameter or CONFIG_LSM); without either, an instance would run with pilot's privileges and could read its keys, so none is started")
}

// checkIsolation says whether instances of cfg can start, and why not:
// isolation must be available, and under isolationUser an instance's user
// must be able to reach its directory and run the agents.
func (p *Provider) checkIsolation(cfg runtimeConfig) error {
	switch p.iso {
	case isolationNone:
		return errNoIsolation()
	case isolationLandlock:
		if p.launcher == "" {
			return status.Error(codes.FailedPrecondition, "the local provider cannot find its own executable to launch instances confined by Landlock")
		}
		return nil
	}
	if err := uidsMapped(); err != nil {
		return status.Errorf(codes.FailedPrecondition,
			"the local provider runs every instance as a user of its own (uids %d–%d), which this host's user namespace cannot switch to: %v", uidBase, uidBase+uidCount-1, err)
	}
	if err := p.uids.check(); err != nil {
		return err
	}
	for _, d := range []struct{ key, dir string }{{keyRootDir, cfg.root}, {keyBinDir, cfg.bin}} {
		if err := hostpath.SearchableByOthers(d.dir); err != nil {
			var ns *hostpath.NotSearchableError
			if errors.As(err, &ns) {
				return status.Errorf(codes.FailedPrecondition,
					"runtime.config.%s %s: every instance runs as an unprivileged user of its own and must traverse every directory above it, but %s has mode %#o; allow that with `chmod o+x %s`, or choose a %s outside it",
					d.key, d.dir, ns.Dir, ns.Mode, ns.Dir, d.key)
			}
			return status.Errorf(codes.FailedPrecondition, "runtime.config.%s %s: %v", d.key, d.dir, err)
		}
	}
	for _, name := range []string{droneBinary, frontgateBinary} {
		path := filepath.Join(cfg.bin, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return status.Errorf(codes.FailedPrecondition,
				"runtime.config.%s: %s has mode %#o, but instances run as users of their own and need it executable by others (chmod o+rx %s)", keyBinDir, path, fi.Mode().Perm(), path)
		}
	}
	return nil
}

// checkRootDir refuses a root_dir others could tamper with: the provider
// keeps its state there and, as root, acts on what it finds.
func (p *Provider) checkRootDir(cfg runtimeConfig) error {
	if err := hostpath.CheckPrivate(cfg.root, p.euid, "runtime.config."+keyRootDir); err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return nil
}

// dirMode is the mode of the directories above instance directories
// (root_dir, instances/): others may traverse them (not list them) when
// instances run as users of their own.
func (p *Provider) dirMode() os.FileMode {
	if p.iso == isolationUser {
		return 0o711
	}
	return 0o700
}

// mkdirs creates dir and its missing parents with mode (exactly, whatever
// the umask), leaving existing directories as they are.
func mkdirs(dir string, mode os.FileMode) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], mode); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := os.Chmod(missing[i], mode); err != nil {
			return err
		}
	}
	return nil
}

// passedEnv are the variables of the plugin's environment an instance gets:
// locale and time zone only. The rest is pilot's (it may hold
// HANGAR_SECRET_KEY, tokens, proxies with passwords) and stays there.
func passedEnv(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	return k == "LANG" || k == "LANGUAGE" || k == "TZ" || strings.HasPrefix(k, "LC_")
}
