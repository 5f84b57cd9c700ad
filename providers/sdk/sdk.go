// Package sdk is the go-plugin shim between pilot and provider plugins. A
// provider's main() calls Serve with its providerv1.ProviderServer; pilot calls
// Start to launch the plugin binary and gets back a connected
// providerv1.ProviderClient. Only go-plugin's gRPC protocol is spoken, and the
// plugin's logs, stderr and stdout all end up in pilot's slog logger.
package sdk

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/limits"
)

// Handshake is shared by pilot and every provider plugin. go-plugin refuses to
// talk to a binary whose handshake differs, and a plugin binary run by hand
// (without the cookie in its environment) explains that it is a plugin and
// exits. Bump ProtocolVersion only with an incompatible proto change.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "HANGAR_PROVIDER_PLUGIN",
	MagicCookieValue: "7f3c1d9a2be64e0f8a51c6d2e9b07a43",
}

// PluginName is the name under which a plugin binary serves its provider.
const PluginName = "provider"

// Serve runs impl as a provider plugin and returns when pilot shuts the plugin
// down. It is meant for a plugin's main(). A nil logger makes go-plugin log
// JSON to stderr; NewPluginLogger + HCLog give the same format from slog.
//
// A plugin exits when pilot dies without shutting it down (a crash, a
// SIGKILL): go-plugin would otherwise leave it running forever, and a
// restarted pilot starts a new one.
func Serve(impl providerv1.ProviderServer, logger hclog.Logger) {
	done := make(chan struct{})
	defer close(done)
	go exitWithParent(os.Getppid(), time.Second, done, os.Getppid, func() { os.Exit(0) })
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &grpcPlugin{impl: impl}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, limits.GRPCServerOptions()...)...)
		},
		Logger: logger,
	})
}

// grpcPlugin binds the generated provider service to go-plugin, on both sides:
// the plugin registers impl, pilot gets a generated client on the connection.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl providerv1.ProviderServer
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.impl == nil {
		return fmt.Errorf("serve provider plugin: no provider implementation given")
	}
	providerv1.RegisterProviderServer(s, p.impl)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return providerv1.NewProviderClient(c), nil
}

// exitWithParent calls exit once this process's parent is no longer parent
// (the process was re-parented because the parent died), checking every
// interval until done is closed.
func exitWithParent(parent int, interval time.Duration, done <-chan struct{}, getppid func() int, exit func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if getppid() != parent {
				exit()
				return
			}
		}
	}
}
