package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
)

// fakeState is an in-memory pilot: it records the requests it gets and
// answers from what the test put in it.
type fakeState struct {
	mu            sync.Mutex
	events        map[string][]*pilotv1.ClusterEvent // by cluster id
	metrics       map[string][]*pilotv1.NodeMetrics  // by cluster id
	pushed        [][]byte
	apps          map[string]*pilotv1.App
	appList       []*pilotv1.App // ListApps answers these when set, else apps
	appUsers      []*pilotv1.AppVersionUsers
	deleteAppReqs []*pilotv1.DeleteAppRequest
	runtimes      []*pilotv1.Runtime
	createReqs    []*pilotv1.CreateClusterRequest
	deleteReqs    []*pilotv1.DeleteClusterRequest
	updateEnvReqs []*pilotv1.UpdateClusterEnvRequest
	clusters      map[string]*pilotv1.Cluster
	jobs          map[string]*pilotv1.Job
	// watches holds, per job, the snapshots of successive WatchJob streams:
	// every stream but the last breaks with Unavailable after its snapshots,
	// as when pilot restarts.
	watches    map[string][][]*pilotv1.Job
	watchCalls map[string]int
	// hang lists jobs whose last stream stays open after its snapshots,
	// as for a job that is still running.
	hang map[string]bool

	createUserReqs []*pilotv1.CreateUserRequest
	deletedUsers   []string
	auditLimits    []int32
	revokeReqs     []*pilotv1.RevokeRequest
}

func newFakeState() *fakeState {
	return &fakeState{
		apps:       map[string]*pilotv1.App{},
		clusters:   map[string]*pilotv1.Cluster{},
		jobs:       map[string]*pilotv1.Job{},
		watches:    map[string][][]*pilotv1.Job{},
		watchCalls: map[string]int{},
		hang:       map[string]bool{},
	}
}

type fakeApps struct {
	pilotv1.UnimplementedAppServiceServer
	s *fakeState
}

func (f *fakeApps) PushApp(_ context.Context, req *pilotv1.PushAppRequest) (*pilotv1.App, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.pushed = append(f.s.pushed, bytes.Clone(req.GetArchive()))
	return &pilotv1.App{
		Name: "kv", Version: "1.0.0", AppVersion: "0.9", Roles: []string{"primary", "replica"},
		Warnings: []string{"cluster.json: need_tag has no effect here"},
	}, nil
}

func (f *fakeApps) ListApps(context.Context, *pilotv1.ListAppsRequest) (*pilotv1.ListAppsResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	resp := &pilotv1.ListAppsResponse{Apps: slices.Clone(f.s.appList), Users: f.s.appUsers}
	if f.s.appList == nil {
		for _, a := range f.s.apps {
			resp.Apps = append(resp.Apps, a)
		}
	}
	return resp, nil
}

// DeleteApp refuses a version appUsers lists, as pilot does.
func (f *fakeApps) DeleteApp(_ context.Context, req *pilotv1.DeleteAppRequest) (*pilotv1.DeleteAppResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.deleteAppReqs = append(f.s.deleteAppReqs, req)
	for _, u := range f.s.appUsers {
		if u.GetName() == req.GetName() && u.GetVersion() == req.GetVersion() {
			return nil, status.Errorf(codes.FailedPrecondition, "app %s version %s is used by cluster %s", u.GetName(), u.GetVersion(), strings.Join(u.GetClusterIds(), ", "))
		}
	}
	return &pilotv1.DeleteAppResponse{}, nil
}

func (f *fakeApps) GetApp(_ context.Context, req *pilotv1.GetAppRequest) (*pilotv1.App, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	a, ok := f.s.apps[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "app %q not found", req.GetName())
	}
	return a, nil
}

type fakeRuntimes struct {
	pilotv1.UnimplementedRuntimeServiceServer
	s *fakeState
}

func (f *fakeRuntimes) CreateRuntime(_ context.Context, req *pilotv1.CreateRuntimeRequest) (*pilotv1.Runtime, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	for _, r := range f.s.runtimes {
		if r.GetId() == req.GetId() {
			return nil, status.Errorf(codes.AlreadyExists, "runtime %q exists", req.GetId())
		}
	}
	r := &pilotv1.Runtime{Id: req.GetId(), Provider: req.GetProvider(), Zone: req.GetZone(), Config: req.GetConfig()}
	f.s.runtimes = append(f.s.runtimes, r)
	return r, nil
}

