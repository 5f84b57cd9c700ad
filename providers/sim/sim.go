// Package sim is a provider whose instances are real drones and
// frontgates running inside the plugin's own process, so that one machine
// holds thousands of them: the scale and speed benchmarks (bench/) and the
// tests that need many nodes run on it.
//
// Every instance is real where Hangar is concerned: a frontgate instance
// is frontgate.Start (its own embedded etcd, its own certificate, its own
// stream to pilot), a drone instance is drone.Run (its own enrollment,
// certificate, etcd watch, confd rendering into the instance's directory
// and stream to its frontgate). What is simulated is the machine under
// it: a drone's lifecycle commands go to a fake executor with a
// configurable latency, exit code and output size (exec = "real" runs
// them for real, each under its supervisor process), and RunInstance can
// be slowed down and made to fail. The "cloud" is the plugin's memory:
// instances live as long as the plugin process, and a new process starts
// with none (their directories under root_dir are removed as they are
// found).
//
// Addresses: each network is a /20 of 127.0.0.0/8, so that a frontgate
// listens on its own address (.1 of the range) with the standard ports,
// as it does on a real network; drones only dial out and take the next
// addresses.
package sim

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Name and Version are what Info reports.
const (
	Name    = "sim"
	Version = "1.0.0"
)

// Config configures the provider (not a runtime: runtimes carry their
// own settings in their config map, see parseRuntime).
type Config struct {
	// Supervisor is the command line that supervises one command when a
	// runtime asks for real execution (exec = "real"): the plugin's own
	// binary with executor.SuperviseArg.
	Supervisor []string
	// Logger receives the provider's logs and its agents'.
	Logger *slog.Logger
	// AgentLogLevel is the level of the drones' and frontgates' own logs
	// (default warn: ten thousand drones at info would drown the rest).
	AgentLogLevel slog.Level
}

// Provider is the sim provider.
type Provider struct {
	sdk.Base
	cfg Config
	log *slog.Logger

	// ctx is the owner of every agent goroutine: Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	agents sync.WaitGroup

	// rngMu guards rng alone: every fake command draws from it, and the
	// instances' lock must not be taken ten thousand times a fan-out.
	rngMu sync.Mutex
	rng   *rand.Rand

	mu        sync.Mutex
	seq       int
	networks  map[string]*network  // by id
	instances map[string]*instance // by id
	byToken   map[string]string    // runtime/kind/token -> id
	// nextRange is the next /20 of 127/8 to try for a network.
	nextRange int
	// swept holds the root_dirs cleared of dead instances (sweep).
	swept map[string]bool
}

// network is one simulated network: a /20 of 127.0.0.0/8.
type network struct {
	pb *providerv1.Network
	rt string
	// base is the range's first address as a 32-bit number.
	base uint32
	// next is the next host number; freed ones are reused first.
	next int
	free []int
}

// New returns a provider with an empty cloud; Close stops its instances.
func New(cfg Config) *Provider {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Provider{
		cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		rng:       rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))),
		networks:  map[string]*network{},
		instances: map[string]*instance{},
		byToken:   map[string]string{},
	}
}

// Close stops every instance's agent and fake command and waits for them.
func (p *Provider) Close() {
	p.cancel()
	p.agents.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, in := range p.instances {
		in.exec.Close()
	}
}

// Info: instances run on pilot's host, in the directory root_dir, and can
// be stopped and started.
func (p *Provider) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: Name, Version: Version, Capabilities: []string{
		sdk.CapRunsOnPilotHost, sdk.CapExclusiveHostDirPrefix + "root_dir", sdk.CapStopStart,
	}}, nil
}

// runtimeConfig is a runtime's settings, from its config map.
type runtimeConfig struct {
	id      string
	rootDir string
	exec    execConfig
	// runLatency delays each RunInstance; runFailureRate is the share of
	// RunInstance calls that fail (Unavailable) before creating anything.
	runLatency     time.Duration
	runFailureRate float64
	// frontgateBinary, when set, runs each network's frontgate as a
	// process of its own (that binary), so that its memory can be told
	// from its drones'; by default it runs in the sim's process.
	frontgateBinary string
}

// execConfig is how the fake executor plays a command.
type execConfig struct {
	real        bool
	latency     time.Duration
	exitCode    int
	failureRate float64
	outputBytes int
}

