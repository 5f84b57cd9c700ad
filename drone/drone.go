// Package drone assembles and runs one drone: its identity (enrolled
// through the frontgate on first start), the etcd client and the /self
// view of its cluster's metadata, the executor of lifecycle commands, the
// confd renderer, and the stream to the frontgate that serves pilot's
// requests. The parts live in the sub-packages; this package only starts
// them in order and stops them in reverse. cmd/drone is one drone per
// process; a program may run many (one Run each), every one with its own
// identity, data dir and stream.
package drone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hangarhq/hangar/drone/agent"
	"github.com/hangarhq/hangar/drone/enroll"
	"github.com/hangarhq/hangar/drone/executor"
	"github.com/hangarhq/hangar/drone/health"
	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/drone/metrics"
	"github.com/hangarhq/hangar/drone/render"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/userdata"
)

// Config is one drone.
type Config struct {
	// UserData is what pilot handed the instance.
	UserData userdata.Drone
	// DataDir keeps the drone's state: its certificate (tls/), command
	// records, delivered confd files.
	DataDir string
	// Root is the instance's filesystem root: commands run there and
	// template destinations are placed under it ("" is /).
	Root string
	// ConfdDir holds the templates baked into the image, used until
	// templates are delivered.
	ConfdDir string
	// Supervisor is the command line that supervises one command (a
	// binary that runs supervise.Main: hangar-supervise, or the drone with
	// supervise.Arg; supervise.Command picks), so a command's result
	// survives the drone.
	Supervisor []string
	// Executor, when set, runs the lifecycle commands instead of the
	// drone's own executor (drone/executor): the sim provider runs
	// thousands of drones in one process with a fake one, whose latency,
	// exit codes and output it controls. Supervisor is unused then.
	Executor agent.Executor
	// RunHook, when set, runs confd's check_cmd and reload_cmd instead
	// of /bin/sh (render.Config.RunHook), for the same fake.
	RunHook func(ctx context.Context, cmdline string) error
	// MetricsInterval is how often the host is sampled without a monitor
	// that says otherwise (0: metrics.DefaultInterval); below 0, the drone
	// samples nothing and runs no monitor (the sim provider's thousands of
	// drones share one host and fake their commands).
	MetricsInterval time.Duration
	// Version is what the drone reports to pilot.
	Version string
	// Logger receives the drone's logs.
	Logger *slog.Logger
}

