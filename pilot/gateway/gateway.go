// Package gateway is pilot's REST/JSON API (the /v1/ routes on
// --http-listen): grpc-gateway's translation of each route into the gRPC
// call it names, made to pilot's own gRPC API, behind the checks that must
// come before the gateway reads a request:
//
//   - the caller's API token is checked first, from the header alone: a
//     request without a valid one is answered 401, worded as the gRPC API
//     words it, and not a byte of its body is read;
//   - a body is capped (limits.MaxRESTBodyBytes: the largest app push as the
//     gateway's JSON carries it): a bigger one is answered 413 naming the
//     limit, at once when its Content-Length says so, else as soon as the
//     limit is crossed;
//   - a request whose strings are not UTF-8 (a path such as
//     /v1/clusters/%ff%fe) is answered 400 naming the field, rather than
//     failing in gRPC's marshalling as an internal error.
//
// Authorization (roles, tenants) stays with the gRPC API's interceptors:
// the gateway forwards the token, and every route gets exactly the checks
// its gRPC method gets.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/limits"
)

// Config configures the gateway.
type Config struct {
	// GRPCAddr is pilot's gRPC API; DialOptions reach it (transport
	// credentials, message limits). The gateway adds its own interceptors.
	GRPCAddr    string
	DialOptions []grpc.DialOption
	// Authenticate checks a request's credentials from its header, without
	// reading its body. It returns a gRPC status error (Unauthenticated;
	// Unavailable when it cannot check) to refuse. Required.
	Authenticate func(r *http.Request) error
	// MaxBodyBytes caps a request body (0: limits.MaxRESTBodyBytes).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Gateway is the http.Handler of the /v1/ routes.
type Gateway struct {
	cfg Config
	mux *runtime.ServeMux
	log *slog.Logger
}

// registrations are the services the REST API serves: every pilotv1
// service with HTTP rules. EnrollmentService (joins) is gRPC only.
var registrations = []func(context.Context, *runtime.ServeMux, string, []grpc.DialOption) error{
	pilotv1.RegisterAppServiceHandlerFromEndpoint,
	pilotv1.RegisterRuntimeServiceHandlerFromEndpoint,
	pilotv1.RegisterClusterServiceHandlerFromEndpoint,
	pilotv1.RegisterJobServiceHandlerFromEndpoint,
	pilotv1.RegisterUserServiceHandlerFromEndpoint,
	pilotv1.RegisterAuditServiceHandlerFromEndpoint,
	pilotv1.RegisterSecurityServiceHandlerFromEndpoint,
}

// New connects the gateway to cfg.GRPCAddr. Its connections close when
// ctx ends.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Authenticate == nil {
		return nil, errors.New("rest gateway: Config.Authenticate is required: no route is served unauthenticated")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = limits.MaxRESTBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger}
	g.mux = runtime.NewServeMux(runtime.WithErrorHandler(g.handleError))
	opts := append(append([]grpc.DialOption(nil), cfg.DialOptions...),
		grpc.WithChainUnaryInterceptor(utf8Unary),
		grpc.WithChainStreamInterceptor(utf8Stream))
	for _, register := range registrations {
		if err := register(ctx, g.mux, cfg.GRPCAddr, opts); err != nil {
			return nil, fmt.Errorf("rest gateway: %w", err)
		}
	}
	return g, nil
}

// ServeHTTP authenticates, caps the body, then hands the request to
// grpc-gateway.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Nothing of the body is read before this: a stranger's upload costs
	// pilot nothing but the header.
	if err := g.cfg.Authenticate(r); err != nil {
		g.fail(w, r, err)
		return
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		g.fail(w, r, g.tooLarge(r))
		return
	}
	// A body without a length (chunked) is cut where it crosses the cap;
	// the decoder then fails, and handleError turns its failure into 413.
	lim := &bodyLimit{}
	r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, lim))
	r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes), lim: lim}
	g.mux.ServeHTTP(w, r)
}

// fail answers err in the gateway's own form (a google.rpc.Status in JSON,
// the HTTP status its code maps to).
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	_, out := runtime.MarshalerForRequest(g.mux, r)
	runtime.HTTPError(r.Context(), g.mux, out, w, r, err)
}

// tooLarge is the 413 answer.
func (g *Gateway) tooLarge(r *http.Request) error {
	g.log.Warn("REST request refused: body over the limit", "path", r.URL.Path, "content_length", r.ContentLength, "limit", g.cfg.MaxBodyBytes, "peer", r.RemoteAddr)
	return &runtime.HTTPStatusError{
		HTTPStatus: http.StatusRequestEntityTooLarge,
		Err: status.Errorf(codes.ResourceExhausted, "request body: over the %d-byte limit of pilot's REST API (the largest app push, base64-encoded, with room to spare)",
			g.cfg.MaxBodyBytes),
	}
}

// handleError is the mux's error handler: a failure caused by the body cap
// (the decoder saw the limit, whatever it made of that) is a 413; anything
// else is answered as grpc-gateway answers it.
func (g *Gateway) handleError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if lim, ok := r.Context().Value(bodyLimitKey{}).(*bodyLimit); ok && lim.exceeded.Load() {
		err = g.tooLarge(r)
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

type bodyLimitKey struct{}

// bodyLimit records that a request's body crossed the cap.
type bodyLimit struct{ exceeded atomic.Bool }

// limitedBody is http.MaxBytesReader, which also makes the server close the
// connection rather than drain the rest, noting when the cap was hit.
type limitedBody struct {
	io.ReadCloser
	lim *bodyLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		b.lim.exceeded.Store(true)
	}
	return n, err
}
