package clusterops

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// fakeProvider is a provider plugin in memory that keeps the contract of
// providerv1 (the same idempotency token yields the same network or
// instance; deleting what is not there succeeds; a network with instances
// is not deleted) and counts the calls that create something.
type fakeProvider struct {
	providerv1.ProviderClient // what the handlers do not call panics

	mu          sync.Mutex
	networks    map[string]*providerv1.Network  // by id
	instances   map[string]*providerv1.Instance // by id
	byToken     map[string]string               // idempotency token → id
	creates     map[string]int                  // method → calls that created something
	deletes     map[string]int                  // method → calls that deleted something
	reads       map[string]int                  // method → calls of GetInstance and ListInstances
	lastAddress int
	caps        []string
	snapshots   map[string]string // idempotency token → snapshot id
	restores    map[string]int    // instance id → volumes restored
	// What ValidateRuntime answers of images.
	imagesRequired bool
	images         []string
	// reserved are the reserved addresses by idempotency token.
	reserved map[string]string
}

func (p *fakeProvider) ReserveAddress(_ context.Context, req *providerv1.ReserveAddressRequest, _ ...grpc.CallOption) (*providerv1.ReservedAddress, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.reserved[req.IdempotencyToken]; ok {
		return &providerv1.ReservedAddress{NetworkId: req.NetworkId, Address: a}, nil
	}
	p.lastAddress++
	a := fmt.Sprintf("10.9.0.%d", p.lastAddress)
	p.reserved[req.IdempotencyToken] = a
	p.creates["ReserveAddress"]++
	return &providerv1.ReservedAddress{NetworkId: req.NetworkId, Address: a}, nil
}

func (p *fakeProvider) ReleaseAddress(_ context.Context, req *providerv1.ReleaseAddressRequest, _ ...grpc.CallOption) (*providerv1.ReleaseAddressResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, a := range p.reserved {
		if a == req.Address {
			delete(p.reserved, t)
			p.deletes["ReleaseAddress"]++
		}
	}
	return &providerv1.ReleaseAddressResponse{}, nil
}

func (p *fakeProvider) ValidateRuntime(context.Context, *providerv1.ValidateRuntimeRequest, ...grpc.CallOption) (*providerv1.ValidateRuntimeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &providerv1.ValidateRuntimeResponse{ImagesRequired: p.imagesRequired, Images: p.images}, nil
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{networks: map[string]*providerv1.Network{}, instances: map[string]*providerv1.Instance{},
		byToken: map[string]string{}, creates: map[string]int{}, deletes: map[string]int{}, reads: map[string]int{},
		caps: []string{"stop_start", "resize", "snapshots", "reserved_addresses"}, snapshots: map[string]string{}, restores: map[string]int{},
		reserved: map[string]string{}}
}

func (p *fakeProvider) Get(_ context.Context, name string) (providerv1.ProviderClient, error) {
	if name != "fake" {
		return nil, fmt.Errorf("no provider %q in this test", name)
	}
	return p, nil
}

func (p *fakeProvider) CreateNetwork(_ context.Context, req *providerv1.CreateNetworkRequest, _ ...grpc.CallOption) (*providerv1.Network, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id, ok := p.byToken[req.IdempotencyToken]; ok && p.networks[id] != nil {
		return proto.Clone(p.networks[id]).(*providerv1.Network), nil
	}
	n := &providerv1.Network{Id: fmt.Sprintf("vpc-%d", len(p.byToken)+1), Name: req.Name, Cidr: "10.9.0.0/24"}
	p.networks[n.Id], p.byToken[req.IdempotencyToken] = n, n.Id
	p.creates["CreateNetwork"]++
	return proto.Clone(n).(*providerv1.Network), nil
}

func (p *fakeProvider) DeleteNetwork(_ context.Context, req *providerv1.DeleteNetworkRequest, _ ...grpc.CallOption) (*providerv1.DeleteNetworkResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, in := range p.instances {
		if in.NetworkId == req.NetworkId {
			return nil, status.Errorf(codes.FailedPrecondition, "network %s holds instance %s", req.NetworkId, in.Id)
		}
	}
	if p.networks[req.NetworkId] != nil {
		delete(p.networks, req.NetworkId)
		p.deletes["DeleteNetwork"]++
	}
	return &providerv1.DeleteNetworkResponse{}, nil
}

