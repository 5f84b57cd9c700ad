package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/auth"
)

func (s *Server) users() (*auth.Users, error) {
	if s.cfg.Users == nil {
		return nil, status.Error(codes.Unimplemented, "this pilot runs without API users (api.Config.Users is not set)")
	}
	return s.cfg.Users, nil
}

// callerAndUsers is the caller and the user store, what every user method
// starts with.
func (s *Server) callerAndUsers(ctx context.Context) (auth.Principal, *auth.Users, error) {
	p, err := auth.Require(ctx)
	if err != nil {
		return p, nil, err
	}
	us, err := s.users()
	return p, us, err
}

// CreateUser adds a user to the caller's tenant (admins of the default
// tenant may name another tenant, which creates it) and returns its token:
// the only time anyone sees it.
func (s *Server) CreateUser(ctx context.Context, req *pilotv1.CreateUserRequest) (*pilotv1.CreateUserResponse, error) {
	p, us, err := s.callerAndUsers(ctx)
	if err != nil {
		return nil, err
	}
	tn := req.Tenant
	if tn == "" {
		tn = p.Tenant
	}
	if tn != p.Tenant && p.Tenant != auth.DefaultTenant {
		return nil, status.Errorf(codes.PermissionDenied, "tenant %q: only admins of tenant %s may create users in another tenant; leave tenant empty for your own (%s)", tn, auth.DefaultTenant, p.Tenant)
	}
	if req.Role == pilotv1.Role_ROLE_UNSPECIFIED {
		return nil, invalid("role: required; use admin, member or viewer")
	}
	u, token, err := us.Create(ctx, tn, req.Name, req.Role)
	switch {
	case errors.Is(err, auth.ErrInvalid):
		return nil, invalid("%v", err)
	case errors.Is(err, auth.ErrExists):
		return nil, status.Errorf(codes.AlreadyExists, "user %s exists in tenant %s; to give it a new token, delete and create it again", req.Name, tn)
	case err != nil:
		return nil, toStatus(err)
	}
	s.log.Info("user created", "user", u.Name, "tenant", u.Tenant, "role", auth.RoleName(u.Role), "by", p.User)
	return &pilotv1.CreateUserResponse{User: u, Token: token}, nil
}

// ListUsers lists the caller's tenant's users.
func (s *Server) ListUsers(ctx context.Context, _ *pilotv1.ListUsersRequest) (*pilotv1.ListUsersResponse, error) {
	p, us, err := s.callerAndUsers(ctx)
	if err != nil {
		return nil, err
	}
	list, err := us.List(ctx, p.Tenant)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pilotv1.ListUsersResponse{Users: list}, nil
}

// DeleteUser removes a user of the caller's tenant; its token stops
// working at once.
func (s *Server) DeleteUser(ctx context.Context, req *pilotv1.DeleteUserRequest) (*pilotv1.DeleteUserResponse, error) {
	p, us, err := s.callerAndUsers(ctx)
	if err != nil {
		return nil, err
	}
	if req.Name == p.User {
		// Deleting oneself could leave a tenant with no admin at all.
		return nil, status.Errorf(codes.FailedPrecondition, "user %s: you cannot delete yourself; ask another admin of tenant %s", req.Name, p.Tenant)
	}
	err = us.Delete(ctx, p.Tenant, req.Name)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "user %s: not found; `hangar user list` shows the existing ones", req.Name)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("user deleted", "user", req.Name, "tenant", p.Tenant, "by", p.User)
	return &pilotv1.DeleteUserResponse{}, nil
}

// WhoAmI returns the caller.
func (s *Server) WhoAmI(ctx context.Context, _ *pilotv1.WhoAmIRequest) (*pilotv1.User, error) {
	p, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Users != nil {
		if u, err := s.cfg.Users.Get(ctx, p.Tenant, p.User); err == nil {
			return u, nil
		}
	}
	return &pilotv1.User{Name: p.User, Tenant: p.Tenant, Role: p.Role}, nil
}

// ListAudit returns the newest entries of the caller's tenant's audit log.
func (s *Server) ListAudit(ctx context.Context, req *pilotv1.ListAuditRequest) (*pilotv1.ListAuditResponse, error) {
	p, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Audit == nil {
		return nil, status.Error(codes.Unimplemented, "this pilot keeps no audit log (api.Config.Audit is not set)")
	}
	if req.Limit < 0 {
		return nil, invalid("limit %d: give 0 for the default (%d) or up to %d", req.Limit, audit.DefaultLimit, audit.MaxLimit)
	}
	entries, err := s.cfg.Audit.List(ctx, p.Tenant, int(req.Limit))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pilotv1.ListAuditResponse{Entries: entries}, nil
}
