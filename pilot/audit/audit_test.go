package audit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/pilot/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLog(t *testing.T) (*Log, *clientv3.Client) {
	t.Helper()
	c := etcdtest.Client(t)
	return New(Config{Client: c}), c
}

func as(tenant, user string) context.Context {
	return auth.NewContext(context.Background(), auth.Principal{User: user, Tenant: tenant, Role: pilotv1.Role_ROLE_ADMIN})
}

func TestListIsNewestFirstPerTenantAndBounded(t *testing.T) {
	l, _ := newLog(t)
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		for _, tn := range []string{"acme", "other"} {
			e := &pilotv1.AuditEntry{Tenant: tn, User: "u", Method: fmt.Sprintf("/m/%s%d", tn, i), Time: timestamppb.New(t0.Add(time.Duration(i) * time.Second)), Result: "OK"}
			if err := l.Log(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := l.List(ctx, "acme", 3)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, e := range got {
		methods = append(methods, e.Method)
		if e.Id == "" || e.Tenant != "acme" {
			t.Errorf("entry %v", e)
		}
	}
	if strings.Join(methods, " ") != "/m/acme4 /m/acme3 /m/acme2" {
		t.Errorf("List(acme, 3) = %v, want the three newest of acme, newest first", methods)
	}
	if all, _ := l.List(ctx, "acme", 0); len(all) != 5 {
		t.Errorf("default limit returned %d of 5", len(all))
	}
	if _, err := l.List(ctx, "acme", -1); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("negative limit: %v", err)
	}
	if err := l.Log(ctx, &pilotv1.AuditEntry{Method: "/m/x"}); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Errorf("entry without a tenant: %v", err)
	}
}

func TestTargetNamesTheObjectNeverABody(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req, resp any
		want      string
	}{
		{"request id", &pilotv1.DeleteClusterRequest{Id: "cl-1", Force: true}, nil, "cl-1"},
		{"request name", &pilotv1.DeleteUserRequest{Name: "bob"}, nil, "bob"},
		{"revocation", &pilotv1.RevokeRequest{Kind: "drone", Id: "cln-1", Reason: "stolen"}, nil, "drone/cln-1"},
		{"pushed app", &pilotv1.PushAppRequest{Archive: []byte("secret")}, &pilotv1.App{Name: "kv", Version: "1.0.0", ConfigJson: "{}"}, "kv@1.0.0"},
		{"created cluster", &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.password": "hunter2"}},
			&pilotv1.ClusterJob{Cluster: &pilotv1.Cluster{Id: "cl-9"}, Job: &pilotv1.Job{Id: "job-9"}}, "cl-9"},
		{"failed create", &pilotv1.CreateClusterRequest{App: "kv"}, nil, ""},
		{"created user", &pilotv1.CreateUserRequest{Role: pilotv1.Role_ROLE_ADMIN}, &pilotv1.CreateUserResponse{User: &pilotv1.User{Name: "eve"}, Token: "hgt_secret"}, "eve"},
		{"not a message", "x", 3, ""},
	} {
		if got := Target(tc.req, tc.resp); got != tc.want {
			t.Errorf("%s: Target = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestInterceptorRecordsChangesOnly(t *testing.T) {
	l, c := newLog(t)
	ic := l.UnaryInterceptor(auth.Methods())
	call := func(ctx context.Context, method string, req, resp any, err error) {
		_, _ = ic(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return resp, err })
	}
	ctx := as("acme", "alice")
	secret := "s3cr3t-value"
	call(ctx, pilotv1.RuntimeService_CreateRuntime_FullMethodName,
		&pilotv1.CreateRuntimeRequest{Id: "aws", Provider: "aws", Credentials: map[string]string{"secret_key": secret}},
		&pilotv1.Runtime{Id: "aws", CredentialKeys: []string{"secret_key"}}, nil)
	call(ctx, pilotv1.ClusterService_CreateCluster_FullMethodName,
		&pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"env.password": secret}}, nil,
		status.Error(codes.InvalidArgument, "env.port: 80 is below the minimum 1024"))
	call(ctx, pilotv1.ClusterService_ListClusters_FullMethodName, &pilotv1.ListClustersRequest{}, &pilotv1.ListClustersResponse{}, nil)
	// No principal: refused before anyone was identified.
	call(context.Background(), pilotv1.ClusterService_DeleteCluster_FullMethodName, &pilotv1.DeleteClusterRequest{Id: "cl-1"}, nil, status.Error(codes.Unauthenticated, "no"))
	// The caller gave up, but the change happened: still recorded.
	cctx, cancel := context.WithCancel(as("acme", "bob"))
	cancel()
	call(cctx, pilotv1.JobService_CancelJob_FullMethodName, &pilotv1.CancelJobRequest{Id: "job-1"}, &pilotv1.Job{Id: "job-1"}, nil)

	es, err := l.List(context.Background(), "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ user, method, target, result, message string }
	var got []row
	for _, e := range es {
		got = append(got, row{e.User, e.Method, e.Target, e.Result, e.Message})
		if e.Time == nil {
			t.Errorf("entry without a time: %v", e)
		}
	}
	want := []row{
		{"bob", pilotv1.JobService_CancelJob_FullMethodName, "job-1", "OK", ""},
		{"alice", pilotv1.ClusterService_CreateCluster_FullMethodName, "", "InvalidArgument", "env.port: 80 is below the minimum 1024"},
		{"alice", pilotv1.RuntimeService_CreateRuntime_FullMethodName, "aws", "OK", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries\n%v\nwant\n%v", got, want)
	}
	resp, err := c.Get(context.Background(), Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), secret) {
			t.Errorf("%s holds a request's secret: %s", kv.Key, kv.Value)
		}
	}
}
