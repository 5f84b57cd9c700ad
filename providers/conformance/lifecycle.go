package conformance

import (
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// The lifecycle checks: stop/start, resize, volumes and snapshots, each run
// only when the provider declares its capability; a call of a capability
// it does not declare must answer Unimplemented (sdk.Unsupported, or the
// generated base's) or FailedPrecondition, which pilot reports as the
// capability missing.

// missing is a fake id of each kind, which no provider may know.
const missing = "conformance-missing"

func (s *suite) capabilities(t T) {
	resp, err := s.c.Info(ctx(t), &providerv1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	s.caps = sdk.CapabilitiesOf(resp)
	if s.caps.LiveResize && !s.caps.Resize {
		t.Errorf("Info declares %s without %s", sdk.CapLiveResize, sdk.CapResize)
	}
	t.Logf("capabilities: stop_start=%v resize=%v live_resize=%v volumes=%v snapshots=%v",
		s.caps.StopStart, s.caps.Resize, s.caps.LiveResize, s.caps.Volumes, s.caps.Snapshots)
}

// capabilityMissing calls one method of each capability the provider does
// not declare.
func (s *suite) capabilityMissing(t T) {
	c := ctx(t)
	id := s.inst.GetId()
	calls := []struct {
		capability string
		call       func() error
	}{
		{sdk.CapStopStart, func() error {
			_, err := s.c.StopInstance(c, &providerv1.StopInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-nocap-stop"})
			return err
		}},
		{sdk.CapResize, func() error {
			_, err := s.c.ResizeInstance(c, &providerv1.ResizeInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-nocap-resize", Cpu: 1})
			return err
		}},
		{sdk.CapVolumes, func() error {
			_, err := s.c.ListVolumes(c, &providerv1.ListVolumesRequest{Runtime: s.rt})
			return err
		}},
		{sdk.CapSnapshots, func() error {
			_, err := s.c.ListSnapshots(c, &providerv1.ListSnapshotsRequest{Runtime: s.rt})
			return err
		}},
		{sdk.CapReservedAddresses, func() error {
			_, err := s.c.ReserveAddress(c, &providerv1.ReserveAddressRequest{Runtime: s.rt, NetworkId: s.netID, IdempotencyToken: s.prefix + "-nocap-vip"})
			return err
		}},
	}
	checked := 0
	for _, cl := range calls {
		if s.caps.Has(cl.capability) {
			continue
		}
		checked++
		err := cl.call()
		wantCode(t, "a call of undeclared capability "+cl.capability, err, codes.Unimplemented, codes.FailedPrecondition)
		var ce *sdk.CapabilityMissingError
		if err != nil && !errors.As(sdk.CapabilityError(err, s.caps.Provider, cl.capability, "conformance"), &ce) && !errors.Is(err, sdk.ErrCapabilityMissing) {
			// FailedPrecondition is allowed but says less: pilot checks
			// Info before calling anyway.
			t.Logf("%s: answered %v rather than Unimplemented", cl.capability, err)
		}
	}
	if checked == 0 {
		t.Skip("the provider declares every lifecycle capability")
	}
}

// unknownIDs: what names an unknown instance, snapshot or volume is
// NotFound, and deleting one succeeds.
func (s *suite) unknownIDs(t T) {
	c := ctx(t)
	_, err := s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: "i-" + missing})
	wantCode(t, "GetInstance of an unknown instance", err, codes.NotFound)
	if _, err := s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: "i-" + missing}); err != nil {
		t.Errorf("DeleteInstance of an unknown instance: %v", err)
	}
	if s.caps.StopStart {
		_, err := s.c.StartInstance(c, &providerv1.StartInstanceRequest{Runtime: s.rt, InstanceId: "i-" + missing, IdempotencyToken: s.prefix + "-start-missing"})
		wantCode(t, "StartInstance of an unknown instance", err, codes.NotFound)
	}
	if s.caps.Resize {
		_, err := s.c.ResizeInstance(c, &providerv1.ResizeInstanceRequest{Runtime: s.rt, InstanceId: "i-" + missing, IdempotencyToken: s.prefix + "-resize-missing", Cpu: 1})
		wantCode(t, "ResizeInstance of an unknown instance", err, codes.NotFound)
	}
	if s.caps.Snapshots {
		_, err := s.c.CreateSnapshot(c, &providerv1.CreateSnapshotRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-snap-missing", InstanceId: "i-" + missing})
		wantCode(t, "CreateSnapshot of an unknown instance", err, codes.NotFound)
		_, err = s.c.RestoreSnapshot(c, &providerv1.RestoreSnapshotRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-restore-missing", InstanceId: s.inst.GetId(), SnapshotId: "snap-" + missing})
		wantCode(t, "RestoreSnapshot of an unknown snapshot", err, codes.NotFound, codes.FailedPrecondition)
		if _, err := s.c.DeleteSnapshot(c, &providerv1.DeleteSnapshotRequest{Runtime: s.rt, SnapshotId: "snap-" + missing}); err != nil {
			t.Errorf("DeleteSnapshot of an unknown snapshot: %v", err)
		}
	}
	if s.caps.Volumes {
		if _, err := s.c.DeleteVolume(c, &providerv1.DeleteVolumeRequest{Runtime: s.rt, VolumeId: "vol-" + missing}); err != nil {
			t.Errorf("DeleteVolume of an unknown volume: %v", err)
		}
		req := &providerv1.RunInstanceRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-vol-missing", NetworkId: s.netID, Name: s.prefix + "-vol-missing", Image: s.image, VolumeId: "vol-" + missing}
		in, err := s.c.RunInstance(c, req)
		if err == nil {
			s.track(in.GetId())
		}
		wantCode(t, "RunInstance with an unknown volume_id", err, codes.NotFound)
	}
}

func (s *suite) track(instanceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances = append(s.instances, instanceID)
}

// waitState polls an instance until it is in state want.
func (s *suite) waitState(t T, id string, want providerv1.InstanceState) *providerv1.Instance {
	t.Helper()
	c := ctx(t)
	deadline := time.Now().Add(runningTimeout)
	for {
		in, err := s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: id})
		if err != nil {
			t.Fatalf("GetInstance %s: %v", id, err)
		}
		if in.GetState() == want {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %v after %v, want %v", id, in.GetState(), runningTimeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *suite) stop(t T, id string) {
	t.Helper()
	in, err := s.c.StopInstance(ctx(t), &providerv1.StopInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-stop-" + id})
	if err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		t.Fatalf("StopInstance %s: %v, %v; want STOPPED", id, in, err)
	}
}

func (s *suite) start(t T, id string) {
	t.Helper()
	if _, err := s.c.StartInstance(ctx(t), &providerv1.StartInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-start-" + id}); err != nil {
		t.Fatalf("StartInstance %s: %v", id, err)
	}
	s.waitState(t, id, providerv1.InstanceState_INSTANCE_STATE_RUNNING)
}

// resize grows cpu, memory and volume (stopped first unless the provider
// resizes live), twice with one token, and checks a volume never shrinks.
func (s *suite) resize(t T) {
	if !s.caps.Resize {
		t.Skip("the provider does not declare resize")
	}
	c := ctx(t)
	id := s.inst.GetId()
	cur := s.waitState(t, id, providerv1.InstanceState_INSTANCE_STATE_RUNNING)
	req := &providerv1.ResizeInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-resize",
		Cpu: cur.GetCpu() + 1, MemoryMib: cur.GetMemoryMib() + 256, VolumeGib: cur.GetVolumeGib() + 2}
	stopped := false
	if !s.caps.LiveResize {
		_, err := s.c.ResizeInstance(c, req)
		wantCode(t, "ResizeInstance of a running instance without live_resize", err, codes.FailedPrecondition)
		if !s.caps.StopStart {
			t.Skip("resize needs a stopped instance, and the provider cannot stop one")
		}
		s.stop(t, id)
		stopped = true
	}
	for i := range 2 {
		in, err := s.c.ResizeInstance(c, req)
		if err != nil {
			t.Fatalf("ResizeInstance (call %d): %v", i+1, err)
		}
		if in.GetCpu() != req.GetCpu() || in.GetMemoryMib() != req.GetMemoryMib() || in.GetVolumeGib() != req.GetVolumeGib() {
			t.Errorf("ResizeInstance (call %d) = cpu %d memory %d volume %d, want %d %d %d", i+1,
				in.GetCpu(), in.GetMemoryMib(), in.GetVolumeGib(), req.GetCpu(), req.GetMemoryMib(), req.GetVolumeGib())
		}
	}
	shrink := &providerv1.ResizeInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-shrink", VolumeGib: req.GetVolumeGib() - 1}
	_, err := s.c.ResizeInstance(c, shrink)
	wantCode(t, "ResizeInstance shrinking the volume", err, codes.InvalidArgument)
	if err != nil && !containsField(err, "volume_gib") {
		t.Errorf("ResizeInstance shrinking the volume: %v does not name volume_gib", err)
	}
	if got, err := s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: id}); err != nil || got.GetCpu() != req.GetCpu() || got.GetVolumeGib() != req.GetVolumeGib() {
		t.Errorf("GetInstance after resize = %v, %v", got, err)
	}
	if stopped {
		s.start(t, id)
	}
}

