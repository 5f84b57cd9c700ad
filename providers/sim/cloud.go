package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/limits"
)

// A sim cloud is a Provider in a process of its own, serving the provider
// protocol on a unix socket. Instances in the plugin's memory die with the
// plugin, and pilot's restart restarts its plugins: a cloud's instances do
// not, as a real cloud's machines outlive the plugin that called its API.
// That is what a pilot restart with thousands of connected drones needs
// (the reconnect benchmark). A runtime names its cloud with the config key
// cloud_socket; the plugin (Plugin) forwards that runtime's calls there,
// and the cloud serves them with a Provider like the plugin's own.
//
// The socket is the cloud's only door and is made 0600: the filesystem
// authenticates its callers, as it does for the plugin's own pipe.

// cloudSocketKey is the runtime config key naming a cloud's socket.
const cloudSocketKey = "cloud_socket"

// ListenCloud listens on the unix socket at path, mode 0600. A stale
// socket left by a cloud that died is replaced; one a live cloud serves is
// refused.
func ListenCloud(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket %q: want an absolute path", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another process already serves it; stop that one first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove the stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("make %s private: %w", path, err)
	}
	return lis, nil
}

// ServeCloud serves p on lis until ctx ends, then stops taking calls; the
// caller closes p.
func ServeCloud(ctx context.Context, lis net.Listener, p providerv1.ProviderServer) error {
	gs := grpc.NewServer(limits.GRPCServerOptions()...)
	providerv1.RegisterProviderServer(gs, p)
	// The stopper ends with Serve too, when Serve fails on its own.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		gs.Stop()
	}()
	err := gs.Serve(lis)
	cancel()
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Plugin is what the plugin process serves: the calls of a runtime whose
// config names a cloud_socket go to that cloud, all others to the
// in-process Provider.
type Plugin struct {
	*Provider

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by socket path
}

// NewPlugin returns a plugin over local, the in-process provider.
func NewPlugin(local *Provider) *Plugin {
	return &Plugin{Provider: local, conns: map[string]*grpc.ClientConn{}}
}

// Close closes the connections to clouds and the local provider.
func (w *Plugin) Close() {
	w.mu.Lock()
	for _, c := range w.conns {
		c.Close()
	}
	w.conns = map[string]*grpc.ClientConn{}
	w.mu.Unlock()
	w.Provider.Close()
}

// cloud returns the client of rt's cloud, or nil when rt has none.
func (w *Plugin) cloud(rt *providerv1.Runtime) (providerv1.ProviderClient, error) {
	path := rt.GetConfig()[cloudSocketKey]
	if path == "" {
		return nil, nil
	}
	if !filepath.IsAbs(path) {
		return nil, status.Errorf(codes.InvalidArgument, "runtime config %s = %q: want %s", cloudSocketKey, path, configKeys[cloudSocketKey])
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.conns[path]
	if !ok {
		var err error
		// grpc dials lazily and again after a cloud restart.
		c, err = grpc.NewClient("unix://"+path, append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "runtime config %s = %q: %v", cloudSocketKey, path, err)
		}
		w.conns[path] = c
	}
	return providerv1.NewProviderClient(c), nil
}

// runtimeRequest is every provider request but Info's.
type runtimeRequest interface{ GetRuntime() *providerv1.Runtime }

// via answers req from its runtime's cloud with remote, or from the local
// provider with local. A cloud's errors pass through as they are, typed
// details included; an unreachable one is Unavailable, naming its socket.
func via[Req runtimeRequest, Resp any](ctx context.Context, w *Plugin, req Req,
	local func(context.Context, Req) (Resp, error),
	remote func(providerv1.ProviderClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	c, err := w.cloud(req.GetRuntime())
	if err != nil || c == nil {
		if err != nil {
			var zero Resp
			return zero, err
		}
		return local(ctx, req)
	}
	resp, err := remote(c, ctx, req)
	if status.Code(err) == codes.Unavailable {
		err = status.Errorf(codes.Unavailable, "sim cloud at %s (runtime config %s): %s; is `hangar-provider-sim cloud` running there?",
			req.GetRuntime().GetConfig()[cloudSocketKey], cloudSocketKey, status.Convert(err).Message())
	}
	return resp, err
}

func (w *Plugin) ValidateRuntime(ctx context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	return via(ctx, w, req, w.Provider.ValidateRuntime, providerv1.ProviderClient.ValidateRuntime)
}

func (w *Plugin) CreateNetwork(ctx context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	return via(ctx, w, req, w.Provider.CreateNetwork, providerv1.ProviderClient.CreateNetwork)
}

func (w *Plugin) GetNetwork(ctx context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	return via(ctx, w, req, w.Provider.GetNetwork, providerv1.ProviderClient.GetNetwork)
}

func (w *Plugin) DeleteNetwork(ctx context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	return via(ctx, w, req, w.Provider.DeleteNetwork, providerv1.ProviderClient.DeleteNetwork)
}

func (w *Plugin) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.RunInstance, providerv1.ProviderClient.RunInstance)
}

