// Package conformance is the test suite every provider must pass: the
// behaviour pilot relies on (idempotency tokens, not-found semantics, refusal
// to delete a network in use, argument checking), checked through the
// provider's gRPC client. A provider author calls Run from a test.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// callTimeout bounds each call the suite makes.
const callTimeout = 2 * time.Minute

// runningTimeout bounds how long a new instance may take to reach RUNNING.
const runningTimeout = 3 * time.Minute

// Run runs the suite against the provider newClient connects to, acting for
// runtime rt and starting instances of image. It creates one or two networks
// and one instance and deletes them again; on failure it still tries to clean
// up. newClient is called once.
func Run(t *testing.T, newClient func(t *testing.T) providerv1.ProviderClient, rt *providerv1.Runtime, image string) {
	t.Helper()
	c := newClient(t)
	if c == nil {
		t.Fatal("conformance: newClient returned nil")
	}
	s := &suite{c: c, rt: rt, image: image, prefix: "conformance-" + randHex(t)}
	t.Cleanup(s.cleanup)

	t.Run("Info", s.info)
	t.Run("ValidateRuntime", s.validateRuntime)
	if !t.Run("CreateNetworkIdempotent", s.createNetwork) {
		return
	}
	t.Run("BadInput", s.badInput)
	if !t.Run("RunInstanceIdempotent", s.runInstance) {
		return
	}
	t.Run("GetAndListInstances", s.getAndList)
	if !t.Run("Capabilities", s.capabilities) {
		return
	}
	t.Run("UnknownIDs", s.unknownIDs)
	t.Run("CapabilityMissing", s.capabilityMissing)
	t.Run("StopStartInstance", s.stopStart)
	t.Run("ResizeInstance", s.resize)
	t.Run("Snapshots", s.snapshots)
	t.Run("ReservedAddresses", s.reservedAddresses)
	t.Run("KeepVolume", s.keepVolume)
	t.Run("DeleteNetworkRefusedWhileInUse", s.deleteNetworkInUse)
	if !t.Run("DeleteInstance", s.deleteInstance) {
		return
	}
	t.Run("DeleteNetwork", s.deleteNetwork)
}

type suite struct {
	c      providerv1.ProviderClient
	rt     *providerv1.Runtime
	image  string
	prefix string

	mu       sync.Mutex
	networks []string // created, to clean up
	netID    string   // the network instances run in
	inst     *providerv1.Instance
	runReq   *providerv1.RunInstanceRequest
	caps     sdk.Capabilities

	// More of what the suite created, to clean up.
	instances []string
	volumes   []string
	snapIDs   []string
}

func randHex(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("conformance: random token: %v", err)
	}
	return hex.EncodeToString(b[:])
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return c
}

func (s *suite) remember(netID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.networks = append(s.networks, netID)
}

// cleanup deletes what the suite created. It runs after t.Context() has
// been canceled, so it uses its own context.
func (s *suite) cleanup() {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != nil {
		_, _ = s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: s.inst.GetId()})
	}
	for _, id := range s.instances {
		_, _ = s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: id})
	}
	for _, id := range s.snapIDs {
		_, _ = s.c.DeleteSnapshot(c, &providerv1.DeleteSnapshotRequest{Runtime: s.rt, SnapshotId: id})
	}
	for _, id := range s.volumes {
		_, _ = s.c.DeleteVolume(c, &providerv1.DeleteVolumeRequest{Runtime: s.rt, VolumeId: id})
	}
	for _, id := range s.networks {
		_, _ = s.c.DeleteNetwork(c, &providerv1.DeleteNetworkRequest{Runtime: s.rt, NetworkId: id})
	}
}

func wantCode(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	got := status.Code(err)
	for _, w := range want {
		if got == w {
			return
		}
	}
	t.Errorf("%s: got %v (%v), want code %v", what, got, err, want)
}

