package api

import (
	"context"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// SetClusterRecovery turns a cluster's automatic recovery on or off.
func (s *Server) SetClusterRecovery(ctx context.Context, req *pilotv1.SetClusterRecoveryRequest) (*pilotv1.Cluster, error) {
	return s.setPolicy(ctx, req.GetId(), func(c *pilotv1.Cluster) (*pilotv1.Cluster, error) {
		return s.cfg.Lifecycle.SetRecovery(ctx, c, req.GetRecovery())
	})
}

// SetAutoscalePolicy adds or replaces a role's autoscaling policy.
func (s *Server) SetAutoscalePolicy(ctx context.Context, req *pilotv1.SetAutoscalePolicyRequest) (*pilotv1.Cluster, error) {
	return s.setPolicy(ctx, req.GetId(), func(c *pilotv1.Cluster) (*pilotv1.Cluster, error) {
		return s.cfg.Lifecycle.SetAutoscale(ctx, c, req.GetPolicy())
	})
}

// DeleteAutoscalePolicy removes a role's autoscaling policy.
func (s *Server) DeleteAutoscalePolicy(ctx context.Context, req *pilotv1.DeleteAutoscalePolicyRequest) (*pilotv1.Cluster, error) {
	return s.setPolicy(ctx, req.GetId(), func(c *pilotv1.Cluster) (*pilotv1.Cluster, error) {
		return s.cfg.Lifecycle.DeleteAutoscale(ctx, c, req.GetRole())
	})
}

// setPolicy changes a policy of the caller's cluster id and answers the
// cluster as stored, its secrets redacted as GetCluster's are.
func (s *Server) setPolicy(ctx context.Context, id string, set func(*pilotv1.Cluster) (*pilotv1.Cluster, error)) (*pilotv1.Cluster, error) {
	c, _, err := s.tenantCluster(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err = set(c)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.withEndpoints(ctx, s.redact(ctx, c)), nil
}
