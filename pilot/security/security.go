// Package security is pilot's side of identity management beyond the first
// join: it serves the certificate requests frontgates send over their link
// (a drone's join, relayed; a renewal, the frontgate's own or a drone's)
// and the SecurityService that revokes frontgates and drones, carrying a
// revocation to the frontgate that must enforce it.
package security

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/pilot/enroll"
	"github.com/hangarhq/hangar/pilot/fglink"
	"github.com/hangarhq/hangar/pilot/store"
)

// Config wires the package.
type Config struct {
	Store       *store.Store
	Tokens      *enroll.Tokens
	Revocations *enroll.Revocations
	Frontgates  *fglink.Server
	// Caller names the API user in ctx, for the revocation record.
	Caller func(ctx context.Context) string
	Logger *slog.Logger
}

// Security serves both roles.
type Security struct {
	pilotv1.UnimplementedSecurityServiceServer
	cfg Config
	log *slog.Logger
}

// New returns the service.
func New(cfg Config) *Security {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Security{cfg: cfg, log: cfg.Logger}
}

// FrontgateRequest serves a request a frontgate sent pilot. caller is the
// frontgate's verified identity.
func (s *Security) FrontgateRequest(ctx context.Context, caller pki.Identity, req *streamv1.Request) *streamv1.Response {
	switch b := req.Body.(type) {
	case *streamv1.Request_Join:
		return s.join(ctx, caller, b.Join)
	case *streamv1.Request_RenewCertificate:
		r := b.RenewCertificate
		cert, id, err := s.cfg.Tokens.Renew(ctx, []byte(r.CurrentCertificatePem), []byte(r.CsrPem), r.Proof, caller)
		if err != nil {
			return &streamv1.Response{Error: enroll.StreamError(err)}
		}
		s.log.Info("certificate renewed", "identity", id.String(), "via", caller.String())
		return certResponse(cert)
	}
	return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "pilot serves only join and renew_certificate requests from a frontgate")
}

// join redeems a drone's token relayed by caller. The certificate goes out
// only when the token names a drone of a cluster served by that very
// frontgate: a frontgate cannot obtain certificates for anyone else, even
// with a stolen token (which is then spent).
func (s *Security) join(ctx context.Context, caller pki.Identity, j *streamv1.JoinRequest) *streamv1.Response {
	cert, id, err := s.cfg.Tokens.Redeem(ctx, j)
	if err != nil {
		return &streamv1.Response{Error: enroll.StreamError(err)}
	}
	if id.Kind != pki.KindDrone {
		s.log.Warn("frontgate relayed a join for a non-drone identity; refused", "frontgate", caller.String(), "identity", id.String())
		return streamrpc.ErrorResponse(streamrpc.CodePermissionDenied, "a frontgate may relay joins of drones only")
	}
	fg, err := s.frontgateOf(ctx, id.Cluster)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		// Pilot could not look; the drone retries with the same key, which
		// the spent token still accepts (a re-join).
		s.log.Warn("drone join: cannot check its frontgate; asking it to retry", "identity", id.String(), "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "pilot cannot check the frontgate of cluster %s now; retry", id.Cluster)
	}
	if err != nil || fg != caller.ID {
		s.log.Warn("frontgate relayed a join for a drone it does not serve; refused", "frontgate", caller.String(), "identity", id.String(), "err", err)
		return streamrpc.ErrorResponse(streamrpc.CodePermissionDenied, "drone %s is not served by frontgate %s", id.ID, caller.ID)
	}
	s.log.Info("drone joined", "identity", id.String(), "via", caller.String())
	return certResponse(cert)
}

func certResponse(c *streamv1.Certificate) *streamv1.Response {
	return &streamv1.Response{Body: &streamv1.Response_Certificate{Certificate: c}}
}

// frontgateOf returns the id of the frontgate serving a cluster.
func (s *Security) frontgateOf(ctx context.Context, clusterID string) (string, error) {
	c := &pilotv1.Cluster{}
	if _, err := s.cfg.Store.Get(ctx, store.ClusterKey(clusterID), c); err != nil {
		return "", err
	}
	n, err := s.network(ctx, c)
	if err != nil {
		return "", err
	}
	return n.FrontgateId, nil
}

func (s *Security) network(ctx context.Context, c *pilotv1.Cluster) (*pilotv1.Network, error) {
	n := &pilotv1.Network{}
	if _, err := s.cfg.Store.Get(ctx, store.NetworkKey(c.Tenant, c.Runtime, "default"), n); err != nil {
		return nil, fmt.Errorf("network of cluster %s: %w", c.Id, err)
	}
	return n, nil
}

// Revoke records the revocation and enforces it at once: a frontgate is
// disconnected (its reconnects are refused by the link's identity check);
// a drone's frontgate is told to drop and refuse it.
func (s *Security) Revoke(ctx context.Context, req *pilotv1.RevokeRequest) (*pilotv1.RevokeResponse, error) {
	kind := pki.Kind(req.Kind)
	if kind != pki.KindFrontgate && kind != pki.KindDrone {
		return nil, status.Errorf(codes.InvalidArgument, "kind %q: want frontgate or drone", req.Kind)
	}
	by := ""
	if s.cfg.Caller != nil {
		by = s.cfg.Caller(ctx)
	}
	if err := s.cfg.Revocations.Revoke(ctx, kind, req.Id, req.Reason, by); err != nil {
		return nil, enroll.Status(err).Err()
	}
	s.log.Warn("identity revoked", "kind", req.Kind, "id", req.Id, "by", by, "reason", req.Reason)
	switch kind {
	case pki.KindFrontgate:
		s.cfg.Frontgates.Disconnect(req.Id)
	case pki.KindDrone:
		if err := s.revokeDrone(ctx, req.Id); err != nil {
			// Recorded: renewals are refused and the frontgate refuses the
			// drone once told. Say what is left to do.
			return nil, status.Errorf(codes.Unavailable, "drone %s is revoked, but its frontgate could not be told yet (%v); retry the revoke to disconnect it now", req.Id, err)
		}
	}
	return &pilotv1.RevokeResponse{}, nil
}

func (s *Security) revokeDrone(ctx context.Context, nodeID string) error {
	clusters, err := store.List(ctx, s.cfg.Store, store.ClustersPrefix, func() *pilotv1.Cluster { return &pilotv1.Cluster{} })
	if err != nil {
		return err
	}
	for _, c := range clusters {
		for _, n := range c.Nodes {
			if n.Id != nodeID {
				continue
			}
			nw, err := s.network(ctx, c)
			if err != nil {
				return err
			}
			_, err = s.cfg.Frontgates.Call(ctx, nw.FrontgateId, &streamv1.Request{Body: &streamv1.Request_Revoke{Revoke: &streamv1.Revoke{NodeId: nodeID, ClusterId: c.Id}}})
			return err
		}
	}
	return nil // no such node any more: nothing to disconnect
}

// ListRevocations lists every revocation.
func (s *Security) ListRevocations(ctx context.Context, _ *pilotv1.ListRevocationsRequest) (*pilotv1.ListRevocationsResponse, error) {
	list, err := s.cfg.Revocations.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list revocations: %v", err)
	}
	return &pilotv1.ListRevocationsResponse{Revocations: list}, nil
}
