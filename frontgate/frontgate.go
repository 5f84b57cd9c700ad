// Package frontgate assembles and runs one frontgate: the embedded etcd
// holding its network's cluster metadata, the DroneLink server drones dial,
// the stream to pilot, and optionally a Prometheus endpoint. The parts live
// in the sub-packages; this package only starts them in order and stops
// them in reverse.
package frontgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/metastore"
	"github.com/hangarhq/hangar/frontgate/pilotlink"
	"github.com/hangarhq/hangar/frontgate/relay"
	"github.com/hangarhq/hangar/frontgate/server"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Config configures a frontgate. Addresses may use port 0 (tests); the
// bound addresses are read back from the Frontgate.
type Config struct {
	FrontgateID  string
	PilotAddress string
	// DataDir holds the frontgate's state; etcd keeps its data in
	// DataDir/etcd.
	DataDir string
	// EtcdClientURL and EtcdPeerURL are the embedded etcd's listen URLs,
	// e.g. http://127.10.1.2:2379 and http://127.10.1.2:2380.
	EtcdClientURL, EtcdPeerURL string
	// DroneListen is host:port of the DroneLink server.
	DroneListen string
	// MetricsListen, when set, is host:port serving Prometheus /metrics.
	MetricsListen string
	// WALSegmentBytes is etcd's WAL segment size (0: etcd's 64 MB).
	WALSegmentBytes int64
	Version         string
	Logger          *slog.Logger

	// Tuning, mostly for tests; zero values take the packages' defaults.
	PilotBackoffBase, PilotBackoffMax time.Duration
	// PilotPeer and DronePeer tune the two kinds of streams.
	PilotPeer, DronePeer streamrpc.Options
}

func (c Config) validate() error {
	switch {
	case c.FrontgateID == "":
		return errors.New("frontgate: frontgate id is required")
	case c.PilotAddress == "":
		return errors.New("frontgate: pilot address is required")
	case c.DataDir == "":
		return errors.New("frontgate: data dir is required")
	case c.EtcdClientURL == "":
		return errors.New("frontgate: etcd client URL is required")
	case c.EtcdPeerURL == "":
		return errors.New("frontgate: etcd peer URL is required")
	case c.DroneListen == "":
		return errors.New("frontgate: drone listen address is required")
	}
	return nil
}

// Frontgate is a running frontgate.
type Frontgate struct {
	log     *slog.Logger
	etcd    *etcdserver.Server
	cli     *clientv3.Client
	relay   *relay.Relay
	grpc    *grpc.Server
	link    *pilotlink.Link
	metrics *http.Server

	droneAddr, metricsAddr string

	stopLink context.CancelFunc
	wg       sync.WaitGroup

	// failed is closed with the first fatal error of a part.
	failOnce sync.Once
	failed   chan struct{}
	err      error
	stopOnce sync.Once
}

