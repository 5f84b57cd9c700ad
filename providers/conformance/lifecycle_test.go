package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// capMem is memProvider with the lifecycle capabilities it is given. With
// shrinkable it accepts a resize that shrinks a volume, which the suite
// must catch.
type capMem struct {
	*memProvider
	caps       []string
	shrinkable bool

	vols       map[string]*providerv1.Volume
	snaps      map[string]*providerv1.Snapshot
	snapTokens map[string]string
}

func newCapMem(shrinkable bool, caps ...string) *capMem {
	return &capMem{memProvider: newMem(false), caps: caps, shrinkable: shrinkable,
		vols: map[string]*providerv1.Volume{}, snaps: map[string]*providerv1.Snapshot{}, snapTokens: map[string]string{}}
}

func (m *capMem) has(c string) bool { return slices.Contains(m.caps, c) }

func (m *capMem) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: "capmem", Version: "1", Capabilities: m.caps}, nil
}

// instance returns a copy of an instance, or NotFound.
func (m *capMem) instance(id string) (*providerv1.Instance, error) {
	in, ok := m.instances[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "instance %s not found", id)
	}
	return in, nil
}

func clone(in *providerv1.Instance) *providerv1.Instance {
	return proto.Clone(in).(*providerv1.Instance)
}

func (m *capMem) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	if v := req.GetVolumeId(); v != "" {
		if !m.has(sdk.CapVolumes) {
			return nil, sdk.Unsupported(sdk.CapVolumes, "RunInstance volume_id")
		}
		m.mu.Lock()
		_, retry := m.tokens["i/"+req.GetIdempotencyToken()]
		vol, ok := m.vols[v]
		m.mu.Unlock()
		if !retry && !ok {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", v)
		}
		if !retry && vol.GetInstanceId() != "" {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is attached", v)
		}
	}
	in, err := m.memProvider.RunInstance(ctx, req)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.has(sdk.CapVolumes) && in.VolumeId == "" {
		in.VolumeId, in.VolumeGib = req.GetVolumeId(), req.GetVolumeGib()
		if in.VolumeId == "" {
			in.VolumeId = "vol-" + in.Id
		}
		m.vols[in.VolumeId] = &providerv1.Volume{Id: in.VolumeId, InstanceId: in.Id, SizeGib: in.VolumeGib, CreatedAt: time.Now().UTC().Format(time.RFC3339)}
	}
	in.Cpu, in.MemoryMib = req.GetCpu(), req.GetMemoryMib()
	return clone(in), nil
}

