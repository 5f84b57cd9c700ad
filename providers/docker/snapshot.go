package docker

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// A snapshot is a copy of an instance's volumes into volumes of its own,
// made by a short-lived helper container (busybox's cp -a, from the
// runtime's helper image), and recorded by a container that never runs:
// its labels hold what Docker volumes cannot (the instance, the name, the
// size, when), and it exists only once the copy succeeded, so a copy cut
// short is never taken for a snapshot. It outlives the instance.

const (
	kindSnapshot       = "snapshot"
	kindSnapshotVolume = "snapshot-volume"
	labelInstance      = labelPrefix + "instance"
	labelCreated       = labelPrefix + "created-at"
	labelSize          = labelPrefix + "size-bytes"
	labelParts         = labelPrefix + "parts"
)

func snapshotName(runtimeID, token string) string {
	return "hangar-snap-" + tokenHash(runtimeID, token)
}

// CreateSnapshot copies the instance's volumes; the token's snapshot is
// answered when it exists.
func (p *Provider) CreateSnapshot(ctx context.Context, req *providerv1.CreateSnapshotRequest) (*providerv1.Snapshot, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"idempotency_token", req.GetIdempotencyToken()}, {"instance_id", req.GetInstanceId()}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	name := snapshotName(cfg.id, req.GetIdempotencyToken())
	if sn, err := p.snapshot(ctx, cfg, name); err == nil {
		return sn, nil
	} else if status.Code(err) != codes.NotFound {
		return nil, err
	}
	in, err := p.owns(ctx, cfg, req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	vol := in.Config.Labels[labelVolume]
	parts := len(strings.Split(in.Config.Labels[labelMounts], ","))
	var mounts []mount.Mount
	for i := range parts {
		dst := volumePart(name+"-data", i)
		if err := p.ensureVolume(ctx, cfg, dst, kindSnapshotVolume, name, 0, nil); err != nil {
			return nil, err
		}
		mounts = append(mounts,
			mount.Mount{Type: mount.TypeVolume, Source: volumePart(vol, i), Target: fmt.Sprintf("/from/%d", i), ReadOnly: true},
			mount.Mount{Type: mount.TypeVolume, Source: dst, Target: fmt.Sprintf("/to/%d", i)})
	}
	out, err := p.helper(ctx, cfg, name+"-copy", mounts,
		`for d in /from/*; do n=${d#/from/}; cp -a "$d/." "/to/$n/" || exit 1; done; du -sk /to | cut -f1`)
	if err != nil {
		return nil, fmt.Errorf("snapshot instance %s: %w", req.GetInstanceId(), err)
	}
	kib, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	var recMounts []mount.Mount
	for i := range parts {
		recMounts = append(recMounts, mount.Mount{Type: mount.TypeVolume, Source: volumePart(name+"-data", i), Target: fmt.Sprintf("/snapshot/%d", i)})
	}
	_, err = cfg.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: cfg.helper, Entrypoint: []string{"/bin/true"}, Labels: merge(base(cfg, kindSnapshot), map[string]string{
			labelToken: req.GetIdempotencyToken(), labelInstance: req.GetInstanceId(), labelVolume: vol, labelName: req.GetName(),
			labelCreated: time.Now().UTC().Format(time.RFC3339), labelSize: strconv.FormatInt(kib*1024, 10), labelParts: strconv.Itoa(parts),
		})},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: recMounts},
	})
	if err != nil && status.Code(engineErr(err)) != codes.Aborted {
		return nil, engineErr(err)
	}
	p.log.Info("snapshot created", "snapshot_id", name, "instance_id", req.GetInstanceId(), "size_bytes", kib*1024)
	return p.snapshot(ctx, cfg, name)
}