func (f *fakeRuntimes) ListRuntimes(context.Context, *pilotv1.ListRuntimesRequest) (*pilotv1.ListRuntimesResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return &pilotv1.ListRuntimesResponse{Runtimes: f.s.runtimes}, nil
}

type fakeClusters struct {
	pilotv1.UnimplementedClusterServiceServer
	s *fakeState
}

// CreateCluster answers with cluster "cl-new" and job "j-create"; the test
// scripts what watching and reading them returns.
func (f *fakeClusters) CreateCluster(_ context.Context, req *pilotv1.CreateClusterRequest) (*pilotv1.ClusterJob, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.createReqs = append(f.s.createReqs, req)
	return &pilotv1.ClusterJob{
		Cluster: &pilotv1.Cluster{Id: "cl-new", App: req.GetApp(), Status: pilotv1.ClusterStatus_CLUSTER_STATUS_PENDING},
		Job:     &pilotv1.Job{Id: "j-create", Kind: "create_cluster", ClusterId: "cl-new", State: pilotv1.JobState_JOB_STATE_PENDING},
	}, nil
}

func (f *fakeClusters) ListClusters(context.Context, *pilotv1.ListClustersRequest) (*pilotv1.ListClustersResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	resp := &pilotv1.ListClustersResponse{}
	for _, k := range f.s.clusters {
		resp.Clusters = append(resp.Clusters, k)
	}
	return resp, nil
}

// ListClusterEvents answers the cluster's scripted events after the id.
func (f *fakeClusters) ListClusterEvents(_ context.Context, req *pilotv1.ListClusterEventsRequest) (*pilotv1.ListClusterEventsResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if _, ok := f.s.clusters[req.GetClusterId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetClusterId())
	}
	resp := &pilotv1.ListClusterEventsResponse{}
	for _, ev := range f.s.events[req.GetClusterId()] {
		if ev.GetId() > req.GetAfter() {
			resp.Events = append(resp.Events, ev)
		}
	}
	return resp, nil
}

// SetClusterRecovery stores the policy as sent.
func (f *fakeClusters) SetClusterRecovery(_ context.Context, req *pilotv1.SetClusterRecoveryRequest) (*pilotv1.Cluster, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	k, ok := f.s.clusters[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetId())
	}
	k.Recovery = req.GetRecovery()
	return k, nil
}

// SetAutoscalePolicy adds the policy as sent (a metric "bad" is refused,
// as pilot refuses one the role does not report).
func (f *fakeClusters) SetAutoscalePolicy(_ context.Context, req *pilotv1.SetAutoscalePolicyRequest) (*pilotv1.Cluster, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	k, ok := f.s.clusters[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetId())
	}
	if req.GetPolicy().GetMetric() == "bad" {
		return nil, status.Error(codes.InvalidArgument, `policy.metric: "bad" is not reported by role web; give cpu, memory or one of its monitor items (requests)`)
	}
	k.Autoscale = append(k.Autoscale, req.GetPolicy())
	return k, nil
}

func (f *fakeClusters) DeleteAutoscalePolicy(_ context.Context, req *pilotv1.DeleteAutoscalePolicyRequest) (*pilotv1.Cluster, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	k, ok := f.s.clusters[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetId())
	}
	k.Autoscale = nil
	return k, nil
}

func (f *fakeClusters) GetCluster(_ context.Context, req *pilotv1.GetClusterRequest) (*pilotv1.Cluster, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	k, ok := f.s.clusters[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetId())
	}
	return k, nil
}

func (f *fakeClusters) DeleteCluster(_ context.Context, req *pilotv1.DeleteClusterRequest) (*pilotv1.ClusterJob, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.deleteReqs = append(f.s.deleteReqs, req)
	if _, ok := f.s.clusters[req.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetId())
	}
	return &pilotv1.ClusterJob{
		Cluster: f.s.clusters[req.GetId()],
		Job:     &pilotv1.Job{Id: "j-delete", Kind: "delete_cluster", ClusterId: req.GetId()},
	}, nil
}

func (f *fakeClusters) UpdateClusterEnv(_ context.Context, req *pilotv1.UpdateClusterEnvRequest) (*pilotv1.ClusterJob, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.updateEnvReqs = append(f.s.updateEnvReqs, req)
	return &pilotv1.ClusterJob{
		Cluster: &pilotv1.Cluster{Id: req.GetId()},
		Job:     &pilotv1.Job{Id: "j-env", Kind: "update_env", ClusterId: req.GetId()},
	}, nil
}

type fakeJobs struct {
	pilotv1.UnimplementedJobServiceServer
	s *fakeState
}

