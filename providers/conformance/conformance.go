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
	"slices"
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

// T is what a check needs of the test that runs it. *testing.T has all
// of it; so does the runner of RunReport, for `hangar provider test`.
type T interface {
	Helper()
	Error(args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Context() context.Context
	Failed() bool
}

// check is one rule of the suite. A failed gate stops the suite: the
// checks after it need what it made.
type check struct {
	name string
	// rule is what the provider must do, as a failure report names it.
	rule string
	fn   func(*suite, T)
	gate bool
}

// checks is the suite, in order.
var checks = []check{
	{"Info", "Info names the provider and its version", (*suite).info, false},
	{"ValidateRuntime", "ValidateRuntime accepts the suite's runtime", (*suite).validateRuntime, false},
	{"BadCredentials", "ValidateRuntime with wrong credentials answers Unauthenticated (sdk.BadCredentials)", (*suite).badCredentials, false},
	{"CreateNetworkIdempotent", "CreateNetwork retried with one token makes one network, two tokens two with distinct ranges; DeleteNetwork succeeds twice", (*suite).createNetwork, true},
	{"BadInput", "bad input is refused with InvalidArgument naming the field, and creates nothing", (*suite).badInput, false},
	{"RunInstanceIdempotent", "RunInstance retried with the same token, even concurrently, creates nothing new", (*suite).runInstance, true},
	{"GetAndListInstances", "GetInstance and ListInstances describe the instance as it was asked for, and it reaches RUNNING", (*suite).getAndList, false},
	{"Capabilities", "Info declares its optional calls consistently", (*suite).capabilities, true},
	{"UnknownIDs", "calls on unknown ids answer NotFound", (*suite).unknownIDs, false},
	{"CapabilityMissing", "a call of a capability not declared answers Unimplemented, naming it", (*suite).capabilityMissing, false},
	{"StopStartInstance", "StopInstance and StartInstance are idempotent and keep the instance's id and address", (*suite).stopStart, false},
	{"ResizeInstance", "ResizeInstance applies cpu, memory and volume size (stopped, or live with live_resize); a volume never shrinks", (*suite).resize, false},
	{"Snapshots", "a snapshot token makes one snapshot; restoring needs a stopped instance; DeleteSnapshot succeeds twice", (*suite).snapshots, false},
	{"ReservedAddresses", "a reservation token reserves one address no instance gets; ReleaseAddress succeeds twice", (*suite).reservedAddresses, false},
	{"KeepVolume", "DeleteInstance(keep_volume) leaves the volume for a new instance; without keep_volume it goes too", (*suite).keepVolume, false},
	{"DeleteNetworkRefusedWhileInUse", "DeleteNetwork of a network with instances answers FailedPrecondition and deletes nothing", (*suite).deleteNetworkInUse, false},
	{"DeleteInstance", "DeleteInstance succeeds twice, and the instance is gone from GetInstance and ListInstances", (*suite).deleteInstance, true},
	{"DeleteNetwork", "DeleteNetwork succeeds twice", (*suite).deleteNetwork, false},
	{"CleanedUp", "after the suite's deletes, nothing it created is listed", (*suite).cleanedUp, false},
}

// Rule is the rule the check of that name checks ("" for none).
func Rule(name string) string {
	for _, c := range checks {
		if c.name == name {
			return c.rule
		}
	}
	return ""
}

// Run runs the suite against the provider newClient connects to, acting for
// runtime rt and starting instances of image, each check a subtest of t. It
// creates one or two networks and a few instances and deletes them again;
// on failure it still tries to clean up. newClient is called once.
func Run(t *testing.T, newClient func(t *testing.T) providerv1.ProviderClient, rt *providerv1.Runtime, image string) {
	t.Helper()
	c := newClient(t)
	if c == nil {
		t.Fatal("conformance: newClient returned nil")
	}
	s := newSuite(c, rt, image)
	t.Cleanup(s.cleanup)
	for _, ck := range checks {
		if !t.Run(ck.name, func(t *testing.T) { ck.fn(s, t) }) && ck.gate {
			return
		}
	}
}

func newSuite(c providerv1.ProviderClient, rt *providerv1.Runtime, image string) *suite {
	return &suite{c: c, rt: rt, image: image, prefix: "conformance-" + randHex()}
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

// randHex names this run's resources apart from any other run's.
// crypto/rand.Read never fails (it would crash the program first).
func randHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ctx(t T) context.Context {
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
	// What a broken provider made beyond what the suite knows of (a
	// second instance for a retried token, a refused call that was not):
	// every instance in the suite's networks is the suite's.
	for _, n := range s.networks {
		list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt, NetworkId: n})
		if err != nil {
			continue
		}
		for _, in := range list.GetInstances() {
			if in.GetNetworkId() == n {
				_, _ = s.c.DeleteInstance(c, &providerv1.DeleteInstanceRequest{Runtime: s.rt, InstanceId: in.GetId()})
			}
		}
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

func wantCode(t T, what string, err error, want ...codes.Code) {
	t.Helper()
	got := status.Code(err)
	for _, w := range want {
		if got == w {
			return
		}
	}
	t.Errorf("%s: got %v (%v), want code %v", what, got, err, want)
}

func (s *suite) info(t T) {
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

func (s *suite) validateRuntime(t T) {
	if _, err := s.c.ValidateRuntime(ctx(t), &providerv1.ValidateRuntimeRequest{Runtime: s.rt}); err != nil {
		t.Fatalf("ValidateRuntime of the suite's runtime: %v", err)
	}
}

func (s *suite) badInput(t T) {
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

func (s *suite) createNetwork(t T) {
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

func (s *suite) runInstance(t T) {
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
func (s *suite) stopStart(t T) {
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

func (s *suite) getAndList(t T) {
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

func (s *suite) deleteNetworkInUse(t T) {
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

func (s *suite) deleteInstance(t T) {
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

func (s *suite) deleteNetwork(t T) {
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

// badCredentials runs ValidateRuntime with every credential of the
// suite's runtime replaced by a wrong one: the provider must refuse them
// as the sdk's BadCredentials, and say so without echoing a secret.
func (s *suite) badCredentials(t T) {
	if len(s.rt.GetCredentials()) == 0 {
		t.Skip("the suite's runtime has no credentials to get wrong")
	}
	wrong := &providerv1.Runtime{Id: s.rt.GetId(), Zone: s.rt.GetZone(), Config: s.rt.GetConfig(), Credentials: map[string]string{}}
	for k := range s.rt.GetCredentials() {
		wrong.Credentials[k] = "conformance-wrong-" + k
	}
	_, err := s.c.ValidateRuntime(ctx(t), &providerv1.ValidateRuntimeRequest{Runtime: wrong})
	wantCode(t, "ValidateRuntime with wrong credentials", err, codes.Unauthenticated)
	if r := sdk.Reason(err); err != nil && r != sdk.ReasonBadCredentials {
		t.Errorf("ValidateRuntime with wrong credentials: reason %q, want %s (sdk.BadCredentials)", r, sdk.ReasonBadCredentials)
	}
	for k, v := range wrong.Credentials {
		if err != nil && strings.Contains(err.Error(), v) {
			t.Errorf("the error repeats credential %s: a secret must never be returned", k)
		}
	}
}

// cleanedUp deletes what the suite created (again: deletes are
// idempotent) and checks that none of it is listed any more.
func (s *suite) cleanedUp(t T) {
	s.cleanup()
	c := ctx(t)
	s.mu.Lock()
	ids := map[string]bool{}
	for _, id := range s.instances {
		ids[id] = true
	}
	if s.inst != nil {
		ids[s.inst.GetId()] = true
	}
	networks, volumes, snaps := slices.Clone(s.networks), slices.Clone(s.volumes), slices.Clone(s.snapIDs)
	s.mu.Unlock()
	list, err := s.c.ListInstances(c, &providerv1.ListInstancesRequest{Runtime: s.rt})
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	for _, in := range list.GetInstances() {
		if (ids[in.GetId()] || strings.HasPrefix(in.GetName(), s.prefix)) && in.GetState() != providerv1.InstanceState_INSTANCE_STATE_TERMINATED {
			t.Errorf("instance %s (%s) is still listed, %v", in.GetId(), in.GetName(), in.GetState())
		}
	}
	for _, id := range networks {
		if _, err := s.c.GetNetwork(c, &providerv1.GetNetworkRequest{Runtime: s.rt, NetworkId: id}); status.Code(err) != codes.NotFound {
			t.Errorf("network %s: GetNetwork answers %v, want NotFound", id, err)
		}
	}
	if s.caps.Volumes {
		vl, err := s.c.ListVolumes(c, &providerv1.ListVolumesRequest{Runtime: s.rt})
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		for _, v := range vl.GetVolumes() {
			if slices.Contains(volumes, v.GetId()) || ids[v.GetInstanceId()] {
				t.Errorf("volume %s (instance %q) is still listed", v.GetId(), v.GetInstanceId())
			}
		}
	}
	if s.caps.Snapshots {
		sl, err := s.c.ListSnapshots(c, &providerv1.ListSnapshotsRequest{Runtime: s.rt})
		if err != nil {
			t.Fatalf("ListSnapshots: %v", err)
		}
		for _, sn := range sl.GetSnapshots() {
			if slices.Contains(snaps, sn.GetId()) {
				t.Errorf("snapshot %s is still listed", sn.GetId())
			}
		}
	}
}