func (p *fakeProvider) RunInstance(_ context.Context, req *providerv1.RunInstanceRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id, ok := p.byToken[req.IdempotencyToken]; ok && p.instances[id] != nil {
		return proto.Clone(p.instances[id]).(*providerv1.Instance), nil
	}
	if p.networks[req.NetworkId] == nil {
		return nil, status.Errorf(codes.NotFound, "network %s", req.NetworkId)
	}
	p.lastAddress++
	in := &providerv1.Instance{Id: fmt.Sprintf("i-%d", len(p.byToken)+1), NetworkId: req.NetworkId, Name: req.Name,
		Address: fmt.Sprintf("10.9.0.%d", p.lastAddress), Image: req.Image, State: providerv1.InstanceState_INSTANCE_STATE_RUNNING, Labels: req.Labels}
	p.instances[in.Id], p.byToken[req.IdempotencyToken] = in, in.Id
	p.creates["RunInstance"]++
	return proto.Clone(in).(*providerv1.Instance), nil
}

func (p *fakeProvider) ListInstances(_ context.Context, req *providerv1.ListInstancesRequest, _ ...grpc.CallOption) (*providerv1.ListInstancesResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads["ListInstances"]++
	out := &providerv1.ListInstancesResponse{}
	for _, in := range p.instances {
		if req.NetworkId == "" || in.NetworkId == req.NetworkId {
			out.Instances = append(out.Instances, proto.Clone(in).(*providerv1.Instance))
		}
	}
	return out, nil
}

func (p *fakeProvider) DeleteInstance(_ context.Context, req *providerv1.DeleteInstanceRequest, _ ...grpc.CallOption) (*providerv1.DeleteInstanceResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.instances[req.InstanceId] != nil {
		delete(p.instances, req.InstanceId)
		p.deletes["DeleteInstance"]++
	}
	return &providerv1.DeleteInstanceResponse{}, nil
}

func (p *fakeProvider) Info(context.Context, *providerv1.InfoRequest, ...grpc.CallOption) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: "fake", Version: "1", Capabilities: p.caps}, nil
}

func (p *fakeProvider) GetInstance(_ context.Context, req *providerv1.GetInstanceRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads["GetInstance"]++
	in := p.instances[req.InstanceId]
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "instance %s", req.InstanceId)
	}
	return proto.Clone(in).(*providerv1.Instance), nil
}

func (p *fakeProvider) StopInstance(_ context.Context, req *providerv1.StopInstanceRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	return p.setState(req.InstanceId, providerv1.InstanceState_INSTANCE_STATE_STOPPED)
}

func (p *fakeProvider) StartInstance(_ context.Context, req *providerv1.StartInstanceRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	return p.setState(req.InstanceId, providerv1.InstanceState_INSTANCE_STATE_RUNNING)
}

func (p *fakeProvider) ResizeInstance(_ context.Context, req *providerv1.ResizeInstanceRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := p.instances[req.InstanceId]
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "instance %s", req.InstanceId)
	}
	if (req.Cpu > 0 || req.MemoryMib > 0) && in.State == providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %s is running", req.InstanceId)
	}
	in.Cpu, in.MemoryMib, in.VolumeGib = max(in.Cpu, req.Cpu), max(in.MemoryMib, req.MemoryMib), max(in.VolumeGib, req.VolumeGib)
	if req.Cpu > 0 {
		in.Cpu = req.Cpu
	}
	if req.MemoryMib > 0 {
		in.MemoryMib = req.MemoryMib
	}
	return proto.Clone(in).(*providerv1.Instance), nil
}

func (p *fakeProvider) CreateSnapshot(_ context.Context, req *providerv1.CreateSnapshotRequest, _ ...grpc.CallOption) (*providerv1.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.instances[req.InstanceId] == nil {
		return nil, status.Errorf(codes.NotFound, "instance %s", req.InstanceId)
	}
	if _, ok := p.snapshots[req.IdempotencyToken]; !ok {
		p.snapshots[req.IdempotencyToken] = fmt.Sprintf("snap-%d", len(p.snapshots)+1)
	}
	return &providerv1.Snapshot{Id: p.snapshots[req.IdempotencyToken], InstanceId: req.InstanceId}, nil
}

func (p *fakeProvider) RestoreSnapshot(_ context.Context, req *providerv1.RestoreSnapshotRequest, _ ...grpc.CallOption) (*providerv1.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := p.instances[req.InstanceId]
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "instance %s", req.InstanceId)
	}
	if in.State == providerv1.InstanceState_INSTANCE_STATE_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %s is running", req.InstanceId)
	}
	p.restores[req.InstanceId]++
	return proto.Clone(in).(*providerv1.Instance), nil
}

