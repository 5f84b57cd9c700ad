package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

func stopInstance(t *testing.T, p *Provider, rt *providerv1.Runtime, id string, force bool) {
	t.Helper()
	in, err := p.StopInstance(t.Context(), &providerv1.StopInstanceRequest{Runtime: rt, InstanceId: id, IdempotencyToken: "stop-" + id, Force: force})
	if err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		t.Fatalf("StopInstance %s: %v, %v", id, in, err)
	}
}

func rootFile(rt *providerv1.Runtime, id, name string) string {
	return filepath.Join(rt.Config[keyRootDir], "instances", id, rootDir, name)
}

func TestInfoDeclaresLifecycleCapabilities(t *testing.T) {
	p := newProvider(t, Config{})
	info, err := p.Info(t.Context(), &providerv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	caps := sdk.CapabilitiesOf(info)
	if err := caps.Require("test", sdk.CapStopStart, sdk.CapResize, sdk.CapVolumes, sdk.CapSnapshots); err != nil {
		t.Fatal(err)
	}
	if caps.LiveResize {
		t.Error("local declares live_resize; it resizes stopped instances only")
	}
}

func TestForcedStopKillsAtOnce(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, stubbornDrone, fakeFrontgate))
	p := newProvider(t, Config{KillGrace: 10 * time.Second})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	start := time.Now()
	stopInstance(t, p, rt, in.GetId(), true)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("forced stop of a process ignoring SIGTERM took %v", d)
	}
}

func TestResizeInstance(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	req := runReq(rt, n.GetId(), "i", "drone")
	req.Cpu, req.MemoryMib, req.VolumeGib = 1, 512, 10
	in, err := p.RunInstance(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer mustDelete(t, p, rt, in.GetId())
	if in.GetCpu() != 1 || in.GetMemoryMib() != 512 || in.GetVolumeGib() != 10 || in.GetVolumeId() == "" {
		t.Fatalf("RunInstance = %v, want cpu 1, memory 512, volume 10 and a volume id", in)
	}
	resize := func(cpu, mem, vol int32) (*providerv1.Instance, error) {
		return p.ResizeInstance(t.Context(), &providerv1.ResizeInstanceRequest{Runtime: rt, InstanceId: in.GetId(), IdempotencyToken: "r", Cpu: cpu, MemoryMib: mem, VolumeGib: vol})
	}
	_, err = resize(2, 0, 0)
	wantCode(t, err, codes.FailedPrecondition, "stop it first")
	if _, err := resize(1, 512, 10); err != nil {
		t.Fatalf("a resize changing nothing on a running instance: %v", err)
	}
	stopInstance(t, p, rt, in.GetId(), false)
	for range 2 {
		got, err := resize(2, 0, 20)
		if err != nil || got.GetCpu() != 2 || got.GetMemoryMib() != 512 || got.GetVolumeGib() != 20 || got.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			t.Fatalf("resize: %v, %v", got, err)
		}
	}
	_, err = resize(0, 0, 5)
	wantCode(t, err, codes.InvalidArgument, "volume_gib")
	_, err = resize(-1, 0, 0)
	wantCode(t, err, codes.InvalidArgument, "cpu")
	_, err = p.ResizeInstance(t.Context(), &providerv1.ResizeInstanceRequest{Runtime: rt, InstanceId: "i-missing", Cpu: 1})
	wantCode(t, err, codes.NotFound, "i-missing")
	if got, err := p.GetInstance(t.Context(), &providerv1.GetInstanceRequest{Runtime: rt, InstanceId: in.GetId()}); err != nil || got.GetCpu() != 2 || got.GetVolumeGib() != 20 {
		t.Fatalf("GetInstance after resize: %v, %v", got, err)
	}
}

