// Package etcdserver starts an embedded single-member etcd for pilot's state
// and a frontgate's cluster metadata: zero setup for the default install,
// with listen addresses that may use port 0 (the bound address is read back),
// optionally mutual TLS on the client and peer ports, and optionally every
// client but named ones limited to reads (FullAccessCNs). StoredAuthEnabled
// reads a stopped member's auth switch, so a caller can decide before
// starting it whether the member would serve without auth.
package etcdserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/datadir"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// grpcOverheadBytes is what etcd's server adds to MaxRequestBytes for
// gRPC framing (etcdserver/api/v3rpc's grpcOverheadBytes).
const grpcOverheadBytes = 512 * 1024

// Config describes one embedded member.
type Config struct {
	// Name of the member (default "default").
	Name string

	// DataDir holds the member's data; created when missing.
	DataDir string
	// ClientURL is where clients connect, e.g. http://127.0.0.1:0, or
	// https://… when ClientTLS is set.
	ClientURL string
	// PeerURL is where peers connect (default http://127.0.0.1:0, or
	// https://127.0.0.1:0 with PeerTLS).
	PeerURL string
	// ClientTLS, when set, serves clients over TLS only (ClientURL must be
	// https) with these files. With ClientCertAuth, etcd refuses clients
	// without a certificate signed by TrustedCAFile and takes the
	// certificate's CN as the user name once auth is enabled. etcd reads
	// CertFile and KeyFile again at every handshake
	// (transport.TLSInfo.baseConfig's GetCertificate and
	// GetClientCertificate), so a renewal only rewrites the files; the CA
	// is read once, at start. AllowedCNs, when set, narrows ClientCertAuth
	// to certificates of the CA whose CN is listed: others fail the
	// handshake before any request, whatever etcd's auth state. Client
	// does not apply it to the server's own certificate.
	ClientTLS *transport.TLSInfo
	// PeerTLS does the same for the peer port (PeerURL must be https),
	// AllowedCNs included.
	PeerTLS *transport.TLSInfo
	// FullAccessCNs, when set, leaves every etcd call to the clients whose
	// certificate CN is listed and lets every other client only read: KV
	// Range and Watch. All other calls (writes, every lease call,
	// maintenance, cluster membership, auth, lock, election) are refused
	// with PermissionDenied before etcd handles them; etcd's RBAC covers
	// keys, not leases or maintenance. It needs ClientTLS with
	// ClientCertAuth.
	FullAccessCNs []string
	// WALSegmentBytes, when set, replaces etcd's 64 MB WAL preallocation
	// (process-wide: etcd keeps it in a package variable). Tests and small
	// frontgates set it so a fresh data dir is not 100+ MB.
	WALSegmentBytes int64
	// MaxTxnOps raises etcd's limit of operations per transaction (128):
	// a frontgate applies a whole cluster's metadata change in one
	// transaction, about 17 keys per node.
	MaxTxnOps uint
	// MaxRequestBytes raises etcd's 1.5 MiB request limit when set (and
	// Client's send limit with it).
	MaxRequestBytes uint
	// CompactionRetention is how much history etcd keeps (default
	// DefaultCompactionRetention): older revisions are compacted
	// periodically. Without it every overwritten or deleted value stays in
	// the database for ever, and a pilot or frontgate that runs for months
	// fills its disk. Watchers resuming from a compacted revision are told
	// so and re-read (as the drone's metadata view does).
	CompactionRetention time.Duration
	// ServerOptions are added to the client port's gRPC server (a
	// frontgate passes limits.ManyPeersServerOptions: a connection per
	// drone).
	ServerOptions []grpc.ServerOption
	// ConcurrentReads, when above 0, is how many Range calls of clients
	// outside FullAccessCNs run at once; the others wait their turn (see
	// accessGuard). A frontgate sets it: its drones read whole trees.
	ConcurrentReads int
	// Logger gets what etcd is doing, and etcd's own warnings and errors,
	// among them why it stops (nil: nothing is logged).
	Logger *slog.Logger
}

// DefaultCompactionRetention is the history kept when Config leaves it
// unset: long enough for any watcher to resume after a reconnect.
const DefaultCompactionRetention = time.Hour

