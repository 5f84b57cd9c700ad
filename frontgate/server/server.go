// Package server answers the requests pilot sends on the frontgate's
// stream: metadata changes go to the metadata store (and who may read a
// cluster to etcd's RBAC), commands and renderer configuration are relayed
// to the drone they name, revocations end a drone's stream and its etcd
// user, and the list of connected drones comes from the relay. It also
// carries the drones' own requests up to pilot: their joins and their
// certificate renewals. Every failure is answered with a stable error code
// and a message naming what failed.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/access"
	"github.com/hangarhq/hangar/frontgate/metastore"
	"github.com/hangarhq/hangar/frontgate/relay"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Request kinds, as named in capabilities, logs and metrics.
const (
	KindRunCommand        = "run_command"
	KindCancelCommand     = "cancel_command"
	KindApplyMetadata     = "apply_metadata"
	KindApplySubtree      = "apply_metadata_subtree"
	KindDeleteMetadata    = "delete_metadata"
	KindConfigureRenderer = "configure_renderer"
	KindListDrones        = "list_drones"
	KindRevoke            = "revoke"
	// KindJoin and KindRenewCertificate are drones' requests carried up to
	// pilot.
	KindJoin             = "join"
	KindRenewCertificate = "renew_certificate"
	// KindRenderReport is what a drone tells of its last render.
	KindRenderReport = "render_report"
	// KindHealthReport is what a drone tells of its node's health.
	KindHealthReport = "health_report"
	// KindMetricsReport is a drone's sample of its host and monitor.
	KindMetricsReport = "metrics_report"
	KindUnknown       = "unknown"
)

// ResultOK is the result reported to Observe for a request that succeeded.
const ResultOK = "ok"

// Capabilities lists the request kinds a Handler serves, for the Hello.
func Capabilities() []string {
	return []string{KindApplyMetadata, KindApplySubtree, KindDeleteMetadata, KindRunCommand, KindCancelCommand, KindConfigureRenderer, KindListDrones, KindRevoke}
}

// Kind names the request's body.
func Kind(req *streamv1.Request) string {
	switch req.GetBody().(type) {
	case *streamv1.Request_RunCommand:
		return KindRunCommand
	case *streamv1.Request_CancelCommand:
		return KindCancelCommand
	case *streamv1.Request_ApplyMetadata:
		return KindApplyMetadata
	case *streamv1.Request_ApplyMetadataSubtree:
		return KindApplySubtree
	case *streamv1.Request_DeleteMetadata:
		return KindDeleteMetadata
	case *streamv1.Request_ConfigureRenderer:
		return KindConfigureRenderer
	case *streamv1.Request_ListDrones:
		return KindListDrones
	case *streamv1.Request_Revoke:
		return KindRevoke
	case *streamv1.Request_Join:
		return KindJoin
	case *streamv1.Request_RenewCertificate:
		return KindRenewCertificate
	case *streamv1.Request_RenderReport:
		return KindRenderReport
	case *streamv1.Request_HealthReport:
		return KindHealthReport
	case *streamv1.Request_MetricsReport:
		return KindMetricsReport
	}
	return KindUnknown
}

// Metadata is the part of *metastore.Store the handler uses.
type Metadata interface {
	Apply(ctx context.Context, clusterID string, kvs map[string]string) (metastore.Result, error)
	ApplyUnder(ctx context.Context, clusterID, under string, kvs map[string]string) (metastore.Result, error)
	Delete(ctx context.Context, clusterID string) (int64, error)
}

// Drones is the part of *relay.Relay the handler uses.
type Drones interface {
	Call(ctx context.Context, nodeID string, req *streamv1.Request) (*streamv1.Response, error)
	List(clusterID string) []*streamv1.DroneInfo
	Refuse(nodeID string) bool
	// Rendered records a drone's last render report.
	Rendered(nodeID string, r *streamv1.RenderReport)
	// Healthed records a drone's last health report.
	Healthed(nodeID string, r *streamv1.HealthReport)
	// Measured records a drone's last metrics report.
	Measured(nodeID string, r *streamv1.MetricsReport)
}

// Access is the part of *access.Manager the handler uses.
type Access interface {
	SetReaders(ctx context.Context, clusterID string, nodeIDs []string) error
	DeleteCluster(ctx context.Context, clusterID string) error
	Revoke(ctx context.Context, nodeID, clusterID string) error
}

// Pilot is the part of *pilotlink.Link the handler uses to carry drones'
// requests up.
type Pilot interface {
	Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error)
}

// Config configures a Handler.
type Config struct {
	Metadata Metadata
	Drones   Drones
	Access   Access
	Pilot    Pilot
	Logger   *slog.Logger
	// Observe, when set, is told the kind and result (ResultOK or the error
	// code) of every request served.
	Observe func(kind, result string)
}

