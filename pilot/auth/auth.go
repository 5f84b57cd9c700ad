// Package auth authenticates and authorizes callers of pilot's API.
//
// API users belong to one tenant and have one role (viewer, member, admin).
// Each holds a bearer token ("hgt_" + 32 random bytes, base64url) that pilot
// shows once, when the user is created, and stores only as a SHA-256 hash:
// the user record lives at /hangar/users/<tenant>/<name> and an index
// /hangar/user-tokens/<hex sha256> names its owner, so a call is
// authenticated with two key reads whatever the number of users.
//
// The gRPC interceptors turn "authorization: Bearer <token>" metadata into a
// Principal in the call's context, then check the method's Rule (the least
// role it needs). Only the methods in NoTokenMethods skip this: they carry
// their own credential (a join token, a client certificate). Every other
// method must have a Rule, so a method added to the API without one is
// refused rather than served unchecked.
package auth

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// DefaultTenant is the tenant of the first admin; its admins run the
// platform (they may revoke identities and create users in other tenants).
const DefaultTenant = "default"

// Principal is the authenticated caller of an API method.
type Principal struct {
	User   string
	Tenant string
	Role   pilotv1.Role
}

// PlatformAdmin reports whether p is an admin of DefaultTenant: the
// platform team, who may do what reaches beyond one tenant (revoke
// identities, create runtimes whose instances run on pilot's own host).
func (p Principal) PlatformAdmin() bool {
	return p.Tenant == DefaultTenant && p.Role == pilotv1.Role_ROLE_ADMIN
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller the interceptors authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.User != "" && p.Tenant != ""
}

// Require returns the caller, or Unauthenticated when the call did not go
// through the interceptors: handlers fail closed rather than serve a
// request with no tenant.
func Require(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	}
	return p, nil
}

// unauthenticatedMsg is the one answer to a missing, malformed, unknown or
// deleted token, so a caller learns nothing about which it was.
const unauthenticatedMsg = "missing or invalid API token; pass --token or set HANGAR_TOKEN"

// RoleName is the role as users write it (pilotv1.RoleName).
func RoleName(r pilotv1.Role) string { return pilotv1.RoleName(r) }
