package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// UnaryInterceptor authenticates and authorizes every unary call by
// methods (usually Methods()); NoTokenMethods pass through untouched.
func (u *Users) UnaryInterceptor(methods map[string]Rule) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := u.check(ctx, info.FullMethod, methods, req)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor does for streams what UnaryInterceptor does.
func (u *Users) StreamInterceptor(methods map[string]Rule) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := u.check(ss.Context(), info.FullMethod, methods, nil)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// check returns ctx with the caller's Principal, or the status refusing
// the call.
func (u *Users) check(ctx context.Context, method string, methods map[string]Rule, req any) (context.Context, error) {
	if isNoTokenMethod(method) {
		return ctx, nil
	}
	token, ok := bearer(ctx)
	if !ok {
		u.log.Warn("API call refused: no API token", "method", method, "peer", peerAddr(ctx))
		return nil, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	}
	p, err := u.Authenticate(ctx, token)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrBadToken) {
			// etcd trouble, not the caller's fault: say so.
			u.log.Error("API token check failed", "method", method, "err", err)
			return nil, status.Error(codes.Unavailable, "pilot cannot check API tokens right now; try again")
		}
		u.log.Warn("API call refused: invalid API token", "method", method, "peer", peerAddr(ctx))
		return nil, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	}
	ctx = NewContext(ctx, p)
	rule, ok := methods[method]
	if !ok {
		// Fail closed: a method nobody classified is served to nobody.
		u.log.Error("API call refused: method has no access rule", "method", method, "user", p.User, "tenant", p.Tenant)
		return nil, status.Errorf(codes.PermissionDenied, "%s has no access rule in this pilot, so it is refused for everyone", method)
	}
	if err := allowed(p, method, rule); err != nil {
		u.log.Warn("API call refused: role", "method", method, "user", p.User, "tenant", p.Tenant, "role", RoleName(p.Role), "err", status.Convert(err).Message())
		if rule.Mutates && u.audit != nil {
			u.audit.Record(ctx, method, req, nil, err)
		}
		return nil, err
	}
	return ctx, nil
}

// allowed checks p against rule.
func allowed(p Principal, method string, rule Rule) error {
	short := method[strings.LastIndexByte(method, '/')+1:]
	if !roleAtLeast(p.Role, rule.Role) {
		return status.Errorf(codes.PermissionDenied, "%s needs role %s or above; you (%s in tenant %s) are %s", short, RoleName(rule.Role), p.User, p.Tenant, RoleName(p.Role))
	}
	if rule.DefaultTenantOnly && p.Tenant != DefaultTenant {
		return status.Errorf(codes.PermissionDenied, "%s is reserved to %ss of tenant %s; you are %s of tenant %s", short, RoleName(rule.Role), DefaultTenant, RoleName(p.Role), p.Tenant)
	}
	return nil
}

// roleAtLeast orders the roles viewer < member < admin; anything else is
// below all of them.
func roleAtLeast(have, need pilotv1.Role) bool {
	if validRole(have) != nil {
		return false
	}
	return have >= need
}

// bearer reads the single "authorization: Bearer <token>" value.
func bearer(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// Describe is a caller for messages and logs: "alice (member, tenant t1)".
func (p Principal) Describe() string {
	return fmt.Sprintf("%s (%s, tenant %s)", p.User, RoleName(p.Role), p.Tenant)
}

// RequireHTTP guards a plain HTTP handler (such as /metrics) beside the
// REST gateway: an "Authorization: Bearer" token of at least role least,
// else 401 or 403 with the same messages the API gives.
func (u *Users) RequireHTTP(least pilotv1.Role, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", r.Header.Get("Authorization")))
		p, err := u.Authenticate(ctx, tokenOf(ctx))
		switch {
		case errors.Is(err, ErrBadToken):
			u.log.Warn("HTTP request refused: invalid API token", "path", r.URL.Path, "peer", r.RemoteAddr)
			http.Error(w, unauthenticatedMsg, http.StatusUnauthorized)
			return
		case err != nil:
			u.log.Error("API token check failed", "path", r.URL.Path, "err", err)
			http.Error(w, "pilot cannot check API tokens right now; try again", http.StatusServiceUnavailable)
			return
		}
		if err := allowed(p, r.URL.Path, Rule{Role: least}); err != nil {
			http.Error(w, status.Convert(err).Message(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// tokenOf is bearer without the found flag: an absent token is simply one
// that does not authenticate.
func tokenOf(ctx context.Context) string {
	t, _ := bearer(ctx)
	return t
}
