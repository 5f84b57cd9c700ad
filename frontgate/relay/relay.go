// Package relay is the frontgate's registry of connected drones and the
// path of pilot's requests to them. It serves DroneLink: each drone holds
// one stream, and a request for a node waits for that node to be connected
// and, when the stream is cut before the answer, is sent again on the
// node's next stream. Drones execute a command id at most once and answer a
// repeat with the recorded result, so the resend is how a result survives a
// cut connection.
//
// A drone is who its client certificate says: Connect admits only a
// verified drone certificate whose node and cluster match the Hello, and
// never a revoked node. Join, the one call allowed without a certificate,
// is handed to Config.Join (which relays it to pilot).
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

var (
	// ErrInvalid marks a request the relay cannot route.
	ErrInvalid = errors.New("invalid relay request")
	// ErrNotConnected marks a node that was not connected (again) before
	// the request's deadline, or that is revoked.
	ErrNotConnected = streamrpc.ErrNotConnected
	// ErrClosed is returned by calls waiting for a drone when the Relay is
	// closed.
	ErrClosed = errors.New("frontgate relay closed")
)

// DefaultMaxJoins is the default of Config.MaxJoins.
const DefaultMaxJoins = 16

// DroneHandler serves a request a drone sent on its stream; from is the
// drone's verified identity.
type DroneHandler func(ctx context.Context, from pki.Identity, req *streamv1.Request) *streamv1.Response

// JoinFunc turns a drone's join request into its certificate. An error may
// be a *streamrpc.Error (pilot's answer), a gRPC status, or a context
// error; Join maps each to the matching gRPC code.
type JoinFunc func(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error)

// Config configures a Relay.
type Config struct {
	Logger *slog.Logger
	// HelloTimeout bounds the wait for a new stream's Hello (default 10s).
	HelloTimeout time.Duration
	// Peer tunes the drone streams (heartbeats, dead-peer detection).
	Peer streamrpc.Options
	// Handler serves requests drones send to the frontgate; nil serves none.
	Handler DroneHandler
	// Join serves DroneLink.Join; nil answers Unimplemented.
	Join JoinFunc
	// MaxJoins bounds the joins relayed at once (default DefaultMaxJoins):
	// Join needs no certificate, so anyone in the network can call it,
	// and each call costs pilot a token lookup.
	MaxJoins int
}

// Relay implements streamv1.DroneLinkServer.
type Relay struct {
	streamv1.UnimplementedDroneLinkServer

	cfg Config
	log *slog.Logger

	// base ends every drone stream at Close.
	base     context.Context
	stopAll  context.CancelFunc
	streams  sync.WaitGroup
	closeMux sync.Mutex

	// hub holds the drone streams by node id; revoked nodes are refused
	// there.
	hub *streamrpc.Hub[*streamv1.DroneInfo]

	// rendered holds each drone's last render report, across its
	// reconnects (it repeats it on every new stream anyway).
	renderMu sync.Mutex
	rendered map[string]*streamv1.RenderReport
	// health holds each drone's last health report, likewise.
	health map[string]*streamv1.HealthReport
	// metrics holds each drone's last metrics report, likewise.
	metrics map[string]*streamv1.MetricsReport

	// joinSlots holds one token per Join in progress.
	joinSlots chan struct{}
}

// New returns a Relay with no drones connected.
func New(cfg Config) *Relay {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.Peer.Logger == nil {
		cfg.Peer.Logger = cfg.Logger
	}
	if cfg.MaxJoins <= 0 {
		cfg.MaxJoins = DefaultMaxJoins
	}
	base, stop := context.WithCancel(context.Background())
	return &Relay{
		cfg:       cfg,
		log:       cfg.Logger,
		base:      base,
		stopAll:   stop,
		hub:       streamrpc.NewHub[*streamv1.DroneInfo](streamrpc.HubConfig{Logger: cfg.Logger}),
		rendered:  map[string]*streamv1.RenderReport{},
		health:    map[string]*streamv1.HealthReport{},
		metrics:   map[string]*streamv1.MetricsReport{},
		joinSlots: make(chan struct{}, cfg.MaxJoins),
	}
}

