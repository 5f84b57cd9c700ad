package clusterops

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/metatree"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/providers"
	"github.com/hangarhq/hangar/pilot/store"
)

// Config wires the handlers to pilot's parts.
type Config struct {
	Store      *store.Store
	Packages   *Packages
	Frontgates *fglink.Server
	Providers  *providers.Host
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

// TokenIssuer issues single-use join tokens (pilot/enroll.Tokens).
type TokenIssuer interface {
	Issue(ctx context.Context, id pki.Identity, ips []net.IP, ttl time.Duration) (string, error)
}

// DroneKeySource gives the public key of a drone's current certificate
// (pilot/enroll.Tokens).
type DroneKeySource interface {
	DroneKey(ctx context.Context, id pki.Identity) (crypto.PublicKey, error)
}

// joinTokenTTL bounds how long a new instance has to join.
const joinTokenTTL = time.Hour

func (o *Ops) joinToken(ctx context.Context, id pki.Identity) (string, error) {
	if o.cfg.Tokens == nil {
		return "", errors.New("no join token issuer configured")
	}
	tok, err := o.cfg.Tokens.Issue(ctx, id, nil, joinTokenTTL)
	if err != nil {
		return "", jobs.Retryable(fmt.Errorf("issue join token for %s: %w", id, err))
	}
	return tok, nil
}

// Ops holds the handlers.
type Ops struct {
	cfg Config
	log *slog.Logger
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
		taskCreateNetwork:   o.createNetwork,
		taskEnsureFrontgate: o.ensureFrontgate,
		taskRunInstances:    o.runInstances,
		taskRegister:        o.registerMetadata,
		taskWaitDrones:      o.waitDrones,
		taskDeliverConfd:    o.deliverConfd,
		taskRunService:      o.runService,
		taskDeleteInstances: o.deleteInstances,
		taskDeleteMetadata:  o.deleteMetadata,
		taskReleaseNetwork:  o.releaseNetwork,
	}
}

// Finalizers returns the job finalizers by job kind.
func (o *Ops) Finalizers() map[string]jobs.Finalizer {
	return map[string]jobs.Finalizer{
		KindCreate:    o.finishCreate,
		KindDelete:    o.finishDelete,
		KindUpdateEnv: o.finishUpdate,
	}
}

// taskEnv is what a handler works on, loaded fresh from the store.
type taskEnv struct {
	in   input
	c    *pilotv1.Cluster
	n    *pilotv1.Network
	pkg  *apppkg.Package
	spec *apppkg.ClusterSpec
}

const (
	needNetwork = 1 << iota
	needSpec
)

