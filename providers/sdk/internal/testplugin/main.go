// Command testplugin is a provider plugin for the sdk package's tests: it
// exercises every way a plugin's output can reach pilot (structured logs, raw
// stderr before Serve, os.Stdout/os.Stderr after Serve, a panic).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

type server struct {
	providerv1.UnimplementedProviderServer
	log *slog.Logger
}

func (s *server) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	s.log.Info("info called", "caller", "test")
	s.log.Debug("debug detail")
	// After Serve, os.Stdout and os.Stderr are pipes relayed to pilot.
	fmt.Fprintln(os.Stdout, "relayed stdout line")
	fmt.Fprintln(os.Stderr, "relayed stderr line")
	return &providerv1.InfoResponse{Name: "testplugin", Version: "1"}, nil
}

func (s *server) ValidateRuntime(_ context.Context, req *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	if req.GetRuntime().GetConfig()["crash"] == "yes" {
		panic("testplugin asked to crash")
	}
	return &providerv1.ValidateRuntimeResponse{Zones: []string{"z1"}}, nil
}

func main() {
	fmt.Fprintln(os.Stderr, "raw startup line")
	log := sdk.NewPluginLogger(os.Stderr, nil)
	sdk.Serve(&server{log: log}, sdk.HCLog(log))
}
