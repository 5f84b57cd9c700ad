// Package server assembles pilot: its etcd (embedded unless external
// endpoints are given), the job engine with the cluster operations, the
// provider plugin host, the gRPC API and frontgate link on one port, and the
// REST gateway with /metrics and /healthz on another. Run owns every part and
// stops them all when its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/api"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/providers"
	"github.com/hangarhq/hangar/pilot/store"
)

// Config configures pilot.
type Config struct {
	// DataDir holds the embedded etcd and local runtimes' instances.
	DataDir string
	// Listen is the gRPC address (API and frontgate link).
	Listen string
	// HTTPListen is the REST gateway, /metrics and /healthz address.
	HTTPListen string
	// AdvertiseAddress is what frontgates dial (default: the bound Listen).
	AdvertiseAddress string
	// EtcdEndpoints, when set, use an external etcd instead of the embedded one.
	EtcdEndpoints []string
	// PluginDir holds hangar-provider-* binaries and the agents the local
	// provider starts (default: the directory of the running executable).
	PluginDir string
	Logger    *slog.Logger
	// Ready, if set, receives the bound gRPC and HTTP addresses once serving.
	Ready func(grpcAddr, httpAddr string)
}

// Run runs pilot until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if cfg.PluginDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find plugin dir: %w", err)
		}
		cfg.PluginDir = filepath.Dir(exe)
	}
	// Providers are handed paths under the data dir; they need absolute ones.
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	ecli, stopEtcd, err := openEtcd(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopEtcd()
	st := store.New(ecli)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another pilot running?): %w", cfg.Listen, err)
	}
	grpcAddr := lis.Addr().String()
	advertise := cfg.AdvertiseAddress
	if advertise == "" {
		advertise = grpcAddr
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	fg := fglink.New(log.With("component", "fglink"), streamrpc.Options{HeartbeatInterval: 5 * time.Second})
	provs := providers.New(cfg.PluginDir, log.With("component", "providers"))
	defer provs.Close()
	pkgs := clusterops.NewPackages(st)
	ops := clusterops.New(clusterops.Config{Store: st, Packages: pkgs, Frontgates: fg, Providers: provs, PilotAddress: advertise, Logger: log.With("component", "clusterops")})
	engine := jobs.New(jobs.Config{Store: st, Logger: log.With("component", "jobs"), Handlers: ops.Handlers(), Finalizers: ops.Finalizers()})
	apiSrv := api.New(api.Config{Store: st, Engine: engine, Providers: provs, Packages: pkgs, Logger: log.With("component", "api"),
		RuntimeDefaults: func(rt *pilotv1.Runtime) {
			if rt.Provider != "local" {
				return
			}
			if rt.Config["root_dir"] == "" {
				rt.Config["root_dir"] = filepath.Join(cfg.DataDir, "runtimes", rt.Id)
			}
			if rt.Config["bin_dir"] == "" {
				rt.Config["bin_dir"] = cfg.PluginDir
			}
		}})
	registerMetrics(reg, st, fg)

	gs := grpc.NewServer()
	pilotv1.RegisterAppServiceServer(gs, apiSrv)
	pilotv1.RegisterRuntimeServiceServer(gs, apiSrv)
	pilotv1.RegisterClusterServiceServer(gs, apiSrv)
	pilotv1.RegisterJobServiceServer(gs, apiSrv)
	streamv1.RegisterFrontgateLinkServer(gs, fg)

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()
	defer func() {
		// Give streams a moment to end cleanly, then cut them.
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			gs.Stop()
			<-done
		}
		wg.Wait()
	}()

	httpSrv, httpAddr, err := startHTTP(ctx, cfg.HTTPListen, grpcAddr, reg, &wg, errc)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()

	ectx, ecancel := context.WithCancel(ctx)
	defer ecancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := engine.Run(ectx); err != nil && ectx.Err() == nil {
			errc <- err
		}
	}()

	log.Info("pilot serving", "grpc", grpcAddr, "http", httpAddr, "advertise", advertise, "data_dir", cfg.DataDir, "plugin_dir", cfg.PluginDir)
	if cfg.Ready != nil {
		cfg.Ready(grpcAddr, httpAddr)
	}
	select {
	case <-ctx.Done():
		log.Info("pilot stopping")
		return nil
	case err := <-errc:
		return err
	}
}

func openEtcd(ctx context.Context, cfg Config, log *slog.Logger) (*clientv3.Client, func(), error) {
	if len(cfg.EtcdEndpoints) > 0 {
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, nil, fmt.Errorf("connect to etcd %v: %w", cfg.EtcdEndpoints, err)
		}
		return c, func() { c.Close() }, nil
	}
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		Name:            "pilot",
		DataDir:         filepath.Join(cfg.DataDir, "etcd"),
		ClientURL:       "http://127.0.0.1:0",
		PeerURL:         "http://127.0.0.1:0",
		WALSegmentBytes: 8 << 20,
		Logger:          log,
	})
	if err != nil {
		return nil, nil, err
	}
	c, err := srv.Client()
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); srv.Close() }, nil
}

func startHTTP(ctx context.Context, addr, grpcAddr string, reg *prometheus.Registry, wg *sync.WaitGroup, errc chan<- error) (*http.Server, string, error) {
	gw := runtime.NewServeMux()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	for _, register := range []func(context.Context, *runtime.ServeMux, string, []grpc.DialOption) error{
		pilotv1.RegisterAppServiceHandlerFromEndpoint,
		pilotv1.RegisterRuntimeServiceHandlerFromEndpoint,
		pilotv1.RegisterClusterServiceHandlerFromEndpoint,
		pilotv1.RegisterJobServiceHandlerFromEndpoint,
	} {
		if err := register(ctx, gw, grpcAddr, opts); err != nil {
			return nil, "", fmt.Errorf("rest gateway: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	return srv, lis.Addr().String(), nil
}

func registerMetrics(reg *prometheus.Registry, st *store.Store, fg *fglink.Server) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hangar_pilot_frontgates_connected",
		Help: "Frontgates holding a stream to this pilot.",
	}, func() float64 { return float64(fg.Count()) }))
	jobsDesc := prometheus.NewDesc("hangar_pilot_jobs", "Stored jobs by kind and state.", []string{"kind", "state"}, nil)
	reg.MustRegister(collectorFunc{desc: jobsDesc, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		js, err := store.List(ctx, st, store.JobsPrefix, func() *pilotv1.Job { return &pilotv1.Job{} })
		if err != nil {
			return
		}
		counts := map[[2]string]int{}
		for _, j := range js {
			counts[[2]string{j.Kind, j.State.String()}]++
		}
		for k, n := range counts {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
		}
	}})
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