// load reads the task's input and the cluster it acts on, plus its network
// and rendered spec when asked.
func (o *Ops) load(ctx context.Context, t *jobs.Task, need int) (*taskEnv, error) {
	in, err := parseInput(t)
	if err != nil {
		return nil, err
	}
	e := &taskEnv{in: in}
	if e.c, err = o.cluster(ctx, in.ClusterID); err != nil {
		return nil, err
	}
	if need&needNetwork != 0 {
		if e.n, err = o.network(ctx, e.c); err != nil {
			return nil, err
		}
	}
	if need&needSpec != 0 {
		if e.pkg, e.spec, err = o.cfg.Packages.Spec(ctx, e.c); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func parseInput(t *jobs.Task) (input, error) {
	var in input
	if err := json.Unmarshal([]byte(t.Task.Input), &in); err != nil {
		return in, fmt.Errorf("task %s: bad input: %w", t.Task.Id, err)
	}
	return in, nil
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

func (o *Ops) runtime(ctx context.Context, tenant, id string) (*pilotv1.Runtime, providerv1.ProviderClient, *providerv1.Runtime, error) {
	rt := &pilotv1.Runtime{}
	if _, err := o.cfg.Store.Get(ctx, store.RuntimeKey(tenant, id), rt); err != nil {
		return nil, nil, nil, fmt.Errorf("load runtime %s: %w", id, err)
	}
	prov, err := o.cfg.Providers.Get(ctx, rt.Provider)
	if err != nil {
		return nil, nil, nil, jobs.Retryable(err)
	}
	creds, err := RuntimeCredentials(ctx, o.cfg.Store, o.cfg.Box, tenant, rt.Id)
	if err != nil {
		return nil, nil, nil, err
	}
	return rt, prov, &providerv1.Runtime{Id: rt.Id, Zone: rt.Zone, Config: rt.Config, Credentials: creds}, nil
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
	switch status.Code(errors.Unwrap(err)) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated, codes.NotFound:
		return err
	}
	return jobs.Retryable(err)
}

// ---- create ----

// defaultNetwork is the one network per runtime that clusters share in this
// version (a later version lets a cluster name its VPC).
const defaultNetwork = "default"

func (o *Ops) createNetwork(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, 0)
	if err != nil {
		return err
	}
	c := tc.c
	rt, prov, prt, err := o.runtime(ctx, c.Tenant, c.Runtime)
	if err != nil {
		return err
	}
	key := store.NetworkKey(c.Tenant, rt.Id, defaultNetwork)
	for {
		n, err := store.Update(ctx, o.cfg.Store, key, newNetwork, func(n *pilotv1.Network) error {
			if slices.Contains(n.ClusterIds, c.Id) {
				return store.ErrNoChange
			}
			n.ClusterIds = append(n.ClusterIds, c.Id)
			return nil
		})
		if err == nil {
			_, err = o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
				if c.NetworkId == n.Id {
					return store.ErrNoChange
				}
				c.NetworkId = n.Id
				return nil
			})
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// No network yet: create one. The token is this cluster's, so a
		// retry of this task finds the same network.
		pn, err := prov.CreateNetwork(ctx, &providerv1.CreateNetworkRequest{Runtime: prt, IdempotencyToken: "net-" + c.Id, Name: "hangar-" + defaultNetwork})
		if err != nil {
			return providerErr("create network", err)
		}
		rec := &pilotv1.Network{Id: pn.Id, Runtime: rt.Id, Cidr: pn.Cidr, FrontgateId: "fg-" + pn.Id}
		if err := o.cfg.Store.Create(ctx, key, rec); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		} else if errors.Is(err, store.ErrExists) {
			// Another cluster created the network first: use theirs.
			existing := &pilotv1.Network{}
			if _, gerr := o.cfg.Store.Get(ctx, key, existing); gerr == nil && existing.Id != pn.Id {
				if _, derr := prov.DeleteNetwork(ctx, &providerv1.DeleteNetworkRequest{Runtime: prt, NetworkId: pn.Id}); derr != nil {
					o.log.Warn("delete surplus network", "network_id", pn.Id, "err", derr)
				}
			}
		}
		o.log.Info("network created", "runtime", rt.Id, "network_id", pn.Id, "cidr", pn.Cidr)
	}
}

func (o *Ops) network(ctx context.Context, c *pilotv1.Cluster) (*pilotv1.Network, error) {
	n := &pilotv1.Network{}
	if _, err := o.cfg.Store.Get(ctx, store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork), n); err != nil {
		return nil, fmt.Errorf("network of cluster %s: %w", c.Id, err)
	}
	if n.Id != c.NetworkId {
		return nil, fmt.Errorf("cluster %s is in network %s, which is no longer the runtime's network %s", c.Id, c.NetworkId, n.Id)
	}
	return n, nil
}

func (o *Ops) ensureFrontgate(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork)
	if err != nil {
		return err
	}
	c, n := tc.c, tc.n
	if n.FrontgateInstanceId == "" {
		_, prov, prt, err := o.runtime(ctx, c.Tenant, c.Runtime)
		if err != nil {
			return err
		}
		// A retry issues a new token; the provider returns the instance the
		// first attempt made (same idempotency token), whose user data holds
		// the first token, still valid for the hour.
		tok, err := o.joinToken(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: n.FrontgateId})
		if err != nil {
			return err
		}
		inst, err := prov.RunInstance(ctx, &providerv1.RunInstanceRequest{
			Runtime:          prt,
			IdempotencyToken: n.FrontgateId,
			NetworkId:        n.Id,
			Name:             n.FrontgateId,
			Image:            "frontgate",
			UserData:         userdata.Encode(userdata.Frontgate{FrontgateID: n.FrontgateId, PilotAddress: o.cfg.PilotAddress, JoinToken: tok, CAPEM: string(o.cfg.CAPEM)}),
			Labels:           map[string]string{"hangar/role": "frontgate"},
		})
		if err != nil {
			return providerErr("run frontgate instance", err)
		}
		n, err = store.Update(ctx, o.cfg.Store, store.NetworkKey(c.Tenant, c.Runtime, defaultNetwork), newNetwork, func(n *pilotv1.Network) error {
			n.FrontgateInstanceId = inst.Id
			n.FrontgateAddress = inst.Address
			return nil
		})
		if err != nil {
			return err
		}
		o.log.Info("frontgate instance started", "frontgate_id", n.FrontgateId, "instance_id", inst.Id, "address", inst.Address)
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := o.cfg.Frontgates.WaitConnected(wctx, n.FrontgateId); err != nil {
		if errors.Is(err, fglink.ErrRevoked) {
			return err
		}
		return jobs.Retryable(fmt.Errorf("frontgate %s (instance %s at %s) did not connect to pilot at %s: %w", n.FrontgateId, n.FrontgateInstanceId, n.FrontgateAddress, o.cfg.PilotAddress, err))
	}
	return nil
}