// Handler serves pilot's requests.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Metadata == nil || cfg.Drones == nil || cfg.Access == nil || cfg.Pilot == nil {
		return nil, errors.New("frontgate handler: metadata store, drone relay, access manager and pilot link are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

// Serve answers one request; it is a streamrpc.Handler.
func (h *Handler) Serve(ctx context.Context, req *streamv1.Request) *streamv1.Response {
	return h.observe(req, func() *streamv1.Response { return h.serve(ctx, req) })
}

// observe runs serve for req, then logs and counts its outcome.
func (h *Handler) observe(req *streamv1.Request, serve func() *streamv1.Response) *streamv1.Response {
	kind := Kind(req)
	start := time.Now()
	resp := serve()
	result := ResultOK
	if e := resp.GetError(); e != nil {
		result = e.Code
		h.log.Warn("request failed", "kind", kind, "request_id", req.GetId(), "code", e.Code, "err", e.Message, "took", time.Since(start))
	} else {
		h.log.Debug("request served", "kind", kind, "request_id", req.GetId(), "took", time.Since(start))
	}
	if h.cfg.Observe != nil {
		h.cfg.Observe(kind, result)
	}
	return resp
}

func (h *Handler) serve(ctx context.Context, req *streamv1.Request) *streamv1.Response {
	switch b := req.GetBody().(type) {
	case *streamv1.Request_ApplyMetadata:
		m := b.ApplyMetadata
		// Readers first: a failure leaves the tree as it was, and pilot's
		// retry applies both.
		if err := h.cfg.Access.SetReaders(ctx, m.GetClusterId(), m.GetReaderNodeIds()); err != nil {
			return metadataError(err)
		}
		res, err := h.cfg.Metadata.Apply(ctx, m.GetClusterId(), m.GetKvs())
		if err != nil {
			return metadataError(err)
		}
		msg := fmt.Sprintf("cluster %s unchanged at revision %d", m.GetClusterId(), res.Revision)
		if res.Changed() {
			msg = fmt.Sprintf("cluster %s: %d keys written, %d deleted at revision %d", m.GetClusterId(), res.Puts, res.Deletes, res.Revision)
		}
		ack := ackResponse(fmt.Sprintf("%s; %d readers", msg, len(m.GetReaderNodeIds())))
		ack.GetAck().Revision = res.Revision
		return ack

	case *streamv1.Request_ApplyMetadataSubtree:
		// The readers stay: they follow the cluster's nodes, which only a
		// whole apply changes.
		m := b.ApplyMetadataSubtree
		res, err := h.cfg.Metadata.ApplyUnder(ctx, m.GetClusterId(), m.GetUnder(), m.GetKvs())
		if err != nil {
			return metadataError(err)
		}
		msg := fmt.Sprintf("cluster %s under %s unchanged at revision %d", m.GetClusterId(), m.GetUnder(), res.Revision)
		if res.Changed() {
			msg = fmt.Sprintf("cluster %s under %s: %d keys written, %d deleted at revision %d", m.GetClusterId(), m.GetUnder(), res.Puts, res.Deletes, res.Revision)
		}
		ack := ackResponse(msg)
		ack.GetAck().Revision = res.Revision
		return ack

	case *streamv1.Request_DeleteMetadata:
		id := b.DeleteMetadata.GetClusterId()
		n, err := h.cfg.Metadata.Delete(ctx, id)
		if err != nil {
			return metadataError(err)
		}
		if err := h.cfg.Access.DeleteCluster(ctx, id); err != nil {
			return metadataError(err)
		}
		return ackResponse(fmt.Sprintf("cluster %s: %d keys deleted, its readers removed", id, n))

	case *streamv1.Request_Revoke:
		node, cluster := b.Revoke.GetNodeId(), b.Revoke.GetClusterId()
		if err := access.ValidateNodeID(node); err != nil {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "revoke: %v", err)
		}
		// Refused in memory first, so that the node is out at once even
		// if recording it fails (pilot then retries).
		dropped := h.cfg.Drones.Refuse(node)
		if err := h.cfg.Access.Revoke(ctx, node, cluster); err != nil {
			return metadataError(fmt.Errorf("revoke node %s: %w", node, err))
		}
		msg := fmt.Sprintf("node %s revoked; it was not connected", node)
		if dropped {
			msg = fmt.Sprintf("node %s revoked; its stream was ended", node)
		}
		return ackResponse(msg)

	case *streamv1.Request_RunCommand:
		rc := b.RunCommand
		if rc.GetNodeId() == "" {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "run_command: node_id is required")
		}
		// The relay resends after a cut stream; only the command id keeps
		// the drone from running the command twice.
		if rc.GetCommandId() == "" {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "run_command for node %s: command_id is required", rc.GetNodeId())
		}
		return h.runCommand(ctx, rc)

	case *streamv1.Request_CancelCommand:
		cc := b.CancelCommand
		if cc.GetNodeId() == "" || cc.GetCommandId() == "" {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "cancel_command: node_id and command_id are required")
		}
		ctx, cancel := withMargin(ctx)
		defer cancel()
		return h.relay(ctx, cc.GetNodeId(), "cancel_command "+cc.GetCommandId(), &streamv1.Request{Body: &streamv1.Request_CancelCommand{CancelCommand: cc}})

	case *streamv1.Request_ConfigureRenderer:
		cr := b.ConfigureRenderer
		if cr.GetNodeId() == "" {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "configure_renderer: node_id is required")
		}
		ctx, cancel := withMargin(ctx)
		defer cancel()
		return h.relay(ctx, cr.GetNodeId(), "configure_renderer", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}})

	case *streamv1.Request_ListDrones:
		return &streamv1.Response{Body: &streamv1.Response_DroneList{DroneList: &streamv1.DroneList{
			Drones: h.cfg.Drones.List(b.ListDrones.GetClusterId()),
		}}}
	}
	return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "request %s: no body the frontgate serves (it serves %v)", req.GetId(), Capabilities())
}