func (f *fakeJobs) GetJob(_ context.Context, req *pilotv1.GetJobRequest) (*pilotv1.Job, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	j, ok := f.s.jobs[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "job %q not found", req.GetId())
	}
	return j, nil
}

func (f *fakeJobs) ListJobs(_ context.Context, req *pilotv1.ListJobsRequest) (*pilotv1.ListJobsResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	resp := &pilotv1.ListJobsResponse{}
	for _, j := range f.s.jobs {
		if req.GetClusterId() == "" || j.GetClusterId() == req.GetClusterId() {
			resp.Jobs = append(resp.Jobs, j)
		}
	}
	return resp, nil
}

func (f *fakeJobs) WatchJob(req *pilotv1.WatchJobRequest, stream grpc.ServerStreamingServer[pilotv1.Job]) error {
	f.s.mu.Lock()
	streams, ok := f.s.watches[req.GetId()]
	n := f.s.watchCalls[req.GetId()]
	f.s.watchCalls[req.GetId()]++
	f.s.mu.Unlock()
	if !ok || len(streams) == 0 {
		return status.Errorf(codes.NotFound, "job %q not found", req.GetId())
	}
	last := n >= len(streams)-1
	for _, j := range streams[min(n, len(streams)-1)] {
		if err := stream.Send(j); err != nil {
			return err
		}
	}
	if !last {
		return status.Error(codes.Unavailable, "pilot is restarting")
	}
	f.s.mu.Lock()
	hang := f.s.hang[req.GetId()]
	f.s.mu.Unlock()
	if hang {
		<-stream.Context().Done()
	}
	return nil
}

type fakeUsers struct {
	pilotv1.UnimplementedUserServiceServer
	s *fakeState
}

func (f *fakeUsers) CreateUser(_ context.Context, req *pilotv1.CreateUserRequest) (*pilotv1.CreateUserResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.createUserReqs = append(f.s.createUserReqs, req)
	tenant := req.GetTenant()
	if tenant == "" {
		tenant = "default"
	}
	return &pilotv1.CreateUserResponse{User: &pilotv1.User{Name: req.GetName(), Tenant: tenant, Role: req.GetRole()}, Token: "hgt_new-users-token"}, nil
}

func (f *fakeUsers) ListUsers(context.Context, *pilotv1.ListUsersRequest) (*pilotv1.ListUsersResponse, error) {
	return &pilotv1.ListUsersResponse{Users: []*pilotv1.User{
		{Name: "admin", Tenant: "default", Role: pilotv1.Role_ROLE_ADMIN, CreatedAt: at(0)},
		{Name: "alice", Tenant: "default", Role: pilotv1.Role_ROLE_VIEWER, CreatedAt: at(60)},
	}}, nil
}

func (f *fakeUsers) DeleteUser(_ context.Context, req *pilotv1.DeleteUserRequest) (*pilotv1.DeleteUserResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.deletedUsers = append(f.s.deletedUsers, req.GetName())
	if req.GetName() != "alice" {
		return nil, status.Errorf(codes.NotFound, "user %s: not found; `hangar user list` shows the existing ones", req.GetName())
	}
	return &pilotv1.DeleteUserResponse{}, nil
}

func (f *fakeUsers) WhoAmI(context.Context, *pilotv1.WhoAmIRequest) (*pilotv1.User, error) {
	return &pilotv1.User{Name: "admin", Tenant: "default", Role: pilotv1.Role_ROLE_ADMIN}, nil
}

type fakeAudit struct {
	pilotv1.UnimplementedAuditServiceServer
	s *fakeState
}

func (f *fakeAudit) ListAudit(_ context.Context, req *pilotv1.ListAuditRequest) (*pilotv1.ListAuditResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.auditLimits = append(f.s.auditLimits, req.GetLimit())
	return &pilotv1.ListAuditResponse{Entries: []*pilotv1.AuditEntry{
		{Id: "2", Time: at(10), User: "alice", Tenant: "default", Method: "/hangar.pilot.v1.ClusterService/DeleteCluster", Target: "cl-1", Result: "PermissionDenied", Message: "DeleteCluster needs role member or above"},
		{Id: "1", Time: at(0), User: "admin", Tenant: "default", Method: "/hangar.pilot.v1.ClusterService/CreateCluster", Target: "cl-1", Result: "OK"},
	}}, nil
}

type fakeSecurity struct {
	pilotv1.UnimplementedSecurityServiceServer
	s *fakeState
}