func (m *capMem) GetInstance(_ context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	if req.GetInstanceId() == "" {
		return nil, status.Error(codes.InvalidArgument, "instance_id is required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, err := m.instance(req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	return clone(in), nil
}

func (m *capMem) DeleteInstance(ctx context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	m.mu.Lock()
	if in, ok := m.instances[req.GetInstanceId()]; ok && in.VolumeId != "" {
		if req.GetKeepVolume() {
			m.vols[in.VolumeId].InstanceId = ""
		} else {
			delete(m.vols, in.VolumeId)
		}
	}
	m.mu.Unlock()
	return m.memProvider.DeleteInstance(ctx, req)
}

// setState moves an instance to state, for stop and start.
func (m *capMem) setState(id string, cap, method string, st providerv1.InstanceState) (*providerv1.Instance, error) {
	if !m.has(cap) {
		return nil, sdk.Unsupported(cap, method)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, err := m.instance(id)
	if err != nil {
		return nil, err
	}
	in.State = st
	return clone(in), nil
}

func (m *capMem) StopInstance(_ context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	return m.setState(req.GetInstanceId(), sdk.CapStopStart, "StopInstance", providerv1.InstanceState_INSTANCE_STATE_STOPPED)
}

func (m *capMem) StartInstance(_ context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	return m.setState(req.GetInstanceId(), sdk.CapStopStart, "StartInstance", providerv1.InstanceState_INSTANCE_STATE_RUNNING)
}

func (m *capMem) ResizeInstance(_ context.Context, req *providerv1.ResizeInstanceRequest) (*providerv1.Instance, error) {
	if !m.has(sdk.CapResize) {
		return nil, sdk.Unsupported(sdk.CapResize, "ResizeInstance")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, err := m.instance(req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	if v := req.GetVolumeGib(); v != 0 && v < in.VolumeGib && !m.shrinkable {
		return nil, status.Errorf(codes.InvalidArgument, "volume_gib %d is below %d", v, in.VolumeGib)
	}
	if in.State != providerv1.InstanceState_INSTANCE_STATE_STOPPED && !m.has(sdk.CapLiveResize) {
		return nil, status.Error(codes.FailedPrecondition, "stop the instance first")
	}
	if req.GetCpu() != 0 {
		in.Cpu = req.GetCpu()
	}
	if req.GetMemoryMib() != 0 {
		in.MemoryMib = req.GetMemoryMib()
	}
	if req.GetVolumeGib() != 0 {
		in.VolumeGib = req.GetVolumeGib()
	}
	return clone(in), nil
}

func (m *capMem) ListVolumes(context.Context, *providerv1.ListVolumesRequest) (*providerv1.ListVolumesResponse, error) {
	if !m.has(sdk.CapVolumes) {
		return nil, sdk.Unsupported(sdk.CapVolumes, "ListVolumes")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &providerv1.ListVolumesResponse{}
	for _, v := range m.vols {
		resp.Volumes = append(resp.Volumes, proto.Clone(v).(*providerv1.Volume))
	}
	return resp, nil
}

func (m *capMem) DeleteVolume(_ context.Context, req *providerv1.DeleteVolumeRequest) (*providerv1.DeleteVolumeResponse, error) {
	if !m.has(sdk.CapVolumes) {
		return nil, sdk.Unsupported(sdk.CapVolumes, "DeleteVolume")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.vols[req.GetVolumeId()]; ok && v.InstanceId != "" {
		return nil, status.Error(codes.FailedPrecondition, "volume attached")
	}
	delete(m.vols, req.GetVolumeId())
	return &providerv1.DeleteVolumeResponse{}, nil
}

func (m *capMem) CreateSnapshot(_ context.Context, req *providerv1.CreateSnapshotRequest) (*providerv1.Snapshot, error) {
	if !m.has(sdk.CapSnapshots) {
		return nil, sdk.Unsupported(sdk.CapSnapshots, "CreateSnapshot")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.snapTokens[req.GetIdempotencyToken()]; ok {
		return m.snaps[id], nil
	}
	in, err := m.instance(req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	m.next++
	s := &providerv1.Snapshot{Id: fmt.Sprintf("snap-%d", m.next), InstanceId: in.Id, VolumeId: in.VolumeId, Name: req.GetName(),
		CreatedAt: time.Now().UTC().Format(time.RFC3339), SizeBytes: 1}
	m.snaps[s.Id] = s
	m.snapTokens[req.GetIdempotencyToken()] = s.Id
	return s, nil
}

func (m *capMem) ListSnapshots(_ context.Context, req *providerv1.ListSnapshotsRequest) (*providerv1.ListSnapshotsResponse, error) {
	if !m.has(sdk.CapSnapshots) {
		return nil, sdk.Unsupported(sdk.CapSnapshots, "ListSnapshots")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &providerv1.ListSnapshotsResponse{}
	for _, s := range m.snaps {
		if req.GetInstanceId() == "" || s.InstanceId == req.GetInstanceId() {
			resp.Snapshots = append(resp.Snapshots, s)
		}
	}
	return resp, nil
}

func (m *capMem) DeleteSnapshot(_ context.Context, req *providerv1.DeleteSnapshotRequest) (*providerv1.DeleteSnapshotResponse, error) {
	if !m.has(sdk.CapSnapshots) {
		return nil, sdk.Unsupported(sdk.CapSnapshots, "DeleteSnapshot")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.snaps, req.GetSnapshotId())
	return &providerv1.DeleteSnapshotResponse{}, nil
}

func (m *capMem) RestoreSnapshot(_ context.Context, req *providerv1.RestoreSnapshotRequest) (*providerv1.Instance, error) {
	if !m.has(sdk.CapSnapshots) {
		return nil, sdk.Unsupported(sdk.CapSnapshots, "RestoreSnapshot")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, err := m.instance(req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	if _, ok := m.snaps[req.GetSnapshotId()]; !ok {
		return nil, status.Error(codes.NotFound, "snapshot not found")
	}
	if in.State != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		return nil, status.Error(codes.FailedPrecondition, "stop the instance first")
	}
	return clone(in), nil
}

func TestSuitePassesCapableProviders(t *testing.T) {
	for name, caps := range map[string][]string{
		"all":            {sdk.CapStopStart, sdk.CapResize, sdk.CapVolumes, sdk.CapSnapshots},
		"live resize":    {sdk.CapResize, sdk.CapLiveResize},
		"snapshots only": {sdk.CapSnapshots},
		"volumes only":   {sdk.CapVolumes},
	} {
		t.Run(name, func(t *testing.T) {
			m := newCapMem(false, caps...)
			Run(t, func(t *testing.T) providerv1.ProviderClient { return serve(t, m) }, &providerv1.Runtime{Id: "rt"}, "img")
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(m.instances) != 0 || len(m.networks) != 0 || len(m.vols) != 0 || len(m.snaps) != 0 {
				t.Errorf("suite left %d instances, %d networks, %d volumes, %d snapshots behind", len(m.instances), len(m.networks), len(m.vols), len(m.snaps))
			}
		})
	}
}

// envShrinkable makes TestSuiteOnShrinkingResize run the suite in a child
// process against a provider that lets a volume shrink.
const envShrinkable = "HANGAR_CONFORMANCE_SHRINKABLE"

func TestSuiteOnShrinkingResize(t *testing.T) {
	if os.Getenv(envShrinkable) == "1" {
		m := newCapMem(true, sdk.CapStopStart, sdk.CapResize)
		Run(t, func(t *testing.T) providerv1.ProviderClient { return serve(t, m) }, &providerv1.Runtime{Id: "rt"}, "img")
		return
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSuiteOnShrinkingResize$", "-test.v")
	cmd.Env = append(os.Environ(), envShrinkable+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("suite passed a provider that shrinks volumes:\n%s", out)
	}
	if !strings.Contains(string(out), "--- FAIL: TestSuiteOnShrinkingResize/ResizeInstance") {
		t.Errorf("suite did not fail ResizeInstance:\n%s", out)
	}
}