// configKeys names every key a runtime's config may hold, with what it
// takes: the error for an unknown or bad one lists them.
var configKeys = map[string]string{
	"root_dir":          "an absolute directory where the instances' directories are made (required)",
	"exec":              `"fake" (default: commands are not run) or "real" (run with /bin/sh under a supervisor)`,
	"exec_latency":      "how long each fake command takes, a Go duration (default 0s)",
	"exec_exit_code":    "the exit code of a failing fake command, 1-255 (default 1)",
	"exec_failure_rate": "the share of fake commands that fail, 0 to 1 (default 0)",
	"exec_output_bytes": "the size of each fake command's output, 0 to 65536 (default 0)",
	"run_latency":       "how long each RunInstance takes, a Go duration (default 0s)",
	"run_failure_rate":  "the share of RunInstance calls that fail with Unavailable, 0 to 1 (default 0)",
	"frontgate_binary":  "the absolute path of a frontgate binary: each network's frontgate runs as a process of its own (default: none, frontgates run in the sim's process)",
	cloudSocketKey:      "the absolute path of the unix socket of a sim cloud (`hangar-provider-sim cloud`) that holds this runtime's instances, so they outlive the plugin (default: none, they live in the plugin)",
}

func configHelp() string {
	keys := make([]string, 0, len(configKeys))
	for k := range configKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// parseRuntime checks a runtime and reads its config. Errors name the key
// and what it takes.
func parseRuntime(rt *providerv1.Runtime) (runtimeConfig, error) {
	if rt.GetId() == "" {
		return runtimeConfig{}, status.Error(codes.InvalidArgument, "runtime.id is required")
	}
	cfg := runtimeConfig{id: rt.GetId(), exec: execConfig{exitCode: 1}}
	bad := func(key, v string) error {
		return status.Errorf(codes.InvalidArgument, "runtime config %s = %q: want %s", key, v, configKeys[key])
	}
	for key, v := range rt.GetConfig() {
		var err error
		switch key {
		case "root_dir":
			if !filepath.IsAbs(v) {
				return cfg, bad(key, v)
			}
			cfg.rootDir = filepath.Clean(v)
		case cloudSocketKey:
			// The plugin forwards to the cloud (Plugin); in the cloud it
			// has done its job.
			if !filepath.IsAbs(v) {
				return cfg, bad(key, v)
			}
		case "frontgate_binary":
			if !filepath.IsAbs(v) {
				return cfg, bad(key, v)
			}
			cfg.frontgateBinary = filepath.Clean(v)
		case "exec":
			switch v {
			case "fake", "":
			case "real":
				cfg.exec.real = true
			default:
				return cfg, bad(key, v)
			}
		case "exec_latency", "run_latency":
			var d time.Duration
			if d, err = time.ParseDuration(v); err != nil || d < 0 {
				return cfg, bad(key, v)
			}
			if key == "exec_latency" {
				cfg.exec.latency = d
			} else {
				cfg.runLatency = d
			}
		case "exec_exit_code":
			if cfg.exec.exitCode, err = strconv.Atoi(v); err != nil || cfg.exec.exitCode < 1 || cfg.exec.exitCode > 255 {
				return cfg, bad(key, v)
			}
		case "exec_output_bytes":
			if cfg.exec.outputBytes, err = strconv.Atoi(v); err != nil || cfg.exec.outputBytes < 0 || cfg.exec.outputBytes > 65536 {
				return cfg, bad(key, v)
			}
		case "exec_failure_rate", "run_failure_rate":
			var f float64
			if f, err = strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 1 {
				return cfg, bad(key, v)
			}
			if key == "exec_failure_rate" {
				cfg.exec.failureRate = f
			} else {
				cfg.runFailureRate = f
			}
		default:
			return cfg, status.Errorf(codes.InvalidArgument, "runtime config %q: unknown key; the sim provider takes %s", key, configHelp())
		}
	}
	if cfg.rootDir == "" {
		return cfg, status.Errorf(codes.InvalidArgument, "runtime config root_dir is required: %s", configKeys["root_dir"])
	}
	if len(rt.GetCredentials()) > 0 {
		// The simulated cloud has no accounts: a credential is a mistake
		// (a runtime meant for another provider), not something to ignore.
		return cfg, sdk.BadCredentials("the sim provider takes no credentials")
	}
	return cfg, nil
}

// chance reports true with probability rate.
func (p *Provider) chance(rate float64) bool {
	if rate <= 0 {
		return false
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return p.rng.Float64() < rate
}

// ValidateRuntime checks the config and that root_dir can be made.
func (p *Provider) ValidateRuntime(_ context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.rootDir, 0o700); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "runtime config root_dir: %v", err)
	}
	return &providerv1.ValidateRuntimeResponse{Zones: []string{"sim-1"}}, nil
}

// scoped keys a token by runtime and kind: runtimes share the plugin.
func scoped(rt, kind, token string) string { return rt + "/" + kind + "/" + token }

func required(field, v string) error {
	if v == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	return nil
}