func (o *Ops) runInstances(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	in, c, n, spec := tc.in, tc.c, tc.n, tc.spec
	role := roleSpec(spec, in.Role)
	_, prov, prt, err := o.runtime(ctx, c.Tenant, c.Runtime)
	if err != nil {
		return err
	}
	ud := userdata.Drone{
		ClusterID:        c.Id,
		FrontgateID:      n.FrontgateId,
		FrontgateAddress: net.JoinHostPort(n.FrontgateAddress, strconv.Itoa(userdata.FrontgateDronePort)),
		EtcdEndpoints:    []string{"https://" + net.JoinHostPort(n.FrontgateAddress, strconv.Itoa(userdata.FrontgateEtcdPort))},
		CAPEM:            string(o.cfg.CAPEM),
	}
	for _, node := range c.Nodes {
		if node.Role != in.Role || node.InstanceId != "" {
			continue
		}
		ud.NodeID = node.Id
		if ud.JoinToken, err = o.joinToken(ctx, pki.Identity{Kind: pki.KindDrone, ID: node.Id, Cluster: c.Id}); err != nil {
			return err
		}
		req := &providerv1.RunInstanceRequest{
			Runtime:          prt,
			IdempotencyToken: node.Id,
			NetworkId:        n.Id,
			Name:             node.Id,
			UserData:         userdata.Encode(ud),
			Labels:           map[string]string{"hangar/cluster": c.Id, "hangar/role": node.Role, "hangar/node": node.Id},
		}
		if role != nil {
			req.Image = role.Container.Image
			req.Cpu = int32(role.CPU)
			req.MemoryMib = int32(role.Memory)
			req.VolumeGib = int32(volumeSize(role))
		}
		inst, err := prov.RunInstance(ctx, req)
		if err != nil {
			return providerErr(fmt.Sprintf("run instance for node %s (role %s)", node.Id, node.Role), err)
		}
		nodeID := node.Id
		if _, err := o.updateCluster(ctx, c.Id, func(c *pilotv1.Cluster) error {
			for _, nd := range c.Nodes {
				if nd.Id == nodeID {
					nd.InstanceId, nd.Address = inst.Id, inst.Address
				}
			}
			return nil
		}); err != nil {
			return err
		}
		o.log.Info("instance running", "cluster_id", c.Id, "node_id", nodeID, "instance_id", inst.Id, "address", inst.Address)
	}
	return nil
}

func volumeSize(n *apppkg.NodeSpec) int {
	if n.Volume == nil {
		return 0
	}
	return n.Volume.Size
}

func roleSpec(spec *apppkg.ClusterSpec, role string) *apppkg.NodeSpec {
	for i := range spec.Nodes {
		if spec.Nodes[i].Role == role {
			return &spec.Nodes[i]
		}
	}
	return nil
}

// gsid is a stable 9-digit id per node (AppCenter's global server id).
func gsid(nodeID string) string {
	h := fnv.New32a()
	h.Write([]byte(nodeID))
	return strconv.Itoa(100000000 + int(h.Sum32()%900000000))
}

