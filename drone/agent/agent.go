// Package agent is the drone's link to its frontgate: it dials the
// frontgate's DroneLink, introduces itself with a Hello, and serves the
// frontgate's requests (run a command, configure the renderer) over the
// envelope protocol, reconnecting with backoff for as long as the drone runs.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Executor runs commands at most once per command id (drone/executor).
type Executor interface {
	Run(ctx context.Context, req *streamv1.RunCommand) (*streamv1.CommandResult, error)
}

// Renderer installs and renders delivered confd files (drone/render).
type Renderer interface {
	Configure(ctx context.Context, files map[string][]byte) error
}

// Config describes an Agent.
type Config struct {
	NodeID    string
	ClusterID string
	// FrontgateAddress is host:port of the frontgate's DroneLink.
	FrontgateAddress string
	Version          string
	Executor         Executor
	Renderer         Renderer
	Logger           *slog.Logger
	// Stream tunes the envelope protocol (heartbeats).
	Stream streamrpc.Options
	// BackoffBase and BackoffMax bound reconnect delays (default 200ms and
	// 15s); the delay starts over after a connection stayed up StableAfter
	// (default 10s).
	BackoffBase, BackoffMax time.Duration
	StableAfter             time.Duration
}

// Agent holds the drone's connection to its frontgate.
type Agent struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("agent: NodeID is required")
	case cfg.ClusterID == "":
		return nil, errors.New("agent: ClusterID is required")
	case cfg.FrontgateAddress == "":
		return nil, errors.New("agent: FrontgateAddress is required")
	case cfg.Executor == nil:
		return nil, errors.New("agent: Executor is required")
	case cfg.Renderer == nil:
		return nil, errors.New("agent: Renderer is required")
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
	log := cfg.Logger.With("node_id", cfg.NodeID, "cluster_id", cfg.ClusterID)
	cfg.Stream.Logger = log
	return &Agent{cfg: cfg, log: log}, nil
}

// Run keeps the drone connected to its frontgate until ctx ends, and
// returns ctx's error. Requests in flight when a connection drops are
// abandoned by the handler only: commands keep running, and the frontgate
// gets their result by sending the same command id again.
func (a *Agent) Run(ctx context.Context) error {
	bo := backoff.New(a.cfg.BackoffBase, a.cfg.BackoffMax)
	for {
		connectedAt, err := a.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !connectedAt.IsZero() && time.Since(connectedAt) >= a.cfg.StableAfter {
			bo.Reset()
		}
		delay := bo.Next()
		if connectedAt.IsZero() {
			a.log.Warn("cannot reach frontgate", "address", a.cfg.FrontgateAddress, "err", err, "retry_in", delay)
		} else {
			a.log.Warn("connection to frontgate lost", "address", a.cfg.FrontgateAddress, "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// session runs one connection. connectedAt is zero when it never got as far
// as sending the Hello.
func (a *Agent) session(ctx context.Context) (connectedAt time.Time, err error) {
	conn, err := dial(a.cfg.FrontgateAddress)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	// Cancelling sctx ends the stream, which also ends the Peer's reader.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := streamv1.NewDroneLinkClient(conn).Connect(sctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("open stream to %s: %w", a.cfg.FrontgateAddress, err)
	}
	if err := streamrpc.SendHello(stream, &streamv1.Hello{
		Component:    "drone",
		Id:           a.cfg.NodeID,
		ClusterId:    a.cfg.ClusterID,
		Version:      a.cfg.Version,
		Capabilities: []string{"run_command", "configure_renderer"},
	}); err != nil {
		return time.Time{}, err
	}
	connectedAt = time.Now()
	a.log.Info("connected to frontgate", "address", a.cfg.FrontgateAddress)
	peer := streamrpc.NewPeer(stream, a.handle, a.cfg.Stream)
	return connectedAt, peer.Run(sctx)
}

// dial opens the gRPC connection to the frontgate. Transport security is
// chosen here and only here: plaintext until drones receive certificates.
func dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial frontgate %s: %w", addr, err)
	}
	return conn, nil
}

// handle serves one request from the frontgate.
func (a *Agent) handle(ctx context.Context, req *streamv1.Request) *streamv1.Response {
	switch body := req.GetBody().(type) {
	case *streamv1.Request_RunCommand:
		return a.runCommand(ctx, body.RunCommand)
	case *streamv1.Request_ConfigureRenderer:
		return a.configureRenderer(ctx, body.ConfigureRenderer)
	default:
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "a drone does not serve %T requests", body)
	}
}

func (a *Agent) runCommand(ctx context.Context, rc *streamv1.RunCommand) *streamv1.Response {
	if rc.GetNodeId() != "" && rc.GetNodeId() != a.cfg.NodeID {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "run_command.node_id %q is not this drone (%s)", rc.GetNodeId(), a.cfg.NodeID)
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

func (a *Agent) configureRenderer(ctx context.Context, cr *streamv1.ConfigureRenderer) *streamv1.Response {
	if cr.GetNodeId() != "" && cr.GetNodeId() != a.cfg.NodeID {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "configure_renderer.node_id %q is not this drone (%s)", cr.GetNodeId(), a.cfg.NodeID)
	}
	if cr.GetClusterId() != "" && cr.GetClusterId() != a.cfg.ClusterID {
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "configure_renderer.cluster_id %q is not this drone's cluster (%s)", cr.GetClusterId(), a.cfg.ClusterID)
	}
	if err := a.cfg.Renderer.Configure(ctx, cr.GetFiles()); err != nil {
		// The files or the metadata they need are wrong: retrying the same
		// delivery cannot help, so the failure is reported as invalid.
		a.log.Warn("configure renderer", "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%v", err)
	}
	a.log.Info("renderer configured", "files", len(cr.GetFiles()))
	return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: fmt.Sprintf("installed and rendered %d confd files", len(cr.GetFiles()))}}}
}
