package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/backoff"
)

// tombstoneTTL is how long the token of a deleted network or instance keeps
// answering "already used": long enough to outlive any retry of the request
// that created it, short enough that state.json does not grow forever.
const tombstoneTTL = 7 * 24 * time.Hour

const stateFile = "state.json"

// state is root_dir/state.json.
type state struct {
	Networks  map[string]*network  `json:"networks"`
	Instances map[string]*instance `json:"instances"`
	// Deleted maps "network/<token>" and "instance/<token>" of deleted
	// resources, so a late retry does not create them again.
	Deleted map[string]tombstone `json:"deleted_tokens"`
	// Volumes are the detached volumes (kept by DeleteInstance with
	// keep_volume); an attached one is its instance's VolumeID.
	Volumes   map[string]*volume   `json:"volumes,omitempty"`
	Snapshots map[string]*snapshot `json:"snapshots,omitempty"`
	// Reserved are the reserved addresses, by idempotency token.
	Reserved map[string]*reservation `json:"reserved,omitempty"`
}

// volume is a detached volume: the root/ of a deleted instance, kept as
// root_dir/volumes/<id>.
type volume struct {
	ID      string    `json:"id"`
	SizeGiB int32     `json:"size_gib,omitempty"`
	Created time.Time `json:"created"`
	// Instance is the deleted instance it came from.
	Instance string `json:"instance"`
}

// snapshot is root_dir/snapshots/<id>.tar.gz, a copy of an instance's
// volume.
type snapshot struct {
	ID         string    `json:"id"`
	Token      string    `json:"idempotency_token"`
	InstanceID string    `json:"instance_id"`
	VolumeID   string    `json:"volume_id"`
	Name       string    `json:"name"`
	Created    time.Time `json:"created"`
	SizeBytes  int64     `json:"size_bytes"`
	// Ready is set once the archive is complete; a record without it is
	// a creation a crash interrupted, which a retry with the token
	// completes.
	Ready bool `json:"ready"`
}

type network struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	CIDR    string    `json:"cidr"`
	Token   string    `json:"idempotency_token"`
	Created time.Time `json:"created"`
}

type instance struct {
	ID        string            `json:"id"`
	Token     string            `json:"idempotency_token"`
	NetworkID string            `json:"network_id"`
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	Image     string            `json:"image"`
	Labels    map[string]string `json:"labels,omitempty"`
	CPU       int32             `json:"cpu,omitempty"`
	MemoryMiB int32             `json:"memory_mib,omitempty"`
	VolumeGiB int32             `json:"volume_gib,omitempty"`
	// PID is 0 while the process is being started; with StartTime (clock
	// ticks after boot, from /proc/<pid>/stat) it identifies the process
	// even after the pid has been recycled.
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	// UID is the instance's own user when the provider runs as root (0:
	// none, it runs as the provider's user, confined by Landlock).
	UID     uint32    `json:"uid,omitempty"`
	Created time.Time `json:"created"`
	// Stopped is set by StopInstance: the process is gone on purpose, and
	// only StartInstance brings it back (a retried RunInstance does not).
	Stopped bool `json:"stopped,omitempty"`
	// Deleting is set by DeleteInstance before it stops the processes
	// (outside the lock): from then on nothing starts the instance again,
	// or a start racing the delete (pilot reviving a lost drone) would
	// leave a process behind the removed record.
	Deleting bool `json:"deleting,omitempty"`
	// booted is set by the call that started the instance from nothing,
	// for its answer (Instance.booted); never stored.
	booted bool
	// VolumeID names the instance's root/ as a volume (empty for an
	// instance recorded before volumes existed: given one when needed).
	VolumeID string `json:"volume_id,omitempty"`
	// ReusedVolume says VolumeID was a detached volume the instance was
	// asked to attach (RunInstance volume_id): until its first start
	// moves root_dir/volumes/<VolumeID> into place, the data is there.
	ReusedVolume bool `json:"reused_volume,omitempty"`
}

type tombstone struct {
	ID      string    `json:"id"`
	Deleted time.Time `json:"deleted"`
}

func networkTokenKey(token string) string  { return "network/" + token }
func instanceTokenKey(token string) string { return "instance/" + token }
func snapshotTokenKey(token string) string { return "snapshot/" + token }

// tx is one state transaction: the state as loaded under both locks.
type tx struct {
	cfg runtimeConfig
	st  *state
}

// update runs fn with the runtime's state loaded, holding p.mu and the flock
// on root_dir/.lock. fn persists its changes with t.save.
func (p *Provider) update(ctx context.Context, cfg runtimeConfig, fn func(t *tx) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := mkdirs(cfg.instancesDir(), p.dirMode()); err != nil {
		return internal("create runtime.config.%s %s: %v", keyRootDir, cfg.root, err)
	}
	if err := p.checkRootDir(cfg); err != nil {
		return err
	}
	// instances/ is the provider's own: an older provider made it 0700,
	// which instance users cannot traverse.
	if fi, err := os.Stat(cfg.instancesDir()); err == nil && fi.Mode().Perm() != p.dirMode() {
		if err := os.Chmod(cfg.instancesDir(), p.dirMode()); err != nil {
			return internal("runtime.config.%s: %v", keyRootDir, err)
		}
	}
	unlock, err := lockFile(ctx, filepath.Join(cfg.root, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(cfg.root)
	if err != nil {
		return err
	}
	return fn(&tx{cfg: cfg, st: st})
}

func loadState(root string) (*state, error) {
	st := &state{}
	b, err := os.ReadFile(filepath.Join(root, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, internal("read %s: %v", filepath.Join(root, stateFile), err)
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return nil, internal("parse %s: %v", filepath.Join(root, stateFile), err)
		}
	}
	if st.Networks == nil {
		st.Networks = map[string]*network{}
	}
	if st.Instances == nil {
		st.Instances = map[string]*instance{}
	}
	if st.Deleted == nil {
		st.Deleted = map[string]tombstone{}
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*volume{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*snapshot{}
	}
	return st, nil
}

// save writes the state atomically: a crash leaves either the old or the new
// file, never a torn one.
func (t *tx) save() error {
	now := time.Now()
	for k, ts := range t.st.Deleted {
		if now.Sub(ts.Deleted) > tombstoneTTL {
			delete(t.st.Deleted, k)
		}
	}
	b, err := json.MarshalIndent(t.st, "", "  ")
	if err != nil {
		return internal("encode state: %v", err)
	}
	path := filepath.Join(t.cfg.root, stateFile)
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return internal("write %s: %v", path, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can end the
// wait. The returned func releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, internal("open lock %s: %v", path, err)
	}
	const poll = 10 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, internal("lock %s: %v", path, err)
		}
		if backoff.Sleep(ctx, poll) != nil {
			_ = f.Close()
			return nil, ctxError(ctx, "lock "+path)
		}
	}
}

// newID returns prefix + 8 random hex digits not already taken.
func newID(prefix string, taken func(string) bool) (string, error) {
	for range 100 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", internal("generate id: %v", err)
		}
		id := prefix + hex.EncodeToString(b[:])
		if !taken(id) {
			return id, nil
		}
	}
	return "", internal("generate id: no free %s id after 100 tries", prefix)
}