func (w *Plugin) GetInstance(ctx context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.GetInstance, providerv1.ProviderClient.GetInstance)
}

func (w *Plugin) ListInstances(ctx context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	return via(ctx, w, req, w.Provider.ListInstances, providerv1.ProviderClient.ListInstances)
}

func (w *Plugin) DeleteInstance(ctx context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	return via(ctx, w, req, w.Provider.DeleteInstance, providerv1.ProviderClient.DeleteInstance)
}

func (w *Plugin) StopInstance(ctx context.Context, req *providerv1.StopInstanceRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.StopInstance, providerv1.ProviderClient.StopInstance)
}

func (w *Plugin) StartInstance(ctx context.Context, req *providerv1.StartInstanceRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.StartInstance, providerv1.ProviderClient.StartInstance)
}

// The sim supports none of the methods below (sdk.Base answers them); they
// go to a cloud all the same, so a plugin and its cloud can never differ.

func (w *Plugin) ResizeInstance(ctx context.Context, req *providerv1.ResizeInstanceRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.ResizeInstance, providerv1.ProviderClient.ResizeInstance)
}

func (w *Plugin) ListVolumes(ctx context.Context, req *providerv1.ListVolumesRequest) (*providerv1.ListVolumesResponse, error) {
	return via(ctx, w, req, w.Provider.ListVolumes, providerv1.ProviderClient.ListVolumes)
}

func (w *Plugin) DeleteVolume(ctx context.Context, req *providerv1.DeleteVolumeRequest) (*providerv1.DeleteVolumeResponse, error) {
	return via(ctx, w, req, w.Provider.DeleteVolume, providerv1.ProviderClient.DeleteVolume)
}

func (w *Plugin) CreateSnapshot(ctx context.Context, req *providerv1.CreateSnapshotRequest) (*providerv1.Snapshot, error) {
	return via(ctx, w, req, w.Provider.CreateSnapshot, providerv1.ProviderClient.CreateSnapshot)
}

func (w *Plugin) ListSnapshots(ctx context.Context, req *providerv1.ListSnapshotsRequest) (*providerv1.ListSnapshotsResponse, error) {
	return via(ctx, w, req, w.Provider.ListSnapshots, providerv1.ProviderClient.ListSnapshots)
}

func (w *Plugin) DeleteSnapshot(ctx context.Context, req *providerv1.DeleteSnapshotRequest) (*providerv1.DeleteSnapshotResponse, error) {
	return via(ctx, w, req, w.Provider.DeleteSnapshot, providerv1.ProviderClient.DeleteSnapshot)
}

func (w *Plugin) RestoreSnapshot(ctx context.Context, req *providerv1.RestoreSnapshotRequest) (*providerv1.Instance, error) {
	return via(ctx, w, req, w.Provider.RestoreSnapshot, providerv1.ProviderClient.RestoreSnapshot)
}

func (w *Plugin) ReserveAddress(ctx context.Context, req *providerv1.ReserveAddressRequest) (*providerv1.ReservedAddress, error) {
	return via(ctx, w, req, w.Provider.ReserveAddress, providerv1.ProviderClient.ReserveAddress)
}

func (w *Plugin) ReleaseAddress(ctx context.Context, req *providerv1.ReleaseAddressRequest) (*providerv1.ReleaseAddressResponse, error) {
	return via(ctx, w, req, w.Provider.ReleaseAddress, providerv1.ProviderClient.ReleaseAddress)
}
