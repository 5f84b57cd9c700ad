package docker_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/dockertest"
	"github.com/hangarhq/hangar/providers/docker"
)

// fixture is an in-process provider, a runtime of the test's own with a
// network, and cleanup of everything labelled with the runtime.
type fixture struct {
	p   *docker.Provider
	dc  *client.Client
	rt  *providerv1.Runtime
	net string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dc := dockertest.Require(t)
	buildTestImage(t)
	p := docker.New(docker.Config{StopGrace: 2 * time.Second})
	t.Cleanup(func() { _ = p.Close() })
	f := &fixture{p: p, dc: dc, rt: runtimeFor(t)}
	t.Cleanup(func() {
		// Leave nothing, whatever the test did.
		ctx := context.Background()
		list, _ := p.ListInstances(ctx, &providerv1.ListInstancesRequest{Runtime: f.rt})
		for _, in := range list.GetInstances() {
			_, _ = p.DeleteInstance(ctx, &providerv1.DeleteInstanceRequest{Runtime: f.rt, InstanceId: in.GetId()})
		}
		snaps, _ := p.ListSnapshots(ctx, &providerv1.ListSnapshotsRequest{Runtime: f.rt})
		for _, s := range snaps.GetSnapshots() {
			_, _ = p.DeleteSnapshot(ctx, &providerv1.DeleteSnapshotRequest{Runtime: f.rt, SnapshotId: s.GetId()})
		}
		vols, _ := p.ListVolumes(ctx, &providerv1.ListVolumesRequest{Runtime: f.rt})
		for _, v := range vols.GetVolumes() {
			_, _ = p.DeleteVolume(ctx, &providerv1.DeleteVolumeRequest{Runtime: f.rt, VolumeId: v.GetId()})
		}
		if f.net != "" {
			_, _ = p.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: f.rt, NetworkId: f.net})
		}
		assertNothingLabelled(t, dc, f.rt.GetId())
	})
	n, err := p.CreateNetwork(t.Context(), &providerv1.CreateNetworkRequest{Runtime: f.rt, IdempotencyToken: "net", Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	f.net = n.GetId()
	return f
}

func (f *fixture) run(t *testing.T, req *providerv1.RunInstanceRequest) *providerv1.Instance {
	t.Helper()
	req.Runtime, req.NetworkId = f.rt, f.net
	if req.Image == "" {
		req.Image = testImage
	}
	in, err := f.p.RunInstance(t.Context(), req)
	if err != nil {
		t.Fatalf("RunInstance: %v", err)
	}
	return in
}

func (f *fixture) get(t *testing.T, id string) *providerv1.Instance {
	t.Helper()
	in, err := f.p.GetInstance(t.Context(), &providerv1.GetInstanceRequest{Runtime: f.rt, InstanceId: id})
	if err != nil {
		t.Fatalf("GetInstance %s: %v", id, err)
	}
	return in
}

func dexec(t *testing.T, container, script string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", container, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("docker exec %s %q: %v\n%s", container, script, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestContainerShape checks what a cloud author would check of a VM: the
// limits, the volumes at the mount points, the labels, the address, and a
// network that leads nowhere but to its own containers.
func TestContainerShape(t *testing.T) {
	f := newFixture(t)
	in := f.run(t, &providerv1.RunInstanceRequest{IdempotencyToken: "shape", Name: "node-1", Cpu: 1, MemoryMib: 64, VolumeGib: 3,
		MountPoints: []string{"/data", "/logs"}, Labels: map[string]string{"hangar/cluster": "cl-1", "hangar/node": "node-1"}})
	ins, err := f.dc.ContainerInspect(t.Context(), in.GetId(), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ins.Container
	if c.HostConfig.NanoCPUs != 1e9 || c.HostConfig.Memory != 64<<20 {
		t.Errorf("limits: NanoCPUs %d Memory %d, want 1e9 and 64 MiB", c.HostConfig.NanoCPUs, c.HostConfig.Memory)
	}
	mounts := map[string]string{}
	for _, m := range c.Mounts {
		mounts[m.Destination] = m.Name
	}
	if mounts["/data"] != in.GetVolumeId() || mounts["/logs"] == "" || mounts["/logs"] == mounts["/data"] {
		t.Errorf("mounts %v: want volume %s at /data and another at /logs", mounts, in.GetVolumeId())
	}
	if c.Config.Labels["hangar/cluster"] != "cl-1" || c.Config.Labels["hangar/node"] != "node-1" || c.Config.Labels["hangar.docker/runtime"] != f.rt.GetId() {
		t.Errorf("labels %v lack the caller's and the runtime's", c.Config.Labels)
	}
	if got := in.GetLabels(); len(got) != 2 || got["hangar/cluster"] != "cl-1" {
		t.Errorf("instance labels %v, want exactly the caller's", got)
	}
	for _, v := range []string{mounts["/data"], mounts["/logs"]} {
		vi, err := f.dc.VolumeInspect(t.Context(), v, client.VolumeInspectOptions{})
		if err != nil || vi.Volume.Labels["hangar/cluster"] != "cl-1" || vi.Volume.Labels["hangar/node"] != "node-1" {
			t.Errorf("volume %s: labels %v (%v), want the instance's cluster and node", v, vi.Volume.Labels, err)
		}
	}
	if got := c.NetworkSettings.Networks[f.net]; got == nil || got.IPAddress.String() != in.GetAddress() {
		t.Errorf("container's address on %s = %v, instance says %s", f.net, got, in.GetAddress())
	}
	nw, err := f.dc.NetworkInspect(t.Context(), f.net, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !nw.Network.Internal || nw.Network.Options["com.docker.network.bridge.inhibit_ipv4"] != "true" {
		t.Errorf("network %s: internal %v, options %v; want internal and no host address", f.net, nw.Network.Internal, nw.Network.Options)
	}
	if out := dexec(t, in.GetId(), "echo x > /data/f && echo y > /logs/g && cat /data/f /logs/g"); out != "x\ny" {
		t.Errorf("writing the volumes: %q", out)
	}
	// Live resize changes the limits of the running container.
	if _, err := f.p.ResizeInstance(t.Context(), &providerv1.ResizeInstanceRequest{Runtime: f.rt, InstanceId: in.GetId(), MemoryMib: 128}); err != nil {
		t.Fatal(err)
	}
	ins, _ = f.dc.ContainerInspect(t.Context(), in.GetId(), client.ContainerInspectOptions{})
	if ins.Container.HostConfig.Memory != 128<<20 || !ins.Container.State.Running {
		t.Errorf("after resize: Memory %d running %v, want 128 MiB and running", ins.Container.HostConfig.Memory, ins.Container.State.Running)
	}
	// Bad input names the field.
	for _, tc := range []struct {
		req   *providerv1.RunInstanceRequest
		field string
	}{
		{&providerv1.RunInstanceRequest{IdempotencyToken: "bad-1", MountPoints: []string{"data"}}, "mount_points[0]"},
		{&providerv1.RunInstanceRequest{IdempotencyToken: "bad-2", Image: "no/such:image"}, "image"},
		{&providerv1.RunInstanceRequest{IdempotencyToken: "bad-3", Labels: map[string]string{"hangar.docker/kind": "x"}}, "labels"},
		{&providerv1.RunInstanceRequest{IdempotencyToken: "bad-4", MemoryMib: 2}, "memory_mib"},
	} {
		tc.req.Runtime, tc.req.NetworkId = f.rt, f.net
		if tc.req.Image == "" {
			tc.req.Image = testImage
		}
		_, err := f.p.RunInstance(t.Context(), tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("RunInstance with bad %s: %v; want InvalidArgument naming it", tc.field, err)
		}
	}
}

// TestExitedIsLostStoppedIsStopped: a container that exits by itself is
// LOST and the token's RunInstance starts it again (booted); one stopped
// through the provider is STOPPED and stays so.
func TestExitedIsLostStoppedIsStopped(t *testing.T) {
	f := newFixture(t)
	req := &providerv1.RunInstanceRequest{IdempotencyToken: "life", Name: "n"}
	in := f.run(t, req)
	if out, err := exec.Command("docker", "kill", in.GetId()).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	if got := f.get(t, in.GetId()).GetState(); got != providerv1.InstanceState_INSTANCE_STATE_LOST {
		t.Fatalf("after docker kill: %v, want LOST", got)
	}
	again := f.run(t, req)
	if again.GetId() != in.GetId() || again.GetAddress() != in.GetAddress() || !again.GetBooted() || again.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("RunInstance of the lost token: %v; want %s at %s RUNNING booted", again, in.GetId(), in.GetAddress())
	}
	if _, err := f.p.StopInstance(t.Context(), &providerv1.StopInstanceRequest{Runtime: f.rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	if got := f.run(t, req).GetState(); got != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		t.Fatalf("RunInstance of a token stopped on purpose: %v, want it left STOPPED", got)
	}
}

// TestSnapshotRestoresContent: what a restore puts back is what the
// volume held when the snapshot was taken.
func TestSnapshotRestoresContent(t *testing.T) {
	f := newFixture(t)
	in := f.run(t, &providerv1.RunInstanceRequest{IdempotencyToken: "snap", Name: "n", MountPoints: []string{"/data"}})
	dexec(t, in.GetId(), "mkdir -p /data/sub && echo before > /data/sub/f")
	sn, err := f.p.CreateSnapshot(t.Context(), &providerv1.CreateSnapshotRequest{Runtime: f.rt, IdempotencyToken: "s1", InstanceId: in.GetId(), Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if sn.GetSizeBytes() <= 0 {
		t.Errorf("snapshot size %d, want the copy's", sn.GetSizeBytes())
	}
	dexec(t, in.GetId(), "echo after > /data/sub/f && echo new > /data/new")
	if _, err := f.p.StopInstance(t.Context(), &providerv1.StopInstanceRequest{Runtime: f.rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.RestoreSnapshot(t.Context(), &providerv1.RestoreSnapshotRequest{Runtime: f.rt, IdempotencyToken: "r1", InstanceId: in.GetId(), SnapshotId: sn.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.StartInstance(t.Context(), &providerv1.StartInstanceRequest{Runtime: f.rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	if out := dexec(t, in.GetId(), "cat /data/sub/f; ls /data"); out != "before\nsub" {
		t.Errorf("after the restore: %q, want the snapshot's content only", out)
	}
	// The snapshot outlives the instance.
	if _, err := f.p.DeleteInstance(t.Context(), &providerv1.DeleteInstanceRequest{Runtime: f.rt, InstanceId: in.GetId()}); err != nil {
		t.Fatal(err)
	}
	list, err := f.p.ListSnapshots(t.Context(), &providerv1.ListSnapshotsRequest{Runtime: f.rt})
	if err != nil || len(list.GetSnapshots()) != 1 {
		t.Fatalf("snapshots after the instance's delete: %v %v", list, err)
	}
}

// TestCreatedWithoutRecordConverges re-enacts a RunInstance cut short (the
// plugin killed with pilot) right after the container was created, before
// the user data and the record were copied in: the retried call with the
// token finishes the job instead of failing.
func TestCreatedWithoutRecordConverges(t *testing.T) {
	f := newFixture(t)
	req := &providerv1.RunInstanceRequest{IdempotencyToken: "cut-short", Name: "n", Cpu: 1, MemoryMib: 64, UserData: []byte(`{"x":1}`)}
	in := f.run(t, req)
	ins, err := f.dc.ContainerInspect(t.Context(), in.GetId(), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "rm", "-f", in.GetId()).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v %s", err, out)
	}
	// The container as the cut-short call left it: created, nothing
	// copied in.
	args := []string{"create", "--name", in.GetId(), "--network", f.net, "--ip", in.GetAddress(), "--entrypoint", ins.Container.Path}
	for k, v := range ins.Container.Config.Labels {
		args = append(args, "--label", k+"="+v)
	}
	args = append(args, ins.Container.Config.Image)
	args = append(args, ins.Container.Args...)
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v %s", err, out)
	}
	if got := f.get(t, in.GetId()); got.GetState() != providerv1.InstanceState_INSTANCE_STATE_PENDING || got.GetCpu() != 1 || got.GetMemoryMib() != 64 {
		t.Errorf("the cut-short instance: %v, want PENDING with the cpu and memory it was created with", got)
	}
	again := f.run(t, req)
	if again.GetId() != in.GetId() || again.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		t.Fatalf("RunInstance retried after the cut: %v, want %s RUNNING", again, in.GetId())
	}
	if out := dexec(t, in.GetId(), "cat /hangar/userdata.json"); out != `{"x":1}` {
		t.Errorf("user data in the container: %q", out)
	}
}
