package sdk

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
)

// Capabilities a provider may list in its Info response. Pilot acts on
// these; any other string is informational ("networks", "instances").
const (
	// CapRunsOnPilotHost says the provider's instances run on the host
	// pilot runs on (as processes, containers of its daemon, ...). Pilot
	// then lets only platform admins (admins of tenant "default") create
	// its runtimes: whatever an instance can reach on that host, its
	// runtime's creator could reach too.
	CapRunsOnPilotHost = "runs_on_pilot_host"
	// CapHostDirPrefix + KEY says runtime config KEY names a directory of
	// pilot's host the provider uses for the runtime (e.g. binaries its
	// instances run). Pilot refuses one that overlaps its own data
	// directory, or an exclusive directory of another runtime.
	CapHostDirPrefix = "host_dir:"
	// CapExclusiveHostDirPrefix + KEY is a host directory that belongs to
	// the runtime alone (where its instances live): pilot also refuses one
	// that overlaps any host directory of another runtime.
	CapExclusiveHostDirPrefix = "exclusive_host_dir:"
	// CapStopStart says the provider implements StopInstance and
	// StartInstance: pilot stops and starts clusters only on runtimes
	// whose provider has it.
	CapStopStart = "stop_start"
	// CapResize says the provider implements ResizeInstance on stopped
	// instances.
	CapResize = "resize"
	// CapLiveResize says ResizeInstance also works on a running instance;
	// without it pilot stops an instance before resizing it.
	CapLiveResize = "live_resize"
	// CapVolumes says instances have a data volume that
	// DeleteInstance(keep_volume) keeps and RunInstance(volume_id)
	// attaches to a new instance, and that ListVolumes and DeleteVolume
	// work: pilot recovers a node keeping its data only with it.
	CapVolumes = "volumes"
	// CapSnapshots says the provider implements CreateSnapshot,
	// ListSnapshots, DeleteSnapshot and RestoreSnapshot: AppCenter's
	// backup_policy "device" needs it.
	CapSnapshots = "snapshots"
	// CapReservedAddresses says the provider implements ReserveAddress and
	// ReleaseAddress: addresses of a network kept for a cluster's virtual
	// IPs (AppCenter's reserved_ips).
	CapReservedAddresses = "reserved_addresses"
)

// Capabilities is what pilot reads from an Info response.
type Capabilities struct {
	// RunsOnPilotHost is CapRunsOnPilotHost.
	RunsOnPilotHost bool
	// HostDirs maps each runtime config key naming a host directory to
	// whether that directory is exclusive to the runtime.
	HostDirs map[string]bool
	// StopStart is CapStopStart.
	StopStart bool
	// Resize is CapResize; LiveResize is CapLiveResize.
	Resize, LiveResize bool
	// Volumes is CapVolumes.
	Volumes bool
	// Snapshots is CapSnapshots.
	Snapshots bool
	// ReservedAddresses is CapReservedAddresses.
	ReservedAddresses bool
	// Provider is the provider's name, for errors (set by
	// CapabilitiesOf; empty from ParseCapabilities).
	Provider string
}

// CapabilitiesOf reads an Info response: its capabilities, and its name
// for the errors of Require.
func CapabilitiesOf(info *providerv1.InfoResponse) Capabilities {
	c := ParseCapabilities(info.GetCapabilities())
	c.Provider = info.GetName()
	return c
}

// ParseCapabilities reads the capabilities pilot acts on.
func ParseCapabilities(caps []string) Capabilities {
	c := Capabilities{HostDirs: map[string]bool{}}
	for _, s := range caps {
		switch {
		case s == CapRunsOnPilotHost:
			c.RunsOnPilotHost = true
		case s == CapStopStart:
			c.StopStart = true
		case s == CapResize:
			c.Resize = true
		case s == CapLiveResize:
			c.LiveResize = true
		case s == CapVolumes:
			c.Volumes = true
		case s == CapSnapshots:
			c.Snapshots = true
		case s == CapReservedAddresses:
			c.ReservedAddresses = true
		case strings.HasPrefix(s, CapExclusiveHostDirPrefix) && len(s) > len(CapExclusiveHostDirPrefix):
			c.HostDirs[strings.TrimPrefix(s, CapExclusiveHostDirPrefix)] = true
		case strings.HasPrefix(s, CapHostDirPrefix) && len(s) > len(CapHostDirPrefix):
			if k := strings.TrimPrefix(s, CapHostDirPrefix); !c.HostDirs[k] {
				// Exclusive wins when a key is listed both ways.
				c.HostDirs[k] = false
			}
		}
	}
	return c
}

