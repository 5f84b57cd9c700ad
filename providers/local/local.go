// Package local is the `local` provider: the zero-setup runtime where a
// network is a 127.X.Y.0/24 range on the loopback interface (or a larger,
// aligned range of them: runtime setting network_prefix) and an instance
// is a process on this host (a drone, or a frontgate for image "frontgate")
// with its own loopback address and its own directory. All state lives under
// the runtime's root_dir, so a restarted plugin picks up where the last one
// stopped.
package local

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/userdata"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Name is the provider's name as reported by Info.
const Name = "local"

// Version is the provider's version as reported by Info.
const Version = "0.1.0"

// Zone is the only zone of the local provider.
const Zone = "local"

// maxKillGrace caps how long DeleteInstance waits after SIGTERM before
// SIGKILL: pilot's delete tasks must finish in bounded time.
const maxKillGrace = 10 * time.Second

// Runtime config keys.
const (
	keyRootDir   = "root_dir"
	keyBinDir    = "bin_dir"
	keyRangesDir = "ranges_dir"
	// keyImagesDir, when set, holds the runtime's images: each folder in
	// it is an image, whose tree seeds a new instance's root.
	keyImagesDir = "images_dir"
	// keyNetworkPrefix is the prefix length of the runtime's networks:
	// 24 (253 instances, the default) down to 20 (4,063), for clusters
	// larger than a /24 holds.
	keyNetworkPrefix = "network_prefix"
	// keyFrontgateMetrics is the port on each frontgate's address serving
	// its Prometheus /metrics (off when unset): the frontgate's memory and
	// goroutines, which the scale benchmarks read per connected drone.
	keyFrontgateMetrics = "frontgate_metrics_port"
)

// Config configures a Provider.
type Config struct {
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// KillGrace is how long DeleteInstance waits for processes to exit
	// after SIGTERM before it sends SIGKILL. Zero or more than 10s means 10s.
	KillGrace time.Duration
	// Launcher is an executable that calls MaybeLaunch first thing; when
	// the provider does not run as root it starts every instance through
	// it. Default: this process's own executable.
	Launcher string
}

// Provider implements providerv1.ProviderServer with local processes.
type Provider struct {
	// Base answers the calls of capabilities this provider does not
	// declare (none today) with sdk.Unsupported.
	sdk.Base

	log       *slog.Logger
	killGrace time.Duration
	reaper    *reaper

	// How instances are isolated, decided once (see isolation.go).
	euid     int
	iso      isolation
	launcher string
	uids     uidRegistry

	// mu serialises state transactions of this process; the flock on
	// root_dir/.lock serialises them across processes.
	mu sync.Mutex
}

var _ providerv1.ProviderServer = (*Provider)(nil)

// New returns a local provider. It starts a goroutine that reaps the
// processes it spawns; Close stops it.
func New(cfg Config) *Provider {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := cfg.KillGrace
	if grace <= 0 || grace > maxKillGrace {
		grace = maxKillGrace
	}
	launcher := cfg.Launcher
	if launcher == "" {
		launcher, _ = os.Executable()
	}
	euid := os.Geteuid()
	iso := detectIsolation(euid, landlockABI())
	log.Info("local provider isolates instances", "isolation", iso.String(), "euid", euid)
	return &Provider{log: log, killGrace: grace, reaper: newReaper(),
		euid: euid, iso: iso, launcher: launcher, uids: uidRegistry{dir: defaultUIDsDir}}
}

// Close stops the reaper. Instances keep running: they belong to the runtime,
// not to this process.
func (p *Provider) Close() error {
	p.reaper.close()
	return nil
}

// Info names the provider.
func (p *Provider) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{
		Name:    Name,
		Version: Version,
		Capabilities: []string{"networks", "instances",
			// Instances are processes on this host, which is pilot's.
			sdk.CapRunsOnPilotHost,
			sdk.CapStopStart,
			// Resize only while stopped: nothing is enforced (see
			// docs/providers.md), but pilot's flow is a cloud's.
			sdk.CapResize,
			sdk.CapVolumes,
			sdk.CapSnapshots,
			sdk.CapReservedAddresses,
			sdk.CapExclusiveHostDirPrefix + keyRootDir,
			sdk.CapHostDirPrefix + keyBinDir,
			sdk.CapHostDirPrefix + keyRangesDir,
			sdk.CapHostDirPrefix + keyImagesDir,
		},
	}, nil
}