// Start starts every part and returns once etcd serves and the DroneLink
// server listens; the pilot link connects (and reconnects) in the
// background. Stop releases everything, also after a failure.
func Start(ctx context.Context, cfg Config) (*Frontgate, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("frontgate_id", cfg.FrontgateID)
	f := &Frontgate{log: log, failed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			f.Stop()
		}
	}()

	// One cluster's metadata change is one transaction: allow clusters of
	// several hundred nodes (about 17 keys each).
	const maxTxnOps = 16384
	var err error
	f.etcd, err = etcdserver.Start(ctx, etcdserver.Config{
		Name:            cfg.FrontgateID,
		DataDir:         filepath.Join(cfg.DataDir, "etcd"),
		ClientURL:       cfg.EtcdClientURL,
		PeerURL:         cfg.EtcdPeerURL,
		WALSegmentBytes: cfg.WALSegmentBytes,
		MaxTxnOps:       maxTxnOps,
		MaxRequestBytes: 8 << 20,
		Logger:          log.With("component", "etcd"),
	})
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	if f.cli, err = f.etcd.Client(); err != nil {
		return nil, fmt.Errorf("frontgate %s: etcd client: %w", cfg.FrontgateID, err)
	}
	store := metastore.New(f.cli, metastore.Options{Logger: log.With("component", "metastore"), MaxTxnOps: maxTxnOps})

	f.relay = relay.New(relay.Config{Logger: log.With("component", "relay"), Peer: cfg.DronePeer})
	ln, err := net.Listen("tcp", cfg.DroneListen)
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: drone listener: %w", cfg.FrontgateID, err)
	}
	f.droneAddr = ln.Addr().String()
	// Drones find a dead stream by heartbeats; gRPC keepalive pings from a
	// drone's client are tolerated rather than answered with GOAWAY.
	f.grpc = grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	streamv1.RegisterDroneLinkServer(f.grpc, f.relay)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := f.grpc.Serve(ln); err != nil {
			f.fail(fmt.Errorf("drone server: %w", err))
		}
	}()

	m := newMetrics()
	handler, err := server.New(server.Config{Metadata: store, Drones: f.relay, Logger: log.With("component", "server"), Observe: m.observe})
	if err != nil {
		return nil, err
	}
	f.link, err = pilotlink.New(pilotlink.Config{
		PilotAddress: cfg.PilotAddress,
		FrontgateID:  cfg.FrontgateID,
		Version:      cfg.Version,
		Capabilities: server.Capabilities(),
		Handler:      handler.Serve,
		Peer:         cfg.PilotPeer,
		Logger:       log.With("component", "pilotlink"),
		BackoffBase:  cfg.PilotBackoffBase,
		BackoffMax:   cfg.PilotBackoffMax,
	})
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	m.watch(f.relay.Count, f.link.Connected)

	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return nil, fmt.Errorf("frontgate %s: metrics listener: %w", cfg.FrontgateID, err)
		}
		f.metricsAddr = mln.Addr().String()
		f.metrics = &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := f.metrics.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				f.fail(fmt.Errorf("metrics server: %w", err))
			}
		}()
	}

	linkCtx, stopLink := context.WithCancel(context.Background())
	f.stopLink = stopLink
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		_ = f.link.Run(linkCtx)
	}()
	// Etcd reports fatal errors on a channel that its Close closes.
	go func() {
		defer f.wg.Done()
		select {
		case err, open := <-f.etcd.Err():
			if open && err != nil {
				f.fail(fmt.Errorf("etcd: %w", err))
			}
		case <-linkCtx.Done():
		}
	}()

	log.Info("frontgate started", "pilot", cfg.PilotAddress, "drone_listen", f.droneAddr, "etcd", f.etcd.ClientURL(), "metrics", f.metricsAddr)
	ok = true
	return f, nil
}

// fail records the first fatal error and signals Done.
func (f *Frontgate) fail(err error) {
	f.failOnce.Do(func() {
		f.log.Error("frontgate part failed", "err", err)
		f.err = err
		close(f.failed)
	})
}

// Failed is closed when a part failed fatally; Err says why. The owner
// then calls Stop.
func (f *Frontgate) Failed() <-chan struct{} { return f.failed }

// Err is the first fatal error, or nil.
func (f *Frontgate) Err() error {
	select {
	case <-f.failed:
		return f.err
	default:
		return nil
	}
}

// EtcdClientURL is the bound etcd client URL.
func (f *Frontgate) EtcdClientURL() string { return f.etcd.ClientURL() }

// DroneAddr is the bound DroneLink address.
func (f *Frontgate) DroneAddr() string { return f.droneAddr }

// MetricsAddr is the bound metrics address ("" without metrics).
func (f *Frontgate) MetricsAddr() string { return f.metricsAddr }

// PilotConnected reports whether the stream to pilot is up.
func (f *Frontgate) PilotConnected() bool { return f.link != nil && f.link.Connected() }

// Stop stops the parts in reverse order and waits for them: first the
// pilot link (pilot's requests in flight are cancelled, and with them
// their relayed calls), then the drone streams and their server, the
// metrics endpoint, and last etcd.
func (f *Frontgate) Stop() {
	f.stopOnce.Do(func() {
		if f.stopLink != nil {
			f.stopLink()
		}
		if f.relay != nil {
			f.relay.Close()
		}
		if f.grpc != nil {
			f.grpc.GracefulStop()
		}
		if f.metrics != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := f.metrics.Shutdown(ctx); err != nil {
				f.metrics.Close()
			}
			cancel()
		}
		f.wg.Wait()
		if f.cli != nil {
			f.cli.Close()
		}
		if f.etcd != nil {
			f.etcd.Close()
		}
		f.log.Info("frontgate stopped")
	})
}
