package local

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

// A snapshot is root_dir/snapshots/<id>.tar.gz, a gzipped tar of an
// instance's volume (its root/). The volume belongs to the instance's
// user, who may change it while it is read or plant links in it, so both
// reading and restoring go through an os.Root: no path ever resolves
// outside the volume.

// CreateSnapshot archives an instance's volume; the same token returns the
// same snapshot. A running instance is archived as it is (files changing
// meanwhile may be caught halfway): stop it first for a consistent copy.
func (p *Provider) CreateSnapshot(ctx context.Context, req *providerv1.CreateSnapshotRequest) (*providerv1.Snapshot, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	token, instID := req.GetIdempotencyToken(), req.GetInstanceId()
	for _, f := range []struct{ name, v string }{{"idempotency_token", token}, {"instance_id", instID}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	var snap snapshot
	var src string
	var done bool
	err = p.update(ctx, cfg, func(t *tx) error {
		for _, s := range t.st.Snapshots {
			if s.Token != token {
				continue
			}
			if s.InstanceID != instID || s.Name != req.GetName() {
				return status.Errorf(codes.InvalidArgument,
					"idempotency_token %q was already used for snapshot %s (instance_id %s, name %q); use a new token for a different snapshot",
					token, s.ID, s.InstanceID, s.Name)
			}
			snap, done = *s, s.Ready
			break
		}
		if snap.ID == "" {
			if ts, ok := t.st.Deleted[snapshotTokenKey(token)]; ok {
				return status.Errorf(codes.FailedPrecondition,
					"idempotency_token %q created snapshot %s, which has been deleted; use a new token", token, ts.ID)
			}
		}
		if done {
			return nil
		}
		in, ok := t.st.Instances[instID]
		if !ok {
			return status.Errorf(codes.NotFound, "instance %s not found", instID)
		}
		if _, err := t.ensureVolumeID(in); err != nil {
			return err
		}
		src = volumePath(cfg, in)
		if snap.ID == "" {
			id, err := newID("snap-", func(id string) bool {
				_, ok := t.st.Snapshots[id]
				return ok
			})
			if err != nil {
				return err
			}
			snap = snapshot{ID: id, Token: token, InstanceID: instID, VolumeID: in.VolumeID, Name: req.GetName(), Created: time.Now().UTC()}
			// Recorded before the archive exists, so a crash leaves a
			// record the retry completes rather than a second snapshot.
			t.st.Snapshots[id] = &snap
		}
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	if done {
		return snap.proto(), nil
	}

	// Outside the lock: archiving a large volume must not stall every
	// other call on this root.
	size, err := writeArchive(cfg, src, snap.ID)
	if err != nil {
		return nil, internal("create snapshot %s of instance %s: %v", snap.ID, instID, err)
	}
	err = p.update(ctx, cfg, func(t *tx) error {
		s, ok := t.st.Snapshots[snap.ID]
		if !ok {
			// Deleted while it was written.
			_ = os.Remove(cfg.snapshotFile(snap.ID))
			return status.Errorf(codes.Aborted, "snapshot %s was deleted while it was being created", snap.ID)
		}
		s.Ready, s.SizeBytes = true, size
		snap = *s
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	p.log.Info("snapshot created", "snapshot", snap.ID, "instance", instID, "volume", snap.VolumeID, "size_bytes", size)
	return snap.proto(), nil
}

func (s *snapshot) proto() *providerv1.Snapshot {
	return &providerv1.Snapshot{
		Id:         s.ID,
		InstanceId: s.InstanceID,
		VolumeId:   s.VolumeID,
		Name:       s.Name,
		CreatedAt:  s.Created.Format(time.RFC3339),
		SizeBytes:  s.SizeBytes,
	}
}

// ListSnapshots lists the complete snapshots, of one instance when
// instance_id is set (snapshots outlive their instance, so an instance
// that is gone is not NotFound), oldest first.
func (p *Provider) ListSnapshots(ctx context.Context, req *providerv1.ListSnapshotsRequest) (*providerv1.ListSnapshotsResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	var snaps []snapshot
	err = p.update(ctx, cfg, func(t *tx) error {
		for _, s := range t.st.Snapshots {
			if s.Ready && (req.GetInstanceId() == "" || s.InstanceID == req.GetInstanceId()) {
				snaps = append(snaps, *s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(snaps, func(i, j int) bool {
		if !snaps[i].Created.Equal(snaps[j].Created) {
			return snaps[i].Created.Before(snaps[j].Created)
		}
		return snaps[i].ID < snaps[j].ID
	})
	resp := &providerv1.ListSnapshotsResponse{Snapshots: make([]*providerv1.Snapshot, len(snaps))}
	for i := range snaps {
		resp.Snapshots[i] = snaps[i].proto()
	}
	return resp, nil
}

// DeleteSnapshot deletes a snapshot's archive and record; a missing one is
// not an error.
func (p *Provider) DeleteSnapshot(ctx context.Context, req *providerv1.DeleteSnapshotRequest) (*providerv1.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "snapshot_id", id)
	if err != nil {
		return nil, err
	}
	deleted := false
	err = p.update(ctx, cfg, func(t *tx) error {
		s, ok := t.st.Snapshots[id]
		if !ok {
			return nil
		}
		if err := os.Remove(cfg.snapshotFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return internal("delete snapshot %s: %v", id, err)
		}
		delete(t.st.Snapshots, id)
		t.st.Deleted[snapshotTokenKey(s.Token)] = tombstone{ID: id, Deleted: time.Now().UTC()}
		deleted = true
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	if deleted {
		p.log.Info("snapshot deleted", "snapshot", id)
	}
	return &providerv1.DeleteSnapshotResponse{}, nil
}

// RestoreSnapshot replaces the content of a stopped instance's volume with
// a snapshot's. It runs under the state lock, so the instance cannot be
// started halfway; restoring the same snapshot again gives the same
// content, which makes a retry harmless.
func (p *Provider) RestoreSnapshot(ctx context.Context, req *providerv1.RestoreSnapshotRequest) (*providerv1.Instance, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	instID, snapID := req.GetInstanceId(), req.GetSnapshotId()
	for _, f := range []struct{ name, v string }{{"idempotency_token", req.GetIdempotencyToken()}, {"instance_id", instID}, {"snapshot_id", snapID}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	var out *providerv1.Instance
	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[instID]
		if !ok {
			return status.Errorf(codes.NotFound, "instance %s not found", instID)
		}
		s, ok := t.st.Snapshots[snapID]
		if !ok || !s.Ready {
			return status.Errorf(codes.NotFound, "snapshot %s not found", snapID)
		}
		if st := in.state(); st != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			return status.Errorf(codes.FailedPrecondition, "instance %s is %s: restore a snapshot to a stopped instance; stop it first", instID, st)
		}
		if err := restoreArchive(cfg, cfg.snapshotFile(snapID), volumePath(cfg, in)); err != nil {
			return internal("restore snapshot %s to instance %s: %v", snapID, instID, err)
		}
		p.log.Info("snapshot restored", "snapshot", snapID, "instance", instID)
		out = in.proto()
		return nil
	})
	return out, err
}

// writeArchive writes the tar.gz of src as snapshot id, through a
// temporary file renamed into place, and returns its size.
func writeArchive(cfg runtimeConfig, src, id string) (int64, error) {
	if err := os.MkdirAll(cfg.snapshotsDir(), 0o700); err != nil {
		return 0, err
	}
	// The instance owns the directory holding src and may have swapped
	// src for a link (to /etc, or another instance's volume): what is
	// opened must be the directory Lstat saw.
	before, err := os.Lstat(src)
	if err != nil {
		return 0, err
	}
	if !before.IsDir() {
		return 0, fmt.Errorf("%s is not a directory", src)
	}
	root, err := os.OpenRoot(src)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	if opened, err := root.Stat("."); err != nil || !os.SameFile(before, opened) {
		return 0, fmt.Errorf("%s changed while it was opened", src)
	}
	f, err := os.CreateTemp(cfg.snapshotsDir(), "."+id+"-*.tmp")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	if err := archiveTree(root, tw); err != nil {
		return 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := os.Rename(f.Name(), cfg.snapshotFile(id)); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// archiveTree writes directories, regular files and symbolic links (as
// links, never followed) of root to tw; anything else (fifos, sockets) is
// skipped. Owners are not kept: a restored volume gets its instance's.
func archiveTree(root *os.Root, tw *tar.Writer) error {
	return fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		fi, err := root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		} else if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime()}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			return tw.WriteHeader(hdr)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := root.Readlink(name)
			if err != nil {
				return nil // replaced meanwhile
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(hdr)
		case fi.Mode().IsRegular():
			return archiveFile(root, tw, hdr)
		}
		return nil
	})
}

// archiveFile writes one regular file. It is opened without blocking (it
// may have become a fifo meanwhile) and checked to still be a regular
// file; one that shrinks while it is read is padded with zeros to the size
// its header announced.
func archiveFile(root *os.Root, tw *tar.Writer, hdr *tar.Header) error {
	f, err := root.OpenFile(hdr.Name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil // replaced meanwhile
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), int64(fi.Mode().Perm())
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", hdr.Name, err)
	}
	if n < hdr.Size {
		if _, err := io.CopyN(tw, zeros{}, hdr.Size-n); err != nil {
			return err
		}
	}
	return nil
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// restoreArchive replaces dst's content with archive's: extracted into a
// new directory beside the volumes (the provider's alone), then swapped in.
func restoreArchive(cfg runtimeConfig, archive, dst string) error {
	if err := os.MkdirAll(cfg.volumesDir(), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(cfg.volumesDir(), ".restore-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := extract(archive, tmp); err != nil {
		return err
	}
	old := tmp + ".old"
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Put the volume back rather than leave the instance without one.
		_ = os.Rename(old, dst)
		return err
	}
	return os.RemoveAll(old)
}

// extract unpacks a snapshot into dir through an os.Root: a name that
// would leave dir, through ".." or a link, fails. Links are created last,
// so none is in place while files are written; directory modes are set
// last, so a read-only directory does not stop its own content.
func extract(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	type later struct {
		name, target string
		mode         fs.FileMode
		mtime        time.Time
	}
	var links, dirs []later
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("bad name %q in the archive", hdr.Name)
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, later{name: name, mode: mode, mtime: hdr.ModTime})
		case tar.TypeReg:
			out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			links = append(links, later{name: name, target: hdr.Linkname})
		}
	}
	for _, l := range links {
		if err := root.Symlink(l.target, l.name); err != nil {
			return err
		}
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := root.Chmod(d.name, d.mode); err != nil {
			return err
		}
		_ = root.Chtimes(d.name, d.mtime, d.mtime)
	}
	return nil
}