// helper runs script in a throwaway container of the helper image with
// mounts, and answers its output; a non-zero exit is an error with it.
func (p *Provider) helper(ctx context.Context, cfg *rtConfig, name string, mounts []mount.Mount, script string) (string, error) {
	// A leftover of a call cut short.
	_, _ = cfg.c.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
	if _, err := cfg.c.ImageInspect(ctx, cfg.helper); err != nil {
		return "", status.Errorf(codes.FailedPrecondition, "helper image %q is not on the Docker Engine: build it (make images), or set runtime.config.%s", cfg.helper, keyHelperImage)
	}
	if _, err := cfg.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: cfg.helper, Entrypoint: []string{"/bin/sh", "-c", script}, Tty: true,
			Labels: base(cfg, "helper")},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: mounts},
	}); err != nil {
		return "", engineErr(err)
	}
	defer func() {
		_, _ = cfg.c.ContainerRemove(context.WithoutCancel(ctx), name, client.ContainerRemoveOptions{Force: true})
	}()
	if _, err := cfg.c.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
		return "", engineErr(err)
	}
	w := cfg.c.ContainerWait(ctx, name, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case r := <-w.Result:
		code = r.StatusCode
	case err := <-w.Error:
		return "", engineErr(err)
	}
	logs, err := cfg.c.ContainerLogs(ctx, name, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", engineErr(err)
	}
	defer logs.Close()
	b, _ := io.ReadAll(io.LimitReader(logs, 1<<16))
	if code != 0 {
		return "", status.Errorf(codes.Internal, "helper container exited %d: %s", code, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// snapshot answers the runtime's snapshot name.
func (p *Provider) snapshot(ctx context.Context, cfg *rtConfig, name string) (*providerv1.Snapshot, error) {
	ins, err := cfg.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		if status.Code(engineErr(err)) == codes.NotFound {
			return nil, sdk.NotFound("snapshot", name)
		}
		return nil, engineErr(err)
	}
	l := ins.Container.Config.Labels
	if l[labelRuntime] != cfg.id || l[labelKind] != kindSnapshot {
		return nil, sdk.NotFound("snapshot", name)
	}
	return snapshotOf(name, l), nil
}

func snapshotOf(name string, l map[string]string) *providerv1.Snapshot {
	size, _ := strconv.ParseInt(l[labelSize], 10, 64)
	return &providerv1.Snapshot{Id: name, InstanceId: l[labelInstance], VolumeId: l[labelVolume], Name: l[labelName], CreatedAt: l[labelCreated], SizeBytes: size}
}

// ListSnapshots lists the runtime's snapshots, or one instance's.
func (p *Provider) ListSnapshots(ctx context.Context, req *providerv1.ListSnapshotsRequest) (*providerv1.ListSnapshotsResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	f := owned(cfg, kindSnapshot)
	if id := req.GetInstanceId(); id != "" {
		f = f.Add("label", labelInstance+"="+id)
	}
	list, err := cfg.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, engineErr(err)
	}
	out := &providerv1.ListSnapshotsResponse{}
	for _, c := range list.Items {
		if len(c.Names) > 0 {
			out.Snapshots = append(out.Snapshots, snapshotOf(strings.TrimPrefix(c.Names[0], "/"), c.Labels))
		}
	}
	return out, nil
}

// DeleteSnapshot removes the record and the snapshot's volumes.
func (p *Provider) DeleteSnapshot(ctx context.Context, req *providerv1.DeleteSnapshotRequest) (*providerv1.DeleteSnapshotResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	id := req.GetSnapshotId()
	if err := required("snapshot_id", id); err != nil {
		return nil, err
	}
	if _, err := p.snapshot(ctx, cfg, id); status.Code(err) == codes.NotFound {
		return &providerv1.DeleteSnapshotResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if _, err := cfg.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && status.Code(engineErr(err)) != codes.NotFound {
		return nil, engineErr(err)
	}
	vols, err := cfg.c.VolumeList(ctx, client.VolumeListOptions{Filters: owned(cfg, kindSnapshotVolume).Add("label", labelVolume+"="+id)})
	if err != nil {
		return nil, engineErr(err)
	}
	for _, v := range vols.Items {
		if _, err := cfg.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && status.Code(engineErr(err)) != codes.NotFound {
			return nil, engineErr(err)
		}
	}
	return &providerv1.DeleteSnapshotResponse{}, nil
}

// RestoreSnapshot replaces the content of a stopped instance's volumes
// with the snapshot's.
func (p *Provider) RestoreSnapshot(ctx context.Context, req *providerv1.RestoreSnapshotRequest) (*providerv1.Instance, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"instance_id", req.GetInstanceId()}, {"snapshot_id", req.GetSnapshotId()}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	in, err := p.owns(ctx, cfg, req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	if in.State.Running {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %s is running: stop it before restoring a snapshot into it", req.GetInstanceId())
	}
	sn, err := cfg.c.ContainerInspect(ctx, req.GetSnapshotId(), client.ContainerInspectOptions{})
	if err != nil || sn.Container.Config.Labels[labelKind] != kindSnapshot || sn.Container.Config.Labels[labelRuntime] != cfg.id {
		return nil, sdk.NotFound("snapshot", req.GetSnapshotId())
	}
	parts := min(atoi32(sn.Container.Config.Labels[labelParts]), int32(len(strings.Split(in.Config.Labels[labelMounts], ","))))
	vol := in.Config.Labels[labelVolume]
	var mounts []mount.Mount
	for i := range int(parts) {
		mounts = append(mounts,
			mount.Mount{Type: mount.TypeVolume, Source: volumePart(req.GetSnapshotId()+"-data", i), Target: fmt.Sprintf("/from/%d", i), ReadOnly: true},
			mount.Mount{Type: mount.TypeVolume, Source: volumePart(vol, i), Target: fmt.Sprintf("/to/%d", i)})
	}
	if _, err := p.helper(ctx, cfg, "hangar-restore-"+tokenHash(cfg.id, req.GetInstanceId()), mounts,
		`for d in /from/*; do n=${d#/from/}; find "/to/$n" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a "$d/." "/to/$n/" || exit 1; done`); err != nil {
		return nil, fmt.Errorf("restore snapshot %s into instance %s: %w", req.GetSnapshotId(), req.GetInstanceId(), err)
	}
	return p.describe(ctx, cfg, req.GetInstanceId(), false)
}