// Connect serves one drone's stream until it ends, the drone connects
// again (the new stream replaces this one) or the Relay is closed.
func (r *Relay) Connect(stream streamv1.DroneLink_ConnectServer) error {
	if !r.enter() {
		return status.Error(codes.Unavailable, "frontgate is shutting down")
	}
	defer r.streams.Done()

	// Who the caller is comes from its certificate alone; the Hello is
	// only checked against it.
	id, err := tlsutil.PeerIdentity(stream.Context())
	if err != nil {
		r.log.Warn("drone stream without a certificate refused", "err", err)
		return status.Errorf(codes.Unauthenticated, "DroneLink.Connect needs the drone's client certificate (obtained with DroneLink.Join): %v", err)
	}
	if id.Kind != pki.KindDrone {
		r.log.Warn("non-drone certificate refused on DroneLink", "identity", id.String())
		return status.Errorf(codes.PermissionDenied, "DroneLink.Connect serves drones; the certificate is %s", id)
	}
	if r.hub.Gone(id.ID) != nil {
		r.log.Warn("revoked drone refused", "node_id", id.ID, "cluster_id", id.Cluster)
		return status.Errorf(codes.PermissionDenied, "node %s is revoked; the node must be replaced", id.ID)
	}

	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	stopOnClose := context.AfterFunc(r.base, func() { cancel(ErrClosed) })
	defer stopOnClose()
	// Close must not wait out a silent client's hello timeout.
	s := ctxStream{stream, ctx}

	hello, err := streamrpc.RecvHello(s, r.cfg.HelloTimeout)
	if err != nil {
		if r.base.Err() != nil {
			return status.Error(codes.Unavailable, "frontgate is shutting down")
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if hello.Component != "drone" {
		return status.Errorf(codes.InvalidArgument, "hello: component %q is not allowed here; DroneLink serves \"drone\"", hello.Component)
	}
	if hello.ClusterId == "" {
		return status.Errorf(codes.InvalidArgument, "hello from node %s: cluster_id is required", hello.Id)
	}
	if hello.Id != id.ID || hello.ClusterId != id.Cluster {
		r.log.Warn("drone hello does not match its certificate", "certificate", id.String(), "hello_id", hello.Id, "hello_cluster_id", hello.ClusterId)
		return status.Errorf(codes.PermissionDenied, "hello says node %q of cluster %q but the certificate is %s", hello.Id, hello.ClusterId, id)
	}

	var handler streamrpc.Handler
	if r.cfg.Handler != nil {
		handler = func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
			return r.cfg.Handler(ctx, id, req)
		}
	}
	info := &streamv1.DroneInfo{
		NodeId:      hello.Id,
		ClusterId:   hello.ClusterId,
		Version:     hello.Version,
		ConnectedAt: timestamppb.Now(),
	}
	log := r.log.With("node_id", hello.Id, "cluster_id", hello.ClusterId)
	peer := streamrpc.NewPeer(s, handler, r.cfg.Peer)
	c, old, err := r.hub.Admit(hello.Id, peer, info, cancel)
	if err != nil {
		// Revoked while its Hello was on the way.
		log.Warn("revoked drone refused")
		return status.Errorf(codes.PermissionDenied, "node %s is revoked; the node must be replaced", id.ID)
	}
	if old != nil {
		log.Info("drone reconnected; replacing its previous stream")
	} else {
		log.Info("drone connected", "version", hello.Version)
	}

	err = peer.Run(ctx)
	if r.hub.Leave(c) {
		log.Info("drone disconnected", "err", err)
	}
	// The stream's end is the answer: the drone reconnects on any outcome.
	return nil
}

// enter admits a stream unless the Relay is closed.
func (r *Relay) enter() bool {
	r.closeMux.Lock()
	defer r.closeMux.Unlock()
	if r.base.Err() != nil {
		return false
	}
	r.streams.Add(1)
	return true
}

// Close ends every drone stream and waits for their handlers to return;
// calls waiting for a drone fail with ErrClosed. The gRPC server may then
// stop gracefully.
func (r *Relay) Close() {
	r.closeMux.Lock()
	r.stopAll()
	r.hub.Close()
	r.closeMux.Unlock()
	r.streams.Wait()
}

// ctxStream ends with ctx rather than only with the RPC.
type ctxStream struct {
	streamv1.DroneLink_ConnectServer
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// Refuse stops admitting nodeID (a revoked node) and ends its stream if it
// has one; it reports whether it ended one. Requests waiting for the node
// fail at once.
func (r *Relay) Refuse(nodeID string) bool {
	if !r.hub.Refuse(nodeID, errRevoked) {
		return false
	}
	r.log.Warn("revoked drone disconnected", "node_id", nodeID)
	return true
}

// errRevoked is the cause a revoked drone's stream is ended with.
var errRevoked = errors.New("revoked")

// Join relays a drone's join through Config.Join. The caller needs no
// certificate: the single-use token is what pilot checks, and pilot
// certifies the identity the token names, whatever the caller claims.
func (r *Relay) Join(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	if r.cfg.Join == nil {
		return nil, status.Error(codes.Unimplemented, "this frontgate relays no joins")
	}
	switch {
	case req.GetTokenId() == "" || len(req.GetTokenProof()) == 0:
		return nil, status.Error(codes.InvalidArgument, "join: token_id and token_proof are required (made from the join_token of the instance's user data)")
	case req.GetCsrPem() == "":
		return nil, status.Error(codes.InvalidArgument, "join: csr_pem is required (a PEM certificate request over the drone's new key)")
	}
	select {
	case r.joinSlots <- struct{}{}:
		defer func() { <-r.joinSlots }()
	default:
		return nil, status.Errorf(codes.ResourceExhausted, "join: %d joins already in progress at this frontgate; retry shortly", cap(r.joinSlots))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.base, cancel)()
	cert, err := r.cfg.Join(ctx, req)
	if err != nil {
		if r.base.Err() != nil {
			return nil, status.Error(codes.Unavailable, "join: frontgate is shutting down")
		}
		st := streamrpc.Status(err)
		r.log.Warn("join failed", "code", st.Code().String(), "err", st.Message())
		return nil, st.Err()
	}
	if cert.GetCertificatePem() == "" {
		return nil, status.Error(codes.Internal, "join: pilot answered without a certificate")
	}
	return cert, nil
}

// Count is the number of connected drones.
func (r *Relay) Count() int { return r.hub.Count() }

// List returns the connected drones of clusterID (all drones when it is
// empty), ordered by node id.
func (r *Relay) List(clusterID string) []*streamv1.DroneInfo {
	var out []*streamv1.DroneInfo
	r.renderMu.Lock()
	for _, c := range r.hub.Conns() {
		if clusterID == "" || c.Info.ClusterId == clusterID {
			info := proto.Clone(c.Info).(*streamv1.DroneInfo)
			if rr := r.rendered[info.NodeId]; rr != nil {
				info.RenderedRevision, info.RenderError = rr.GetRevision(), rr.GetError()
			}
			if hr := r.health[info.NodeId]; hr != nil {
				info.Health = proto.Clone(hr).(*streamv1.HealthReport)
			}
			if mr := r.metrics[info.NodeId]; mr != nil {
				info.Metrics = proto.Clone(mr).(*streamv1.MetricsReport)
			}
			out = append(out, info)
		}
	}
	r.renderMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

// Rendered keeps nodeID's last render report, for List.
func (r *Relay) Rendered(nodeID string, rr *streamv1.RenderReport) {
	r.renderMu.Lock()
	defer r.renderMu.Unlock()
	// Reports can cross on a reconnect; a lower revision never replaces a
	// higher one.
	if old := r.rendered[nodeID]; old != nil && old.GetRevision() > rr.GetRevision() {
		return
	}
	r.rendered[nodeID] = proto.Clone(rr).(*streamv1.RenderReport)
}

// Healthed keeps nodeID's last health report, for List. Reports can cross
// on a reconnect: one whose check ran before the kept one's is dropped.
func (r *Relay) Healthed(nodeID string, hr *streamv1.HealthReport) {
	r.renderMu.Lock()
	defer r.renderMu.Unlock()
	if old := r.health[nodeID]; old != nil && old.GetCheck().GetAt().AsTime().After(hr.GetCheck().GetAt().AsTime()) {
		return
	}
	r.health[nodeID] = proto.Clone(hr).(*streamv1.HealthReport)
}

// Measured keeps nodeID's last metrics report, for List; one taken before
// the kept one (crossed on a reconnect) is dropped.
func (r *Relay) Measured(nodeID string, mr *streamv1.MetricsReport) {
	r.renderMu.Lock()
	defer r.renderMu.Unlock()
	if old := r.metrics[nodeID]; old != nil && old.GetAt().AsTime().After(mr.GetAt().AsTime()) {
		return
	}
	r.metrics[nodeID] = proto.Clone(mr).(*streamv1.MetricsReport)
}

// Call sends req to the drone nodeID and returns its response. It waits
// until ctx's deadline for the node to be connected; when the stream ends
// before the answer, it waits for the node's next stream and sends the same
// request again (streamrpc.Hub.Call). A failure reported by the drone is
// returned as *streamrpc.Error along with the response.
//
// Resending is only safe for requests the drone answers idempotently
// (commands carry a command id; renderer configuration replaces state).
func (r *Relay) Call(ctx context.Context, nodeID string, req *streamv1.Request) (*streamv1.Response, error) {
	if nodeID == "" {
		return nil, fmt.Errorf("%w: node_id is required", ErrInvalid)
	}
	if req == nil || req.Body == nil {
		return nil, fmt.Errorf("%w: request to node %s has no body", ErrInvalid, nodeID)
	}
	start := time.Now()
	resp, err := r.hub.Call(ctx, nodeID, req)
	var remote *streamrpc.Error
	switch {
	case err == nil, errors.As(err, &remote):
		return resp, err
	case errors.Is(err, streamrpc.ErrHubClosed):
		return nil, fmt.Errorf("node %s: %w", nodeID, ErrClosed)
	case errors.Is(err, streamrpc.ErrRefused):
		return nil, fmt.Errorf("node %s is revoked: %w", nodeID, ErrNotConnected)
	case errors.Is(err, streamrpc.ErrNotConnected):
		return nil, fmt.Errorf("node %s: not connected within %v: %w", nodeID, time.Since(start).Round(time.Millisecond), err)
	}
	return nil, fmt.Errorf("node %s: no answer to request %s within %v: %w", nodeID, req.Id, time.Since(start).Round(time.Millisecond), err)
}
