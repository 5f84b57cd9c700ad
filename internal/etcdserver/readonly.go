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
	rangeMethod,
	"/etcdserverpb.Watch/Watch",
}

const rangeMethod = "/etcdserverpb.KV/Range"

// accessGuard refuses every call but readMethods to clients whose
// certificate CN is not in full. etcd's RBAC only guards keys: without the
// guard a read-only user could still grant leases (each one kept in memory
// and on disk until it expires), revoke or keep alive others' leases, raise
// alarms, defragment, snapshot or reconfigure the member.
//
// It also bounds how many reads of those clients run at once (reads, when
// set): a drone reads its cluster's tree whole when it starts and when
// pilot delivers its templates, and a thousand drones of a 1,000-node
// cluster do so together. Each read of a 2 MB tree allocates several times
// that while etcd ranges over its index and database: most of the 12 GB a
// frontgate allocated while a 1,000-node cluster was created, when its
// heap peaked at 3.5 GB, which the Go runtime gives back to the system
// only slowly. Queued, the same reads cost the same CPU and what they
// allocate at once is bounded by the limit.
type accessGuard struct {
	full  []string
	reads chan struct{} // nil: unbounded
}

func newAccessGuard(full []string, reads int) accessGuard {
	g := accessGuard{full: full}
	if reads > 0 {
		g.reads = make(chan struct{}, reads)
	}
	return g
}

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
	if g.reads != nil && info.FullMethod == rangeMethod && !slices.Contains(g.full, peerCN(ctx)) {
		select {
		case g.reads <- struct{}{}:
			defer func() { <-g.reads }()
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
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