func (p *fakeProvider) setState(id string, st providerv1.InstanceState) (*providerv1.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := p.instances[id]
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "instance %s", id)
	}
	in.State = st
	return proto.Clone(in).(*providerv1.Instance), nil
}

// instancesLabelled counts the running instances with label k=v.
func (p *fakeProvider) instancesLabelled(k, v string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, in := range p.instances {
		if in.Labels[k] == v {
			n++
		}
	}
	return n
}

func (p *fakeProvider) count(m map[string]int, method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return m[method]
}

// fakeFrontgate is the frontgate link and the drones behind it: a
// frontgate is connected once its instance runs, a drone once its node's
// instance runs. Like the real ones it checks pilot's signature on
// commands and renderer configurations, opens the sealed metadata key with
// the drone's key, and runs a command id at most once, answering a repeat
// with the recorded result.
type fakeFrontgate struct {
	prov   *fakeProvider
	cmdKey ed25519.PublicKey
	drones *fakeDroneKeys
	// exitCode decides a command's exit code (nil: 0).
	exitCode func(cmd string) int32
	// output, when set, is what a command prints (default "ran <cmd>").
	output func(nodeID, cmd string) string
	// stillRunning, when it holds for a command, answers it RUNNING, as a
	// drone does when the request's deadline comes before the command's
	// end.
	stillRunning func(cmd string) bool
	asked        map[string]int // command id → requests received
	// renderLag holds drones that many revisions behind; renderErr gives a
	// node's render an error.
	renderLag int
	renderErr map[string]string
	// health is what each drone reports of its node's health.
	health map[string]*streamv1.HealthReport
	// cutOff holds nodes whose drones are not connected although their
	// instances run.
	cutOff map[string]bool

	mu       sync.Mutex
	metadata map[string]map[string]string // cluster → tree
	readers  map[string][]string          // cluster → reader node ids
	applies  int
	// subtreeApplies counts the ApplyMetadataSubtree requests (a part of
	// applies).
	subtreeApplies int
	renderers      map[string]*streamv1.ConfigureRenderer // node → last configuration
	keys           map[string][]byte                      // node → metadata key it opened
	results        map[string]*streamv1.CommandResult     // command id → result
	runs           map[string]int                         // command id → times run
	execs          map[string]int                         // node and command line → times run
	ran            []string                               // "node: command line", in the order run
}

func newFakeFrontgate(prov *fakeProvider, cmdKey ed25519.PublicKey, drones *fakeDroneKeys) *fakeFrontgate {
	return &fakeFrontgate{prov: prov, cmdKey: cmdKey, drones: drones, metadata: map[string]map[string]string{}, readers: map[string][]string{},
		renderers: map[string]*streamv1.ConfigureRenderer{}, keys: map[string][]byte{}, results: map[string]*streamv1.CommandResult{}, runs: map[string]int{},
		execs: map[string]int{}}
}

func (f *fakeFrontgate) Connected(frontgateID string) bool { return f.connected(frontgateID) }

func (f *fakeFrontgate) connected(frontgateID string) bool {
	return f.prov.instancesLabelled("hangar/role", "frontgate") > 0 && strings.HasPrefix(frontgateID, "fg-")
}

