package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

// An instance's volume is its root/ directory (HANGAR_ROOT: the app's
// files and data). DeleteInstance with keep_volume moves it to
// root_dir/volumes/<volume id>, and RunInstance with that volume_id moves
// it back as the new instance's root/, so a replaced node keeps its data.
// Sizes are recorded, not enforced.

// volumeFor decides the volume of a new instance: a fresh id, or the
// detached volume req asks for (then its size, unless req asks for more).
func (t *tx) volumeFor(req *providerv1.RunInstanceRequest) (string, int32, error) {
	want := req.GetVolumeId()
	if want == "" {
		id, err := t.newVolumeID()
		return id, req.GetVolumeGib(), err
	}
	v, ok := t.st.Volumes[want]
	if !ok {
		if in := t.volumeOwner(want); in != nil {
			return "", 0, status.Errorf(codes.FailedPrecondition, "volume_id %s is attached to instance %s; delete it with keep_volume first", want, in.ID)
		}
		return "", 0, status.Errorf(codes.NotFound, "volume %s not found", want)
	}
	gib := req.GetVolumeGib()
	if gib != 0 && gib < v.SizeGiB {
		return "", 0, status.Errorf(codes.InvalidArgument, "volume_gib %d is below the size of volume %s (%d GiB): a volume never shrinks", gib, want, v.SizeGiB)
	}
	return want, max(gib, v.SizeGiB), nil
}

// newVolumeID returns an unused volume id.
func (t *tx) newVolumeID() (string, error) {
	return newID("vol-", func(id string) bool {
		_, ok := t.st.Volumes[id]
		_, statErr := os.Lstat(t.cfg.volumeDir(id))
		return ok || statErr == nil || t.volumeOwner(id) != nil
	})
}

// volumeOwner is the instance a volume is attached to, or nil.
func (t *tx) volumeOwner(id string) *instance {
	for _, in := range t.st.Instances {
		if in.VolumeID == id {
			return in
		}
	}
	return nil
}

// ensureVolumeID gives an instance recorded before volumes existed its
// volume id; it reports whether it did (the caller saves).
func (t *tx) ensureVolumeID(in *instance) (bool, error) {
	if in.VolumeID != "" {
		return false, nil
	}
	id, err := t.newVolumeID()
	if err != nil {
		return false, err
	}
	in.VolumeID = id
	return true, nil
}

// volumePath is where an instance's volume is now: its root/, or, before
// the first start of an instance attaching a detached volume, that
// volume's directory.
func volumePath(cfg runtimeConfig, in *instance) string {
	if in.ReusedVolume && in.VolumeID != "" {
		if _, err := os.Lstat(cfg.volumeDir(in.VolumeID)); err == nil {
			return cfg.volumeDir(in.VolumeID)
		}
	}
	return filepath.Join(cfg.instanceDir(in.ID), rootDir)
}

// detachVolume moves in's root/ to the detached volumes and records it
// there (the caller saves). Repeating it after a crash finds the volume
// already moved.
func (t *tx) detachVolume(in *instance) error {
	if _, err := t.ensureVolumeID(in); err != nil {
		return err
	}
	if err := os.MkdirAll(t.cfg.volumesDir(), 0o700); err != nil {
		return err
	}
	dst := t.cfg.volumeDir(in.VolumeID)
	src := filepath.Join(t.cfg.instanceDir(in.ID), rootDir)
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		fi, err := os.Lstat(src)
		switch {
		case err == nil && fi.IsDir():
			if os.Geteuid() == 0 {
				// The instance's user is released with it; until a new
				// instance gets the volume it is the provider's.
				if err := chownTree(src, 0, 0); err != nil {
					return err
				}
			}
			if err := os.Chmod(src, 0o700); err != nil {
				return err
			}
			if err := os.Rename(src, dst); err != nil {
				return err
			}
		case err == nil || errors.Is(err, fs.ErrNotExist):
			// Never started, or root/ replaced by something else: an
			// empty volume.
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
		default:
			return err
		}
	} else if err != nil {
		return err
	}
	t.st.Volumes[in.VolumeID] = &volume{ID: in.VolumeID, SizeGiB: in.VolumeGiB, Created: in.Created, Instance: in.ID}
	return nil
}

// attachVolume moves the detached volume rec asked for into place as its
// root/. Done already (a retried start) when the volume's directory is
// gone and root/ exists.
func attachVolume(cfg runtimeConfig, rec *instance) error {
	src := cfg.volumeDir(rec.VolumeID)
	dir := cfg.instanceDir(rec.ID)
	dst := filepath.Join(dir, rootDir)
	if _, err := os.Lstat(src); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
			return nil
		}
		return errors.New("its data is neither in " + src + " nor in " + dst)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// An empty root/ of an interrupted start, never the volume's data
	// (that is still in src).
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(src, dst)
}

