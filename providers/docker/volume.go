package docker

import (
	"context"
	"strconv"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// An instance's data volume is a Docker volume (one more per extra mount
// point, its parts) carrying the runtime's labels. DeleteInstance with
// keep_volume leaves it, and RunInstance with its volume_id mounts it in
// the replacement: how a recovered node keeps its data. Sizes are
// recorded, not enforced: Docker's local volumes have none.

// volumePart names the volume of an instance's i-th mount point.
func volumePart(vol string, i int) string {
	if i == 0 {
		return vol
	}
	return vol + "-" + strconv.Itoa(i+1)
}

// volumeFor decides a new instance's volume: a fresh one named after the
// instance, or the detached one the request names.
func (p *Provider) volumeFor(ctx context.Context, cfg *rtConfig, req *providerv1.RunInstanceRequest, name string, mps []string) (string, int32, error) {
	want := req.GetVolumeId()
	if want == "" {
		vol := volumeName(name, 0)
		return vol, req.GetVolumeGib(), p.ensureVolume(ctx, cfg, vol, kindVolume, "", req.GetVolumeGib(), req.GetLabels())
	}
	v, err := cfg.c.VolumeInspect(ctx, want, client.VolumeInspectOptions{})
	if err != nil || v.Volume.Labels[labelRuntime] != cfg.id || v.Volume.Labels[labelKind] != kindVolume {
		if err == nil || status.Code(engineErr(err)) == codes.NotFound {
			return "", 0, sdk.NotFound("volume", want)
		}
		return "", 0, engineErr(err)
	}
	if by, err := p.attachedTo(ctx, cfg, want); err != nil {
		return "", 0, err
	} else if by != "" {
		return "", 0, status.Errorf(codes.FailedPrecondition, "volume_id %s is attached to instance %s; delete it with keep_volume first", want, by)
	}
	size := atoi32(v.Volume.Labels[labelVolGiB])
	if g := req.GetVolumeGib(); g != 0 && g < size {
		return "", 0, status.Errorf(codes.InvalidArgument, "volume_gib %d is below the size of volume %s (%d GiB): a volume never shrinks", g, want, size)
	}
	return want, max(size, req.GetVolumeGib()), nil
}

// ensureVolume creates a volume, or finds it (Docker answers the existing
// one for a name). An instance's volumes also carry the caller's labels
// (cluster, role, node), so a cluster's volumes are listed by its label
// like its containers.
func (p *Provider) ensureVolume(ctx context.Context, cfg *rtConfig, name, kind, parent string, gib int32, caller map[string]string) error {
	labels := merge(caller, base(cfg, kind), map[string]string{labelVolGiB: strconv.Itoa(int(gib))})
	if parent != "" {
		labels[labelVolume] = parent
	}
	if _, err := cfg.c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Labels: labels}); err != nil {
		return engineErr(err)
	}
	return nil
}

// attachedTo is the instance whose container mounts the volume, or "".
func (p *Provider) attachedTo(ctx context.Context, cfg *rtConfig, vol string) (string, error) {
	list, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: owned(cfg, kindInstance).Add("label", labelVolume+"="+vol)})
	if err != nil {
		return "", engineErr(err)
	}
	for _, c := range list.Items {
		if len(c.Names) > 0 {
			return c.Names[0][1:], nil
		}
	}
	return "", nil
}

// removeVolume removes a volume and its parts; missing ones are removed
// already.
func (p *Provider) removeVolume(ctx context.Context, cfg *rtConfig, vol string) error {
	parts, err := cfg.c.VolumeList(ctx, client.VolumeListOptions{Filters: owned(cfg, kindVolumePart).Add("label", labelVolume+"="+vol)})
	if err != nil {
		return engineErr(err)
	}
	names := []string{vol}
	for _, v := range parts.Items {
		names = append(names, v.Name)
	}
	for _, n := range names {
		if _, err := cfg.c.VolumeRemove(ctx, n, client.VolumeRemoveOptions{}); err != nil {
			switch status.Code(engineErr(err)) {
			case codes.NotFound:
			case codes.Aborted:
				return status.Errorf(codes.FailedPrecondition, "volume %s is in use: %v", n, err)
			default:
				return engineErr(err)
			}
		}
	}
	return nil
}

// ListVolumes lists the runtime's data volumes, attached or not.
func (p *Provider) ListVolumes(ctx context.Context, req *providerv1.ListVolumesRequest) (*providerv1.ListVolumesResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	vols, err := cfg.c.VolumeList(ctx, client.VolumeListOptions{Filters: owned(cfg, kindVolume)})
	if err != nil {
		return nil, engineErr(err)
	}
	ins, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: owned(cfg, kindInstance)})
	if err != nil {
		return nil, engineErr(err)
	}
	by := map[string]string{}
	for _, c := range ins.Items {
		if len(c.Names) > 0 {
			by[c.Labels[labelVolume]] = c.Names[0][1:]
		}
	}
	out := &providerv1.ListVolumesResponse{}
	for _, v := range vols.Items {
		created := v.CreatedAt
		if t, err := time.Parse(time.RFC3339, created); err == nil {
			created = t.UTC().Format(time.RFC3339)
		}
		out.Volumes = append(out.Volumes, &providerv1.Volume{Id: v.Name, InstanceId: by[v.Name], SizeGib: atoi32(v.Labels[labelVolGiB]), CreatedAt: created})
	}
	return out, nil
}

// DeleteVolume removes a detached volume.
func (p *Provider) DeleteVolume(ctx context.Context, req *providerv1.DeleteVolumeRequest) (*providerv1.DeleteVolumeResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	if err := required("volume_id", id); err != nil {
		return nil, err
	}
	v, err := cfg.c.VolumeInspect(ctx, id, client.VolumeInspectOptions{})
	if err != nil {
		if status.Code(engineErr(err)) == codes.NotFound {
			return &providerv1.DeleteVolumeResponse{}, nil
		}
		return nil, engineErr(err)
	}
	if v.Volume.Labels[labelRuntime] != cfg.id || v.Volume.Labels[labelKind] != kindVolume {
		return &providerv1.DeleteVolumeResponse{}, nil
	}
	if by, err := p.attachedTo(ctx, cfg, id); err != nil {
		return nil, err
	} else if by != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is attached to instance %s: delete the instance first", id, by)
	}
	if err := p.removeVolume(ctx, cfg, id); err != nil {
		return nil, err
	}
	return &providerv1.DeleteVolumeResponse{}, nil
}