// runCommand relays rc to its drone once. The drone answers when the
// command ends (a repeated command id waits for the same execution), so
// the result is pushed as soon as there is one, and a stream cut on the way
// is covered by the relay re-sending the same command id on the drone's
// next stream. Only when pilot's deadline comes first is the answer a
// RUNNING result; pilot then asks again under the same command id.
func (h *Handler) runCommand(ctx context.Context, rc *streamv1.RunCommand) *streamv1.Response {
	ctx, cancel := withMargin(ctx)
	defer cancel()
	return h.relay(ctx, rc.GetNodeId(), "run_command "+rc.GetCommandId(), &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}})
}

// withMargin ends ctx slightly before pilot's deadline, so that pilot
// receives our explanation ("node not connected") rather than only its own
// timeout.
func withMargin(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		if margin := min(time.Until(dl)/10, 500*time.Millisecond); margin > 0 {
			return context.WithDeadline(ctx, dl.Add(-margin))
		}
	}
	return context.WithCancel(ctx)
}

// relay forwards req to the drone nodeID and returns the drone's answer.
// ctx should already carry the margin of withMargin.
func (h *Handler) relay(ctx context.Context, nodeID, what string, req *streamv1.Request) *streamv1.Response {
	resp, err := h.cfg.Drones.Call(ctx, nodeID, req)
	if err == nil {
		return &streamv1.Response{Body: resp.GetBody()}
	}
	var remote *streamrpc.Error
	switch {
	case errors.As(err, &remote):
		return streamrpc.ErrorFor(what+" on node "+nodeID, err)
	case errors.Is(err, relay.ErrInvalid):
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "%s: %v", what, err)
	case errors.Is(err, relay.ErrNotConnected), errors.Is(err, relay.ErrClosed):
		return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return streamrpc.ErrorFor(what, err)
	}
	return streamrpc.ErrorResponse(streamrpc.CodeInternal, "%s: %v", what, err)
}

// ServeDrone answers a request a drone sent on its stream: only a renewal
// of its own certificate, carried unchanged to pilot, which checks the
// current certificate and the proof. It is a relay.DroneHandler.
func (h *Handler) ServeDrone(ctx context.Context, from pki.Identity, req *streamv1.Request) *streamv1.Response {
	return h.observe(req, func() *streamv1.Response {
		if rr := req.GetRenderReport(); rr != nil {
			// What a drone says of itself is kept for pilot to read
			// (ListDrones); it is never acted on here.
			h.cfg.Drones.Rendered(from.ID, rr)
			return ackResponse("render report kept")
		}
		if hr := req.GetHealthReport(); hr != nil {
			if err := checkHealthReport(hr); err != nil {
				return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "health_report from drone %s: %v", from.ID, err)
			}
			h.cfg.Drones.Healthed(from.ID, hr)
			return ackResponse("health report kept")
		}
		if mr := req.GetMetricsReport(); mr != nil {
			if err := checkMetricsReport(mr); err != nil {
				return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "metrics_report from drone %s: %v", from.ID, err)
			}
			h.cfg.Drones.Measured(from.ID, mr)
			return ackResponse("metrics report kept")
		}
		rc := req.GetRenewCertificate()
		if rc == nil {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "request %s from drone %s: the frontgate serves drones only renew_certificate, render_report, health_report and metrics_report", req.GetId(), from.ID)
		}
		// Pilot would refuse a renewal of another identity anyway; the
		// frontgate does not even carry one.
		cur, err := pki.ParseCert([]byte(rc.GetCurrentCertificatePem()))
		if err != nil {
			return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "renew_certificate from drone %s: current_certificate_pem: %v", from.ID, err)
		}
		if id, err := pki.IdentityOf(cur); err != nil || id != from {
			return streamrpc.ErrorResponse(streamrpc.CodePermissionDenied, "renew_certificate on the stream of %s names another certificate; a drone renews only its own", from)
		}
		resp, err := h.cfg.Pilot.Call(ctx, &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: rc}})
		if err != nil {
			return pilotError("renew_certificate for "+from.String(), err)
		}
		if resp.GetCertificate() == nil {
			return streamrpc.ErrorResponse(streamrpc.CodeInternal, "renew_certificate for %s: pilot answered without a certificate", from)
		}
		return &streamv1.Response{Body: resp.GetBody()}
	})
}