func (f *fakeFrontgate) WaitConnected(ctx context.Context, frontgateID string) error {
	if f.connected(frontgateID) {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("frontgate %s is not connected: %w", frontgateID, ctx.Err())
}

func (f *fakeFrontgate) Call(_ context.Context, frontgateID string, req *streamv1.Request) (*streamv1.Response, error) {
	if !f.connected(frontgateID) {
		return nil, &streamrpc.Error{Code: streamrpc.CodeUnavailable, Message: "frontgate " + frontgateID + " is not connected"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ack := &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{}}}
	switch b := req.Body.(type) {
	case *streamv1.Request_ApplyMetadata:
		f.metadata[b.ApplyMetadata.ClusterId] = b.ApplyMetadata.Kvs
		f.readers[b.ApplyMetadata.ClusterId] = b.ApplyMetadata.ReaderNodeIds
		f.applies++
		// Each apply is one etcd revision, which every drone renders at
		// once.
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Revision: int64(f.applies)}}}, nil
	case *streamv1.Request_ApplyMetadataSubtree:
		m := b.ApplyMetadataSubtree
		tree, ok := f.metadata[m.ClusterId]
		if !ok {
			return nil, &streamrpc.Error{Code: streamrpc.CodeNotFound, Message: "cluster " + m.ClusterId + " has no metadata tree"}
		}
		next := map[string]string{}
		for k, v := range tree {
			if !strings.HasPrefix(k, m.Under) {
				next[k] = v
			}
		}
		for k, v := range m.Kvs {
			next[k] = v
		}
		f.metadata[m.ClusterId] = next
		f.subtreeApplies++
		f.applies++
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Revision: int64(f.applies)}}}, nil
	case *streamv1.Request_DeleteMetadata:
		delete(f.metadata, b.DeleteMetadata.ClusterId)
		return ack, nil
	case *streamv1.Request_ListDrones:
		list := &streamv1.DroneList{}
		f.prov.mu.Lock()
		for _, in := range f.prov.instances {
			// A drone is connected while its instance runs.
			if in.Labels["hangar/cluster"] == b.ListDrones.ClusterId && in.State == providerv1.InstanceState_INSTANCE_STATE_RUNNING && !f.cutOff[in.Labels["hangar/node"]] {
				node := in.Labels["hangar/node"]
				list.Drones = append(list.Drones, &streamv1.DroneInfo{NodeId: node, ClusterId: b.ListDrones.ClusterId, RenderedRevision: int64(f.applies - f.renderLag), RenderError: f.renderErr[node], Health: f.health[node]})
			}
		}
		f.prov.mu.Unlock()
		return &streamv1.Response{Body: &streamv1.Response_DroneList{DroneList: list}}, nil
	case *streamv1.Request_ConfigureRenderer:
		cr := b.ConfigureRenderer
		if err := cmdsign.VerifyRenderer(f.cmdKey, cr, cr.NodeId, cr.ClusterId, time.Now()); err != nil {
			return nil, &streamrpc.Error{Code: streamrpc.CodeUnauthenticated, Message: err.Error()}
		}
		if len(cr.SealedMetadataKey) > 0 {
			key, err := seal.Open(f.drones.key(cr.NodeId), seal.MetadataKeyInfo(cr.ClusterId, cr.NodeId), cr.SealedMetadataKey)
			if err != nil {
				return nil, &streamrpc.Error{Code: streamrpc.CodeInvalid, Message: err.Error()}
			}
			f.keys[cr.NodeId] = key
		}
		f.renderers[cr.NodeId] = cr
		return ack, nil
	case *streamv1.Request_RunCommand:
		rc := b.RunCommand
		if err := cmdsign.Verify(f.cmdKey, rc, rc.NodeId, time.Now()); err != nil {
			return nil, &streamrpc.Error{Code: streamrpc.CodeUnauthenticated, Message: err.Error()}
		}
		if f.asked == nil {
			f.asked = map[string]int{}
		}
		f.asked[rc.CommandId]++
		if res, ok := f.results[rc.CommandId]; ok {
			return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: res}}, nil
		}
		if f.stillRunning != nil && f.stillRunning(rc.Cmd) {
			return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{CommandId: rc.CommandId, NodeId: rc.NodeId, State: streamv1.CommandState_COMMAND_STATE_RUNNING}}}, nil
		}
		f.runs[rc.CommandId]++
		f.execs[execKey(rc.NodeId, rc.Cmd)]++
		f.ran = append(f.ran, rc.NodeId+": "+rc.Cmd)
		code := int32(0)
		if f.exitCode != nil {
			code = f.exitCode(rc.Cmd)
		}
		out := "ran " + rc.Cmd + "\n"
		if f.output != nil {
			out = f.output(rc.NodeId, rc.Cmd)
		}
		res := &streamv1.CommandResult{CommandId: rc.CommandId, NodeId: rc.NodeId, State: streamv1.CommandState_COMMAND_STATE_EXITED, ExitCode: code, Output: []byte(out)}
		f.results[rc.CommandId] = res
		return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: res}}, nil
	}
	return nil, fmt.Errorf("fake frontgate: unexpected request %T", req.Body)
}

// fakeDroneKeys stands for the drones' certificate keys (one per node) and
// the join tokens issued to instances.
type fakeDroneKeys struct {
	mu     sync.Mutex
	keys   map[string]*ecdsa.PrivateKey
	issued int
}

func (d *fakeDroneKeys) key(nodeID string) *ecdsa.PrivateKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys == nil {
		d.keys = map[string]*ecdsa.PrivateKey{}
	}
	if d.keys[nodeID] == nil {
		k, err := pki.NewKey()
		if err != nil {
			panic(err)
		}
		d.keys[nodeID] = k
	}
	return d.keys[nodeID]
}

func (d *fakeDroneKeys) DroneKey(_ context.Context, id pki.Identity) (crypto.PublicKey, error) {
	return d.key(id.ID).Public(), nil
}

