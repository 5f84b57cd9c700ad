// Package example is a complete Hangar provider in one file, for provider
// authors to read and copy (docs/providers.md walks through it). Its
// "cloud" is a table in the plugin's memory behind an API key, so it runs
// anywhere, but every call keeps the contract pilot relies on: tokens make
// retries create nothing new, unknown ids answer NotFound, deleting twice
// succeeds, wrong credentials answer BadCredentials, and the optional calls
// it does not implement answer Unimplemented through sdk.Base. A real
// provider calls its cloud's API where this one touches the table, and
// keeps no state of its own: the cloud is the state.
package example

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Name and Version are what Info reports.
const (
	Name    = "example"
	Version = "1.0.0"
	// APIKey is the one key the example cloud accepts (credential api_key).
	APIKey = "example-key"
)

// Provider is the example provider. Embedding sdk.Base answers every
// optional call it does not implement (resize, volumes, snapshots,
// reserved addresses) with Unimplemented naming the capability.
type Provider struct {
	sdk.Base

	// The cloud: guarded by mu, as a cloud's API serializes its writes.
	mu        sync.Mutex
	seq       int
	networks  map[string]*providerv1.Network  // by id
	instances map[string]*providerv1.Instance // by id
	byToken   map[string]string               // idempotency token -> id
}

// New returns a provider with an empty cloud.
func New() *Provider {
	return &Provider{networks: map[string]*providerv1.Network{}, instances: map[string]*providerv1.Instance{}, byToken: map[string]string{}}
}

// Info names the provider and its optional capabilities: pilot only calls
// what is declared.
func (p *Provider) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: Name, Version: Version, Capabilities: []string{sdk.CapStopStart}}, nil
}

// auth is every call's first step: the runtime's credentials, as the cloud
// would check them. The error never repeats the secret.
func auth(rt *providerv1.Runtime) error {
	if rt.GetId() == "" {
		return status.Error(codes.InvalidArgument, "runtime.id is required")
	}
	key := rt.GetCredentials()["api_key"]
	if subtle.ConstantTimeCompare([]byte(key), []byte(APIKey)) != 1 {
		return sdk.BadCredentials("api_key is missing or wrong")
	}
	return nil
}

// required refuses an empty field by name, as every call must.
func required(field, v string) error {
	if v == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	return nil
}

// ValidateRuntime checks the credentials and names the zones.
func (p *Provider) ValidateRuntime(_ context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	return &providerv1.ValidateRuntimeResponse{Zones: []string{"zone-a"}}, nil
}

// newID makes an id the cloud has not used; callers hold mu.
func (p *Provider) newID(prefix string) string {
	p.seq++
	return fmt.Sprintf("%s-%04d", prefix, p.seq)
}

// scoped keys a token by runtime: two runtimes may use the same token.
func scoped(rt *providerv1.Runtime, kind, token string) string {
	return rt.GetId() + "/" + kind + "/" + token
}