// MetadataTree builds the cluster's metadata from its record and spec. With
// a master box, the env values of password parameters are sealed with the
// cluster's metadata key (box.Metadata), bound to their etcd key, so no
// frontgate etcd holds them in clear; the cluster's drones get that key
// (deliverConfd) and open them. pkg gives the parameters' types; a nil box
// (tests) leaves every value clear.
func MetadataTree(c *pilotv1.Cluster, n *pilotv1.Network, pkg *apppkg.Package, spec *apppkg.ClusterSpec, box *secretbox.Box) (map[string]string, error) {
	var hosts []metatree.Host
	for _, nd := range c.Nodes {
		if nd.InstanceId == "" {
			continue
		}
		h := metatree.Host{NodeID: nd.Id, InstanceID: nd.InstanceId, Role: nd.Role, IP: nd.Address, SID: int(nd.Sid), GID: int(nd.Sid), GSID: gsid(nd.Id)}
		if r := roleSpec(spec, nd.Role); r != nil {
			h.CPU, h.Memory, h.GPU, h.VolumeSize, h.InstanceClass = r.CPU, r.Memory, r.GPU, volumeSize(r), r.InstanceClass
		}
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].SID < hosts[j].SID })
	info := metatree.Cluster{ClusterID: c.Id, AppID: c.App, AppVersion: c.AppVersion, UserID: "", Zone: "", VXNet: c.NetworkId, GlobalUUID: c.Id}
	if n != nil {
		info.VXNet = n.Id
	}
	tree := metatree.Build(info, spec, hosts, metatree.Options{})
	if box == nil || pkg == nil {
		return tree, nil
	}
	if err := sealSecretEnv(tree, c, pkg, box); err != nil {
		return nil, fmt.Errorf("metadata of cluster %s: %w", c.Id, err)
	}
	return tree, nil
}

// sealSecretEnv seals the env values of tree (env/<key> and
// roles/<role>/env/<key>) that hold a password: those whose key is a
// password parameter of config.json, and, since cluster.json may publish a
// password under another env name, those equal to a password's value.
func sealSecretEnv(tree map[string]string, c *pilotv1.Cluster, pkg *apppkg.Package, box *secretbox.Box) error {
	secret := SecretParam(pkg)
	params, err := secretbox.OpenParams(box, c.Id, c.Params, secret)
	if err != nil {
		return err
	}
	vals, err := pkg.Resolve(params)
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	passwords := map[string]bool{}
	for _, it := range pkg.Config.Items() {
		if it.Type != apppkg.TypePassword {
			continue
		}
		if v, ok := vals.Get(it.Path); ok {
			if s, _ := v.(string); s != "" {
				passwords[s] = true
			}
		}
	}
	mbox, err := box.Metadata(c.Id)
	if err != nil {
		return err
	}
	// The drone opens a value with its etcd key as associated data, so a
	// value moved to another key or cluster does not open.
	prefix := "/clusters/" + c.Id + "/"
	for k, v := range tree {
		role, name, ok := envLeaf(k)
		if !ok {
			continue
		}
		if passwords[v] || secret(apppkg.GroupEnv+"."+name) || (role != "" && secret(apppkg.GroupEnv+"."+role+"."+name)) {
			tree[k] = mbox.Seal(v, prefix+k)
		}
	}
	return nil
}

// envLeaf parses an env key of the tree: "env/<name>" (role "") or
// "roles/<role>/env/<name>", with metatree's "%2F" escape undone.
func envLeaf(k string) (role, name string, ok bool) {
	unescape := func(s string) string { return strings.ReplaceAll(s, "%2F", "/") }
	if name, ok := strings.CutPrefix(k, "env/"); ok && name != "" {
		return "", unescape(name), true
	}
	parts := strings.SplitN(k, "/", 4)
	if len(parts) == 4 && parts[0] == "roles" && parts[2] == "env" && parts[3] != "" {
		return unescape(parts[1]), unescape(parts[3]), true
	}
	return "", "", false
}

func (o *Ops) registerMetadata(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n, spec := tc.c, tc.n, tc.spec
	kvs, err := MetadataTree(c, n, tc.pkg, spec, o.cfg.Packages.Box)
	if err != nil {
		return err
	}
	_, err = o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: c.Id, Kvs: kvs, ReaderNodeIds: readers(c)}}})
	if err != nil {
		return fmt.Errorf("apply metadata of cluster %s: %w", c.Id, err)
	}
	return nil
}