// Run runs the drone until ctx ends (nil) or it fails.
func Run(ctx context.Context, cfg Config) error {
	ud := cfg.UserData
	if err := ud.Validate(); err != nil {
		return err
	}
	base := cfg.Logger
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	log := base.With("node_id", ud.NodeID, "cluster_id", ud.ClusterID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	log.Info("drone starting", "version", cfg.Version, "frontgate", ud.FrontgateAddress, "data_dir", cfg.DataDir, "root", cfg.Root)

	id, err := enroll.Ensure(ctx, enroll.Config{
		Dir:              filepath.Join(cfg.DataDir, "tls"),
		NodeID:           ud.NodeID,
		ClusterID:        ud.ClusterID,
		FrontgateID:      ud.FrontgateID,
		FrontgateAddress: ud.FrontgateAddress,
		JoinToken:        ud.JoinToken,
		CAPEM:            []byte(ud.CAPEM),
		Logger:           log.With("component", "enroll"),
	})
	if err != nil {
		if ctx.Err() != nil {
			// Stopped while waiting for the frontgate: not a failure.
			return nil
		}
		return err
	}

	endpoints, err := EtcdEndpoints(ud.EtcdEndpoints)
	if err != nil {
		return err
	}
	etcd, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints,
		// No ServerName: gRPC checks each endpoint's certificate against
		// that endpoint's own host (a 3-node frontgate has three).
		// The frontgate's etcd must present the frontgate's own identity.
		TLS:         id.Creds.ClientConfig("", pki.Identity{Kind: pki.KindFrontgate, ID: ud.FrontgateID}),
		DialTimeout: 5 * time.Second,
		DialOptions: limits.ManyPeersDialOptions(),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	defer etcd.Close()

	view, err := metaview.New(metaview.Config{Client: etcd, ClusterID: ud.ClusterID, NodeID: ud.NodeID})
	if err != nil {
		return err
	}
	ex := cfg.Executor
	if ex == nil {
		own, err := executor.New(executor.Config{
			DataDir:    cfg.DataDir,
			RootDir:    cfg.Root,
			NodeID:     ud.NodeID,
			Supervisor: cfg.Supervisor,
			Logger:     log.With("component", "executor"),
		})
		if err != nil {
			return err
		}
		defer own.Close()
		ex = own
	}
	reports := agent.NewReports()
	rend, err := render.New(ctx, render.Config{
		OnRendered: reports.Rendered,
		DataDir:    cfg.DataDir,
		RootDir:    cfg.Root,
		BakedDir:   cfg.ConfdDir,
		View:       view,
		RunHook:    cfg.RunHook,
		Logger:     log.With("component", "render"),
	})
	if err != nil {
		return err
	}
	defer rend.Close()
	run := health.ShellRunner(cfg.Root, cfg.DataDir)
	if cfg.RunHook != nil {
		run = hookRunner(cfg.RunHook)
	}
	checker := health.New(health.Config{Run: run, OnChange: reports.Healthed, Logger: log.With("component", "health")})
	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		_ = checker.Run(hctx) // ends with hctx
	}()
	defer func() {
		stopHealth()
		<-healthDone
	}()
	var collector *metrics.Collector
	if cfg.MetricsInterval >= 0 {
		collector = metrics.New(metrics.Config{
			Host:     metrics.HostConfig{Root: cfg.Root},
			Run:      metrics.ShellRunner(cfg.Root, cfg.DataDir),
			Interval: cfg.MetricsInterval,
			OnReport: reports.Measured,
			Logger:   log.With("component", "metrics"),
		})
		mctx, stopMetrics := context.WithCancel(ctx)
		metricsDone := make(chan struct{})
		go func() {
			defer close(metricsDone)
			_ = collector.Run(mctx) // ends with mctx
		}()
		defer func() {
			stopMetrics()
			<-metricsDone
		}()
	}
	a, err := agent.New(agent.Config{
		NodeID:           ud.NodeID,
		ClusterID:        ud.ClusterID,
		FrontgateID:      ud.FrontgateID,
		FrontgateAddress: ud.FrontgateAddress,
		Creds:            id.Creds,
		CommandPublicKey: id.CommandPublicKey,
		Version:          cfg.Version,
		Executor:         ex,
		Renderer:         rend,
		Health:           checker,
		Metrics:          metricsSetter(collector),
		Reports:          reports,
		// The agent adds node_id and cluster_id itself.
		Logger: base.With("component", "agent"),
	})
	if err != nil {
		return err
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// metricsSetter is c as the agent's Metrics, nil when there is none (an
// interface holding a nil pointer would not be).
func metricsSetter(c *metrics.Collector) agent.Metrics {
	if c == nil {
		return nil
	}
	return c
}

// hookRunner runs health checks with Config.RunHook (the sim's fake
// executor): exit 0 when it returns nil, else 1 with its error.
func hookRunner(hook func(context.Context, string) error) health.Runner {
	return func(ctx context.Context, cmd string, timeout time.Duration) health.Result {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		r := health.Result{At: time.Now()}
		if err := hook(cctx, cmd); err != nil {
			r.ExitCode, r.Output = 1, err.Error()
		}
		return r
	}
}

// EtcdEndpoints returns the frontgate's etcd client URLs as https ones:
// its etcd accepts only client-certificate TLS, so an http:// endpoint
// (from user data written before etcd had TLS) is dialed with TLS all the
// same, never in plaintext.
func EtcdEndpoints(eps []string) ([]string, error) {
	out := make([]string, 0, len(eps))
	for i, ep := range eps {
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("user data etcd_endpoints[%d] %q: want https://host:port", i, eps[i])
		}
		u.Scheme = "https"
		out = append(out, u.String())
	}
	return out, nil
}
