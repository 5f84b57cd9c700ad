// Package clusterops owns the cluster lifecycle. Its Lifecycle accepts a
// change (create, delete, update env): it resolves the parameters, renders
// the package's spec once, seals secrets, checks the node limit, plans the
// job's tasks following the AppCenter order of events (docs/appcenter-format.md
// §4), and commits the cluster, the job and the rendered spec in one
// transaction. Its Ops are the task handlers that carry the job out through
// the provider, the frontgate and the drones, reading the stored spec
// instead of rendering again, and the finalizers that settle the cluster
// when the job ends. Every handler converges from whatever state it finds,
// so the job engine may run it again after a crash.
//
// Files by concern: lifecycle.go (accepting changes, finalizers), plan.go
// (task graphs), size.go (the node limit), packages.go (packages and specs),
// network.go (network and frontgate), instances.go, metadata.go, drones.go
// (drones connected, their renderer configured), service.go (lifecycle
// commands on nodes, rolled out per role), operations.go (restart, custom
// services, recover), scale.go, upgrade.go (upgrade, rollback), power.go
// (stop, start), reconcile.go (what exists between jobs: observed status,
// lost agents revived).
package clusterops

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Config wires the handlers to pilot's parts.
type Config struct {
	Store      *store.Store
	Packages   *Packages
	Frontgates FrontgateLink
	Providers  ProviderSource
	// PilotAddress is the host:port frontgates dial.
	PilotAddress string
	Logger       *slog.Logger
	// DroneWait bounds waiting for drones to connect (default 3 min).
	DroneWait time.Duration
	// CommandKey signs every command sent to a drone (internal/cmdsign);
	// drones run nothing else. Without it no command is sent.
	CommandKey ed25519.PrivateKey
	// Tokens issues the join tokens put in new instances' user data.
	Tokens TokenIssuer
	// DroneKeys gives the key of each drone's current certificate, which
	// its cluster's metadata key is sealed to (pilot/enroll.Tokens).
	// Without it no metadata key is delivered.
	DroneKeys DroneKeySource
	// CAPEM is pilot's CA certificate, handed to new instances so they can
	// trust pilot and their frontgate before they have certificates.
	CAPEM []byte
	// Box opens runtime credentials stored sealed (nil: stored in clear).
	Box *secretbox.Box
}

// ProviderSource hands out provider plugin clients by name
// (*pilot/providers.Host).
type ProviderSource interface {
	Get(ctx context.Context, name string) (providerv1.ProviderClient, error)
}

// FrontgateLink is what the handlers use of pilot's frontgate streams
// (*pilot/fglink.Server): a call to a frontgate (relayed to a drone when
// the request names a node), and waiting for a frontgate to connect. Both
// fail with an error wrapping fglink.ErrRevoked for a revoked frontgate.
type FrontgateLink interface {
	Call(ctx context.Context, frontgateID string, req *streamv1.Request) (*streamv1.Response, error)
	WaitConnected(ctx context.Context, frontgateID string) error
	// Connected reports whether the frontgate's stream is up now.
	Connected(frontgateID string) bool
}

// TokenIssuer issues single-use join tokens (pilot/enroll.Tokens).
type TokenIssuer interface {
	Issue(ctx context.Context, id pki.Identity, ips []net.IP, ttl time.Duration) (string, error)
}

// DroneKeySource gives the public key of a drone's current certificate
// (pilot/enroll.Tokens).
type DroneKeySource interface {
	DroneKey(ctx context.Context, id pki.Identity) (crypto.PublicKey, error)
}

// Ops holds the task handlers and the finalizers.
type Ops struct {
	cfg Config
	log *slog.Logger

	// nodeWrites coalesces setNode calls per cluster (group commit).
	nodeMu     sync.Mutex
	nodeWrites map[string]*nodeBatch
}

// nodeBatch is one cluster's queue of node changes waiting for a write,
// and whether a caller is writing them.
type nodeBatch struct {
	pending []nodeWrite
	writing bool
}

type nodeWrite struct {
	nodeID string
	fn     func(*pilotv1.Node)
	done   chan error
}