func (s *suite) info(t *testing.T) {
	resp, err := s.c.Info(ctx(t), &providerv1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if resp.GetName() == "" {
		t.Error("Info: empty name")
	}
	if resp.GetVersion() == "" {
		t.Error("Info: empty version")
	}
}

func (s *suite) validateRuntime(t *testing.T) {
	if _, err := s.c.ValidateRuntime(ctx(t), &providerv1.ValidateRuntimeRequest{Runtime: s.rt}); err != nil {
		t.Fatalf("ValidateRuntime of the suite's runtime: %v", err)
	}
}

func (s *suite) badInput(t *testing.T) {
	c := ctx(t)
	_, err := s.c.CreateNetwork(c, &providerv1.CreateNetworkRequest{Runtime: s.rt, Name: "no-token"})
	wantCode(t, "CreateNetwork without idempotency_token", err, codes.InvalidArgument)

	_, err = s.c.RunInstance(c, &providerv1.RunInstanceRequest{
		Runtime: s.rt, IdempotencyToken: s.prefix + "-bad-1", Image: s.image, Name: "no-network",
	})
	wantCode(t, "RunInstance without network_id", err, codes.InvalidArgument)

	_, err = s.c.RunInstance(c, &providerv1.RunInstanceRequest{
		Runtime: s.rt, NetworkId: s.netID, Image: s.image, Name: "no-token",
	})
	wantCode(t, "RunInstance without idempotency_token", err, codes.InvalidArgument)

	_, err = s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt})
	wantCode(t, "GetInstance without instance_id", err, codes.InvalidArgument)

	_, err = s.c.GetNetwork(c, &providerv1.GetNetworkRequest{Runtime: s.rt})
	wantCode(t, "GetNetwork without network_id", err, codes.InvalidArgument)

	list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt, NetworkId: s.netID})
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	if n := len(list.GetInstances()); n != 0 {
		t.Errorf("rejected RunInstance calls left %d instances: %v", n, list.GetInstances())
	}
}

func (s *suite) createNetwork(t *testing.T) {
	c := ctx(t)
	req := &providerv1.CreateNetworkRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-net-a", Name: s.prefix + "-a"}
	first, err := s.c.CreateNetwork(c, req)
	if err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	s.remember(first.GetId())
	if first.GetId() == "" {
		t.Fatal("CreateNetwork: empty id")
	}
	again, err := s.c.CreateNetwork(c, req)
	if err != nil {
		t.Fatalf("CreateNetwork retried with the same token: %v", err)
	}
	if again.GetId() != first.GetId() || again.GetCidr() != first.GetCidr() {
		t.Errorf("CreateNetwork retried with the same token gave %s (%s), first call %s (%s)",
			again.GetId(), again.GetCidr(), first.GetId(), first.GetCidr())
	}
	got, err := s.c.GetNetwork(c, &providerv1.GetNetworkRequest{Runtime: s.rt, NetworkId: first.GetId()})
	if err != nil {
		t.Fatalf("GetNetwork %s: %v", first.GetId(), err)
	}
	if got.GetId() != first.GetId() || got.GetCidr() != first.GetCidr() || got.GetName() != first.GetName() {
		t.Errorf("GetNetwork = %v, CreateNetwork returned %v", got, first)
	}

	other, err := s.c.CreateNetwork(c, &providerv1.CreateNetworkRequest{Runtime: s.rt, IdempotencyToken: s.prefix + "-net-b", Name: s.prefix + "-b"})
	if err != nil {
		t.Fatalf("CreateNetwork with a second token: %v", err)
	}
	s.remember(other.GetId())
	if other.GetId() == first.GetId() {
		t.Errorf("two tokens gave the same network %s", other.GetId())
	}
	if other.GetCidr() != "" && other.GetCidr() == first.GetCidr() {
		t.Errorf("two networks share the address range %s", other.GetCidr())
	}
	// The second network is not needed further; deleting it twice checks
	// that deletion is idempotent on an empty network.
	for i := range 2 {
		if _, err := s.c.DeleteNetwork(c, &providerv1.DeleteNetworkRequest{Runtime: s.rt, NetworkId: other.GetId()}); err != nil {
			t.Fatalf("DeleteNetwork %s (call %d): %v", other.GetId(), i+1, err)
		}
	}
	_, err = s.c.GetNetwork(c, &providerv1.GetNetworkRequest{Runtime: s.rt, NetworkId: other.GetId()})
	wantCode(t, "GetNetwork of a deleted network", err, codes.NotFound)
	s.netID = first.GetId()
}

