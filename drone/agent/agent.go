// Package agent is the drone's link to its frontgate: it dials the
// frontgate's DroneLink over mutual TLS with the drone's certificate,
// introduces itself with a Hello, and serves the frontgate's requests (run a
// command, configure the renderer) over the envelope protocol, reconnecting
// with backoff for as long as the drone runs. It also renews the drone's
// certificate before it expires, through the same stream.
//
// The frontgate is trusted to relay, not to command: the agent talks only
// to the frontgate its user data names (its certificate must say so), and
// acts only on requests pilot signed for this node (internal/cmdsign),
// opening the metadata key pilot sealed to this drone's own key
// (internal/seal).
package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor"
	"github.com/hangarhq/hangar/drone/health"
	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/drone/metrics"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// Executor runs commands at most once per command id (drone/executor).
type Executor interface {
	Run(ctx context.Context, req *streamv1.RunCommand) (*streamv1.CommandResult, error)
	Cancel(ctx context.Context, commandID, reason string) (*streamv1.CommandResult, error)
}

// Renderer installs and renders delivered confd files (drone/render).
type Renderer interface {
	Configure(ctx context.Context, files map[string][]byte, metadataKey []byte) error
}

// Health runs the node's health check (drone/health): each renderer
// configuration from pilot carries the check to run, or none.
type Health interface {
	Set(spec *health.Spec)
}

// Metrics samples the node (drone/metrics): each renderer configuration
// from pilot carries the monitor to run, or none.
type Metrics interface {
	Set(spec *metrics.Spec)
}

// Config describes an Agent.
type Config struct {
	NodeID    string
	ClusterID string
	// FrontgateID is the frontgate of this drone's network (user data): a
	// server whose certificate names another identity is not dialed.
	FrontgateID string
	// FrontgateAddress is host:port of the frontgate's DroneLink. Its host
	// must be in the frontgate's certificate.
	FrontgateAddress string
	// Creds are the drone's certificate (drone/enroll); the agent presents
	// them on every connection and renews them before they expire.
	Creds    *tlsutil.Creds
	Version  string
	Executor Executor
	Renderer Renderer
	// Health, when set, is given the health check of every renderer
	// configuration.
	Health Health
	// Metrics, when set, is given the monitor of every renderer
	// configuration.
	Metrics Metrics
	Logger  *slog.Logger
	// Stream tunes the envelope protocol (heartbeats).
	Stream streamrpc.Options
	// BackoffBase and BackoffMax bound reconnect delays (default 200ms and
	// 15s); the delay starts over after a connection stayed up StableAfter
	// (default 10s).
	BackoffBase, BackoffMax time.Duration
	StableAfter             time.Duration
	// RenewTimeout bounds one renewal request (default 1m).
	RenewTimeout time.Duration
	// Reports, when set, carries the renderer's reports (render.Config
	// OnRendered) to the frontgate.
	Reports *Reports
	// CommandPublicKey is pilot's command key (drone/enroll): the agent
	// runs only commands it signed for this node that have not expired.
	// Without it every command is refused.
	CommandPublicKey ed25519.PublicKey
}

// Agent holds the drone's connection to its frontgate.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	serverName string
	// link keeps the stream: renewals go through whichever stream is up.
	link *streamrpc.Client
}