func (f *fakeSecurity) Revoke(_ context.Context, req *pilotv1.RevokeRequest) (*pilotv1.RevokeResponse, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.revokeReqs = append(f.s.revokeReqs, req)
	return &pilotv1.RevokeResponse{}, nil
}

func (s *fakeState) register(srv *grpc.Server) {
	pilotv1.RegisterAppServiceServer(srv, &fakeApps{s: s})
	pilotv1.RegisterRuntimeServiceServer(srv, &fakeRuntimes{s: s})
	pilotv1.RegisterClusterServiceServer(srv, &fakeClusters{s: s})
	pilotv1.RegisterJobServiceServer(srv, &fakeJobs{s: s})
	pilotv1.RegisterUserServiceServer(srv, &fakeUsers{s: s})
	pilotv1.RegisterAuditServiceServer(srv, &fakeAudit{s: s})
	pilotv1.RegisterSecurityServiceServer(srv, &fakeSecurity{s: s})
}

// fakeCredentials makes, in dir, what pilot makes in its data dir at its
// first start (ca/ca.crt and admin.token), or reads them back, and returns
// the server TLS config (a certificate for 127.0.0.1 signed by that CA)
// and the token.
func fakeCredentials(dir string) (*tls.Config, string, error) {
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		return nil, "", err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, "", err
	}
	certPEM, _, err := ca.Issue(key.Public(), pki.Identity{Kind: pki.KindPilot, ID: "pilot"}, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}, time.Hour)
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, "", err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", err
	}
	tokenPath := filepath.Join(dir, "admin.token")
	b, err := os.ReadFile(tokenPath)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		b = []byte("hgt_" + base64.RawURLEncoding.EncodeToString(raw[:]) + "\n")
		err = os.WriteFile(tokenPath, b, 0o600)
	}
	if err != nil {
		return nil, "", err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, strings.TrimSpace(string(b)), nil
}

// fakeServer is a gRPC server with TLS and pilot's answer to a call
// without the right bearer token.
func fakeServer(tlsCfg *tls.Config, token string) *grpc.Server {
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token {
			return status.Error(codes.Unauthenticated, "missing or invalid API token; pass --token or set HANGAR_TOKEN")
		}
		return nil
	}
	return grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
}

// fakePilot is a running fake: where it listens, the CA file that checks
// its certificate and the token it accepts.
type fakePilot struct {
	addr   string
	caFile string
	token  string
}

// startFake serves s with TLS on a 127.0.0.1 port until the test ends.
func startFake(t *testing.T, s *fakeState) fakePilot {
	t.Helper()
	dir := t.TempDir()
	tlsCfg, token, err := fakeCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fakeServer(tlsCfg, token)
	s.register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return fakePilot{addr: lis.Addr().String(), caFile: filepath.Join(dir, "ca", "ca.crt"), token: token}
}

// cliResult is what one run of the command tree printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the real command tree in-process against the fake p,
// trusting its CA and passing its token.
func runCLI(t *testing.T, p fakePilot, args ...string) cliResult {
	t.Helper()
	return runCLIEnv(t, testEnv(t), append([]string{"--pilot", p.addr, "--ca", p.caFile, "--token", p.token}, args...)...)
}

func runCLIEnv(t *testing.T, e env, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	e.stdout, e.stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, args, e)
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func testEnv(t *testing.T) env {
	home := t.TempDir()
	return env{
		getenv:      func(string) string { return "" },
		executable:  func() (string, error) { return "", fmt.Errorf("no executable in tests") },
		lookPath:    func(string) (string, error) { return "", fmt.Errorf("not on PATH") },
		userHomeDir: func() (string, error) { return home, nil },
		watch: watchConfig{
			minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond,
			giveUpAfter: 10 * time.Second, firstContactTimeout: 10 * time.Second,
		},
	}
}

// ---- job snapshot builders ----

// at is a fixed base time plus sec seconds.
func at(sec float64) *timestamppb.Timestamp {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return timestamppb.New(t0.Add(time.Duration(sec * float64(time.Second))))
}

func tk(id, title string, state pilotv1.TaskState, attempts int32) *pilotv1.Task {
	return &pilotv1.Task{Id: id, Title: title, Kind: "run_service", State: state, Attempts: attempts}
}

func timed(t *pilotv1.Task, start, end float64) *pilotv1.Task {
	t.StartedAt, t.FinishedAt = at(start), at(end)
	return t
}

