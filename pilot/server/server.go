// Package server assembles pilot: its etcd (embedded unless external
// endpoints are given), the job engine with the cluster operations, the
// provider plugin host, the gRPC API and frontgate link on one port, and the
// REST gateway with /metrics and /healthz on another. Run owns every part and
// stops them all when its context ends.
package server

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/pilot/api"
	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/autoscale"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/enroll"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/gateway"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/metrics"
	"github.com/hangarhq/hangar/pilot/providers"
	"github.com/hangarhq/hangar/pilot/security"
	"github.com/hangarhq/hangar/pilot/store"
)

// Config configures pilot.
type Config struct {
	// DataDir holds the embedded etcd, the CA and pilot's keys. Local runtimes
	// default to a directory next to it (see runtimesDir), never inside.
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
	// CertTTL is the lifetime of the certificates pilot issues (default 24h).
	CertTTL time.Duration
	// SecretKeyFile holds the master key for secrets at rest (default:
	// $HANGAR_SECRET_KEY, else <data dir>/secret.key, created on first start).
	SecretKeyFile string
	// AuditRetention bounds the audit log (zero fields: unlimited); pilot
	// prunes it at start and every audit.DefaultPruneInterval.
	AuditRetention audit.Retention
	// MetricsTokenFile, when set, holds a token that opens /metrics to a
	// scraper (besides platform admins); the file must be readable by its
	// owner only.
	MetricsTokenFile string
	// MaxClusterNodes bounds the nodes of one cluster, every role together
	// (0: limits.DefaultMaxClusterNodes; at most
	// limits.MaxClusterNodesCeiling).
	MaxClusterNodes int
	// EtcdHistory is how long the embedded etcd keeps overwritten and
	// deleted values before compacting them (0: DefaultEtcdHistory).
	// Pilot's own watches resume from revisions read a moment before, so
	// minutes are plenty; every job rewrites its record and the cluster's
	// many times, and a longer history is memory and disk that grow with
	// the jobs run.
	EtcdHistory time.Duration
	// JobRetention bounds the stored jobs (zero fields: unlimited); each
	// cluster's last job is always kept. Pilot prunes every
	// jobs.DefaultPruneInterval.
	JobRetention jobs.Retention
	// RecoveryMaxDownPercent and RecoveryMinDown are each runtime's
	// meltdown guard (clusterops.ReconcilerConfig; 0: 20 and 5).
	RecoveryMaxDownPercent int
	RecoveryMinDown        int
	// AutoscaleInterval is how often autoscaling policies are evaluated
	// (0: 5 s).
	AutoscaleInterval time.Duration
	Logger            *slog.Logger
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
	if err := cfg.AuditRetention.Validate(); err != nil {
		return err
	}
	if err := ValidateMaxClusterNodes(cfg.MaxClusterNodes); err != nil {
		return err
	}
	var scrape *auth.ScrapeToken
	if cfg.MetricsTokenFile != "" {
		var err error
		if scrape, err = auth.LoadScrapeToken(cfg.MetricsTokenFile); err != nil {
			return fmt.Errorf("--metrics-token-file: %w", err)
		}
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

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another pilot running?): %w", cfg.Listen, err)
	}
	defer lis.Close()
	grpcAddr := lis.Addr().String()
	advertise := cfg.AdvertiseAddress
	if advertise == "" {
		advertise = grpcAddr
	}

	// Identity: the CA, pilot's own certificate (kept fresh locally), the
	// command key, the secret box.
	ca, err := pki.LoadOrCreateCA(filepath.Join(cfg.DataDir, "ca"))
	if err != nil {
		return err
	}
	creds, err := ownCredentials(ca, filepath.Join(cfg.DataDir, "tls"), cfg.CertTTL, grpcAddr, advertise)
	if err != nil {
		return err
	}
	cmdKey, err := cmdsign.LoadOrCreateKey(filepath.Join(cfg.DataDir, "command.key"))
	if err != nil {
		return err
	}
	box, src, err := secretbox.LoadMaster(cfg.SecretKeyFile, filepath.Join(cfg.DataDir, "secret.key"))
	if err != nil {
		return err
	}
	log.Info("secret key loaded", "source", src)

	ecli, stopEtcd, err := openEtcd(ctx, cfg, creds, log)
	if err != nil {
		return err
	}
	defer stopEtcd()
	st := store.New(ecli)

	rctx, rcancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { rcancel(); bg.Wait() }()
	bg.Add(1)
	go func() {
		defer bg.Done()
		tlsutil.RenewLoop(rctx, creds, func(_ context.Context, csrPEM, _, _ []byte) ([]byte, []byte, error) {
			csr, err := pki.ParseCSR(csrPEM)
			if err != nil {
				return nil, nil, err
			}
			leaf := creds.Leaf()
			cert, _, err := ca.Issue(csr.PublicKey, creds.Identity(), leaf.IPAddresses, leaf.DNSNames, certTTL(cfg.CertTTL))
			return cert, ca.CertPEM(), err
		}, log.With("component", "tls"))
	}()

	revs, err := enroll.NewRevocations(ctx, ecli, log.With("component", "revocations"))
	if err != nil {
		return err
	}
	defer revs.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tokens, err := enroll.NewTokens(enroll.Config{
		Client: ecli, CA: ca, CertTTL: cfg.CertTTL, CommandPublicKey: cmdKey.Public().(ed25519.PublicKey),
		Revocations: revs, Logger: log.With("component", "enroll"),
		ResolveIPs: func(ctx context.Context, id pki.Identity) ([]net.IP, error) { return frontgateIPs(ctx, st, id) },
	})
	if err != nil {
		return err
	}
	var sec *security.Security
	fg := fglink.New(log.With("component", "fglink"), streamrpc.Options{HeartbeatInterval: 5 * time.Second}, fglink.Config{
		Identify: tlsutil.PeerIdentity,
		Revoked:  revs.IsRevoked,
		Handler: func(ctx context.Context, caller pki.Identity, req *streamv1.Request) *streamv1.Response {
			return sec.FrontgateRequest(ctx, caller, req)
		},
	})
	sec = security.New(security.Config{Store: st, Tokens: tokens, Revocations: revs, Frontgates: fg, Logger: log.With("component", "security"),
		Caller: func(ctx context.Context) string {
			if p, ok := auth.FromContext(ctx); ok {
				return p.User + "@" + p.Tenant
			}
			return ""
		}})
	provs := providers.New(cfg.PluginDir, log.With("component", "providers"))
	defer provs.Close()
	pkgs := clusterops.NewPackages(st)
	pkgs.Box = box
	ops := clusterops.New(clusterops.Config{Store: st, Packages: pkgs, Frontgates: fg, Providers: provs, PilotAddress: advertise,
		CommandKey: cmdKey, Tokens: tokens, DroneKeys: tokens, CAPEM: ca.CertPEM(), Box: box, Logger: log.With("component", "clusterops")})
	auditLog := audit.New(audit.Config{Client: ecli, Logger: log.With("component", "audit"), Retention: cfg.AuditRetention})
	registerAuditMetrics(reg, auditLog)
	bg.Add(1)
	go func() {
		defer bg.Done()
		auditLog.RunRetention(rctx, audit.DefaultPruneInterval)
	}()
	users := auth.New(auth.Config{Client: ecli, Logger: log.With("component", "auth"), Audit: auditLog})
	if err := users.Bootstrap(ctx, cfg.DataDir); err != nil {
		return err
	}
	clusterEvents := events.New(ecli, log.With("component", "events"))
	// The drones' metrics, in memory (pilot/metrics): the reconciler feeds
	// it, the API, the autoscaler and /metrics read it.
	nodeMetrics := metrics.NewStore(metrics.Config{})
	reg.MustRegister(metrics.NewCollector(nodeMetrics))
	engine := jobs.New(jobs.Config{Store: st, Logger: log.With("component", "jobs"), Handlers: ops.Handlers(), Finalizers: ops.Finalizers(),
		Ended: clusterops.JobEnded(clusterEvents)})
	lifecycle := clusterops.NewLifecycle(clusterops.LifecycleConfig{Store: st, Packages: pkgs, Jobs: engine, MaxClusterNodes: cfg.MaxClusterNodes,
		Providers: provs, Events: clusterEvents, Logger: log.With("component", "lifecycle")})
	runtimes := runtimesDir(cfg.DataDir, os.Geteuid())
	log.Info("local runtimes default to", "dir", runtimes)
	apiSrv := api.New(api.Config{Store: st, Engine: engine, Providers: provs, Packages: pkgs, Lifecycle: lifecycle, Users: users, Audit: auditLog, Events: clusterEvents, Metrics: nodeMetrics, Box: box, Logger: log.With("component", "api"),
		RuntimeDefaults: localRuntimeDefaults(runtimes, cfg.PluginDir), ProtectedDirs: protectedDirs(cfg)})
	registerMetrics(reg, st, fg)
	jobRetention := cfg.JobRetention
	jobRetention.Pinned = clusterops.LastJobs(st)
	pruner, err := jobs.NewPruner(st, jobRetention, log.With("component", "job-retention"))
	if err != nil {
		return err
	}
	registerJobRetentionMetrics(reg, pruner)
	bg.Add(1)
	go func() {
		defer bg.Done()
		pruner.Run(rctx, jobs.DefaultPruneInterval)
	}()

	methods := auth.Methods()
	gs := grpc.NewServer(append(limits.GRPCServerOptions(),
		grpc.Creds(credentials.NewTLS(creds.ServerConfig(tls.VerifyClientCertIfGiven))),
		// Calls without a token are refused before their message is read.
		grpc.InTapHandle(users.TapHandle),
		grpc.ChainUnaryInterceptor(users.UnaryInterceptor(methods), auditLog.UnaryInterceptor(methods)),
		grpc.ChainStreamInterceptor(users.StreamInterceptor(methods)),
	)...)
	pilotv1.RegisterAppServiceServer(gs, apiSrv)
	pilotv1.RegisterRuntimeServiceServer(gs, apiSrv)
	pilotv1.RegisterClusterServiceServer(gs, apiSrv)
	pilotv1.RegisterJobServiceServer(gs, apiSrv)
	pilotv1.RegisterUserServiceServer(gs, apiSrv)
	pilotv1.RegisterAuditServiceServer(gs, apiSrv)
	pilotv1.RegisterSecurityServiceServer(gs, sec)
	pilotv1.RegisterEnrollmentServiceServer(gs, enroll.NewService(tokens))
	streamv1.RegisterFrontgateLinkServer(gs, fg)

	// One look at what exists before anyone can ask: after a machine
	// restart the stored statuses say active, and the provider already
	// knows better (what died is marked lost and started again).
	reconciler := clusterops.NewReconciler(ops, clusterops.ReconcilerConfig{Lifecycle: lifecycle, Events: clusterEvents, Metrics: nodeMetrics,
		RuntimeMaxDownPercent: cfg.RecoveryMaxDownPercent, RuntimeMinDown: cfg.RecoveryMinDown, Logger: log.With("component", "reconcile")})
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := reconciler.Pass(pctx); err != nil {
		log.Warn("first reconcile pass", "err", err)
	}
	pcancel()

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

	httpSrv, httpAddr, err := startHTTP(ctx, httpConfig{addr: cfg.HTTPListen, grpcAddr: grpcAddr, creds: creds, users: users, scrape: scrape, reg: reg, log: log}, &wg, errc)
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
	// What exists between jobs: lost frontgates and drones noticed,
	// revived, and written to the clusters' status.
	wg.Add(1)
	go func() {
		defer wg.Done()
		reconciler.Run(ectx)
	}()
	// The clusters' autoscaling policies, on the metrics the reconciler
	// gathers.
	scaler := autoscale.New(autoscale.Config{Store: st, Scaler: lifecycle, Metrics: nodeMetrics, Events: clusterEvents,
		Interval: cfg.AutoscaleInterval, Logger: log.With("component", "autoscale")})
	wg.Add(1)
	go func() {
		defer wg.Done()
		scaler.Run(ectx)
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

// DefaultEtcdHistory is Config.EtcdHistory's default.
const DefaultEtcdHistory = 5 * time.Minute

// ValidateMaxClusterNodes checks --max-cluster-nodes (0: the default).
func ValidateMaxClusterNodes(n int) error {
	if n < 0 || n > limits.MaxClusterNodesCeiling {
		return fmt.Errorf("--max-cluster-nodes %d: must be 1 to %d (one cluster's metadata must fit one %d-byte transaction), or 0 for the default %d",
			n, limits.MaxClusterNodesCeiling, limits.MaxMetadataBytes, limits.DefaultMaxClusterNodes)
	}
	return nil
}

func openEtcd(ctx context.Context, cfg Config, creds *tlsutil.Creds, log *slog.Logger) (*clientv3.Client, func(), error) {
	if len(cfg.EtcdEndpoints) > 0 {
		// The external cluster's own --max-request-bytes decides what it
		// takes; the client must not refuse less.
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig("", pki.Identity{}),
			MaxCallSendMsgSize: limits.PilotEtcdMaxRequestBytes + 1<<20})
		if err != nil {
			return nil, nil, fmt.Errorf("connect to etcd %v: %w", cfg.EtcdEndpoints, err)
		}
		return c, func() { c.Close() }, nil
	}
	// Only pilot talks to its etcd: mutual TLS on both ports, admitting
	// pilot's own certificate alone. The CA also signs every frontgate and
	// drone, and one on the same host must not reach pilot's state.
	tlsInfo := &transport.TLSInfo{
		CertFile:       filepath.Join(creds.Dir(), tlsutil.CertFile),
		KeyFile:        filepath.Join(creds.Dir(), tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(creds.Dir(), tlsutil.CAFile),
		ClientCertAuth: true,
		AllowedCNs:     []string{creds.Identity().CommonName()},
	}
	peerInfo := *tlsInfo
	var etcdLog *slog.Logger
	if log != nil {
		etcdLog = log.With("component", "etcd")
	}
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		Name:            "pilot",
		DataDir:         filepath.Join(cfg.DataDir, "etcd"),
		ClientURL:       "https://127.0.0.1:0",
		PeerURL:         "https://127.0.0.1:0",
		ClientTLS:       tlsInfo,
		PeerTLS:         &peerInfo,
		WALSegmentBytes: 8 << 20,
		MaxRequestBytes: limits.PilotEtcdMaxRequestBytes,
		// The embedded default (an hour) suits a frontgate, whose drones'
		// watches may resume after a long cut; pilot's never need that.
		CompactionRetention: cmp.Or(cfg.EtcdHistory, DefaultEtcdHistory),
		Logger:              etcdLog,
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

func certTTL(d time.Duration) time.Duration {
	if d <= 0 {
		return enroll.DefaultCertTTL
	}
	return d
}

// ownCredentials issues pilot's own certificate for the addresses it serves
// (re-issued at every start; renewed while running).
func ownCredentials(ca *pki.CA, dir string, ttl time.Duration, addrs ...string) (*tlsutil.Creds, error) {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	dns := []string{"localhost"}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
		} else if host != "" {
			dns = append(dns, host)
		}
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	certPEM, _, err := ca.Issue(key.Public(), pki.Identity{Kind: pki.KindPilot, ID: "pilot"}, ips, dns, certTTL(ttl))
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	return tlsutil.Save(dir, keyPEM, certPEM, ca.CertPEM())
}

