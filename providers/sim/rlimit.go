package sim

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// fdsPerInstance is about how many file descriptors one simulated drone
// holds in the process: its stream and its etcd connection to the
// frontgate, and the frontgate's two ends of them (sockets of one
// process, since both agents live here), with a spare for the files it
// renders and records.
const fdsPerInstance = 5

// RaiseFileLimit lifts the process's open-file limit as far as it may go:
// 10,000 drones hold some 50,000 descriptors, where systems commonly
// allow 1,024 (soft) to 20,000 or 524,288 (hard). Go's runtime already
// raises the soft limit to the hard one; a privileged process (root, or
// CAP_SYS_RESOURCE) may raise the hard limit to fs.nr_open. It returns
// the limit in force and how many instances it allows.
func RaiseFileLimit() (limit uint64, instances int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = n
		}
	}
	if rl.Max < want {
		// Refused without privilege: keep what there is.
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want})
	} else if rl.Cur < rl.Max {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: rl.Max, Max: rl.Max})
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0
	}
	return rl.Cur, int(rl.Cur / fdsPerInstance)
}
