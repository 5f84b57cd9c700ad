// Package docker is the `docker` provider: a network (the VPC) is an
// internal Docker network, so nothing in it reaches pilot or anything else
// outside it, and an instance is a container of the role's image whose
// entrypoint is the drone (as the container's init, drone/initproc). The
// network's frontgate is the one container attached to a second network,
// the uplink, from which it dials pilot: the only way in or out.
//
// The provider keeps no state of its own. Everything it creates carries
// labels naming its runtime and what it is (and, for instances, the
// caller's labels: cluster, role, node), and its names derive from the
// runtime and the idempotency token, so a retried call, a restarted
// plugin, or a restarted pilot finds what exists by name and label, and
// deleting by label leaves nothing behind.
package docker

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Name and Version are what Info reports.
const (
	Name    = "docker"
	Version = "0.1.0"
	// Zone is the only zone: the Docker Engine the runtime names.
	Zone = "docker"
)

// Runtime config keys.
const (
	// keyHost is the Docker Engine endpoint (unix:///var/run/docker.sock,
	// tcp://host:2376); default: $DOCKER_HOST of the plugin, else the
	// local socket.
	keyHost = "host"
	// keyUplink is the network frontgates also join to dial pilot; pilot
	// must listen on an address reachable from it (its gateway).
	keyUplink = "uplink_network"
	// keySubnetPool is the range each network's /24 is taken from.
	keySubnetPool = "subnet_pool"
	// keyFrontgateImage is the image a frontgate instance runs.
	keyFrontgateImage = "frontgate_image"
	// keyHelperImage runs the provider's own chores (copying volumes for
	// snapshots): it needs sh, cp, find, du.
	keyHelperImage = "helper_image"
)

// Defaults of the runtime config.
const (
	defaultUplink         = "bridge"
	defaultSubnetPool     = "10.213.0.0/16"
	defaultFrontgateImage = "hangar/frontgate:latest"
	defaultHelperImage    = "hangar/drone-base:latest"
)

// FrontgateImage is the image name pilot asks for a frontgate instance.
const FrontgateImage = "frontgate"

// Config configures a Provider.
type Config struct {
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// StopGrace is how long StopInstance and DeleteInstance wait for a
	// container to exit before Docker kills it. Zero means 12s: more than
	// the drone's own grace for the app's processes.
	StopGrace time.Duration
}

// Provider implements providerv1.ProviderServer on a Docker Engine.
type Provider struct {
	sdk.Base

	log       *slog.Logger
	stopGrace time.Duration

	mu      sync.Mutex
	clients map[string]*client.Client // by endpoint
	ncpu    map[string]int            // by endpoint
	// alloc serializes what picks a free subnet or address, and creates
	// networks (Docker API 1.41 allows two networks of one name).
	alloc sync.Mutex
}

// New returns a docker provider. Close it to release its Engine clients.
func New(cfg Config) *Provider {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := cfg.StopGrace
	if grace <= 0 {
		grace = 12 * time.Second
	}
	return &Provider{log: log, stopGrace: grace, clients: map[string]*client.Client{}, ncpu: map[string]int{}}
}

// Close closes the Engine clients.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for k, c := range p.clients {
		errs = append(errs, c.Close())
		delete(p.clients, k)
	}
	return errors.Join(errs...)
}

// rtConfig is a runtime's parsed configuration and its Engine client.
type rtConfig struct {
	id        string
	host      string
	uplink    string
	pool      netip.Prefix
	frontgate string
	helper    string
	c         *client.Client
}

