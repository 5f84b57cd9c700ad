package etcdserver

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// readMethods are the only calls a client outside Config.FullAccessCNs may
// make: reading keys (Range) and watching them (a Watch stream carries
// create, cancel and progress requests, all reads). Everything else is
// refused, whatever the service: KV writes and compaction, every Lease
// call, Maintenance, Cluster, Auth, and the Lock and Election services the
// embedded server also registers. An allowlist, so that a call added by a
// later etcd is refused until someone decides otherwise.
var readMethods = []string{
	"/etcdserverpb.KV/Range",
	"/etcdserverpb.Watch/Watch",
}

// accessGuard refuses every call but readMethods to clients whose
// certificate CN is not in full. etcd's RBAC only guards keys: without the
// guard a read-only user could still grant leases (each one kept in memory
// and on disk until it expires), revoke or keep alive others' leases, raise
// alarms, defragment, snapshot or reconfigure the member.
type accessGuard struct{ full []string }

func (g accessGuard) check(ctx context.Context, method string) error {
	if slices.Contains(readMethods, method) {
		return nil
	}
	cn := peerCN(ctx)
	if cn != "" && slices.Contains(g.full, cn) {
		return nil
	}
	if cn == "" {
		cn = "a client without a verified certificate"
	}
	return status.Errorf(codes.PermissionDenied, "etcdserver: permission denied: %s may only read (Range, Watch); %s is refused", cn, method)
}

func (g accessGuard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g accessGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// serverOptions installs the guard on etcd's gRPC server.
func (g accessGuard) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}

// peerCN is the CN of the caller's verified client certificate, as etcd
// reads it for its own auth; "" without one.
func peerCN(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return ti.State.VerifiedChains[0][0].Subject.CommonName
}