// New checks cfg.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("agent: NodeID is required")
	case cfg.ClusterID == "":
		return nil, errors.New("agent: ClusterID is required")
	case cfg.FrontgateID == "":
		return nil, errors.New("agent: FrontgateID is required (user data frontgate_id)")
	case cfg.FrontgateAddress == "":
		return nil, errors.New("agent: FrontgateAddress is required")
	case cfg.Executor == nil:
		return nil, errors.New("agent: Executor is required")
	case cfg.Renderer == nil:
		return nil, errors.New("agent: Renderer is required")
	case cfg.Creds == nil:
		return nil, errors.New("agent: Creds is required (the drone's certificate from drone/enroll)")
	}
	host, _, err := net.SplitHostPort(cfg.FrontgateAddress)
	if err != nil || host == "" {
		return nil, fmt.Errorf("agent: FrontgateAddress %q: want host:port", cfg.FrontgateAddress)
	}
	// The frontgate checks the Hello against the certificate; a mismatch
	// here would only show up there as an endless stream of refusals.
	if id := cfg.Creds.Identity(); id.Kind != pki.KindDrone || id.ID != cfg.NodeID || id.Cluster != cfg.ClusterID {
		return nil, fmt.Errorf("agent: certificate identity %s is not drone %s of cluster %s", id, cfg.NodeID, cfg.ClusterID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 200 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 15 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.RenewTimeout <= 0 {
		cfg.RenewTimeout = time.Minute
	}
	log := cfg.Logger.With("node_id", cfg.NodeID, "cluster_id", cfg.ClusterID)
	cfg.Stream.Logger = log
	a := &Agent{cfg: cfg, log: log, serverName: host}
	a.link, err = streamrpc.NewClient(streamrpc.ClientConfig{
		Name:   "frontgate",
		Target: cfg.FrontgateAddress,
		Open:   a.open,
		Hello: &streamv1.Hello{
			Component:    "drone",
			Id:           cfg.NodeID,
			ClusterId:    cfg.ClusterID,
			Version:      cfg.Version,
			Capabilities: []string{"run_command", "cancel_command", "configure_renderer"},
		},
		Handler:     a.handle,
		Peer:        cfg.Stream,
		Logger:      log,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, StableAfter: cfg.StableAfter,
		Refused: "the frontgate refuses this drone; if the node was revoked, replace it, otherwise check its certificate",
		OnState: func(up bool) {
			if up && cfg.Reports != nil {
				// A new stream: the frontgate hears the latest report again.
				cfg.Reports.resend()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return a, nil
}

// Run keeps the drone connected to its frontgate until ctx ends, and
// returns ctx's error. Requests in flight when a connection drops are
// abandoned by the handler only: commands keep running, and the frontgate
// gets their result by sending the same command id again.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tlsutil.RenewLoop(ctx, a.cfg.Creds, join.Renewer(a.cfg.Creds, a.cfg.RenewTimeout, a.link.Call), a.log)
	}()
	if a.cfg.Reports != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.cfg.Reports.send(ctx, a.link.Call, a.cfg.RenewTimeout, a.log)
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	return a.link.Run(ctx)
}

// open makes one connection to the frontgate and opens the stream.
// Transport security is chosen here and only here: mutual TLS, trusting
// only pilot's CA and only the frontgate the user data names, with the
// current certificate (so a renewed one is used from the next handshake).
func (a *Agent) open(ctx context.Context) (streamrpc.Stream, func(), error) {
	tc := credentials.NewTLS(a.cfg.Creds.ClientConfig(a.serverName, pki.Identity{Kind: pki.KindFrontgate, ID: a.cfg.FrontgateID}))
	conn, err := grpc.NewClient(a.cfg.FrontgateAddress, append(append(limits.GRPCDialOptions(), limits.ManyPeersDialOptions()...), grpc.WithTransportCredentials(tc))...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial frontgate %s: %w", a.cfg.FrontgateAddress, err)
	}
	stream, err := streamv1.NewDroneLinkClient(conn).Connect(ctx)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("open stream to %s: %w", a.cfg.FrontgateAddress, err)
	}
	return stream, func() { conn.Close() }, nil
}

// handle serves one request from the frontgate.
func (a *Agent) handle(ctx context.Context, req *streamv1.Request) *streamv1.Response {
	switch body := req.GetBody().(type) {
	case *streamv1.Request_RunCommand:
		return a.runCommand(ctx, body.RunCommand)
	case *streamv1.Request_CancelCommand:
		return a.cancelCommand(ctx, body.CancelCommand)
	case *streamv1.Request_ConfigureRenderer:
		return a.configureRenderer(ctx, body.ConfigureRenderer)
	default:
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "a drone does not serve %T requests", body)
	}
}

func (a *Agent) runCommand(ctx context.Context, rc *streamv1.RunCommand) *streamv1.Response {
	// Verified before the executor sees it, so a replayed command id is
	// answered from its record only when pilot signed it for this node and
	// it has not expired.
	if err := cmdsign.Verify(a.cfg.CommandPublicKey, rc, a.cfg.NodeID, time.Now()); err != nil {
		a.log.Error("command rejected", "command_id", rc.GetCommandId(), "reason", err.Error())
		return streamrpc.ErrorResponse(streamrpc.CodeUnauthenticated, "command %s rejected: %v", rc.GetCommandId(), err)
	}
	res, err := a.cfg.Executor.Run(ctx, rc)
	switch {
	case errors.Is(err, executor.ErrInvalid):
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	case errors.Is(err, executor.ErrClosed):
		return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "drone is stopping: %v", err)
	case err != nil:
		return streamrpc.ErrorResponse(streamrpc.CodeInternal, "%v", err)
	}
	return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: res}}
}