// HostDirKeys returns the keys of HostDirs, sorted.
func (c Capabilities) HostDirKeys() []string {
	keys := make([]string, 0, len(c.HostDirs))
	for k := range c.HostDirs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Has reports whether the provider declared capability cap. Only the
// capabilities pilot acts on are known; any other is reported missing.
func (c Capabilities) Has(name string) bool {
	switch {
	case name == CapRunsOnPilotHost:
		return c.RunsOnPilotHost
	case name == CapStopStart:
		return c.StopStart
	case name == CapResize:
		return c.Resize
	case name == CapLiveResize:
		return c.LiveResize
	case name == CapVolumes:
		return c.Volumes
	case name == CapSnapshots:
		return c.Snapshots
	case name == CapReservedAddresses:
		return c.ReservedAddresses
	case strings.HasPrefix(name, CapExclusiveHostDirPrefix):
		return c.HostDirs[strings.TrimPrefix(name, CapExclusiveHostDirPrefix)]
	case strings.HasPrefix(name, CapHostDirPrefix):
		_, ok := c.HostDirs[strings.TrimPrefix(name, CapHostDirPrefix)]
		return ok
	}
	return false
}

// Require returns a *CapabilityMissingError naming the first of caps the
// provider lacks, and op, the operation that needs it (say "backup
// (device)"); nil when it has them all. Pilot calls it before an operation
// changes anything, so that a runtime that cannot do it refuses at once
// rather than halfway.
func (c Capabilities) Require(op string, caps ...string) error {
	for _, name := range caps {
		if !c.Has(name) {
			return &CapabilityMissingError{Provider: c.Provider, Capability: name, Operation: op}
		}
	}
	return nil
}

// ErrCapabilityMissing matches (errors.Is) every *CapabilityMissingError.
var ErrCapabilityMissing = errors.New("provider capability missing")

// CapabilityMissingError is an operation refused because the runtime's
// provider lacks a capability it needs; pilot refuses before anything
// changes. As a gRPC status (pilot's API) it is FailedPrecondition: the
// request is valid, the runtime cannot carry it out.
type CapabilityMissingError struct {
	Provider, Capability, Operation string
}

func (e *CapabilityMissingError) Error() string {
	return fmt.Sprintf("runtime provider %q lacks capability %q needed by %s", e.Provider, e.Capability, e.Operation)
}

// Is makes errors.Is(err, ErrCapabilityMissing) true.
func (e *CapabilityMissingError) Is(target error) bool { return target == ErrCapabilityMissing }

// GRPCStatus is FailedPrecondition with the message.
func (e *CapabilityMissingError) GRPCStatus() *status.Status {
	return status.New(codes.FailedPrecondition, e.Error())
}

// Error details of a provider's answer to a call it does not implement.
const (
	// ErrorDomain is the errdetails.ErrorInfo domain of provider errors.
	ErrorDomain = "provider.hangar.dev"
	// ReasonCapabilityMissing is the ErrorInfo reason of Unsupported.
	ReasonCapabilityMissing = "CAPABILITY_MISSING"
)

// Unsupported is what a provider answers to a call whose capability it
// does not declare: Unimplemented (as gRPC answers for a method a server
// lacks altogether), with an ErrorInfo naming the capability.
func Unsupported(capability, method string) error {
	st := status.Newf(codes.Unimplemented, "%s: this provider lacks capability %q", method, capability)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: ReasonCapabilityMissing, Domain: ErrorDomain,
		Metadata: map[string]string{"capability": capability, "method": method},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// CapabilityError turns a provider's Unimplemented answer (from
// Unsupported, or from a provider built before the call existed) into a
// *CapabilityMissingError naming provider, the capability (the one the
// answer names, else capability) and op; any other error is returned as
// is.
func CapabilityError(err error, provider, capability, op string) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unimplemented {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonCapabilityMissing && info.GetMetadata()["capability"] != "" {
			capability = info.GetMetadata()["capability"]
		}
	}
	return &CapabilityMissingError{Provider: provider, Capability: capability, Operation: op}
}