// Server is a running member.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
	peerURL   string
	clientTLS *transport.TLSInfo
	// maxRequestBytes is Config.MaxRequestBytes (0: etcd's default).
	maxRequestBytes uint
	// httpSocket is the abstract unix socket of etcd's HTTP endpoints.
	httpSocket string
}

var walSizeOnce sync.Once

// Start starts the member and waits until it serves requests.
func Start(ctx context.Context, c Config) (*Server, error) {
	if c.DataDir == "" {
		return nil, errors.New("etcd: data dir is required")
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.ClientURL == "" {
		c.ClientURL = scheme(c.ClientTLS) + "://127.0.0.1:0"
	}
	if c.PeerURL == "" {
		c.PeerURL = scheme(c.PeerTLS) + "://127.0.0.1:0"
	}
	if c.WALSegmentBytes > 0 {
		walSizeOnce.Do(func() { wal.SegmentSizeBytes = c.WALSegmentBytes })
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd: create data dir: %w", err)
	}
	cu, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: client url %q: %w", c.ClientURL, err)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: peer url %q: %w", c.PeerURL, err)
	}
	// etcd would serve plaintext on an http URL despite TLS files (and
	// refuse https without them), so a mismatch is a configuration error.
	if want := scheme(c.ClientTLS); cu.Scheme != want {
		return nil, fmt.Errorf("etcd: client url %q: scheme must be %s (client TLS configured: %v)", c.ClientURL, want, c.ClientTLS != nil)
	}
	if want := scheme(c.PeerTLS); pu.Scheme != want {
		return nil, fmt.Errorf("etcd: peer url %q: scheme must be %s (peer TLS configured: %v)", c.PeerURL, want, c.PeerTLS != nil)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	// With HTTP on the client port etcd serves gRPC through net/http's
	// HTTP/2 server (cmux), which holds about 85 KiB per connection where
	// gRPC's own transport holds a few: at a frontgate that is every
	// drone's watch (issue 12, heap profile of 2,000 drones). So etcd's
	// HTTP endpoints (/health, /metrics, /version; nothing of Hangar's
	// uses them) get a unix socket of their own, with the same TLS, in
	// Linux's abstract namespace: a path could be longer than a socket's
	// 107 bytes (a local instance's TMPDIR is), and leaves a file behind.
	// The client port speaks gRPC only.
	httpSock, err := abstractSocketName()
	if err != nil {
		return nil, err
	}
	cfg.ListenClientHttpUrls = []url.URL{{Scheme: map[string]string{"https": "unixs", "http": "unix"}[cu.Scheme], Host: httpSock}}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", c.Name, pu.String())
	// A single member needs no long election: it starts in well under a second.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// etcd keeps every raft entry since its last snapshot in memory, and
	// SnapshotCatchUpEntries more after it, for followers to catch up: with
	// the defaults (10,000 and 5,000) a pilot that rewrote a 1,000-node
	// cluster's record a few thousand times while creating it held 390
	// MB of old entries (issue 12, heap profile). A single member has no
	// follower, and a v3 snapshot only saves membership, so snapshot
	// often and keep few.
	cfg.SnapshotCount = 500
	cfg.SnapshotCatchUpEntries = 100
	cfg.MaxWalFiles = 2
	cfg.MaxSnapFiles = 2
	if c.MaxTxnOps > 0 {
		cfg.MaxTxnOps = c.MaxTxnOps
	}
	if c.MaxRequestBytes > 0 {
		cfg.MaxRequestBytes = c.MaxRequestBytes
	}
	if c.CompactionRetention <= 0 {
		c.CompactionRetention = DefaultCompactionRetention
	}
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = c.CompactionRetention.String()
	if c.ClientTLS != nil {
		cfg.ClientTLSInfo = *c.ClientTLS
		// The JSON gateway would reach etcd with the server's own
		// certificate, whose CN etcd ignores there: nothing needs it, so
		// the client port speaks gRPC only.
		cfg.EnableGRPCGateway = false
	}
	if c.PeerTLS != nil {
		cfg.PeerTLSInfo = *c.PeerTLS
	}
	cfg.GRPCAdditionalServerOptions = append(cfg.GRPCAdditionalServerOptions, c.ServerOptions...)
	if len(c.FullAccessCNs) > 0 {
		if c.ClientTLS == nil || !c.ClientTLS.ClientCertAuth {
			return nil, errors.New("etcd: FullAccessCNs needs client TLS with client certificates: callers are told apart by their certificate's CN")
		}
		cfg.GRPCAdditionalServerOptions = append(cfg.GRPCAdditionalServerOptions, newAccessGuard(c.FullAccessCNs, c.ConcurrentReads).serverOptions()...)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(c.Logger))
	cfg.LogLevel = "error"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: start: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: start: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd: not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	// e.Clients holds the gRPC listener and the HTTP socket, in no order.
	var bound url.URL
	for _, l := range e.Clients {
		if l.Addr().Network() == "tcp" {
			bound = url.URL{Scheme: cu.Scheme, Host: l.Addr().String()}
		}
	}
	peer := url.URL{Scheme: pu.Scheme, Host: e.Peers[0].Addr().String()}
	if c.Logger != nil {
		c.Logger.Info("embedded etcd ready", "client_url", bound.String(), "data_dir", c.DataDir, "allowed_client_cns", allowedCNs(c.ClientTLS))
	}
	return &Server{etcd: e, clientURL: bound.String(), peerURL: peer.String(), clientTLS: c.ClientTLS, maxRequestBytes: c.MaxRequestBytes, httpSocket: httpSock}, nil
}