func (s *suite) runInstance(t *testing.T) {
	c := ctx(t)
	s.runReq = &providerv1.RunInstanceRequest{
		Runtime:          s.rt,
		IdempotencyToken: s.prefix + "-inst-1",
		NetworkId:        s.netID,
		Name:             s.prefix + "-node",
		Image:            s.image,
		Cpu:              1,
		MemoryMib:        256,
		UserData:         []byte(`{"conformance":true}`),
		Labels:           map[string]string{"hangar.conformance": "yes"},
	}
	// Concurrent first calls with one token: what pilot does when it retries
	// a call it believes lost while the first is still running.
	const parallel = 3
	results := make([]*providerv1.Instance, parallel)
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.c.RunInstance(c, s.runReq)
		}()
	}
	wg.Wait()
	for i := range parallel {
		if errs[i] != nil {
			t.Fatalf("RunInstance (concurrent call %d): %v", i+1, errs[i])
		}
	}
	s.mu.Lock()
	s.inst = results[0]
	s.mu.Unlock()
	for i, r := range results {
		if r.GetId() != results[0].GetId() {
			t.Errorf("RunInstance concurrent call %d gave %s, call 1 gave %s", i+1, r.GetId(), results[0].GetId())
		}
	}
	again, err := s.c.RunInstance(c, s.runReq)
	if err != nil {
		t.Fatalf("RunInstance retried: %v", err)
	}
	if again.GetId() != s.inst.GetId() {
		t.Errorf("RunInstance retried with the same token gave %s, first %s", again.GetId(), s.inst.GetId())
	}
	list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt, NetworkId: s.netID})
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	if n := len(list.GetInstances()); n != 1 || list.GetInstances()[0].GetId() != s.inst.GetId() {
		t.Errorf("ListInstances of the network after %d RunInstance calls with one token = %v, want only %s",
			parallel+1, list.GetInstances(), s.inst.GetId())
	}
}

// stopStart checks StopInstance and StartInstance, twice each, on a
// provider that declares stop_start; one that does not must answer
// Unimplemented (or FailedPrecondition) and change nothing.
func (s *suite) stopStart(t *testing.T) {
	c := ctx(t)
	id := s.inst.GetId()
	if !s.caps.StopStart {
		t.Skip("the provider does not declare stop_start (CapabilityMissing checks its answer)")
	}
	for i := range 2 {
		in, err := s.c.StopInstance(c, &providerv1.StopInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-stop"})
		if err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
			t.Fatalf("StopInstance (call %d): %v, %v; want STOPPED", i+1, in, err)
		}
	}
	if in, err := s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: id}); err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_STOPPED {
		t.Fatalf("GetInstance after stop: %v, %v; want STOPPED", in, err)
	}
	for i := range 2 {
		in, err := s.c.StartInstance(c, &providerv1.StartInstanceRequest{Runtime: s.rt, InstanceId: id, IdempotencyToken: s.prefix + "-start"})
		if err != nil || in.GetState() != providerv1.InstanceState_INSTANCE_STATE_RUNNING || in.GetAddress() != s.inst.GetAddress() {
			t.Fatalf("StartInstance (call %d): %v, %v; want RUNNING at %s", i+1, in, err, s.inst.GetAddress())
		}
	}
	_, err := s.c.StopInstance(c, &providerv1.StopInstanceRequest{Runtime: s.rt, InstanceId: "i-conformance-missing", IdempotencyToken: s.prefix + "-stop-missing"})
	wantCode(t, "StopInstance of an unknown instance", err, codes.NotFound)

}