// New returns the cluster operations.
func New(cfg Config) *Ops {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Packages == nil {
		cfg.Packages = NewPackages(cfg.Store)
	}
	if cfg.DroneWait <= 0 {
		cfg.DroneWait = 3 * time.Minute
	}
	return &Ops{cfg: cfg, log: cfg.Logger}
}

// Handlers returns the task handlers by kind.
func (o *Ops) Handlers() map[string]jobs.Handler {
	return map[string]jobs.Handler{
		taskCreateNetwork:    o.createNetwork,
		taskEnsureFrontgate:  o.ensureFrontgate,
		taskRunInstances:     o.runInstances,
		taskRegister:         o.registerMetadata,
		taskWaitDrones:       o.waitDrones,
		taskDeliverConfd:     o.deliverConfd,
		taskRunService:       o.runService,
		taskDeleteInstances:  o.deleteInstances,
		taskDeleteMetadata:   o.deleteMetadata,
		taskReleaseNetwork:   o.releaseNetwork,
		taskWaitRendered:     o.waitRendered,
		taskAddNodes:         o.addNodes,
		taskRemoveNodes:      o.removeNodes,
		taskFinishUpgrade:    o.finishUpgrade,
		taskStopInstances:    o.stopInstances,
		taskStartInstances:   o.startInstances,
		taskResizeInstances:  o.resizeInstances,
		taskSnapshotVolumes:  o.snapshotVolumes,
		taskRestoreVolumes:   o.restoreVolumes,
		taskCustomMetadata:   o.customMetadata,
		taskDisplayTab:       o.displayTab,
		taskUpdateNodeNames:  o.updateNodeNames,
		taskReserveAddresses: o.reserveAddresses,
		taskReleaseAddresses: o.releaseAddresses,
	}
}

// Finalizers returns the job finalizers by job kind.
func (o *Ops) Finalizers() map[string]jobs.Finalizer {
	return map[string]jobs.Finalizer{
		KindCreate:     o.finishCreate,
		KindDelete:     o.finishDelete,
		KindUpdateEnv:  o.finishUpdate,
		KindRestart:    o.finishUpdate,
		KindScaleOut:   o.finishScale,
		KindScaleIn:    o.finishScale,
		KindRecover:    o.finishScale,
		KindUpgrade:    o.finishVersionChange,
		KindRollback:   o.finishVersionChange,
		KindStop:       o.finishPower,
		KindStart:      o.finishPower,
		KindStartNodes: o.finishPower,
		KindResize:     o.finishPower,
		KindBackup:     o.finishBackup,
		KindRestore:    o.finishPower,
		KindDisplayTab: o.finishDisplayTab,
	}
}

// taskEnv is what a handler works on, loaded fresh from the store.
type taskEnv struct {
	in   *pilotv1.TaskInput
	c    *pilotv1.Cluster
	n    *pilotv1.Network
	pkg  *apppkg.Package
	spec *apppkg.ClusterSpec
	// prov and prt are the runtime's provider and the runtime as the
	// provider gets it.
	prov providerv1.ProviderClient
	prt  *providerv1.Runtime
}

const (
	needNetwork = 1 << iota
	// needSpec reads the spec the job was planned with.
	needSpec
	needPackage
	needProvider
)