// snapshots: create twice with one token (one snapshot), list, restore to
// the stopped instance, delete twice.
func (s *suite) snapshots(t T) {
	if !s.caps.Snapshots {
		t.Skip("the provider does not declare snapshots")
	}
	c := ctx(t)
	id := s.inst.GetId()
	req := &providerv1.CreateSnapshotRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-snap-1", InstanceId: id, Name: s.prefix + "-snap"}
	first, err := s.c.CreateSnapshot(c, req)
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	s.mu.Lock()
	s.snapIDs = append(s.snapIDs, first.GetId())
	s.mu.Unlock()
	if first.GetId() == "" || first.GetInstanceId() != id || first.GetCreatedAt() == "" {
		t.Errorf("CreateSnapshot = %v, want an id, instance_id %s and created_at", first, id)
	}
	if _, err := time.Parse(time.RFC3339, first.GetCreatedAt()); err != nil {
		t.Errorf("CreateSnapshot created_at %q is not RFC 3339: %v", first.GetCreatedAt(), err)
	}
	if s.caps.Volumes && first.GetVolumeId() != s.inst.GetVolumeId() && s.inst.GetVolumeId() != "" {
		t.Errorf("snapshot of volume %s, the instance's is %s", first.GetVolumeId(), s.inst.GetVolumeId())
	}
	again, err := s.c.CreateSnapshot(c, req)
	if err != nil || again.GetId() != first.GetId() {
		t.Fatalf("CreateSnapshot retried with the same token: %v, %v; want %s", again, err, first.GetId())
	}
	list, err := s.c.ListSnapshots(c, &providerv1.ListSnapshotsRequest{Runtime: s.rt, InstanceId: id})
	if err != nil {
		t.Fatalf("ListSnapshots: %v", err)
	}
	if n := len(list.GetSnapshots()); n != 1 || list.GetSnapshots()[0].GetId() != first.GetId() {
		t.Errorf("ListSnapshots of the instance after two calls with one token = %v, want only %s", list.GetSnapshots(), first.GetId())
	}

	if s.caps.StopStart {
		rreq := &providerv1.RestoreSnapshotRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-restore-1", InstanceId: id, SnapshotId: first.GetId()}
		s.waitState(t, id, providerv1.InstanceState_INSTANCE_STATE_RUNNING)
		_, err := s.c.RestoreSnapshot(c, rreq)
		wantCode(t, "RestoreSnapshot to a running instance", err, codes.FailedPrecondition)
		s.stop(t, id)
		for i := range 2 {
			in, err := s.c.RestoreSnapshot(c, rreq)
			if err != nil || in.GetId() != id || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
				t.Fatalf("RestoreSnapshot (call %d): %v, %v; want %s STOPPED", i+1, in, err, id)
			}
		}
		s.start(t, id)
	}

	for i := range 2 {
		if _, err := s.c.DeleteSnapshot(c, &providerv1.DeleteSnapshotRequest{Runtime: s.rt, SnapshotId: first.GetId()}); err != nil {
			t.Fatalf("DeleteSnapshot (call %d): %v", i+1, err)
		}
	}
	list, err = s.c.ListSnapshots(c, &providerv1.ListSnapshotsRequest{Runtime: s.rt})
	if err != nil {
		t.Fatalf("ListSnapshots: %v", err)
	}
	for _, sn := range list.GetSnapshots() {
		if sn.GetId() == first.GetId() {
			t.Errorf("ListSnapshots still lists deleted %s", first.GetId())
		}
	}
}