// cancelCommand kills a command pilot asked to cancel. Unsigned: a cancel
// runs nothing, and the frontgate that relays it could as well withhold
// the command it cancels.
func (a *Agent) cancelCommand(ctx context.Context, cc *streamv1.CancelCommand) *streamv1.Response {
	if cc.GetNodeId() != a.cfg.NodeID {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "cancel_command for node %s reached node %s", cc.GetNodeId(), a.cfg.NodeID)
	}
	res, err := a.cfg.Executor.Cancel(ctx, cc.GetCommandId(), cc.GetReason())
	switch {
	case errors.Is(err, executor.ErrInvalid):
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	case err != nil:
		return streamrpc.ErrorResponse(streamrpc.CodeInternal, "%v", err)
	}
	return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: res}}
}

func (a *Agent) configureRenderer(ctx context.Context, cr *streamv1.ConfigureRenderer) *streamv1.Response {
	// Rendering writes files and runs the toml's check and reload
	// commands, so a configuration is held to the same rule as a command:
	// pilot signed it, for this node, and it has not expired.
	if err := cmdsign.VerifyRenderer(a.cfg.CommandPublicKey, cr, a.cfg.NodeID, a.cfg.ClusterID, time.Now()); err != nil {
		a.log.Error("renderer configuration rejected", "reason", err.Error())
		return streamrpc.ErrorResponse(streamrpc.CodeUnauthenticated, "configure_renderer rejected: %v", err)
	}
	spec, err := healthSpec(cr.GetHealthCheck())
	if err != nil {
		a.log.Warn("renderer configuration with a bad health check", "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "configure_renderer.health_check: %v", err)
	}
	mon, err := metrics.SpecOf(cr.GetMonitor())
	if err != nil {
		a.log.Warn("renderer configuration with a bad monitor", "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "configure_renderer.monitor: %v", err)
	}
	var key []byte
	if box := cr.GetSealedMetadataKey(); len(box) > 0 {
		var err error
		if key, err = seal.Open(a.cfg.Creds.Key(), seal.MetadataKeyInfo(a.cfg.ClusterID, a.cfg.NodeID), box); err != nil {
			// Pilot seals to the key it certified last; across a renewal
			// that is briefly not the one this drone holds. Unavailable
			// makes pilot seal again and resend.
			a.log.Warn("metadata key does not open with this drone's key; pilot will resend", "err", err)
			return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "configure_renderer.sealed_metadata_key: %v (sealed to another key than this drone's current certificate key; resend)", err)
		}
	}
	if err := a.cfg.Renderer.Configure(ctx, cr.GetFiles(), key); err != nil {
		if errors.Is(err, metaview.ErrNotLoaded) {
			// The drone has not read its cluster's tree yet (a thousand
			// drones loading at once): pilot resends.
			a.log.Warn("configure renderer before the metadata was loaded; pilot will resend", "err", err)
			return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "configure_renderer: %v", err)
		}
		// The files or the metadata they need are wrong: retrying the same
		// delivery cannot help, so the failure is reported as invalid.
		a.log.Warn("configure renderer", "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	}
	if a.cfg.Health != nil {
		a.cfg.Health.Set(spec)
	}
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.Set(mon)
	}
	a.log.Info("renderer configured", "files", len(cr.GetFiles()), "health_check", cr.GetHealthCheck() != nil, "monitor", cr.GetMonitor() != nil)
	return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: fmt.Sprintf("installed and rendered %d confd files", len(cr.GetFiles()))}}}
}

// healthSpec is the check pilot sent, checked (nil: none).
func healthSpec(h *streamv1.HealthCheck) (*health.Spec, error) {
	if h == nil {
		return nil, nil
	}
	sec := func(n int32) time.Duration { return time.Duration(n) * time.Second }
	spec := &health.Spec{
		CheckCmd:           h.GetCheckCmd(),
		ActionCmd:          h.GetActionCmd(),
		Interval:           sec(h.GetIntervalSec()),
		Timeout:            sec(h.GetTimeoutSec()),
		ActionTimeout:      sec(h.GetActionTimeoutSec()),
		HealthyThreshold:   int(h.GetHealthyThreshold()),
		UnhealthyThreshold: int(h.GetUnhealthyThreshold()),
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}