// load reads the task's input and the cluster it acts on, plus its network,
// the job's spec, the cluster's package and its runtime's provider when
// asked.
func (o *Ops) load(ctx context.Context, t *jobs.Task, need int) (*taskEnv, error) {
	in := t.Task.GetInput()
	if in.GetClusterId() == "" {
		return nil, fmt.Errorf("task %s: its input names no cluster", t.Task.GetId())
	}
	e := &taskEnv{in: in}
	var err error
	if e.c, err = o.cluster(ctx, in.ClusterId); err != nil {
		return nil, err
	}
	if need&needNetwork != 0 {
		if e.n, err = o.network(ctx, e.c); err != nil {
			return nil, err
		}
	}
	if need&needSpec != 0 {
		if in.PriorSpec {
			e.spec, err = o.cfg.Packages.JobPriorSpec(ctx, t.Job.Id)
		} else {
			e.spec, _, err = o.cfg.Packages.JobSpec(ctx, t.Job.Id)
		}
		if err != nil {
			return nil, err
		}
	}
	if need&needPackage != 0 {
		if e.pkg, err = o.cfg.Packages.Get(ctx, e.c.Tenant, e.c.App, e.c.AppVersion); err != nil {
			return nil, err
		}
	}
	if need&needProvider != 0 {
		if e.prov, e.prt, err = o.provider(ctx, e.c.Tenant, e.c.Runtime); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func newCluster() *pilotv1.Cluster { return &pilotv1.Cluster{} }
func newNetwork() *pilotv1.Network { return &pilotv1.Network{} }

func (o *Ops) cluster(ctx context.Context, id string) (*pilotv1.Cluster, error) {
	c := &pilotv1.Cluster{}
	if _, err := o.cfg.Store.Get(ctx, store.ClusterKey(id), c); err != nil {
		return nil, fmt.Errorf("load cluster %s: %w", id, err)
	}
	return c, nil
}

func (o *Ops) updateCluster(ctx context.Context, id string, fn func(*pilotv1.Cluster) error) (*pilotv1.Cluster, error) {
	return store.Update(ctx, o.cfg.Store, store.ClusterKey(id), newCluster, fn)
}

// setNode applies fn to one node of the cluster's record, and returns once
// that is stored. Concurrent calls for one cluster share writes: the first
// caller writes every change queued meanwhile in one update, then those
// queued during that write, until none is left. Creating 1,000 instances
// rewrote the whole record (some 400 KB) once per instance, a write each
// and as much etcd history; now a write carries every instance that came
// up while the previous one was stored (issue 12).
func (o *Ops) setNode(ctx context.Context, clusterID, nodeID string, fn func(*pilotv1.Node)) error {
	w := nodeWrite{nodeID: nodeID, fn: fn, done: make(chan error, 1)}
	o.nodeMu.Lock()
	if o.nodeWrites == nil {
		o.nodeWrites = map[string]*nodeBatch{}
	}
	b := o.nodeWrites[clusterID]
	if b == nil {
		b = &nodeBatch{}
		o.nodeWrites[clusterID] = b
	}
	b.pending = append(b.pending, w)
	lead := !b.writing
	b.writing = true
	o.nodeMu.Unlock()
	if lead {
		// The writes are everyone's: one caller's cancelled job must not
		// fail the others' changes. Each write has its own bound.
		shared := context.WithoutCancel(ctx)
		for {
			o.nodeMu.Lock()
			ws := b.pending
			b.pending = nil
			if len(ws) == 0 {
				b.writing = false
				delete(o.nodeWrites, clusterID)
				o.nodeMu.Unlock()
				break
			}
			o.nodeMu.Unlock()
			wctx, cancel := context.WithTimeout(shared, time.Minute)
			_, err := o.updateCluster(wctx, clusterID, func(c *pilotv1.Cluster) error {
				for _, w := range ws {
					for _, nd := range c.Nodes {
						if nd.Id == w.nodeID {
							w.fn(nd)
						}
					}
				}
				return nil
			})
			cancel()
			for _, w := range ws {
				w.done <- err
			}
		}
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// provider is the runtime's provider client and the runtime as the provider
// gets it (credentials opened).
func (o *Ops) provider(ctx context.Context, tenant, id string) (providerv1.ProviderClient, *providerv1.Runtime, error) {
	rt := &pilotv1.Runtime{}
	if _, err := o.cfg.Store.Get(ctx, store.RuntimeKey(tenant, id), rt); err != nil {
		return nil, nil, fmt.Errorf("load runtime %s: %w", id, err)
	}
	prov, err := o.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return nil, nil, jobs.Retryable(err)
	}
	creds, err := RuntimeCredentials(ctx, o.cfg.Store, o.cfg.Box, tenant, rt.Id)
	if err != nil {
		return nil, nil, err
	}
	return prov, &providerv1.Runtime{Id: rt.Id, Zone: rt.Zone, Config: rt.Config, Credentials: creds}, nil
}

// RuntimeCredentials reads and opens a runtime's stored credentials (none
// stored: nil).
func RuntimeCredentials(ctx context.Context, st *store.Store, box *secretbox.Box, tenant, id string) (map[string]string, error) {
	raw, err := st.GetRaw(ctx, store.RuntimeCredentialsKey(tenant, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var sealed map[string]string
	if err := json.Unmarshal(raw, &sealed); err != nil {
		return nil, fmt.Errorf("runtime %s credentials: %w", id, err)
	}
	creds, err := secretbox.OpenCredentials(box, tenant, id, sealed)
	if err != nil {
		return nil, fmt.Errorf("runtime %s credentials: %w (is pilot using the secret key they were stored with?)", id, err)
	}
	return creds, nil
}

// providerErr marks transient provider failures retryable.
func providerErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	inner := errors.Unwrap(err)
	switch status.Code(inner) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated, codes.NotFound:
		return err
	case codes.ResourceExhausted:
		// A quota does not free itself (sdk.QuotaExceeded); a rate limit
		// (any other ResourceExhausted) passes.
		if sdk.Reason(inner) == sdk.ReasonQuotaExceeded {
			return err
		}
	}
	return jobs.Retryable(err)
}

// frontgateCallTimeout bounds one call to a frontgate (not a command on a
// drone, which waits for the command's own timeout).
const frontgateCallTimeout = 60 * time.Second

// callFrontgate calls the network's frontgate; a frontgate that is not
// connected, or a stream that broke, is worth a retry.
func (o *Ops) callFrontgate(ctx context.Context, n *pilotv1.Network, req *streamv1.Request) (*streamv1.Response, error) {
	cctx, cancel := context.WithTimeout(ctx, frontgateCallTimeout)
	defer cancel()
	resp, err := o.cfg.Frontgates.Call(cctx, n.FrontgateId, req)
	if err != nil {
		if errors.Is(err, fglink.ErrRevoked) {
			return nil, err
		}
		var re *streamrpc.Error
		if errors.As(err, &re) && re.Code != streamrpc.CodeUnavailable && re.Code != streamrpc.CodeDeadline {
			return nil, err
		}
		return nil, jobs.Retryable(err)
	}
	return resp, nil
}

// maxNodeErrors is how many failed nodes a step's error names: the node
// results keep every node's own, and a task's error stays short whatever
// the cluster's size.
const maxNodeErrors = 5

// forEachNode runs fn for every node in parallel. It fails when any call
// failed, naming the first maxNodeErrors failures, retryably only when
// every failure was.
func forEachNode(ctx context.Context, nodes []*pilotv1.Node, fn func(context.Context, *pilotv1.Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, nd)
		}()
	}
	wg.Wait()
	var failed []error
	retry := true
	for _, e := range errs {
		if e != nil {
			failed = append(failed, e)
			retry = retry && jobs.IsRetryable(e)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	err := errors.Join(failed[:min(len(failed), maxNodeErrors)]...)
	if len(failed) > maxNodeErrors {
		err = fmt.Errorf("%w\n… and %d more nodes failed (`hangar job show` lists them)", err, len(failed)-maxNodeErrors)
	}
	if retry {
		return jobs.Retryable(err)
	}
	return err
}

func roleSpec(spec *apppkg.ClusterSpec, role string) *apppkg.NodeSpec {
	for i := range spec.Nodes {
		if spec.Nodes[i].Role == role {
			return &spec.Nodes[i]
		}
	}
	return nil
}

// agentNodes are the nodes with an instance whose role runs the agent.
// onlyNodes keeps the nodes whose ids are listed; no list keeps all (a
// task's node_ids narrows it to some nodes, e.g. those a scale-out adds).
func onlyNodes(nodes []*pilotv1.Node, ids []string) []*pilotv1.Node {
	if len(ids) == 0 {
		return nodes
	}
	var out []*pilotv1.Node
	for _, nd := range nodes {
		if slices.Contains(ids, nd.Id) {
			out = append(out, nd)
		}
	}
	return out
}

func agentNodes(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Node {
	var out []*pilotv1.Node
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		if r := roleSpec(spec, nd.Role); r != nil && !agentInstalled(*r) {
			continue
		}
		out = append(out, nd)
	}
	return out
}
