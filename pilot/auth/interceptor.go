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
	"google.golang.org/grpc/tap"

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

// TapHandle refuses a call of a method that needs a token, when the call
// carries none that could be valid (absent, not "Bearer", not of the form
// of a token pilot issues), before gRPC reads a byte of its message. The
// interceptors check a well-formed token against the users, but only once
// gRPC has read the message (up to limits.MaxGRPCRecvBytes): this keeps
// callers with no token at all from making pilot hold any of it. It runs
// on the connection's reader and does no I/O. Install it with
// grpc.InTapHandle.
func (u *Users) TapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if isNoTokenMethod(info.FullMethodName) {
		return ctx, nil
	}
	if tok, ok := bearerOf(info.Header); ok && wellFormed(tok) {
		return ctx, nil
	}
	u.log.Warn("API call refused before its message was read: no well-formed API token", "method", info.FullMethodName, "peer", peerAddr(ctx))
	return ctx, status.Error(codes.Unauthenticated, unauthenticatedMsg)
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
	return bearerOf(md)
}

// bearerOf reads the token of md's single "authorization" value.
func bearerOf(md metadata.MD) (string, bool) {
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", false
	}
	return parseBearer(vals[0])
}

// parseBearer reads an Authorization value "Bearer <token>".
func parseBearer(v string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
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

// AuthenticateHTTP authenticates an HTTP request by its "Authorization:
// Bearer" header alone: nothing of its body is read, so a caller without a
// token cannot make pilot buffer a byte of it. It fails with the statuses
// the gRPC API answers: Unauthenticated (worded as there) or Unavailable
// when pilot cannot check tokens.
func (u *Users) AuthenticateHTTP(r *http.Request) (Principal, error) {
	ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", r.Header.Get("Authorization")))
	p, err := u.Authenticate(ctx, tokenOf(ctx))
	switch {
	case errors.Is(err, ErrBadToken):
		u.log.Warn("HTTP request refused: invalid API token", "path", r.URL.Path, "peer", r.RemoteAddr)
		return Principal{}, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	case err != nil:
		u.log.Error("API token check failed", "path", r.URL.Path, "err", err)
		return Principal{}, status.Error(codes.Unavailable, "pilot cannot check API tokens right now; try again")
	}
	return p, nil
}

// RequireHTTP guards a plain HTTP handler (such as /metrics) beside the
// REST gateway: an "Authorization: Bearer" token of a user rule allows,
// else 401, 403 or 503 with the messages the API gives.
func (u *Users) RequireHTTP(rule Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := u.AuthenticateHTTP(r)
		if err == nil {
			err = allowed(p, r.URL.Path, rule)
			if err != nil {
				u.log.Warn("HTTP request refused: role", "path", r.URL.Path, "user", p.User, "tenant", p.Tenant, "role", RoleName(p.Role))
			}
		}
		if err != nil {
			http.Error(w, status.Convert(err).Message(), HTTPStatus(err))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// HTTPStatus is the HTTP status of an error of AuthenticateHTTP or of a
// Rule: 401, 403 or 503.
func HTTPStatus(err error) int {
	switch status.Code(err) {
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// tokenOf is bearer without the found flag: an absent token is simply one
// that does not authenticate.
func tokenOf(ctx context.Context) string {
	t, _ := bearer(ctx)
	return t
}