func (d *fakeDroneKeys) Issue(_ context.Context, id pki.Identity, _ []net.IP, _ time.Duration) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.issued++
	return "hjt_" + id.ID, nil
}

// opsHarness is pilot's lifecycle and handlers over a real etcd, with a
// fake provider and a fake frontgate link; the engine never runs, the
// test calls the handlers.
type opsHarness struct {
	st     *store.Store
	pkgs   *Packages
	ops    *Ops
	life   *Lifecycle
	prov   *fakeProvider
	fg     *fakeFrontgate
	drones *fakeDroneKeys
	pkg    *apppkg.Package
}

const (
	harnessTenant  = "acme"
	harnessRuntime = "rt-1"
)

func newOpsHarness(t *testing.T) *opsHarness {
	t.Helper()
	return newOpsHarnessWith(t, filepath.Join("..", "..", "examples", "kv"))
}

// newOpsHarnessWith is newOpsHarness with the package in dir.
func newOpsHarnessWith(t *testing.T, dir string) *opsHarness {
	t.Helper()
	st := store.New(etcdtest.Client(t))
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &opsHarness{st: st, prov: newFakeProvider(), drones: &fakeDroneKeys{}}
	h.fg = newFakeFrontgate(h.prov, pub, h.drones)
	h.pkgs = NewPackages(st)
	h.pkgs.Box = masterBox(t)
	h.ops = New(Config{Store: st, Packages: h.pkgs, Frontgates: h.fg, Providers: h.prov, PilotAddress: "127.0.0.1:7400",
		CommandKey: priv, Tokens: h.drones, DroneKeys: h.drones, CAPEM: []byte("ca"), Box: h.pkgs.Box, DroneWait: 5 * time.Second})
	engine := jobs.New(jobs.Config{Store: st, Handlers: h.ops.Handlers(), Finalizers: h.ops.Finalizers()})
	h.life = NewLifecycle(LifecycleConfig{Store: st, Packages: h.pkgs, Jobs: engine, Providers: h.prov})

	ctx := context.Background()
	if err := st.Create(ctx, store.RuntimeKey(harnessTenant, harnessRuntime), &pilotv1.Runtime{Id: harnessRuntime, Provider: "fake", Tenant: harnessTenant}); err != nil {
		t.Fatal(err)
	}
	h.pkg = h.push(t, dir)
	return h
}

// push stores the package in dir, as pilot's app push does, and returns
// it parsed.
func (h *opsHarness) push(t *testing.T, dir string) *apppkg.Package {
	t.Helper()
	archive, err := apppkg.ArchiveDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := apppkg.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.CreateAll(context.Background(), nil, map[string][]byte{store.ArchiveKey(harnessTenant, pkg.Meta.Name, pkg.Meta.Version): archive}); err != nil {
		t.Fatal(err)
	}
	return pkg
}

// create accepts a cluster of the harness's package with params.
func (h *opsHarness) create(t *testing.T, params map[string]string) *pilotv1.ClusterJob {
	t.Helper()
	r, err := h.life.Create(context.Background(), CreateRequest{Tenant: harnessTenant, App: h.pkg.Meta.Name, AppVersion: h.pkg.Meta.Version, Runtime: harnessRuntime, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs the handler of one task of job as the engine would.
func (h *opsHarness) run(t *testing.T, job *pilotv1.Job, task *pilotv1.Task) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.ops.Handlers()[task.Kind](ctx, jobs.NewTask(h.st, job, task))
}

// finish ends job as the engine would: its finalizer, then its state.
func (h *opsHarness) finish(t *testing.T, job *pilotv1.Job, state pilotv1.JobState) {
	t.Helper()
	ctx := context.Background()
	job.State = state
	if err := h.ops.Finalizers()[job.Kind](ctx, job); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, h.st, store.JobKey(job.Id), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
		j.State = state
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func (h *opsHarness) cluster(t *testing.T, id string) (*pilotv1.Cluster, int64) {
	t.Helper()
	c := &pilotv1.Cluster{}
	rev, err := h.st.Get(context.Background(), store.ClusterKey(id), c)
	if err != nil {
		t.Fatal(err)
	}
	return c, rev
}

func (h *opsHarness) network(t *testing.T) *pilotv1.Network {
	t.Helper()
	n := &pilotv1.Network{}
	if _, err := h.st.Get(context.Background(), store.NetworkKey(harnessTenant, harnessRuntime, defaultNetwork), n); err != nil {
		t.Fatal(err)
	}
	return n
}

func execKey(nodeID, cmd string) string { return nodeID + "\x00" + cmd }
