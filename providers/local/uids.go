package local

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/hostpath"
)

// Instance users. A provider running as root runs every instance as a user
// of its own: a uid (and the gid of the same number) from a range no
// account uses, no supplementary groups, no passwd entry. Uids are handed
// out host-wide through claims in a root-only directory shared by every
// root_dir, so two instances never share one, and in ascending order from
// a cursor, so a deleted instance's uid (and whatever files it left in
// /tmp) does not pass to the next instance until the range wraps.
const (
	// uidBase is above the uids systemd gives to containers
	// (524288–1879048191) and below 2^31, which some tools read as
	// negative.
	uidBase  = 0x70000000
	uidCount = 1 << 24
	// defaultUIDsDir keeps the claims on disk: instance directories (and
	// the files their users own) survive a reboot, so must their claims.
	defaultUIDsDir = "/var/lib/hangar/local-uids"
	uidCursorFile  = "next"
)

// uidClaim is the content of a uid's claim file.
type uidClaim struct {
	RootDir    string `json:"root_dir"`
	InstanceID string `json:"instance_id"`
}

// uidRegistry hands out instance uids. It is only used as root.
type uidRegistry struct {
	dir string
}

func (r uidRegistry) check() error {
	if err := hostpath.Private(r.dir, 0, "instance user claims directory"); err != nil {
		return internal("%v", err)
	}
	return nil
}

// claim returns the uid of instance id of root: the one it already holds,
// or a new one nobody holds and no process runs as.
func (r uidRegistry) claim(ctx context.Context, root, id string) (uint32, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	unlock, err := lockFile(ctx, filepath.Join(r.dir, ".lock"))
	if err != nil {
		return 0, err
	}
	defer unlock()
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return 0, internal("read %s: %v", r.dir, err)
	}
	held := map[uint32]bool{}
	for _, e := range ents {
		u, ok := parseUIDName(e.Name())
		if !ok {
			continue
		}
		c, err := r.read(u)
		switch {
		case err != nil:
			held[u] = true // unreadable: better skipped than shared
		case c.RootDir == root && c.InstanceID == id:
			return u, nil
		case !claimStale(c):
			held[u] = true
		}
	}
	running := uidsOfProcesses()
	cursor := r.cursor()
	for i := range uint32(uidCount) {
		u := uidBase + (cursor-uidBase+i)%uidCount
		if held[u] || running[u] {
			continue
		}
		b, _ := json.Marshal(uidClaim{RootDir: root, InstanceID: id})
		if err := atomicfile.Write(filepath.Join(r.dir, strconv.FormatUint(uint64(u), 10)), b, 0o600); err != nil {
			return 0, internal("claim instance user %d: %v", u, err)
		}
		next := uidBase + (u-uidBase+1)%uidCount
		if err := atomicfile.Write(filepath.Join(r.dir, uidCursorFile), []byte(strconv.FormatUint(uint64(next), 10)), 0o600); err != nil {
			return 0, internal("save the instance user cursor: %v", err)
		}
		return u, nil
	}
	return 0, internal("no free instance user left in %d–%d", uidBase, uidBase+uidCount-1)
}

// release drops uid's claim if it is still id's of root.
func (r uidRegistry) release(ctx context.Context, u uint32, root, id string) error {
	unlock, err := lockFile(ctx, filepath.Join(r.dir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.read(u)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return internal("release instance user %d: %v", u, err)
	}
	if c.RootDir != root || c.InstanceID != id {
		return nil
	}
	if err := os.Remove(filepath.Join(r.dir, strconv.FormatUint(uint64(u), 10))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return internal("release instance user %d: %v", u, err)
	}
	return nil
}

func (r uidRegistry) read(u uint32) (uidClaim, error) {
	var c uidClaim
	b, err := os.ReadFile(filepath.Join(r.dir, strconv.FormatUint(uint64(u), 10)))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil || c.RootDir == "" || c.InstanceID == "" {
		return c, errors.New("unreadable claim")
	}
	return c, nil
}

func (r uidRegistry) cursor() uint32 {
	b, err := os.ReadFile(filepath.Join(r.dir, uidCursorFile))
	if err != nil {
		return uidBase
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n < uidBase || n >= uidBase+uidCount {
		return uidBase
	}
	return uint32(n)
}

// claimStale reports whether a claim's instance is gone: its directory is
// created before the claim and removed before the release, so a claim
// without it is a leftover (a crash between the two, a removed root_dir).
func claimStale(c uidClaim) bool {
	_, err := os.Lstat(filepath.Join(c.RootDir, "instances", c.InstanceID))
	return errors.Is(err, fs.ErrNotExist)
}

func parseUIDName(name string) (uint32, bool) {
	n, err := strconv.ParseUint(name, 10, 32)
	if err != nil || n < uidBase || n >= uidBase+uidCount {
		return 0, false
	}
	return uint32(n), true
}

// uidsMapped reports whether this process's user namespace maps the whole
// instance uid range (a container may map only a few thousand uids).
func uidsMapped() error {
	for _, f := range []string{"/proc/self/uid_map", "/proc/self/gid_map"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		ok := false
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			start, e1 := strconv.ParseUint(f[0], 10, 64)
			n, e2 := strconv.ParseUint(f[2], 10, 64)
			if e1 == nil && e2 == nil && start <= uidBase && start+n >= uidBase+uidCount {
				ok = true
			}
		}
		if !ok {
			return errors.New(f + " does not map ids " + strconv.Itoa(uidBase) + "–" + strconv.Itoa(uidBase+uidCount-1))
		}
	}
	return nil
}