// keepVolume: an instance deleted with keep_volume leaves its volume
// detached; a new instance attaches it (retries give the same instance);
// deleted without keep_volume, the volume goes too.
func (s *suite) keepVolume(t T) {
	if !s.caps.Volumes {
		t.Skip("the provider does not declare volumes")
	}
	c := ctx(t)
	run := func(token, volumeID string) *providerv1.Instance {
		t.Helper()
		req := &providerv1.RunInstanceRequest{Runtime: s.rt, IdempotencyToken: s.prefix + token, NetworkId: s.netID, Name: s.prefix + token, Image: s.image, VolumeGib: 1, VolumeId: volumeID}
		in, err := s.c.RunInstance(c, req)
		if err != nil {
			t.Fatalf("RunInstance %s: %v", token, err)
		}
		s.track(in.GetId())
		again, err := s.c.RunInstance(c, req)
		if err != nil || again.GetId() != in.GetId() {
			t.Fatalf("RunInstance %s retried: %v, %v; want %s", token, again, err, in.GetId())
		}
		return in
	}
	volumes := func() map[string]*providerv1.Volume {
		t.Helper()
		resp, err := s.c.ListVolumes(c, &providerv1.ListVolumesRequest{Runtime: s.rt})
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		m := map[string]*providerv1.Volume{}
		for _, v := range resp.GetVolumes() {
			m[v.GetId()] = v
		}
		return m
	}
	del := func(id string, keep bool) {
		t.Helper()
		for i := range 2 {
			if _, err := s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: id, KeepVolume: keep}); err != nil {
				t.Fatalf("DeleteInstance %s keep_volume=%v (call %d): %v", id, keep, i+1, err)
			}
		}
	}

	first := run("-vol-1", "")
	vol := first.GetVolumeId()
	if vol == "" {
		t.Fatalf("RunInstance = %v: no volume_id from a provider declaring volumes", first)
	}
	if v := volumes()[vol]; v == nil || v.GetInstanceId() != first.GetId() {
		t.Errorf("ListVolumes: volume %s = %v, want attached to %s", vol, v, first.GetId())
	}
	s.waitState(t, first.GetId(), providerv1.InstanceState_INSTANCE_STATE_RUNNING)
	del(first.GetId(), true)
	s.mu.Lock()
	s.volumes = append(s.volumes, vol)
	s.mu.Unlock()
	if v := volumes()[vol]; v == nil || v.GetInstanceId() != "" {
		t.Fatalf("ListVolumes after DeleteInstance(keep_volume): volume %s = %v, want detached", vol, v)
	}

	second := run("-vol-2", vol)
	if second.GetVolumeId() != vol {
		t.Errorf("RunInstance with volume_id %s gave an instance with volume %q", vol, second.GetVolumeId())
	}
	if v := volumes()[vol]; v == nil || v.GetInstanceId() != second.GetId() {
		t.Errorf("ListVolumes: volume %s = %v, want attached to %s", vol, v, second.GetId())
	}
	_, err := s.c.DeleteVolume(c, &providerv1.DeleteVolumeRequest{Runtime: s.rt, VolumeId: vol})
	wantCode(t, "DeleteVolume of an attached volume", err, codes.FailedPrecondition)
	s.waitState(t, second.GetId(), providerv1.InstanceState_INSTANCE_STATE_RUNNING)
	del(second.GetId(), false)
	if v, ok := volumes()[vol]; ok {
		t.Errorf("volume %s outlived its instance deleted without keep_volume: %v", vol, v)
	}
	s.mu.Lock()
	s.instances = slices.DeleteFunc(s.instances, func(id string) bool { return id == first.GetId() || id == second.GetId() })
	s.mu.Unlock()
}