// frontgateIPs finds the recorded address of a frontgate, for its
// certificate.
func frontgateIPs(ctx context.Context, st *store.Store, id pki.Identity) ([]net.IP, error) {
	nets, err := store.List(ctx, st, store.NetworksPrefix, func() *pilotv1.Network { return &pilotv1.Network{} })
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.FrontgateId == id.ID && n.FrontgateAddress != "" {
			if ip := net.ParseIP(n.FrontgateAddress); ip != nil {
				return []net.IP{ip}, nil
			}
		}
	}
	return nil, nil
}

// httpConfig is what the HTTP listener serves.
type httpConfig struct {
	addr, grpcAddr string
	creds          *tlsutil.Creds
	users          *auth.Users
	// scrape opens /metrics besides platform admins (nil: admins only).
	scrape *auth.ScrapeToken
	reg    *prometheus.Registry
	log    *slog.Logger
}

// metricsRule: platform-wide counts (jobs and frontgates of every tenant)
// are for the platform's admins, not any tenant's.
var metricsRule = auth.Rule{Role: pilotv1.Role_ROLE_ADMIN, DefaultTenantOnly: true}

func startHTTP(ctx context.Context, hc httpConfig, wg *sync.WaitGroup, errc chan<- error) (*http.Server, string, error) {
	host, _, _ := net.SplitHostPort(hc.grpcAddr)
	gw, err := gateway.New(ctx, gateway.Config{
		GRPCAddr:    hc.grpcAddr,
		DialOptions: append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(hc.creds.ClientConfig(host, tlsutil.PilotIdentity)))),
		Authenticate: func(r *http.Request) error {
			_, err := hc.users.AuthenticateHTTP(r)
			return err
		},
		Logger: hc.log.With("component", "gateway"),
	})
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	metrics := promhttp.HandlerFor(hc.reg, promhttp.HandlerOpts{})
	mux.Handle("/metrics", hc.scrape.Or(metrics, hc.users.RequireHTTP(metricsRule, metrics)))
	// Profiles, for finding where memory and time go in a live pilot:
	// platform admins only (a profile names code paths and sizes, never
	// values; the scrape token does not open it).
	mux.Handle("/debug/pprof/", hc.users.RequireHTTP(metricsRule, http.HandlerFunc(pprof.Index)))
	for name, h := range map[string]http.HandlerFunc{"cmdline": pprof.Cmdline, "profile": pprof.Profile, "symbol": pprof.Symbol, "trace": pprof.Trace} {
		mux.Handle("/debug/pprof/"+name, hc.users.RequireHTTP(metricsRule, h))
	}
	// Liveness only: says nothing but "ok".
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	lis, err := net.Listen("tcp", hc.addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", hc.addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: hc.creds.ServerConfig(tls.NoClientCert)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("https: %w", err)
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

// registerAuditMetrics exposes audit retention, so an operator can see it
// working and alert when it fails.
func registerAuditMetrics(reg *prometheus.Registry, l *audit.Log) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hangar_pilot_audit_entries_pruned_total",
			Help: "Audit log entries deleted by retention (--audit-max-age, --audit-max-entries).",
		}, func() float64 { return float64(l.PrunedEntries()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hangar_pilot_audit_prune_failures_total",
			Help: "Audit retention runs that failed (each logged at Warn); the next run retries.",
		}, func() float64 { return float64(l.FailedPruneRuns()) }),
	)
}

// registerJobRetentionMetrics exposes job retention's work and failures.
func registerJobRetentionMetrics(reg *prometheus.Registry, p *jobs.Pruner) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hangar_pilot_jobs_pruned_total",
			Help: "Ended jobs deleted by retention (--job-max-age, --job-max-per-cluster), with their node results.",
		}, func() float64 { return float64(p.Pruned()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hangar_pilot_job_prune_failures_total",
			Help: "Job retention runs that failed (each logged at Warn); the next run retries.",
		}, func() float64 { return float64(p.FailedRuns()) }),
	)
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