func (s *suite) getAndList(t *testing.T) {
	c := ctx(t)
	id := s.inst.GetId()
	var got *providerv1.Instance
	deadline := time.Now().Add(runningTimeout)
	for {
		var err error
		got, err = s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: id})
		if err != nil {
			t.Fatalf("GetInstance %s: %v", id, err)
		}
		if got.GetState() == providerv1.InstanceState_INSTANCE_STATE_RUNNING {
			break
		}
		if st := got.GetState(); st != providerv1.InstanceState_INSTANCE_STATE_PENDING {
			t.Fatalf("GetInstance %s: state %v, want PENDING then RUNNING", id, st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not RUNNING after %v", id, runningTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.GetId() != id || got.GetNetworkId() != s.netID || got.GetImage() != s.image || got.GetName() != s.runReq.GetName() {
		t.Errorf("GetInstance = %v, want id %s network %s image %q name %q", got, id, s.netID, s.image, s.runReq.GetName())
	}
	if got.GetAddress() == "" {
		t.Error("GetInstance: empty address")
	}
	if !maps.Equal(got.GetLabels(), s.runReq.GetLabels()) {
		t.Errorf("GetInstance labels = %v, want %v", got.GetLabels(), s.runReq.GetLabels())
	}

	for _, netID := range []string{s.netID, ""} {
		list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt, NetworkId: netID})
		if err != nil {
			t.Fatalf("ListInstances(network_id %q): %v", netID, err)
		}
		var found *providerv1.Instance
		for _, in := range list.GetInstances() {
			if in.GetId() == id {
				found = in
			}
			if netID != "" && in.GetNetworkId() != netID {
				t.Errorf("ListInstances(network_id %q) returned %s of network %s", netID, in.GetId(), in.GetNetworkId())
			}
		}
		if found == nil {
			t.Errorf("ListInstances(network_id %q) does not list %s", netID, id)
		} else if found.GetAddress() != got.GetAddress() || found.GetState() != got.GetState() {
			t.Errorf("ListInstances entry %v differs from GetInstance %v", found, got)
		}
	}
}

func (s *suite) deleteNetworkInUse(t *testing.T) {
	_, err := s.c.DeleteNetwork(ctx(t), &providerv1.DeleteNetworkRequest{Runtime: s.rt, NetworkId: s.netID})
	wantCode(t, "DeleteNetwork with an instance in it", err, codes.FailedPrecondition)
	if _, err := s.c.GetNetwork(ctx(t), &providerv1.GetNetworkRequest{Runtime: s.rt, NetworkId: s.netID}); err != nil {
		t.Errorf("GetNetwork after a refused delete: %v", err)
	}
}

// gone reports whether an instance lookup says the instance no longer exists;
// clouds that keep deleted instances visible for a while say TERMINATED.
func gone(in *providerv1.Instance, err error) bool {
	if status.Code(err) == codes.NotFound {
		return true
	}
	return err == nil && in.GetState() == providerv1.InstanceState_INSTANCE_STATE_TERMINATED
}

func (s *suite) deleteInstance(t *testing.T) {
	c := ctx(t)
	id := s.inst.GetId()
	for i := range 2 {
		if _, err := s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: id}); err != nil {
			t.Fatalf("DeleteInstance %s (call %d): %v", id, i+1, err)
		}
	}
	in, err := s.c.GetInstance(c, &providerv1.GetInstanceRequest{Runtime: s.rt, InstanceId: id})
	if !gone(in, err) {
		t.Errorf("GetInstance of deleted %s = %v, %v; want NotFound or TERMINATED", id, in, err)
	}
	list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt})
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	for _, in := range list.GetInstances() {
		if in.GetId() == id && in.GetState() != providerv1.InstanceState_INSTANCE_STATE_TERMINATED {
			t.Errorf("ListInstances still lists deleted %s as %v", id, in.GetState())
		}
	}
	s.mu.Lock()
	s.inst = nil
	s.mu.Unlock()
}

func (s *suite) deleteNetwork(t *testing.T) {
	c := ctx(t)
	for i := range 2 {
		if _, err := s.c.DeleteNetwork(c, &providerv1.DeleteNetworkRequest{Runtime: s.rt, NetworkId: s.netID}); err != nil {
			t.Fatalf("DeleteNetwork %s (call %d): %v", s.netID, i+1, err)
		}
	}
	_, err := s.c.GetNetwork(c, &providerv1.GetNetworkRequest{Runtime: s.rt, NetworkId: s.netID})
	wantCode(t, "GetNetwork of a deleted network", err, codes.NotFound)
}

// containsField reports whether err's message names field.
func containsField(err error, field string) bool {
	return strings.Contains(status.Convert(err).Message(), field)
}