// reservedAddresses: a reserved address is one of the network's that no
// instance has; a retry answers the same; releasing it twice succeeds.
func (s *suite) reservedAddresses(t T) {
	if !s.caps.ReservedAddresses {
		t.Skipf("the provider does not declare %s", sdk.CapReservedAddresses)
	}
	c := ctx(t)
	req := &providerv1.ReserveAddressRequest{Runtime: s.rt, NetworkId: s.netID, IdempotencyToken: s.prefix + "-vip"}
	r1, err := s.c.ReserveAddress(c, req)
	if err != nil {
		t.Fatalf("ReserveAddress: %v", err)
	}
	r2, err := s.c.ReserveAddress(c, req)
	if err != nil || r2.GetAddress() != r1.GetAddress() {
		t.Fatalf("ReserveAddress retried with its token: %v, %v; want %s again", r2, err, r1.GetAddress())
	}
	if r1.GetAddress() == s.inst.GetAddress() {
		t.Errorf("reserved %s, which an instance has", r1.GetAddress())
	}
	for i := range 2 {
		if _, err := s.c.ReleaseAddress(c, &providerv1.ReleaseAddressRequest{Runtime: s.rt, NetworkId: s.netID, Address: r1.GetAddress()}); err != nil {
			t.Fatalf("ReleaseAddress #%d: %v", i+1, err)
		}
	}
	_, err = s.c.ReserveAddress(c, &providerv1.ReserveAddressRequest{Runtime: s.rt, NetworkId: "net-" + missing, IdempotencyToken: s.prefix + "-vip-missing"})
	wantCode(t, "ReserveAddress on an unknown network", err, codes.NotFound)
}
