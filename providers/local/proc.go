package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/procstat"
)

func procStat(pid int) (state byte, start uint64, err error) { return procstat.Stat(pid) }

func alive(pid int, start uint64) bool { return procstat.Alive(pid, start) }

// processesWithEnv lists the live processes whose environment holds entry
// (e.g. "HANGAR_INSTANCE_ID=i-0123abcd"), oldest first. The environment is
// inherited through fork and exec, so this also finds daemons an app
// detached with setsid. Processes whose environ cannot be read (other users,
// when not root) and zombies (empty environ) are not listed.
func processesWithEnv(entry string) []int {
	want := []byte(entry)
	var pids []int
	eachProcess(func(pid string) {
		env, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			return
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				n, _ := strconv.Atoi(pid)
				pids = append(pids, n)
				return
			}
		}
	})
	sortByStart(pids)
	return pids
}

// sortByStart orders pids oldest first (by start time, then pid).
func sortByStart(pids []int) {
	start := make(map[int]uint64, len(pids))
	for _, pid := range pids {
		_, start[pid], _ = procStat(pid)
	}
	sort.Slice(pids, func(i, j int) bool {
		if start[pids[i]] != start[pids[j]] {
			return start[pids[i]] < start[pids[j]]
		}
		return pids[i] < pids[j]
	})
}

// processUIDs returns the real, effective, saved and filesystem uids of a
// process, from /proc/<pid>/status.
func processUIDs(pid string) ([]uint32, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		var uids []uint32
		for _, f := range bytes.Fields(rest) {
			u, err := strconv.ParseUint(string(f), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parse /proc/%s/status: %w", pid, err)
			}
			uids = append(uids, uint32(u))
		}
		return uids, nil
	}
	return nil, fmt.Errorf("/proc/%s/status has no Uid line", pid)
}

// eachProcess calls fn with the pid of every process but this one.
func eachProcess(fn func(pid string)) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if n := e.Name(); n != self && n[0] >= '0' && n[0] <= '9' {
			fn(n)
		}
	}
}

// uidsOfProcesses returns the instance uids (uidBase…) some live process
// runs as.
func uidsOfProcesses() map[uint32]bool {
	in := map[uint32]bool{}
	eachProcess(func(pid string) {
		uids, _ := processUIDs(pid)
		for _, u := range uids {
			if u >= uidBase && u < uidBase+uidCount {
				in[u] = true
			}
		}
	})
	return in
}

// processesWithUID lists the processes running as uid (any of their uids),
// zombies excluded. Unlike the environment, an instance cannot shed its
// uid, so this finds every process it started, whatever it did to its
// environment.
func processesWithUID(uid uint32) []int {
	var pids []int
	eachProcess(func(pid string) {
		uids, err := processUIDs(pid)
		if err != nil || !slices.Contains(uids, uid) {
			return
		}
		n, _ := strconv.Atoi(pid)
		if st, _, err := procStat(n); err == nil && st != 'Z' && st != 'X' {
			pids = append(pids, n)
		}
	})
	return pids
}

// terminate stops every process find returns: SIGTERM, then, for those still
// there after grace, SIGKILL. find is re-run while waiting, so processes
// forked meanwhile are caught too.
func terminate(ctx context.Context, find func() []int, grace time.Duration) error {
	const poll = 50 * time.Millisecond
	deadline := time.Now().Add(grace)
	termed := map[int]bool{}
	for {
		pids := find()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if !termed[pid] {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				termed[pid] = true
			}
		}
		if time.Now().After(deadline) {
			break
		}
		if err := backoff.Sleep(ctx, poll); err != nil {
			return err
		}
	}
	// SIGKILL cannot be ignored; the bound only covers processes stuck in
	// the kernel (uninterruptible I/O).
	deadline = time.Now().Add(5 * time.Second)
	for {
		pids := find()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still running after SIGKILL", pids)
		}
		if err := backoff.Sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// reaper waits for the processes this provider spawned, so they do not stay
// zombies (which would still count as existing pids) while the plugin runs.
// One goroutine serves all children: it wakes on SIGCHLD, and on a slow tick
// in case a signal was coalesced, and waits only for its own children's pids
// (never -1), leaving other children of the process to their owners.
type reaper struct {
	mu       sync.Mutex
	children map[int]*os.Process
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

func newReaper() *reaper {
	r := &reaper{
		children: map[int]*os.Process{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go r.run(sig)
	return r
}

func (r *reaper) run(sig chan os.Signal) {
	defer close(r.done)
	defer signal.Stop(sig)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			r.reap()
			return
		case <-sig:
		case <-tick.C:
		}
		r.reap()
	}
}

// add hands a started child to the reaper.
func (r *reaper) add(p *os.Process) {
	r.mu.Lock()
	r.children[p.Pid] = p
	r.mu.Unlock()
	// It may have exited before it was registered.
	r.reap()
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, p := range r.children {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			_ = p.Release()
			delete(r.children, pid)
		}
	}
}

func (r *reaper) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}