// callFrontgate calls the network's frontgate; a frontgate that is not
// connected, or a stream that broke, is worth a retry.
func (o *Ops) callFrontgate(ctx context.Context, n *pilotv1.Network, req *streamv1.Request) (*streamv1.Response, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
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

func (o *Ops) waitDrones(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n, spec := tc.c, tc.n, tc.spec
	want := map[string]bool{}
	for _, nd := range agentNodes(c, spec) {
		want[nd.Id] = true
	}
	deadline := time.Now().Add(o.cfg.DroneWait)
	for {
		resp, err := o.callFrontgate(ctx, n, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: c.Id}}})
		if err != nil {
			return err
		}
		missing := []string{}
		got := map[string]bool{}
		for _, d := range resp.GetDroneList().GetDrones() {
			got[d.NodeId] = true
		}
		for id := range want {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			return fmt.Errorf("drones of nodes %v did not connect to frontgate %s within %v; check the instances' agent logs", missing, n.FrontgateId, o.cfg.DroneWait)
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
}

// agentNodes are the nodes with an instance whose role runs the agent.
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

func (o *Ops) deliverConfd(ctx context.Context, t *jobs.Task) error {
	tc, err := o.load(ctx, t, needNetwork|needSpec)
	if err != nil {
		return err
	}
	c, n, pkg, spec := tc.c, tc.n, tc.pkg, tc.spec
	var key []byte
	if box := o.cfg.Packages.Box; box != nil {
		mbox, err := box.Metadata(c.Id)
		if err != nil {
			return fmt.Errorf("metadata key of cluster %s: %w", c.Id, err)
		}
		key = mbox.Key()
	}
	if len(pkg.Confd) == 0 && key == nil {
		// Nothing to deliver: templates baked into the image (/etc/confd)
		// are the drone's own business. With a key, the delivery carries
		// only the key, which baked templates need as much as delivered
		// ones to read password env values.
		return nil
	}
	now := time.Now()
	return forEachNode(ctx, agentNodes(c, spec), func(ctx context.Context, nd *pilotv1.Node) error {
		req, err := o.rendererRequest(ctx, c.Id, nd.Id, pkg.Confd, key, now)
		if err != nil {
			return fmt.Errorf("node %s (role %s): render config: %w", nd.Id, nd.Role, err)
		}
		if _, err := o.callFrontgate(ctx, n, req); err != nil {
			return fmt.Errorf("node %s (role %s): render config: %w", nd.Id, nd.Role, err)
		}
		return nil
	})
}

// rendererRequest builds the signed ConfigureRenderer for one node, with
// the cluster's metadata key (if any) sealed to the node's certificate key.
// It is built anew for every attempt: a retry after the drone renewed its
// certificate seals to the new key, and the expiry counts from now.
func (o *Ops) rendererRequest(ctx context.Context, clusterID, nodeID string, files map[string][]byte, metadataKey []byte, now time.Time) (*streamv1.Request, error) {
	if len(o.cfg.CommandKey) == 0 {
		return nil, errors.New("not sent: pilot has no command key (clusterops.Config.CommandKey) and never sends unsigned renderer configurations")
	}
	cr := &streamv1.ConfigureRenderer{NodeId: nodeID, ClusterId: clusterID, Files: files, ExpiresAt: timestamppb.New(now.Add(cmdsign.RendererLifetime))}
	if len(metadataKey) > 0 {
		if o.cfg.DroneKeys == nil {
			return nil, errors.New("not sent: pilot has no drone key source (clusterops.Config.DroneKeys) to seal the metadata key to")
		}
		pub, err := o.cfg.DroneKeys.DroneKey(ctx, pki.Identity{Kind: pki.KindDrone, ID: nodeID, Cluster: clusterID})
		if err != nil {
			// The drone is connected, so it has joined: a missing record
			// is a read racing its join, or etcd.
			return nil, jobs.Retryable(err)
		}
		if cr.SealedMetadataKey, err = seal.To(pub, seal.MetadataKeyInfo(clusterID, nodeID), metadataKey); err != nil {
			return nil, fmt.Errorf("seal the metadata key: %w", err)
		}
	}
	if err := cmdsign.SignRenderer(o.cfg.CommandKey, cr); err != nil {
		return nil, err
	}
	return &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}}, nil
}

// forEachNode runs fn for every node in parallel and joins the errors.
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
	err := errors.Join(errs...)
	for _, e := range errs {
		if e != nil && !jobs.IsRetryable(e) {
			return err
		}
	}
	if err != nil {
		return jobs.Retryable(err)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// readers are the nodes whose drones may read the cluster's metadata: its
// own. (Nodes of clusters linking to it join them once links exist.)
func readers(c *pilotv1.Cluster) []string {
	out := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		if n.InstanceId != "" {
			out = append(out, n.Id)
		}
	}
	return out
}