func snap(id string, state pilotv1.JobState, tasks ...*pilotv1.Task) *pilotv1.Job {
	j := &pilotv1.Job{Id: id, Kind: "create_cluster", ClusterId: "cl-new", State: state, CreatedAt: at(0), UpdatedAt: at(0)}
	for _, t := range tasks {
		j.Tasks = append(j.Tasks, proto.Clone(t).(*pilotv1.Task))
	}
	return j
}

const (
	tPending   = pilotv1.TaskState_TASK_STATE_PENDING
	tRunning   = pilotv1.TaskState_TASK_STATE_RUNNING
	tSucceeded = pilotv1.TaskState_TASK_STATE_SUCCEEDED
	tFailed    = pilotv1.TaskState_TASK_STATE_FAILED
	tSkipped   = pilotv1.TaskState_TASK_STATE_SKIPPED
	jRunning   = pilotv1.JobState_JOB_STATE_RUNNING
	jSucceeded = pilotv1.JobState_JOB_STATE_SUCCEEDED
	jFailed    = pilotv1.JobState_JOB_STATE_FAILED
)

// progressingJob is a create job whose last step is retried once.
func progressingJob(id string) []*pilotv1.Job {
	net := "create network"
	inst := "run instances"
	start := "start on role primary (order 1)"
	s6 := snap(id, jSucceeded,
		timed(tk("t1", net, tSucceeded, 1), 0, 0.4),
		timed(tk("t2", inst, tSucceeded, 1), 0.4, 3.6),
		timed(tk("t3", start, tSucceeded, 2), 4.2, 6.3))
	s6.UpdatedAt = at(6.3)
	return stamped([]*pilotv1.Job{
		snap(id, jRunning, tk("t1", net, tRunning, 1), tk("t2", inst, tPending, 0), tk("t3", start, tPending, 0)),
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 0.4), tk("t2", inst, tRunning, 1), tk("t3", start, tPending, 0)),
		// The same state again must print nothing.
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 0.4), tk("t2", inst, tRunning, 1), tk("t3", start, tPending, 0)),
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 0.4), timed(tk("t2", inst, tSucceeded, 1), 0.4, 3.6), tk("t3", start, tRunning, 1)),
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 0.4), timed(tk("t2", inst, tSucceeded, 1), 0.4, 3.6),
			func() *pilotv1.Task { t := tk("t3", start, tPending, 1); t.Error = "drone unreachable"; return t }()),
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 0.4), timed(tk("t2", inst, tSucceeded, 1), 0.4, 3.6), tk("t3", start, tRunning, 2)),
		s6,
	})
}

// stamped gives every snapshot but the last a later update time than the
// one before, as pilot does; the last keeps its own.
func stamped(jobs []*pilotv1.Job) []*pilotv1.Job {
	for i, j := range jobs[:len(jobs)-1] {
		j.UpdatedAt = at(float64(i) * 0.5)
	}
	return jobs
}

// failingJob fails its start step on node cln-b, which printed 12 lines
// and exited 3; the last step is skipped.
func failingJob(id string) []*pilotv1.Job {
	net := "create network"
	start := "start on role primary (order 1)"
	conf := "register metadata"
	var out bytes.Buffer
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&out, "line %d\n", i)
	}
	failed := timed(tk("t2", start, tFailed, 1), 1, 3.5)
	failed.Error = "command failed on 1 of 2 nodes"
	failed.NodeResults = []*pilotv1.NodeResult{
		{NodeId: "cln-a", Role: "primary", InstanceId: "i-1", ExitCode: 0, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: "ok\n"},
		{NodeId: "cln-b", Role: "primary", InstanceId: "i-2", ExitCode: 3, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: out.String()},
	}
	last := snap(id, jFailed, timed(tk("t1", net, tSucceeded, 1), 0, 1), failed, tk("t3", conf, tSkipped, 0))
	last.Error = "start on role primary (order 1): command failed on 1 of 2 nodes"
	last.UpdatedAt = at(3.5)
	return stamped([]*pilotv1.Job{
		snap(id, jRunning, tk("t1", net, tRunning, 1), tk("t2", start, tPending, 0), tk("t3", conf, tPending, 0)),
		snap(id, jRunning, timed(tk("t1", net, tSucceeded, 1), 0, 1), tk("t2", start, tRunning, 1), tk("t3", conf, tPending, 0)),
		last,
	})
}

// deadPilot is a fake that does not run: its CA exists, nothing listens.
func deadPilot(t *testing.T) fakePilot {
	t.Helper()
	dir := t.TempDir()
	_, token, err := fakeCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fakePilot{addr: freeAddr(t), caFile: filepath.Join(dir, "ca", "ca.crt"), token: token}
}
