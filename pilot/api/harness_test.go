package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/etcdserver"
	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/events"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/metrics"
	"github.com/hangarhq/hangar/pilot/store"
	"github.com/hangarhq/hangar/providers/sdk"
)

// Tenants of the isolation tests. Their names are unusual enough that
// finding one in a JSON response means a record of that tenant leaked.
const (
	alpha = "tenant-alpha"
	beta  = "tenant-beta"
)

// fakeProviders accepts every runtime of provider "fake", so runtimes can
// be created without a plugin process; provider "fakehost" declares what
// the local provider does (instances on pilot's host, host directories).
type fakeProviders struct{}

func (fakeProviders) Get(_ context.Context, name string) (providerv1.ProviderClient, error) {
	switch name {
	case "fake":
		return fakeProvider{}, nil
	case "fakehost":
		return fakeProvider{caps: []string{sdk.CapRunsOnPilotHost, sdk.CapExclusiveHostDirPrefix + "root_dir", sdk.CapHostDirPrefix + "bin_dir"}}, nil
	}
	return nil, fmt.Errorf("no provider %q in this test", name)
}

type fakeProvider struct {
	providerv1.ProviderClient
	caps []string
}

func (f fakeProvider) Info(context.Context, *providerv1.InfoRequest, ...grpc.CallOption) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: "fake", Version: "1", Capabilities: f.caps}, nil
}

func (fakeProvider) ValidateRuntime(context.Context, *providerv1.ValidateRuntimeRequest, ...grpc.CallOption) (*providerv1.ValidateRuntimeResponse, error) {
	return &providerv1.ValidateRuntimeResponse{}, nil
}

// harnessPilotData stands for pilot's data directory in the harness.
const harnessPilotData = "/nonexistent/hangar-test/pilot"

// Services pilot/api does not implement, registered so the interceptors
// run in front of them as they do in pilot.
type stubSecurity struct {
	pilotv1.UnimplementedSecurityServiceServer
}
type stubEnrollment struct {
	pilotv1.UnimplementedEnrollmentServiceServer
}

// harness is pilot's API as pilot serves it: the real server behind the
// auth and audit interceptors, over a real etcd, on a loopback port.
type harness struct {
	st     *store.Store
	users  *auth.Users
	audit  *audit.Log
	addr   string
	conn   *grpc.ClientConn
	tokens map[string]string // "tenant/user" → token
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	esrv, err := etcdserver.Start(context.Background(), etcdserver.Config{DataDir: t.TempDir(), WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(esrv.Close)
	ec, err := esrv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	st := store.New(ec)
	ops := clusterops.New(clusterops.Config{Store: st})
	// The engine never runs: jobs stay as the API wrote them.
	engine := jobs.New(jobs.Config{Store: st, Handlers: ops.Handlers(), Finalizers: ops.Finalizers()})
	log := audit.New(audit.Config{Client: ec})
	users := auth.New(auth.Config{Client: ec, Audit: log})
	srv := New(Config{Store: st, Engine: engine, Providers: fakeProviders{}, Users: users, Audit: log, Events: events.New(ec, nil), Metrics: metrics.NewStore(metrics.Config{}), ProtectedDirs: []string{harnessPilotData}})

	methods := auth.Methods()
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(users.UnaryInterceptor(methods), log.UnaryInterceptor(methods)),
		grpc.ChainStreamInterceptor(users.StreamInterceptor(methods)),
	)
	pilotv1.RegisterAppServiceServer(gs, srv)
	pilotv1.RegisterRuntimeServiceServer(gs, srv)
	pilotv1.RegisterClusterServiceServer(gs, srv)
	pilotv1.RegisterJobServiceServer(gs, srv)
	pilotv1.RegisterUserServiceServer(gs, srv)
	pilotv1.RegisterAuditServiceServer(gs, srv)
	pilotv1.RegisterSecurityServiceServer(gs, stubSecurity{})
	pilotv1.RegisterEnrollmentServiceServer(gs, stubEnrollment{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	h := &harness{st: st, users: users, audit: log, addr: lis.Addr().String(), conn: conn, tokens: map[string]string{}}
	for _, tn := range []string{alpha, beta} {
		for _, role := range []pilotv1.Role{pilotv1.Role_ROLE_VIEWER, pilotv1.Role_ROLE_MEMBER, pilotv1.Role_ROLE_ADMIN} {
			h.addUser(t, tn, auth.RoleName(role), role)
		}
	}
	h.addUser(t, auth.DefaultTenant, "admin", pilotv1.Role_ROLE_ADMIN)
	return h
}

func (h *harness) addUser(t *testing.T, tenant, name string, role pilotv1.Role) {
	t.Helper()
	_, token, err := h.users.Create(context.Background(), tenant, name, role)
	if err != nil {
		t.Fatal(err)
	}
	h.tokens[tenant+"/"+name] = token
}

// as is a call context of user tenant/name (users are named after their
// role, but for the fixture's extra ones).
func (h *harness) as(t *testing.T, tenant, name string) context.Context {
	t.Helper()
	token, ok := h.tokens[tenant+"/"+name]
	if !ok {
		t.Fatalf("no user %s/%s in the harness", tenant, name)
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (h *harness) asRole(t *testing.T, tenant string, role pilotv1.Role) context.Context {
	return h.as(t, tenant, auth.RoleName(role))
}

// methodDescriptor finds a method of pilot.proto by its full gRPC name.
func methodDescriptor(full string) (protoreflect.MethodDescriptor, error) {
	svcs := pilotv1.File_pilot_v1_pilot_proto.Services()
	for i := 0; i < svcs.Len(); i++ {
		ms := svcs.Get(i).Methods()
		for j := 0; j < ms.Len(); j++ {
			if fullMethod(ms.Get(j)) == full {
				return ms.Get(j), nil
			}
		}
	}
	return nil, fmt.Errorf("no method %s in pilot.proto", full)
}

func fullMethod(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

// invoke calls any method of pilot's API by name; a server stream answers
// with its last message.
func (h *harness) invoke(ctx context.Context, method string, req proto.Message) (proto.Message, error) {
	md, err := methodDescriptor(method)
	if err != nil {
		return nil, err
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	if !md.IsStreamingServer() {
		resp := mt.New().Interface()
		return resp, h.conn.Invoke(ctx, method, req, resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(req); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var last proto.Message
	for {
		m := mt.New().Interface()
		err := stream.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return nil, err
		}
		last = m
	}
}

// modRevisions maps every key under the prefixes, and each exact key, to
// its mod revision: equal maps mean nothing was written or deleted.
func (h *harness) modRevisions(t *testing.T, prefixes, keys []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, p := range prefixes {
		resp, err := h.st.Client().Get(context.Background(), p, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = kv.ModRevision
		}
	}
	for _, k := range keys {
		resp, err := h.st.Client().Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			out[k] = 0
			continue
		}
		out[k] = resp.Kvs[0].ModRevision
	}
	return out
}
