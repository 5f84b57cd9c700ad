package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock, used raw: the rules must be applied by the launcher between its
// start and its exec of the agent, on the one thread that execs, which
// needs no library. The kernel's UAPI is stable; each ABI version adds
// rights, and a ruleset only handles those the running kernel knows.

// landlockABI returns the kernel's Landlock ABI version, 0 when Landlock is
// not available (not built in, or disabled at boot).
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// Filesystem rights by the ABI version that introduced them.
const (
	llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE
	llABI1       = llFileRights | unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM

	llRead = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llExec = llRead | unix.LANDLOCK_ACCESS_FS_EXECUTE
	llDev  = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// llHandled is every filesystem right the kernel of ABI version abi knows:
// each is denied unless a rule grants it.
func llHandled(abi int) uint64 {
	h := uint64(llABI1)
	if abi >= 2 {
		h |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		h |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		h |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return h
}

// llScoped: from ABI 6, a domain can keep its processes from signalling
// processes outside it (pilot, the plugin, other instances) and from
// connecting to abstract unix sockets created outside it.
func llScoped(abi int) uint64 {
	if abi >= 6 {
		return unix.LANDLOCK_SCOPE_SIGNAL | unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	}
	return 0
}

// llRulesetAttr is struct landlock_ruleset_attr up to its scoped field
// (ABI 6). The kernel accepts a larger struct whose extra fields are zero,
// so older kernels take it as long as scoped stays 0 for them.
type llRulesetAttr struct {
	handledFS  uint64
	handledNet uint64
	scoped     uint64
}

// llRule grants access beneath path.
type llRule struct {
	path   string
	access uint64
}

// systemDirs are readable and executable for every instance: programs,
// their libraries and their configuration. Only root can write there, so
// they hold nothing of pilot's user (whose data lives in its home). /tmp,
// /var/tmp and /dev/shm are left out on purpose: every process of pilot's
// user shares them.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}

// devFiles are the device files an instance may read and write.
var devFiles = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}

// instanceRules is what an instance may touch: its own directory, fully;
// the agents' bin_dir and the system's programs, to read and run; /proc and
// /sys, to read (Landlock keeps /proc/<pid> of processes outside the
// domain out of reach for what ptrace would guard: environ, mem, fds);
// a few device files.
func instanceRules(spec launchSpec, abi int) []llRule {
	// Everything in its own directory: landlockRestrict keeps what the
	// ruleset handles.
	rules := []llRule{{spec.Dir, ^uint64(0)}, {spec.Bin, llExec}}
	for _, d := range systemDirs {
		rules = append(rules, llRule{d, llExec})
	}
	rules = append(rules, llRule{"/proc", llRead}, llRule{"/sys", llRead})
	for _, f := range devFiles {
		rules = append(rules, llRule{f, llDev})
	}
	// /etc/resolv.conf is often a link into /run (systemd-resolved): grant
	// the file it names, not /run.
	if real, err := filepath.EvalSymlinks("/etc/resolv.conf"); err == nil && real != "/etc/resolv.conf" {
		rules = append(rules, llRule{real, llRead})
	}
	return rules
}

// landlockRestrict confines the calling thread (and what it execs) to
// rules. It sets no_new_privs first, as unprivileged Landlock requires.
// The caller must have locked its OS thread and must exec from it.
func landlockRestrict(abi int, rules []llRule) error {
	if abi < 1 {
		return errors.New("this kernel has no Landlock")
	}
	// Connecting to a named unix socket is a right of its own only in
	// recent kernels (an ABI version this code does not number): try it,
	// and without it, the kernel says EINVAL. Without it, an instance can
	// connect to the sockets of the provider's user (see docs/providers.md).
	handled := llHandled(abi) | unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX
	attr := llRulesetAttr{handledFS: handled, scoped: llScoped(abi)}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno == unix.EINVAL {
		handled = llHandled(abi)
		attr.handledFS = handled
		fd, _, errno = unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	}
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	for _, r := range rules {
		if err := llAddPath(int(fd), r.path, r.access&handled); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	return nil
}

// llAddPath adds a path-beneath rule. A path that does not exist is
// skipped (not every system has /lib32); rights that only make sense for
// directories are dropped for a file.
func llAddPath(ruleset int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("landlock rule for %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock rule for %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= llFileRights | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	attr := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock rule for %s: %w", path, errno)
	}
	return nil
}

// confineAndExec is the launcher's work: confine this thread, then become
// the agent. It returns only on failure.
func confineAndExec(spec launchSpec) error {
	runtime.LockOSThread()
	abi := landlockABI()
	if err := landlockRestrict(abi, instanceRules(spec, abi)); err != nil {
		return err
	}
	return unix.Exec(spec.Exec, spec.Args, os.Environ())
}