// ValidateRuntime checks the runtime's settings, that bin_dir holds both
// agents, that root_dir is usable and that instances can be isolated (and
// reach what they need once they are).
func (p *Provider) ValidateRuntime(ctx context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	for _, name := range []string{droneBinary, frontgateBinary} {
		if _, err := cfg.binary(name); err != nil {
			return nil, err
		}
	}
	if err := p.checkIsolation(cfg); err != nil {
		return nil, err
	}
	if err := p.update(ctx, cfg, func(*tx) error { return nil }); err != nil {
		return nil, err
	}
	unlock, err := lockRanges(ctx, cfg.rangesDir, p.euid)
	if err != nil {
		return nil, err
	}
	unlock()
	resp := &providerv1.ValidateRuntimeResponse{Zones: []string{Zone}}
	if cfg.images != "" {
		if resp.Images, err = cfg.listImages(); err != nil {
			return nil, err
		}
		resp.ImagesRequired = true
	}
	return resp, nil
}

// runtimeConfig is a runtime's validated settings.
type runtimeConfig struct {
	root      string
	bin       string
	rangesDir string
	images    string // images_dir; "" when instances run no image
	prefix    int    // network_prefix: 20..24
	// fgMetrics is frontgate_metrics_port: the port on a frontgate's
	// address serving its Prometheus /metrics, or 0 for none (the
	// frontgate's default: no port beyond those it needs).
	fgMetrics int
}

func (p *Provider) parseRuntime(rt *providerv1.Runtime) (runtimeConfig, error) {
	var cfg runtimeConfig
	if rt == nil {
		return cfg, status.Error(codes.InvalidArgument, "runtime is required")
	}
	if z := rt.GetZone(); z != "" && z != Zone {
		return cfg, status.Errorf(codes.InvalidArgument, "runtime.zone %q: the local provider has the single zone %q", z, Zone)
	}
	if err := checkAccessKey(rt); err != nil {
		return cfg, err
	}
	keys := make([]string, 0, len(rt.GetConfig()))
	for k := range rt.GetConfig() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case keyRootDir, keyBinDir, keyRangesDir, keyImagesDir, keyNetworkPrefix, keyFrontgateMetrics, keyAccessKeyHash:
		default:
			return cfg, status.Errorf(codes.InvalidArgument,
				"runtime.config.%s is not a local provider setting (allowed: %s, %s, %s, %s, %s, %s, %s)", k, keyRootDir, keyBinDir, keyRangesDir, keyImagesDir, keyNetworkPrefix, keyFrontgateMetrics, keyAccessKeyHash)
		}
	}
	dir := func(key, why string, required bool) (string, error) {
		v := rt.GetConfig()[key]
		if v == "" {
			if required {
				return "", status.Errorf(codes.InvalidArgument, "runtime.config.%s is required: %s", key, why)
			}
			return "", nil
		}
		if !filepath.IsAbs(v) {
			return "", status.Errorf(codes.InvalidArgument, "runtime.config.%s must be an absolute path, got %q", key, v)
		}
		return filepath.Clean(v), nil
	}
	var err error
	if cfg.root, err = dir(keyRootDir, "the directory holding the provider's state and instance directories", true); err != nil {
		return cfg, err
	}
	if cfg.bin, err = dir(keyBinDir, "the directory holding the drone and frontgate binaries", true); err != nil {
		return cfg, err
	}
	if cfg.rangesDir, err = dir(keyRangesDir, "", false); err != nil {
		return cfg, err
	}
	if cfg.images, err = dir(keyImagesDir, "", false); err != nil {
		return cfg, err
	}
	if cfg.rangesDir == "" {
		cfg.rangesDir = defaultRangesDir(p.euid, os.Getenv("XDG_RUNTIME_DIR"))
	}
	cfg.prefix = 24
	if v, ok := rt.GetConfig()[keyNetworkPrefix]; ok {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "/"))
		if err != nil || n < minPrefix || n > 24 {
			return cfg, status.Errorf(codes.InvalidArgument, "runtime.config.%s %q: give a prefix length from %d (%d instances a network) to 24 (253, the default)", keyNetworkPrefix, v, minPrefix, hostsOf(minPrefix))
		}
		cfg.prefix = n
	}
	if v, ok := rt.GetConfig()[keyFrontgateMetrics]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 || reservedPort(n) {
			return cfg, status.Errorf(codes.InvalidArgument, "runtime.config.%s %q: give a TCP port from 1 to 65535 other than the frontgate's own (%d, %d, %d)",
				keyFrontgateMetrics, v, userdata.FrontgateDronePort, userdata.FrontgateEtcdPort, userdata.FrontgatePeerPort)
		}
		cfg.fgMetrics = n
	}
	return cfg, nil
}