// removeAllBut removes dir, or only its entries other than keep when keep
// is not empty.
func removeAllBut(dir, keep string) error {
	if keep == "" {
		return os.RemoveAll(dir)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == keep && e.IsDir() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// keepIf is s when cond holds, else "".
func keepIf(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}

// ResizeInstance records new resources of a stopped instance. Nothing is
// enforced locally (no cgroup or quota), but the provider does not declare
// live_resize, so pilot follows a cloud's stop, resize, start; a resize
// that changes nothing is accepted in any state, so a retry after the
// start succeeds.
func (p *Provider) ResizeInstance(ctx context.Context, req *providerv1.ResizeInstanceRequest) (*providerv1.Instance, error) {
	id := req.GetInstanceId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "instance_id", id)
	if err != nil {
		return nil, err
	}
	if err := checkSizes(req.GetCpu(), req.GetMemoryMib(), req.GetVolumeGib(), "unchanged"); err != nil {
		return nil, err
	}
	var out *providerv1.Instance
	err = p.update(ctx, cfg, func(t *tx) error {
		in, ok := t.st.Instances[id]
		if !ok {
			return status.Errorf(codes.NotFound, "instance %s not found", id)
		}
		if v := req.GetVolumeGib(); v != 0 && v < in.VolumeGiB {
			return status.Errorf(codes.InvalidArgument, "volume_gib %d is below instance %s's volume size %d GiB: a volume never shrinks", v, id, in.VolumeGiB)
		}
		cpu, mem, vol := orKeep(req.GetCpu(), in.CPU), orKeep(req.GetMemoryMib(), in.MemoryMiB), orKeep(req.GetVolumeGib(), in.VolumeGiB)
		if cpu == in.CPU && mem == in.MemoryMiB && vol == in.VolumeGiB {
			out = in.proto()
			return nil
		}
		if st := in.state(); st != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			return status.Errorf(codes.FailedPrecondition, "instance %s is %s: the local provider resizes stopped instances only; stop it first", id, st)
		}
		in.CPU, in.MemoryMiB, in.VolumeGiB = cpu, mem, vol
		if err := t.save(); err != nil {
			return err
		}
		p.log.Info("instance resized", "instance", id, "cpu", cpu, "memory_mib", mem, "volume_gib", vol)
		out = in.proto()
		return nil
	})
	return out, err
}

func orKeep(v, cur int32) int32 {
	if v == 0 {
		return cur
	}
	return v
}

// ListVolumes lists the instances' volumes and the detached ones, oldest
// first.
func (p *Provider) ListVolumes(ctx context.Context, req *providerv1.ListVolumesRequest) (*providerv1.ListVolumesResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	type row struct {
		v       *providerv1.Volume
		created time.Time
	}
	var rows []row
	err = p.update(ctx, cfg, func(t *tx) error {
		changed := false
		for _, in := range t.st.Instances {
			c, err := t.ensureVolumeID(in)
			if err != nil {
				return err
			}
			changed = changed || c
			rows = append(rows, row{&providerv1.Volume{Id: in.VolumeID, InstanceId: in.ID, SizeGib: in.VolumeGiB, CreatedAt: in.Created.Format(time.RFC3339)}, in.Created})
		}
		for _, v := range t.st.Volumes {
			rows = append(rows, row{&providerv1.Volume{Id: v.ID, SizeGib: v.SizeGiB, CreatedAt: v.Created.Format(time.RFC3339)}, v.Created})
		}
		if changed {
			return t.save()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(rows, func(i, j int) bool {
		if !rows[i].created.Equal(rows[j].created) {
			return rows[i].created.Before(rows[j].created)
		}
		return rows[i].v.Id < rows[j].v.Id
	})
	resp := &providerv1.ListVolumesResponse{}
	for _, r := range rows {
		resp.Volumes = append(resp.Volumes, r.v)
	}
	return resp, nil
}

// DeleteVolume deletes a detached volume and its data. A missing volume is
// not an error; an attached one is FailedPrecondition (delete its
// instance).
func (p *Provider) DeleteVolume(ctx context.Context, req *providerv1.DeleteVolumeRequest) (*providerv1.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "volume_id", id)
	if err != nil {
		return nil, err
	}
	err = p.update(ctx, cfg, func(t *tx) error {
		if in := t.volumeOwner(id); in != nil {
			return status.Errorf(codes.FailedPrecondition, "volume %s is attached to instance %s; delete the instance instead", id, in.ID)
		}
		if _, ok := t.st.Volumes[id]; !ok {
			return nil
		}
		if err := os.RemoveAll(cfg.volumeDir(id)); err != nil {
			return internal("delete volume %s: %v", id, err)
		}
		delete(t.st.Volumes, id)
		return t.save()
	})
	if err != nil {
		return nil, err
	}
	p.log.Info("volume deleted", "volume", id)
	return &providerv1.DeleteVolumeResponse{}, nil
}