func (p *Provider) parseRuntime(rt *providerv1.Runtime) (*rtConfig, error) {
	if rt == nil || rt.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "runtime.id is required")
	}
	if z := rt.GetZone(); z != "" && z != Zone {
		return nil, status.Errorf(codes.InvalidArgument, "runtime.zone %q: the docker provider has the one zone %q", z, Zone)
	}
	cfg := rt.GetConfig()
	for k := range cfg {
		switch k {
		case keyHost, keyUplink, keySubnetPool, keyFrontgateImage, keyHelperImage:
		default:
			return nil, status.Errorf(codes.InvalidArgument, "runtime.config.%s: unknown setting; the docker provider takes %s, %s, %s, %s and %s",
				k, keyHost, keyUplink, keySubnetPool, keyFrontgateImage, keyHelperImage)
		}
	}
	out := &rtConfig{id: rt.GetId(), host: cfg[keyHost], uplink: or(cfg[keyUplink], defaultUplink), frontgate: or(cfg[keyFrontgateImage], defaultFrontgateImage),
		helper: or(cfg[keyHelperImage], defaultHelperImage)}
	pool, err := netip.ParsePrefix(or(cfg[keySubnetPool], defaultSubnetPool))
	if err != nil || !pool.Addr().Is4() || pool.Bits() > 24 {
		return nil, status.Errorf(codes.InvalidArgument, "runtime.config.%s %q: an IPv4 range of /24 or wider is required, such as %s", keySubnetPool, cfg[keySubnetPool], defaultSubnetPool)
	}
	out.pool = pool.Masked()
	if out.c, err = p.client(cfg[keyHost]); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "runtime.config.%s %q: %v", keyHost, cfg[keyHost], err)
	}
	return out, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// client returns the (shared) Engine client of host.
func (p *Provider) client(host string) (*client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[host]; ok {
		return c, nil
	}
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, err
	}
	p.clients[host] = c
	return c, nil
}

// Info names the provider and its capabilities. It runs on pilot's host
// with the power of the Docker socket (root-equivalent there), so only
// platform admins may create its runtimes.
func (p *Provider) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: Name, Version: Version, Capabilities: []string{
		"networks", "instances", sdk.CapRunsOnPilotHost,
		sdk.CapStopStart, sdk.CapResize, sdk.CapLiveResize, sdk.CapVolumes, sdk.CapSnapshots,
	}}, nil
}

// ValidateRuntime checks that the Engine answers, that the uplink network
// exists and leads out, and lists the images instances can run.
func (p *Provider) ValidateRuntime(ctx context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if _, err := cfg.c.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "the Docker Engine does not answer (%v): start it, or set runtime.config.%s", err, keyHost)
	}
	up, err := cfg.c.NetworkInspect(ctx, cfg.uplink, client.NetworkInspectOptions{})
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime.config.%s %q: %v", keyUplink, cfg.uplink, engineErr(err))
	}
	if up.Network.Internal {
		return nil, status.Errorf(codes.InvalidArgument, "runtime.config.%s %q is an internal network: frontgates could not dial pilot from it", keyUplink, cfg.uplink)
	}
	imgs, err := cfg.c.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, engineErr(err)
	}
	var names []string
	for _, im := range imgs.Items {
		names = append(names, im.RepoTags...)
	}
	return &providerv1.ValidateRuntimeResponse{Zones: []string{Zone}, ImagesRequired: true, Images: names}, nil
}

// engineErr maps an Engine error to the gRPC status pilot acts on.
func engineErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	switch {
	case cerrdefs.IsNotFound(err):
		return status.Error(codes.NotFound, err.Error())
	case cerrdefs.IsConflict(err):
		return status.Error(codes.Aborted, err.Error())
	case cerrdefs.IsInvalidArgument(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Errorf(codes.Unavailable, "docker engine: %v", err)
}

// hostCPUs is the Engine's CPU count (Docker refuses a limit above it),
// asked once per Engine: Info is one of its slowest calls.
func (p *Provider) hostCPUs(ctx context.Context, cfg *rtConfig) int {
	p.mu.Lock()
	n, ok := p.ncpu[cfg.host]
	p.mu.Unlock()
	if ok {
		return n
	}
	info, err := cfg.c.Info(ctx, client.InfoOptions{})
	if err != nil || info.Info.NCPU <= 0 {
		return runtime.NumCPU()
	}
	p.mu.Lock()
	p.ncpu[cfg.host] = info.Info.NCPU
	p.mu.Unlock()
	return info.Info.NCPU
}

func required(field, v string) error {
	if v == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	return nil
}