// Agent binaries in bin_dir.
const (
	droneBinary     = "drone"
	frontgateBinary = "frontgate"
)

// binaryFor maps an image to the agent it runs.
func binaryFor(image string) string {
	if image == frontgateImage {
		return frontgateBinary
	}
	return droneBinary
}

// binary returns the path of an agent binary, checking it can be run.
func (c runtimeConfig) binary(name string) (string, error) {
	path := filepath.Join(c.bin, name)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", status.Errorf(codes.FailedPrecondition, "runtime.config.%s %s has no %s binary", keyBinDir, c.bin, name)
	case err != nil:
		return "", status.Errorf(codes.FailedPrecondition, "runtime.config.%s: %v", keyBinDir, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return "", status.Errorf(codes.FailedPrecondition, "runtime.config.%s: %s is not an executable file", keyBinDir, path)
	}
	return path, nil
}

func (c runtimeConfig) instancesDir() string { return filepath.Join(c.root, "instances") }

func (c runtimeConfig) instanceDir(id string) string { return filepath.Join(c.instancesDir(), id) }

// volumesDir holds detached volumes, snapshotsDir the snapshots' archives;
// both are the provider's alone (mode 0700): no instance reaches them.
func (c runtimeConfig) volumesDir() string { return filepath.Join(c.root, "volumes") }

func (c runtimeConfig) volumeDir(id string) string { return filepath.Join(c.volumesDir(), id) }

func (c runtimeConfig) snapshotsDir() string { return filepath.Join(c.root, "snapshots") }

func (c runtimeConfig) snapshotFile(id string) string {
	return filepath.Join(c.snapshotsDir(), id+".tar.gz")
}

// required returns InvalidArgument naming field when v is empty.
func required(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	return nil
}

// internal wraps an unexpected failure for the wire, keeping its context.
func internal(format string, args ...any) error {
	return status.Error(codes.Internal, fmt.Sprintf(format, args...))
}

// ctxError reports that ctx ended while doing what, with the matching gRPC
// code (Canceled or DeadlineExceeded).
func ctxError(ctx context.Context, what string) error {
	return status.Errorf(status.FromContextError(ctx.Err()).Code(), "%s: %v", what, ctx.Err())
}

// Access keys. A local runtime on a shared host can require a key, so that
// only whoever holds it can create instances through it: the runtime's
// config names the key's SHA-256 (not secret), its credentials carry the
// key itself (secret: pilot stores it encrypted and passes it on each call).
const (
	keyAccessKeyHash = "access_key_sha256"
	credAccessKey    = "access_key"
)

func checkAccessKey(rt *providerv1.Runtime) error {
	creds := rt.GetCredentials()
	for k := range creds {
		if k != credAccessKey {
			return status.Errorf(codes.InvalidArgument, "runtime.credentials.%s is not a local provider credential (allowed: %s)", k, credAccessKey)
		}
	}
	want := rt.GetConfig()[keyAccessKeyHash]
	key, given := creds[credAccessKey]
	switch {
	case want == "" && given:
		return status.Errorf(codes.InvalidArgument, "runtime.credentials.%s is given but runtime.config.%s is not set: nothing would check it", credAccessKey, keyAccessKeyHash)
	case want == "":
		return nil
	case !given:
		return status.Errorf(codes.PermissionDenied, "runtime.credentials.%s is required by this runtime (runtime.config.%s is set)", credAccessKey, keyAccessKeyHash)
	}
	sum := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(want))) != 1 {
		// Never echo the key.
		return status.Errorf(codes.PermissionDenied, "runtime.credentials.%s does not match runtime.config.%s", credAccessKey, keyAccessKeyHash)
	}
	return nil
}

// reservedPort says whether port is one the frontgate listens on already.
func reservedPort(port int) bool {
	return port == userdata.FrontgateDronePort || port == userdata.FrontgateEtcdPort || port == userdata.FrontgatePeerPort
}
