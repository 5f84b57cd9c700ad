// Package frontgate assembles and runs one frontgate: its identity
// (enrolled with pilot on first start), the embedded etcd holding its
// network's cluster metadata behind mutual TLS and per-cluster RBAC, the
// DroneLink server drones dial, the stream to pilot with the renewal of the
// frontgate's certificate over it, and optionally a Prometheus endpoint.
// The parts live in the sub-packages; this package only starts them in
// order and stops them in reverse.
//
// Start-up: enroll (or load) the identity; start etcd with auth on (on a
// first start etcd runs once admitting only the frontgate's certificate,
// to enable auth there, and is restarted; see startEtcd and package
// access); load the revoked nodes; start the DroneLink server, the metrics
// endpoint, the pilot link and the renewal loop.
package frontgate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/access"
	"github.com/hangarhq/hangar/frontgate/enroll"
	"github.com/hangarhq/hangar/frontgate/metastore"
	"github.com/hangarhq/hangar/frontgate/pilotlink"
	"github.com/hangarhq/hangar/frontgate/relay"
	"github.com/hangarhq/hangar/frontgate/server"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// RenewTimeout bounds one renewal request to pilot.
const RenewTimeout = 30 * time.Second

// Config configures a frontgate. Addresses may use port 0 (tests); the
// bound addresses are read back from the Frontgate.
type Config struct {
	FrontgateID  string
	PilotAddress string
	// JoinToken and CAPEM come from the user data: the single-use token
	// exchanged for the frontgate's certificate on first start, and
	// pilot's CA certificate, the trust root of every connection.
	JoinToken string
	CAPEM     []byte
	// DataDir holds the frontgate's state: etcd keeps its data in
	// DataDir/etcd, the key and certificates are in DataDir/tls.
	DataDir string
	// EtcdClientURL and EtcdPeerURL are the embedded etcd's listen URLs,
	// e.g. https://127.10.1.2:2379 and https://127.10.1.2:2380; both
	// require a client certificate of pilot's CA.
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
	// EnrollBackoffBase and EnrollBackoffMax bound the delay between join
	// attempts while pilot is unreachable (enroll's defaults when zero).
	EnrollBackoffBase, EnrollBackoffMax time.Duration

	// onRestrictedEtcd lets the package's tests probe etcd while it runs
	// admitting the frontgate alone (see startEtcd).
	onRestrictedEtcd func(*etcdserver.Server)
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
	creds   *tlsutil.Creds
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

	res, err := enroll.Ensure(ctx, enroll.Config{
		Dir:          filepath.Join(cfg.DataDir, "tls"),
		FrontgateID:  cfg.FrontgateID,
		PilotAddress: cfg.PilotAddress,
		JoinToken:    cfg.JoinToken,
		CAPEM:        cfg.CAPEM,
		Logger:       log.With("component", "enroll"),
		BackoffBase:  cfg.EnrollBackoffBase,
		BackoffMax:   cfg.EnrollBackoffMax,
	})
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	f.creds = res.Creds
	pilotHost, err := enroll.PilotHost(cfg.PilotAddress)
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}

	// etcd reads the files again at every handshake, so the renewal's
	// rewrite of DataDir/tls is all it takes to serve the new certificate.
	tlsDir := f.creds.Dir()
	owner := f.creds.Identity().CommonName()
	etcdTLS := &transport.TLSInfo{
		CertFile:       filepath.Join(tlsDir, tlsutil.CertFile),
		KeyFile:        filepath.Join(tlsDir, tlsutil.KeyFile),
		TrustedCAFile:  filepath.Join(tlsDir, tlsutil.CAFile),
		ClientCertAuth: true,
	}
	// The member is alone in its cluster, yet its peer port would take
	// raft messages from any certificate of pilot's CA, and etcd auth does
	// not cover that port: only the frontgate's own certificate may speak
	// raft to it.
	peerTLS := *etcdTLS
	peerTLS.AllowedCNs = []string{owner}
	// One cluster's metadata change is one transaction: allow clusters as
	// big as pilot may make.
	const maxTxnOps = limits.FrontgateEtcdMaxTxnOps
	// The frontgate's own client is the user its certificate's CN names.
	// Every other client (drones) may only read and watch: etcd's RBAC
	// leaves leases and maintenance open to any authenticated user.
	f.etcd, f.cli, err = startEtcd(ctx, etcdserver.Config{
		Name:            cfg.FrontgateID,
		DataDir:         filepath.Join(cfg.DataDir, "etcd"),
		ClientURL:       cfg.EtcdClientURL,
		PeerURL:         cfg.EtcdPeerURL,
		ClientTLS:       etcdTLS,
		PeerTLS:         &peerTLS,
		FullAccessCNs:   []string{owner},
		WALSegmentBytes: cfg.WALSegmentBytes,
		MaxTxnOps:       maxTxnOps,
		MaxRequestBytes: limits.FrontgateEtcdMaxRequestBytes,
		ServerOptions:   limits.ManyPeersServerOptions(),
		ConcurrentReads: limits.FrontgateEtcdConcurrentReads(),
		Logger:          log.With("component", "etcd"),
	}, owner, log.With("component", "access"), cfg.onRestrictedEtcd)
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	acl := access.New(f.cli, log.With("component", "access"))
	revoked, err := acl.RevokedNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	store := metastore.New(f.cli, metastore.Options{Logger: log.With("component", "metastore"), MaxTxnOps: maxTxnOps})

	// The relay, the link and the handler refer to each other; the
	// closures are only called once all three exist and the servers run.
	var handler *server.Handler
	f.relay = relay.New(relay.Config{
		Logger: log.With("component", "relay"),
		Peer:   cfg.DronePeer,
		Handler: func(ctx context.Context, from pki.Identity, req *streamv1.Request) *streamv1.Response {
			return handler.ServeDrone(ctx, from, req)
		},
		Join: func(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
			return handler.Join(ctx, req)
		},
	})
	for _, n := range revoked {
		f.relay.Refuse(n)
	}
	f.link, err = pilotlink.New(pilotlink.Config{
		PilotAddress: cfg.PilotAddress,
		Credentials:  credentials.NewTLS(f.creds.ClientConfig(pilotHost, tlsutil.PilotIdentity)),
		FrontgateID:  cfg.FrontgateID,
		Version:      cfg.Version,
		Capabilities: server.Capabilities(),
		Handler:      func(ctx context.Context, req *streamv1.Request) *streamv1.Response { return handler.Serve(ctx, req) },
		Peer:         cfg.PilotPeer,
		Logger:       log.With("component", "pilotlink"),
		BackoffBase:  cfg.PilotBackoffBase,
		BackoffMax:   cfg.PilotBackoffMax,
	})
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: %w", cfg.FrontgateID, err)
	}
	m := newMetrics()
	handler, err = server.New(server.Config{Metadata: store, Drones: f.relay, Access: acl, Pilot: f.link, Logger: log.With("component", "server"), Observe: m.observe})
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.DroneListen)
	if err != nil {
		return nil, fmt.Errorf("frontgate %s: drone listener: %w", cfg.FrontgateID, err)
	}
	f.droneAddr = ln.Addr().String()
	// A client certificate is optional at the handshake because Join
	// comes from drones that have none yet; Connect refuses streams
	// without one. Drones find a dead stream by heartbeats; gRPC keepalive
	// pings from a drone's client are tolerated rather than answered with
	// GOAWAY.
	f.grpc = grpc.NewServer(append(append(limits.GRPCServerOptions(), limits.ManyPeersServerOptions()...),
		grpc.Creds(credentials.NewTLS(f.creds.ServerConfig(tls.VerifyClientCertIfGiven))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	streamv1.RegisterDroneLinkServer(f.grpc, f.relay)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := f.grpc.Serve(ln); err != nil {
			f.fail(fmt.Errorf("drone server: %w", err))
		}
	}()
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
	f.wg.Add(3)
	go func() {
		defer f.wg.Done()
		_ = f.link.Run(linkCtx)
	}()
	go func() {
		defer f.wg.Done()
		tlsutil.RenewLoop(linkCtx, f.creds, join.Renewer(f.creds, RenewTimeout, f.link.Call, x509.ExtKeyUsageServerAuth), log.With("component", "renew"))
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

	log.Info("frontgate started", "pilot", cfg.PilotAddress, "drone_listen", f.droneAddr, "etcd", f.etcd.ClientURL(), "metrics", f.metricsAddr,
		"identity", f.creds.Identity().String(), "certificate_not_after", f.creds.Leaf().NotAfter, "enrolled_now", res.Joined, "revoked_nodes", len(revoked))
	ok = true
	return f, nil
}

// Certificate is the frontgate's current certificate.
func (f *Frontgate) Certificate() *x509.Certificate { return f.creds.Leaf() }

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
