package sdk

import (
	"context"

	"github.com/hangarhq/hangar/api/providerv1"
)

// Base is what a provider embeds instead of
// providerv1.UnimplementedProviderServer: the calls of optional
// capabilities it does not override answer Unsupported (Unimplemented,
// naming the capability), so a provider keeps compiling, and answers what
// pilot understands, when the protocol grows. The core calls (networks,
// RunInstance, ...) stay Unimplemented like the generated base's.
type Base struct {
	providerv1.UnimplementedProviderServer
}

// StopInstance answers Unsupported (capability stop_start).
func (Base) StopInstance(context.Context, *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	return nil, Unsupported(CapStopStart, "StopInstance")
}

// StartInstance answers Unsupported (capability stop_start).
func (Base) StartInstance(context.Context, *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	return nil, Unsupported(CapStopStart, "StartInstance")
}

// ResizeInstance answers Unsupported (capability resize).
func (Base) ResizeInstance(context.Context, *providerv1.ResizeInstanceRequest) (*providerv1.Instance, error) {
	return nil, Unsupported(CapResize, "ResizeInstance")
}

// ListVolumes answers Unsupported (capability volumes).
func (Base) ListVolumes(context.Context, *providerv1.ListVolumesRequest) (*providerv1.ListVolumesResponse, error) {
	return nil, Unsupported(CapVolumes, "ListVolumes")
}

// DeleteVolume answers Unsupported (capability volumes).
func (Base) DeleteVolume(context.Context, *providerv1.DeleteVolumeRequest) (*providerv1.DeleteVolumeResponse, error) {
	return nil, Unsupported(CapVolumes, "DeleteVolume")
}

// CreateSnapshot answers Unsupported (capability snapshots).
func (Base) CreateSnapshot(context.Context, *providerv1.CreateSnapshotRequest) (*providerv1.Snapshot, error) {
	return nil, Unsupported(CapSnapshots, "CreateSnapshot")
}

// ListSnapshots answers Unsupported (capability snapshots).
func (Base) ListSnapshots(context.Context, *providerv1.ListSnapshotsRequest) (*providerv1.ListSnapshotsResponse, error) {
	return nil, Unsupported(CapSnapshots, "ListSnapshots")
}

// DeleteSnapshot answers Unsupported (capability snapshots).
func (Base) DeleteSnapshot(context.Context, *providerv1.DeleteSnapshotRequest) (*providerv1.DeleteSnapshotResponse, error) {
	return nil, Unsupported(CapSnapshots, "DeleteSnapshot")
}

// RestoreSnapshot answers Unsupported (capability snapshots).
func (Base) RestoreSnapshot(context.Context, *providerv1.RestoreSnapshotRequest) (*providerv1.Instance, error) {
	return nil, Unsupported(CapSnapshots, "RestoreSnapshot")
}

// ReserveAddress answers Unsupported (capability reserved_addresses).
func (Base) ReserveAddress(context.Context, *providerv1.ReserveAddressRequest) (*providerv1.ReservedAddress, error) {
	return nil, Unsupported(CapReservedAddresses, "ReserveAddress")
}

// ReleaseAddress answers Unsupported (capability reserved_addresses).
func (Base) ReleaseAddress(context.Context, *providerv1.ReleaseAddressRequest) (*providerv1.ReleaseAddressResponse, error) {
	return nil, Unsupported(CapReservedAddresses, "ReleaseAddress")
}

// MethodCapability is the capability a Provider method needs ("" for the
// core methods every provider implements): pilot and the conformance suite
// use it to tell a missing capability from a bug.
func MethodCapability(method string) string {
	switch method {
	case "StopInstance", "StartInstance":
		return CapStopStart
	case "ResizeInstance":
		return CapResize
	case "ListVolumes", "DeleteVolume":
		return CapVolumes
	case "CreateSnapshot", "ListSnapshots", "DeleteSnapshot", "RestoreSnapshot":
		return CapSnapshots
	case "ReserveAddress", "ReleaseAddress":
		return CapReservedAddresses
	}
	return ""
}