// The ranges: /20s of 127.0.0.0/8 from 127.64.0.0 (below are the host's
// own 127.0.x and the local provider's ranges), 3072 of them.
const (
	rangeFirst = 127<<24 | 64<<16
	rangeBits  = 12
	rangeCount = 3072
)

// CreateNetwork takes a /20 whose frontgate address nothing listens on;
// the same token answers the same network.
func (p *Provider) CreateNetwork(_ context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("idempotency_token", req.GetIdempotencyToken()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := scoped(cfg.id, "net", req.GetIdempotencyToken())
	if id, ok := p.byToken[key]; ok {
		return proto.Clone(p.networks[id].pb).(*providerv1.Network), nil
	}
	base, err := p.freeRange(cfg.rootDir)
	if err != nil {
		return nil, err
	}
	p.seq++
	id := fmt.Sprintf("simnet-%d-%04d", os.Getpid(), p.seq)
	n := &network{rt: cfg.id, base: base, next: 1, pb: &providerv1.Network{
		Id: id, Name: req.GetName(), Cidr: fmt.Sprintf("%s/%d", ip(base), 32-rangeBits),
	}}
	p.networks[id], p.byToken[key] = n, id
	return proto.Clone(n.pb).(*providerv1.Network), nil
}

// freeRange finds a range no network of this process has and whose
// frontgate address no other process listens on (another sim plugin, a
// test's): the search starts at a point of root_dir's hash, so runtimes
// of different directories rarely try the same ones. Callers hold mu.
func (p *Provider) freeRange(rootDir string) (uint32, error) {
	if p.nextRange == 0 {
		h := fnv.New32a()
		h.Write([]byte(rootDir))
		p.nextRange = int(h.Sum32()%rangeCount) + 1
	}
	used := map[uint32]bool{}
	for _, n := range p.networks {
		used[n.base] = true
	}
	for range rangeCount {
		base := uint32(rangeFirst + (p.nextRange%rangeCount)<<rangeBits)
		p.nextRange++
		if used[base] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip(base+1), strconv.Itoa(userdata.FrontgateDronePort)))
		if err != nil {
			continue
		}
		l.Close()
		return base, nil
	}
	return 0, sdk.QuotaExceeded("networks", fmt.Sprintf("%d ranges of 127.0.0.0/8", rangeCount))
}

// ip formats a 32-bit address.
func ip(a uint32) string {
	return net.IPv4(byte(a>>24), byte(a>>16), byte(a>>8), byte(a)).String()
}

// address takes the network's next host address (the frontgate image
// always gets .1). Callers hold mu.
func (n *network) address(frontgate bool) (string, error) {
	if frontgate {
		return ip(n.base + 1), nil
	}
	var host int
	if len(n.free) > 0 {
		host, n.free = n.free[len(n.free)-1], n.free[:len(n.free)-1]
	} else {
		n.next++
		host = n.next
	}
	if host >= 1<<rangeBits-1 {
		return "", sdk.QuotaExceeded("addresses", fmt.Sprintf("%d per network", 1<<rangeBits-3))
	}
	return ip(n.base + uint32(host)), nil
}

// release gives an address back. Callers hold mu.
func (n *network) release(addr string) {
	a := net.ParseIP(addr).To4()
	if a == nil {
		return
	}
	host := int(binary.BigEndian.Uint32(a)) - int(n.base)
	if host > 1 && host < 1<<rangeBits {
		n.free = append(n.free, host)
	}
}

// GetNetwork answers NotFound for a network it does not have.
func (p *Provider) GetNetwork(_ context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("network_id", req.GetNetworkId()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.networks[req.GetNetworkId()]
	if !ok || n.rt != cfg.id {
		return nil, sdk.NotFound("network", req.GetNetworkId())
	}
	return proto.Clone(n.pb).(*providerv1.Network), nil
}

// DeleteNetwork refuses a network with instances; deleting twice succeeds.
func (p *Provider) DeleteNetwork(_ context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	cfg, err := parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	if err := required("network_id", req.GetNetworkId()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id := req.GetNetworkId()
	if n, ok := p.networks[id]; !ok || n.rt != cfg.id {
		return &providerv1.DeleteNetworkResponse{}, nil
	}
	for _, in := range p.instances {
		if in.pb.GetNetworkId() == id {
			return nil, status.Errorf(codes.FailedPrecondition, "network %s still has instance %s; delete its instances first", id, in.pb.GetId())
		}
	}
	delete(p.networks, id)
	for k, v := range p.byToken {
		if v == id {
			delete(p.byToken, k)
		}
	}
	return &providerv1.DeleteNetworkResponse{}, nil
}
