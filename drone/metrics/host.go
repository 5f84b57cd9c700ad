package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// HostConfig says where the host's numbers are read.
type HostConfig struct {
	// ProcDir is procfs (default /proc).
	ProcDir string
	// CgroupDir is the cgroup v2 mount (default /sys/fs/cgroup): when it
	// has memory.current, the drone runs in a container (or a cgroup of
	// its own) and memory is the cgroup's, not the host's.
	CgroupDir string
	// Root is the instance's root: disk is the filesystem holding it
	// (default /).
	Root string
}

func (c HostConfig) withDefaults() HostConfig {
	if c.ProcDir == "" {
		c.ProcDir = "/proc"
	}
	if c.CgroupDir == "" {
		c.CgroupDir = "/sys/fs/cgroup"
	}
	if c.Root == "" {
		c.Root = "/"
	}
	return c
}

// hostReading is one read of the host's counters and gauges; rates come
// from two of them.
type hostReading struct {
	cpuBusy, cpuTotal uint64
	cpuOK             bool
	memUsed, memTotal uint64
	memOK             bool
	diskUsed          uint64
	diskTotal         uint64
	diskOK            bool
	rx, tx            uint64
	netOK             bool
}

// readHost reads what it can; a part that cannot be read is left out of
// the report (errs says why) rather than reported as zero.
func readHost(c HostConfig) (hostReading, []error) {
	var r hostReading
	var errs []error
	if b, err := os.ReadFile(filepath.Join(c.ProcDir, "stat")); err != nil {
		errs = append(errs, err)
	} else if r.cpuBusy, r.cpuTotal, err = parseCPU(b); err != nil {
		errs = append(errs, err)
	} else {
		r.cpuOK = true
	}
	var err error
	if r.memUsed, r.memTotal, err = readMemory(c); err != nil {
		errs = append(errs, err)
	} else {
		r.memOK = true
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.Root, &st); err != nil {
		errs = append(errs, fmt.Errorf("statfs %s: %w", c.Root, err))
	} else {
		bs := uint64(st.Bsize)
		r.diskTotal = st.Blocks * bs
		r.diskUsed = (st.Blocks - st.Bfree) * bs
		r.diskOK = true
	}
	if b, err := os.ReadFile(filepath.Join(c.ProcDir, "net", "dev")); err != nil {
		errs = append(errs, err)
	} else if r.rx, r.tx, err = parseNetDev(b); err != nil {
		errs = append(errs, err)
	} else {
		r.netOK = true
	}
	return r, errs
}

// parseCPU reads the first line of /proc/stat ("cpu user nice system idle
// iowait irq softirq steal guest guest_nice", in ticks) and returns the
// busy and total ticks. guest and guest_nice are already in user and
// nice; idle and iowait are not busy.
func parseCPU(stat []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu totals", line)
	}
	var idle uint64
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: cpu field %d %q: %w", i+1, s, err)
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - idle, total, nil
}

// parseMeminfo returns the used and total bytes of /proc/meminfo: used is
// MemTotal - MemAvailable (what the kernel could not hand out without
// swapping), or without MemAvailable (kernels before 3.14) total - free -
// buffers - cached.
func parseMeminfo(b []byte) (used, total uint64, err error) {
	kb := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			kb[name] = n
		}
	}
	total = kb["MemTotal"]
	if total == 0 {
		return 0, 0, errors.New("/proc/meminfo: no MemTotal")
	}
	free := kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	if avail, ok := kb["MemAvailable"]; ok {
		free = avail
	}
	free = min(free, total)
	return (total - free) << 10, total << 10, nil
}

// readMemory is the cgroup's memory when the drone is in one with a
// memory controller (a container), else the host's. A cgroup without a
// limit (memory.max "max") counts against the host's total.
func readMemory(c HostConfig) (used, total uint64, err error) {
	mi, err := os.ReadFile(filepath.Join(c.ProcDir, "meminfo"))
	if err != nil {
		return 0, 0, err
	}
	used, total, err = parseMeminfo(mi)
	if err != nil {
		return 0, 0, err
	}
	cur, err := os.ReadFile(filepath.Join(c.CgroupDir, "memory.current"))
	if errors.Is(err, fs.ErrNotExist) {
		return used, total, nil
	}
	if err != nil {
		return 0, 0, err
	}
	maxb, _ := os.ReadFile(filepath.Join(c.CgroupDir, "memory.max"))
	stat, _ := os.ReadFile(filepath.Join(c.CgroupDir, "memory.stat"))
	return cgroupMemory(cur, maxb, stat, total)
}

// cgroupMemory is a cgroup v2's used and total bytes: memory.current less
// the inactive file cache the kernel reclaims first (as `docker stats`
// counts), against memory.max or, without a limit, hostTotal.
func cgroupMemory(current, maxb, stat []byte, hostTotal uint64) (used, total uint64, err error) {
	used, err = strconv.ParseUint(strings.TrimSpace(string(current)), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("memory.current %q: %w", current, err)
	}
	total = hostTotal
	if s := strings.TrimSpace(string(maxb)); s != "" && s != "max" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n < hostTotal {
			total = n
		}
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "inactive_file "); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil && n <= used {
				used -= n
			}
		}
	}
	return min(used, total), total, nil
}

// parseNetDev sums the received and transmitted bytes of /proc/net/dev's
// interfaces but loopback; loopback alone when it is the only one (a
// network namespace with nothing else still has traffic worth seeing).
func parseNetDev(b []byte) (rx, tx uint64, err error) {
	var loRx, loTx uint64
	others, found := false, false
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("/proc/net/dev: interface %s: bad counters %q", strings.TrimSpace(name), rest)
		}
		found = true
		if strings.TrimSpace(name) == "lo" {
			loRx, loTx = r, t
			continue
		}
		others = true
		rx += r
		tx += t
	}
	if !found {
		return 0, 0, errors.New("/proc/net/dev: no interfaces")
	}
	if !others {
		return loRx, loTx, nil
	}
	return rx, tx, nil
}

// counterDelta is cur - prev for a counter that only grows; one that went
// backwards was restarted (a process, an interface) and has counted cur
// since, so the difference is never negative.
func counterDelta(prev, cur uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}