// CreateNetwork: the same token always answers the same network.
func (p *Provider) CreateNetwork(_ context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	if err := required("idempotency_token", req.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := scoped(req.GetRuntime(), "net", req.GetIdempotencyToken())
	if id, ok := p.byToken[key]; ok {
		return p.networks[id], nil
	}
	id := p.newID("net")
	n := &providerv1.Network{Id: id, Name: req.GetName(), Cidr: fmt.Sprintf("10.%d.%d.0/24", p.seq/256%256, p.seq%256)}
	p.networks[id], p.byToken[key] = n, id
	return n, nil
}

// GetNetwork answers NotFound for a network it does not have.
func (p *Provider) GetNetwork(_ context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	if err := required("network_id", req.GetNetworkId()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.networks[req.GetNetworkId()]
	if !ok {
		return nil, sdk.NotFound("network", req.GetNetworkId())
	}
	return n, nil
}

// DeleteNetwork refuses a network with instances; a missing one is gone
// already, so deleting it succeeds.
func (p *Provider) DeleteNetwork(_ context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, in := range p.instances {
		if in.GetNetworkId() == req.GetNetworkId() {
			return nil, status.Errorf(codes.FailedPrecondition, "network %s still has instance %s", req.GetNetworkId(), in.GetId())
		}
	}
	delete(p.networks, req.GetNetworkId())
	return &providerv1.DeleteNetworkResponse{}, nil
}

// RunInstance: the same token always answers the same instance, even for
// calls racing each other (the lock), and never makes a second.
func (p *Provider) RunInstance(_ context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	switch {
	case req.GetIdempotencyToken() == "":
		return nil, status.Error(codes.InvalidArgument, "idempotency_token is required")
	case req.GetNetworkId() == "":
		return nil, status.Error(codes.InvalidArgument, "network_id is required")
	case req.GetCpu() < 0 || req.GetMemoryMib() < 0:
		return nil, status.Error(codes.InvalidArgument, "cpu and memory_mib may not be negative")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := scoped(req.GetRuntime(), "instance", req.GetIdempotencyToken())
	if id, ok := p.byToken[key]; ok {
		if in, ok := p.instances[id]; ok {
			return in, nil
		}
		return nil, status.Errorf(codes.FailedPrecondition, "idempotency_token %q made instance %s, since deleted; use a new token", req.GetIdempotencyToken(), id)
	}
	n, ok := p.networks[req.GetNetworkId()]
	if !ok {
		return nil, sdk.NotFound("network", req.GetNetworkId())
	}
	hosts := 0
	for _, in := range p.instances {
		if in.GetNetworkId() == n.GetId() {
			hosts++
		}
	}
	if hosts >= 250 {
		return nil, sdk.QuotaExceeded("instances of network "+n.GetId(), "250")
	}
	id := p.newID("i")
	in := &providerv1.Instance{
		Id: id, NetworkId: n.GetId(), Name: req.GetName(), Image: req.GetImage(),
		Address: fmt.Sprintf("%s.%d", n.GetCidr()[:len(n.GetCidr())-5], hosts+2),
		State:   providerv1.InstanceState_INSTANCE_STATE_RUNNING, Labels: req.GetLabels(),
		Cpu: req.GetCpu(), MemoryMib: req.GetMemoryMib(), VolumeGib: req.GetVolumeGib(), Booted: true,
	}
	p.instances[id], p.byToken[key] = in, id
	return in, nil
}

// GetInstance answers NotFound for an instance it does not have.
func (p *Provider) GetInstance(_ context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	if err := required("instance_id", req.GetInstanceId()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.instances[req.GetInstanceId()]
	if !ok {
		return nil, sdk.NotFound("instance", req.GetInstanceId())
	}
	return in, nil
}

// ListInstances lists the instances, or one network's, in a stable order.
func (p *Provider) ListInstances(_ context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := &providerv1.ListInstancesResponse{}
	for _, in := range p.instances {
		if req.GetNetworkId() == "" || in.GetNetworkId() == req.GetNetworkId() {
			out.Instances = append(out.Instances, in)
		}
	}
	sort.Slice(out.Instances, func(i, j int) bool { return out.Instances[i].GetId() < out.Instances[j].GetId() })
	return out, nil
}

// DeleteInstance succeeds for an instance that is gone already.
func (p *Provider) DeleteInstance(_ context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	if err := auth(req.GetRuntime()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.instances, req.GetInstanceId())
	return &providerv1.DeleteInstanceResponse{}, nil
}

// setState is StopInstance and StartInstance: both are idempotent, and
// keep the instance's id and address.
func (p *Provider) setState(rt *providerv1.Runtime, id string, st providerv1.InstanceState) (*providerv1.Instance, error) {
	if err := auth(rt); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.instances[id]
	if !ok {
		return nil, sdk.NotFound("instance", id)
	}
	in.State = st
	return in, nil
}

// StopInstance stops an instance (capability stop_start).
func (p *Provider) StopInstance(_ context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	return p.setState(req.GetRuntime(), req.GetInstanceId(), providerv1.InstanceState_INSTANCE_STATE_STOPPED)
}

// StartInstance starts a stopped instance (capability stop_start).
func (p *Provider) StartInstance(_ context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	return p.setState(req.GetRuntime(), req.GetInstanceId(), providerv1.InstanceState_INSTANCE_STATE_RUNNING)
}