// A node replaced keeping its volume: the data survives the deletion and
// comes back as the new instance's root.
func TestKeepVolumeAndReuse(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	ctx := t.Context()
	n := mustNetwork(t, p, rt, "n")
	req := runReq(rt, n.GetId(), "old", "drone")
	req.VolumeGib = 10
	old, err := p.RunInstance(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(rootFile(rt, old.GetId(), "data/db")), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootFile(rt, old.GetId(), "data/db"), []byte("rows"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: old.GetId(), KeepVolume: true}); err != nil {
			t.Fatal(err)
		}
	}
	vols, err := p.ListVolumes(ctx, &providerv1.ListVolumesRequest{Runtime: rt})
	if err != nil || len(vols.GetVolumes()) != 1 || vols.GetVolumes()[0].GetId() != old.GetVolumeId() || vols.GetVolumes()[0].GetInstanceId() != "" || vols.GetVolumes()[0].GetSizeGib() != 10 {
		t.Fatalf("ListVolumes after delete with keep_volume: %v, %v; want %s detached, 10 GiB", vols, err, old.GetVolumeId())
	}

	req = runReq(rt, n.GetId(), "new", "drone")
	req.VolumeId, req.VolumeGib = old.GetVolumeId(), 5
	_, err = p.RunInstance(ctx, req)
	wantCode(t, err, codes.InvalidArgument, "volume_gib")
	req.VolumeId = "vol-missing"
	req.VolumeGib = 0
	_, err = p.RunInstance(ctx, req)
	wantCode(t, err, codes.NotFound, "vol-missing")
	req.VolumeId = old.GetVolumeId()
	repl, err := p.RunInstance(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer mustDelete(t, p, rt, repl.GetId())
	if repl.GetVolumeId() != old.GetVolumeId() || repl.GetVolumeGib() != 10 {
		t.Errorf("replacement = %v, want volume %s of 10 GiB", repl, old.GetVolumeId())
	}
	if b, err := os.ReadFile(rootFile(rt, repl.GetId(), "data/db")); err != nil || string(b) != "rows" {
		t.Fatalf("the replacement does not have the kept data: %q, %v", b, err)
	}
	if again, err := p.RunInstance(ctx, req); err != nil || again.GetId() != repl.GetId() {
		t.Fatalf("retried RunInstance with the volume: %v, %v", again, err)
	}
	other := runReq(rt, n.GetId(), "other", "drone")
	other.VolumeId = old.GetVolumeId()
	_, err = p.RunInstance(ctx, other)
	wantCode(t, err, codes.FailedPrecondition, repl.GetId())
	_, err = p.DeleteVolume(ctx, &providerv1.DeleteVolumeRequest{Runtime: rt, VolumeId: old.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition, repl.GetId())

	// Kept again, then deleted for good (twice).
	if _, err := p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: repl.GetId(), KeepVolume: true}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := p.DeleteVolume(ctx, &providerv1.DeleteVolumeRequest{Runtime: rt, VolumeId: old.GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
	if vols, err := p.ListVolumes(ctx, &providerv1.ListVolumesRequest{Runtime: rt}); err != nil || len(vols.GetVolumes()) != 0 {
		t.Fatalf("ListVolumes after DeleteVolume: %v, %v", vols, err)
	}
	if _, err := os.Stat(filepath.Join(rt.Config[keyRootDir], "volumes", old.GetVolumeId())); !os.IsNotExist(err) {
		t.Errorf("volume directory still there: %v", err)
	}
}

// A start that fails after attaching a kept volume gives it back.
func TestFailedStartGivesTheVolumeBack(t *testing.T) {
	bin := writeBinDir(t, fakeDrone, fakeFrontgate)
	rt := newRuntime(t, bin)
	p := newProvider(t, Config{})
	ctx := t.Context()
	n := mustNetwork(t, p, rt, "n")
	old := mustRun(t, p, rt, n.GetId(), "old", "drone")
	if err := os.WriteFile(rootFile(rt, old.GetId(), "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: rt, InstanceId: old.GetId(), KeepVolume: true}); err != nil {
		t.Fatal(err)
	}
	// Not executable by anyone: the spawn fails.
	if err := os.WriteFile(filepath.Join(bin, droneBinary), []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	req := runReq(rt, n.GetId(), "new", "drone")
	req.VolumeId = old.GetVolumeId()
	if in, err := p.RunInstance(ctx, req); err == nil {
		mustDelete(t, p, rt, in.GetId())
		t.Skip("the broken drone started; cannot provoke a failed start here")
	}
	vols, err := p.ListVolumes(ctx, &providerv1.ListVolumesRequest{Runtime: rt})
	if err != nil || len(vols.GetVolumes()) != 1 || vols.GetVolumes()[0].GetInstanceId() != "" {
		t.Fatalf("after a failed start: %v, %v; want the volume detached again", vols, err)
	}
	if b, err := os.ReadFile(filepath.Join(rt.Config[keyRootDir], "volumes", old.GetVolumeId(), "f")); err != nil || string(b) != "x" {
		t.Fatalf("volume data after a failed start: %q, %v", b, err)
	}
}

func TestSnapshots(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	ctx := context.Background()
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	if err := os.MkdirAll(rootFile(rt, in.GetId(), "d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"d/e/f": "one", "g": "two"} {
		if err := os.WriteFile(rootFile(rt, in.GetId(), name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Links are kept as links and never followed out of the volume.
	if err := os.Symlink("/etc", rootFile(rt, in.GetId(), "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d/e/f", rootFile(rt, in.GetId(), "link")); err != nil {
		t.Fatal(err)
	}

	creq := &providerv1.CreateSnapshotRequest{Runtime: rt, IdempotencyToken: "s1", InstanceId: in.GetId(), Name: "backup"}
	snap, err := p.CreateSnapshot(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetId() == "" || snap.GetVolumeId() != in.GetVolumeId() || snap.GetInstanceId() != in.GetId() || snap.GetSizeBytes() <= 0 || snap.GetName() != "backup" {
		t.Fatalf("CreateSnapshot = %v", snap)
	}
	if again, err := p.CreateSnapshot(ctx, creq); err != nil || again.GetId() != snap.GetId() {
		t.Fatalf("CreateSnapshot retried: %v, %v; want %s", again, err, snap.GetId())
	}
	bad := proto.Clone(creq).(*providerv1.CreateSnapshotRequest)
	bad.Name = "other"
	_, err = p.CreateSnapshot(ctx, bad)
	wantCode(t, err, codes.InvalidArgument, "idempotency_token")
	_, err = p.CreateSnapshot(ctx, &providerv1.CreateSnapshotRequest{Runtime: rt, IdempotencyToken: "s2", InstanceId: "i-missing"})
	wantCode(t, err, codes.NotFound, "i-missing")
	list, err := p.ListSnapshots(ctx, &providerv1.ListSnapshotsRequest{Runtime: rt, InstanceId: in.GetId()})
	if err != nil || len(list.GetSnapshots()) != 1 || list.GetSnapshots()[0].GetId() != snap.GetId() {
		t.Fatalf("ListSnapshots: %v, %v", list, err)
	}

	// The instance's data changes; restoring brings the snapshot's back.
	_ = os.Remove(rootFile(rt, in.GetId(), "g"))
	if err := os.WriteFile(rootFile(rt, in.GetId(), "new"), []byte("later"), 0o600); err != nil {
		t.Fatal(err)
	}
	rreq := &providerv1.RestoreSnapshotRequest{Runtime: rt, IdempotencyToken: "r1", InstanceId: in.GetId(), SnapshotId: snap.GetId()}
	_, err = p.RestoreSnapshot(ctx, rreq)
	wantCode(t, err, codes.FailedPrecondition, "stop it first")
	stopInstance(t, p, rt, in.GetId(), false)
	for range 2 {
		if got, err := p.RestoreSnapshot(ctx, rreq); err != nil || got.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			t.Fatalf("RestoreSnapshot: %v, %v", got, err)
		}
	}
	for name, body := range map[string]string{"d/e/f": "one", "g": "two", "link": "one"} {
		if b, err := os.ReadFile(rootFile(rt, in.GetId(), name)); err != nil || string(b) != body {
			t.Errorf("restored %s = %q, %v; want %q", name, b, err, body)
		}
	}
	if fi, err := os.Stat(rootFile(rt, in.GetId(), "g")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored g mode: %v, %v", fi, err)
	}
	if target, err := os.Readlink(rootFile(rt, in.GetId(), "etc")); err != nil || target != "/etc" {
		t.Errorf("restored link etc -> %q, %v", target, err)
	}
	if _, err := os.Lstat(rootFile(rt, in.GetId(), "new")); !os.IsNotExist(err) {
		t.Errorf("a file created after the snapshot survived the restore: %v", err)
	}
	if _, err := p.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: rt, InstanceId: in.GetId(), IdempotencyToken: "start"}); err != nil {
		t.Fatal(err)
	}
	_, err = p.RestoreSnapshot(ctx, &providerv1.RestoreSnapshotRequest{Runtime: rt, IdempotencyToken: "r2", InstanceId: in.GetId(), SnapshotId: "snap-missing"})
	wantCode(t, err, codes.NotFound, "snap-missing")

	for range 2 {
		if _, err := p.DeleteSnapshot(ctx, &providerv1.DeleteSnapshotRequest{Runtime: rt, SnapshotId: snap.GetId()}); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := p.ListSnapshots(ctx, &providerv1.ListSnapshotsRequest{Runtime: rt}); err != nil || len(list.GetSnapshots()) != 0 {
		t.Fatalf("ListSnapshots after delete: %v, %v", list, err)
	}
	_, err = p.CreateSnapshot(ctx, creq)
	wantCode(t, err, codes.FailedPrecondition, "deleted")
	if _, err := os.Stat(filepath.Join(rt.Config[keyRootDir], "snapshots", snap.GetId()+".tar.gz")); !os.IsNotExist(err) {
		t.Errorf("snapshot archive still there: %v", err)
	}
}

// A volume swapped for a link is not archived through it.
func TestSnapshotRefusesARootLink(t *testing.T) {
	rt := newRuntime(t, writeBinDir(t, fakeDrone, fakeFrontgate))
	p := newProvider(t, Config{})
	n := mustNetwork(t, p, rt, "n")
	in := mustRun(t, p, rt, n.GetId(), "i", "drone")
	defer mustDelete(t, p, rt, in.GetId())
	root := filepath.Join(rt.Config[keyRootDir], "instances", in.GetId(), rootDir)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", root); err != nil {
		t.Fatal(err)
	}
	_, err := p.CreateSnapshot(t.Context(), &providerv1.CreateSnapshotRequest{Runtime: rt, IdempotencyToken: "s", InstanceId: in.GetId()})
	if status.Code(err) != codes.Internal {
		t.Fatalf("snapshot of a volume that is a link to /etc: %v, want Internal", err)
	}
}