// Join carries a drone's join request to pilot and returns the certificate
// pilot issued; a failure is pilot's *streamrpc.Error or the reason pilot
// could not be asked. It is a relay.JoinFunc.
func (h *Handler) Join(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	var cert *streamv1.Certificate
	var err error
	env := &streamv1.Request{Body: &streamv1.Request_Join{Join: req}}
	h.observe(env, func() *streamv1.Response {
		var resp *streamv1.Response
		resp, err = h.cfg.Pilot.Call(ctx, &streamv1.Request{Body: &streamv1.Request_Join{Join: req}})
		if err != nil {
			return pilotError("join", err)
		}
		cert = resp.GetCertificate()
		return resp
	})
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// pilotError answers a drone's request that pilot refused ("<what>:
// pilot: <reason>", with pilot's code) or that could not reach pilot.
func pilotError(what string, err error) *streamv1.Response {
	var remote *streamrpc.Error
	if errors.As(err, &remote) {
		what += ": pilot"
	}
	return streamrpc.ErrorFor(what, err)
}

func metadataError(err error) *streamv1.Response {
	code := streamrpc.CodeUnavailable // etcd unreachable or overloaded: worth a retry
	switch {
	case errors.Is(err, metastore.ErrInvalid), errors.Is(err, access.ErrInvalid):
		code = streamrpc.CodeInvalid
	case errors.Is(err, metastore.ErrNoTree):
		code = streamrpc.CodeNotFound
	case errors.Is(err, metastore.ErrTooManyOps):
		code = streamrpc.CodeInternal
	case errors.Is(err, context.DeadlineExceeded):
		code = streamrpc.CodeDeadline
	case errors.Is(err, context.Canceled):
		code = streamrpc.CodeCancelled
	}
	return streamrpc.ErrorResponse(code, "%v", err)
}

func ackResponse(msg string) *streamv1.Response {
	return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: msg}}}
}

// maxHealthOutputBytes bounds each command output a health report may
// carry: the frontgate keeps the last report of every drone, and pilot
// reads them all on each pass. A drone sends the last 4 KiB.
const maxHealthOutputBytes = 4 << 10

// checkHealthReport refuses a report pilot could not take as it is.
func checkHealthReport(hr *streamv1.HealthReport) error {
	switch hr.GetStatus() {
	case "", "unknown", "healthy", "unhealthy":
	default:
		return fmt.Errorf("status %q: want unknown, healthy or unhealthy", hr.GetStatus())
	}
	if n := len(hr.GetCheck().GetOutput()); n > maxHealthOutputBytes {
		return fmt.Errorf("check.output: %d bytes; at most %d", n, maxHealthOutputBytes)
	}
	if n := len(hr.GetAction().GetOutput()); n > maxHealthOutputBytes {
		return fmt.Errorf("action.output: %d bytes; at most %d", n, maxHealthOutputBytes)
	}
	return nil
}

// Bounds of a metrics report: what a monitor may declare (APPCENTER-FORMAT
// 1.5: 50 items), with room for the drone's own words.
const (
	maxMetricsItems      = 50
	maxMetricsErrorBytes = 1 << 10
	maxMetricsTextBytes  = 256
)

// checkMetricsReport refuses a report pilot could not keep as it is: the
// frontgate keeps one per node, so each is bounded.
func checkMetricsReport(mr *streamv1.MetricsReport) error {
	if err := mr.GetAt().CheckValid(); err != nil {
		return fmt.Errorf("at: %w", err)
	}
	if n := len(mr.GetItems()); n > maxMetricsItems {
		return fmt.Errorf("items: %d; at most %d", n, maxMetricsItems)
	}
	for i, it := range mr.GetItems() {
		if it.GetKey() == "" || len(it.GetKey()) > maxMetricsTextBytes || len(it.GetText()) > maxMetricsTextBytes {
			return fmt.Errorf("items[%d]: key empty, or key or text above %d bytes", i, maxMetricsTextBytes)
		}
	}
	if n := len(mr.GetMonitorError()); n > maxMetricsErrorBytes {
		return fmt.Errorf("monitor_error: %d bytes; at most %d", n, maxMetricsErrorBytes)
	}
	return nil
}