func allowedCNs(t *transport.TLSInfo) []string {
	if t == nil {
		return nil
	}
	return t.AllowedCNs
}

// storedAuthLockWait bounds the wait for the backend's file lock, which a
// running member holds.
const storedAuthLockWait = time.Second

// StoredAuthEnabled reports whether the member in dataDir had etcd auth
// enabled when it last wrote its backend; false when dataDir holds no
// member yet. It reads the backend file directly, so it works only while
// no member runs on dataDir (it fails after a second otherwise).
//
// The answer can lag the truth: an auth change that reached the WAL but not
// yet the backend (a crash right after it) is applied from the WAL only at
// the next start. For a member that never disables auth the lag reads as
// disabled when it is enabled, so a caller that guards the start whenever
// it reads false errs on the safe side.
func StoredAuthEnabled(dataDir string) (bool, error) {
	path := datadir.ToBackendFileName(dataDir)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("etcd: stored auth state: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: storedAuthLockWait})
	if err != nil {
		return false, fmt.Errorf("etcd: stored auth state: open %s (is a member running on %s?): %w", path, dataDir, err)
	}
	defer db.Close()
	var enabled bool
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(schema.Auth.Name())
		if b == nil {
			return nil
		}
		// etcd writes 1 for enabled and 0 for disabled.
		v := b.Get(schema.AuthEnabledKeyName)
		enabled = len(v) == 1 && v[0] == 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("etcd: stored auth state: read %s: %w", path, err)
	}
	return enabled, nil
}

// abstractSocketName is a random name in the abstract unix socket
// namespace ("@hangar-etcd-<hex>").
func abstractSocketName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("etcd: name its HTTP socket: %w", err)
	}
	return "@hangar-etcd-" + hex.EncodeToString(b), nil
}

func scheme(t *transport.TLSInfo) string {
	if t != nil {
		return "https"
	}
	return "http"
}

// ClientURL is the bound client URL (with the real port when 0 was asked).
func (s *Server) ClientURL() string { return s.clientURL }

// PeerURL is the bound peer URL (with the real port when 0 was asked).
func (s *Server) PeerURL() string { return s.peerURL }

// Client returns a new client of this member; the caller closes it. With
// ClientTLS it presents ClientTLS's certificate (re-read at every
// handshake) and trusts its CA, so it is the user named by that
// certificate's CN.
func (s *Server) Client() (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   []string{s.clientURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if s.maxRequestBytes > 0 {
		// The client's own send limit (2 MiB by default) would refuse
		// what the member accepts; etcd's server allows the same margin
		// for gRPC framing.
		cfg.MaxCallSendMsgSize = int(s.maxRequestBytes) + grpcOverheadBytes
	}
	if s.clientTLS != nil {
		// AllowedCNs and AllowedHostnames say which clients the server
		// admits; on a client config etcd would check the server's
		// certificate against them instead.
		info := *s.clientTLS
		info.AllowedCNs, info.AllowedHostnames = nil, nil
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd client TLS: %w", err)
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// Err reports a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and waits for it.
func (s *Server) Close() { s.etcd.Close() }
