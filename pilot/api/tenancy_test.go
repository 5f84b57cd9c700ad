package api

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/pilot/auth"
	"github.com/hangarhq/hangar/pilot/store"
)

// ids names the objects a request acts on. The fixture fills it with
// tenant alpha's objects; missingIDs with objects that exist nowhere.
type ids struct {
	app     string
	runtime string
	cl1     string // active, its create job succeeded: read and env-updated
	cl2     string // active, its create job succeeded: deleted
	cl3     string // its create job still pending: cancelled
	job1    string // cl1's create job
	job2    string // cl2's create job
	job3    string // cl3's create job
	victim  string // a user of alpha that gets deleted
	archive []byte
}

func missingIDs(archive []byte) ids {
	return ids{app: "nosuchapp", runtime: "no-such-rt", cl1: "cl-00000001", cl2: "cl-00000002", cl3: "cl-00000003",
		job1: "job-00000001", job2: "job-00000002", job3: "job-00000003", victim: "nosuchuser", archive: archive}
}

// pairs lists (missing, real) names, to compare a NotFound message about a
// missing object with one about another tenant's.
func (x ids) pairs(real ids) [][2]string {
	return [][2]string{{x.app, real.app}, {x.runtime, real.runtime}, {x.cl1, real.cl1}, {x.cl2, real.cl2}, {x.cl3, real.cl3},
		{x.job1, real.job1}, {x.job2, real.job2}, {x.job3, real.job3}, {x.victim, real.victim}}
}

// kind is what another tenant's call of a method must give.
type kind int

const (
	onObject kind = iota // names one of alpha's objects: NotFound, as if missing
	listing              // lists the caller's tenant: none of alpha's records
	creating             // creates in the caller's own tenant
	self                 // about the caller
	platform             // reserved to admins of the default tenant
	noToken              // authenticates itself (join token, certificate)
)

// methodCase is one API method: the least role allowed, what another
// tenant gets, and a request about alpha's objects. The table's order is
// the order of the allowed calls, destructive ones last.
type methodCase struct {
	method  string
	least   pilotv1.Role
	kind    kind
	req     func(x ids) proto.Message
	allowed codes.Code // what alpha's least role gets (OK unless said)
}

const (
	viewer = pilotv1.Role_ROLE_VIEWER
	member = pilotv1.Role_ROLE_MEMBER
	admin  = pilotv1.Role_ROLE_ADMIN
)

func methodTable() []methodCase {
	return []methodCase{
		{pilotv1.AppService_ListApps_FullMethodName, viewer, listing, func(x ids) proto.Message { return &pilotv1.ListAppsRequest{} }, codes.OK},
		{pilotv1.AppService_GetApp_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.GetAppRequest{Name: x.app} }, codes.OK},
		{pilotv1.RuntimeService_ListRuntimes_FullMethodName, viewer, listing, func(x ids) proto.Message { return &pilotv1.ListRuntimesRequest{} }, codes.OK},
		{pilotv1.RuntimeService_GetRuntime_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.GetRuntimeRequest{Id: x.runtime} }, codes.OK},
		{pilotv1.ClusterService_ListClusters_FullMethodName, viewer, listing, func(x ids) proto.Message { return &pilotv1.ListClustersRequest{} }, codes.OK},
		{pilotv1.ClusterService_GetCluster_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.GetClusterRequest{Id: x.cl1} }, codes.OK},
		{pilotv1.ClusterService_ListClusterEvents_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.ListClusterEventsRequest{ClusterId: x.cl1} }, codes.OK},
		{pilotv1.ClusterService_GetClusterMetrics_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.GetClusterMetricsRequest{ClusterId: x.cl1} }, codes.OK},
		{pilotv1.JobService_ListJobs_FullMethodName, viewer, listing, func(x ids) proto.Message { return &pilotv1.ListJobsRequest{} }, codes.OK},
		{pilotv1.JobService_GetJob_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.GetJobRequest{Id: x.job1} }, codes.OK},
		{pilotv1.JobService_WatchJob_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.WatchJobRequest{Id: x.job1} }, codes.OK},
		{pilotv1.JobService_ListNodeResults_FullMethodName, viewer, onObject, func(x ids) proto.Message { return &pilotv1.ListNodeResultsRequest{JobId: x.job1} }, codes.OK},
		{pilotv1.UserService_WhoAmI_FullMethodName, viewer, self, func(x ids) proto.Message { return &pilotv1.WhoAmIRequest{} }, codes.OK},
		{pilotv1.UserService_ListUsers_FullMethodName, admin, listing, func(x ids) proto.Message { return &pilotv1.ListUsersRequest{} }, codes.OK},
		{pilotv1.AuditService_ListAudit_FullMethodName, admin, listing, func(x ids) proto.Message { return &pilotv1.ListAuditRequest{Limit: 1000} }, codes.OK},
		// pilot/api does not serve SecurityService: the platform admin's call
		// passes the interceptors and reaches the test's stub.
		{pilotv1.SecurityService_ListRevocations_FullMethodName, admin, platform, func(x ids) proto.Message { return &pilotv1.ListRevocationsRequest{} }, codes.Unimplemented},
		// alpha's clusters use its app: refused for that, once the caller
		// may. Before PushApp, so that the other tenant has no app of the
		// name yet.
		{pilotv1.AppService_DeleteApp_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.DeleteAppRequest{Name: x.app, Version: "1.0.0"}
		}, codes.FailedPrecondition},
		{pilotv1.AppService_SetImage_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.SetImageRequest{App: x.app, Version: "1.0.0", Role: "replica", Runtime: x.runtime, Image: "img-kv"}
		}, codes.OK},
		{pilotv1.AppService_ListImages_FullMethodName, viewer, listing, func(x ids) proto.Message { return &pilotv1.ListImagesRequest{} }, codes.OK},
		{pilotv1.AppService_UnsetImage_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.UnsetImageRequest{App: x.app, Version: "1.0.0", Role: "replica", Runtime: x.runtime}
		}, codes.OK},
		{pilotv1.AppService_PushApp_FullMethodName, member, creating, func(x ids) proto.Message { return &pilotv1.PushAppRequest{Archive: x.archive} }, codes.OK},
		// The same runtime id in another tenant is another runtime; in
		// alpha it exists already.
		{pilotv1.RuntimeService_CreateRuntime_FullMethodName, member, creating, func(x ids) proto.Message {
			return &pilotv1.CreateRuntimeRequest{Id: x.runtime, Provider: "fake"}
		}, codes.AlreadyExists},
		{pilotv1.ClusterService_CreateCluster_FullMethodName, member, creating, func(x ids) proto.Message {
			return &pilotv1.CreateClusterRequest{App: x.app, Runtime: x.runtime}
		}, codes.OK},
		{pilotv1.UserService_CreateUser_FullMethodName, admin, creating, func(x ids) proto.Message {
			return &pilotv1.CreateUserRequest{Name: "newbie", Role: viewer}
		}, codes.OK},
		{pilotv1.ClusterService_UpdateClusterEnv_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.UpdateClusterEnvRequest{Id: x.cl1, Env: map[string]string{"motd": "changed"}}
		}, codes.OK},
		{pilotv1.ClusterService_RestartCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			// cl1 is updating after the row above: refused for that, once
			// the caller may.
			return &pilotv1.RestartClusterRequest{Id: x.cl1, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_ScaleCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.ScaleClusterRequest{Id: x.cl1, Role: "replica", Count: 3, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_RecoverCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.RecoverClusterRequest{Id: x.cl1, NodeIds: []string{"cln-none"}, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_SetClusterRecovery_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.SetClusterRecoveryRequest{Id: x.cl1, Recovery: &pilotv1.RecoveryPolicy{Enabled: true}}
		}, codes.OK},
		// Checked against the package once the caller may: the app
		// reports no such metric.
		{pilotv1.ClusterService_SetAutoscalePolicy_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.SetAutoscalePolicyRequest{Id: x.cl1, Policy: &pilotv1.AutoscalePolicy{Role: "replica", Metric: "no-such-item", Target: 1, Min: 1, Max: 2}}
		}, codes.InvalidArgument},
		{pilotv1.ClusterService_DeleteAutoscalePolicy_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.DeleteAutoscalePolicyRequest{Id: x.cl1, Role: "replica"}
		}, codes.InvalidArgument},
		{pilotv1.ClusterService_RunClusterService_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.RunClusterServiceRequest{Id: x.cl1, Service: "compact", DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_RunClusterTab_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.RunClusterTabRequest{Id: x.cl1, Tab: "status", DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_ResizeCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.ResizeClusterRequest{Id: x.cl1, Role: "replica", Cpu: 2, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_BackupCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.BackupClusterRequest{Id: x.cl1, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_ListBackups_FullMethodName, viewer, onObject, func(x ids) proto.Message {
			return &pilotv1.ListBackupsRequest{Id: x.cl1}
		}, codes.OK},
		{pilotv1.ClusterService_RestoreCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.RestoreClusterRequest{Id: x.cl1, BackupId: "bk-none", DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_UpgradeCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.UpgradeClusterRequest{Id: x.cl1, AppVersion: "9.0.0", DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_RollbackCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.RollbackClusterRequest{Id: x.cl1, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_StopCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.StopClusterRequest{Id: x.cl1, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.ClusterService_StartCluster_FullMethodName, member, onObject, func(x ids) proto.Message {
			return &pilotv1.StartClusterRequest{Id: x.cl1, DryRun: true}
		}, codes.FailedPrecondition},
		{pilotv1.JobService_RetryJob_FullMethodName, member, onObject, func(x ids) proto.Message { return &pilotv1.RetryJobRequest{Id: x.job3} }, codes.FailedPrecondition},
		{pilotv1.JobService_CancelJob_FullMethodName, member, onObject, func(x ids) proto.Message { return &pilotv1.CancelJobRequest{Id: x.job3} }, codes.OK},
		{pilotv1.ClusterService_DeleteCluster_FullMethodName, member, onObject, func(x ids) proto.Message { return &pilotv1.DeleteClusterRequest{Id: x.cl2} }, codes.OK},
		{pilotv1.UserService_DeleteUser_FullMethodName, admin, onObject, func(x ids) proto.Message { return &pilotv1.DeleteUserRequest{Name: x.victim} }, codes.OK},
		{pilotv1.SecurityService_Revoke_FullMethodName, admin, platform, func(x ids) proto.Message {
			return &pilotv1.RevokeRequest{Kind: "drone", Id: "cln-12345678", Reason: "test"}
		}, codes.Unimplemented},
		{pilotv1.EnrollmentService_Join_FullMethodName, 0, noToken, func(x ids) proto.Message { return &streamv1.JoinRequest{TokenId: "hjt_x", TokenProof: []byte("proof")} }, codes.Unimplemented},
	}
}

// TestEveryMethodHasATableEntry lists pilot.proto's methods by reflection:
// a method added to the API fails here until the table says who may call
// it and what another tenant gets.
func TestEveryMethodHasATableEntry(t *testing.T) {
	inTable := map[string]int{}
	for _, c := range methodTable() {
		inTable[c.method]++
	}
	var all []string
	svcs := pilotv1.File_pilot_v1_pilot_proto.Services()
	for i := 0; i < svcs.Len(); i++ {
		ms := svcs.Get(i).Methods()
		for j := 0; j < ms.Len(); j++ {
			all = append(all, fullMethod(ms.Get(j)))
		}
	}
	for _, m := range all {
		if inTable[m] != 1 {
			t.Errorf("%s has %d entries in methodTable, want 1", m, inTable[m])
		}
	}
	for m := range inTable {
		if !slices.Contains(all, m) {
			t.Errorf("methodTable has %s, which pilot.proto does not define", m)
		}
	}
	// And pilot's own rules cover exactly the same methods.
	rules := auth.Methods()
	for _, m := range all {
		_, ruled := rules[m]
		if ruled == slices.Contains(auth.NoTokenMethods(), m) {
			t.Errorf("%s: in auth.Methods %v, in NoTokenMethods %v: want exactly one", m, ruled, !ruled)
		}
	}
}

// setupAlpha gives tenant alpha an app, a runtime, three clusters and their
// jobs, and an extra user.
func setupAlpha(t *testing.T, h *harness) ids {
	t.Helper()
	ctx := h.asRole(t, alpha, member)
	x := ids{archive: copyPackage(t, nil)}
	app, err := pilotv1.NewAppServiceClient(h.conn).PushApp(ctx, &pilotv1.PushAppRequest{Archive: x.archive})
	if err != nil {
		t.Fatal(err)
	}
	x.app = app.Name
	x.runtime = "rt-shared-name"
	if _, err := pilotv1.NewRuntimeServiceClient(h.conn).CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: x.runtime, Provider: "fake"}); err != nil {
		t.Fatal(err)
	}
	clusters := pilotv1.NewClusterServiceClient(h.conn)
	var cls, jbs []string
	for range 3 {
		r, err := clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: x.app, Runtime: x.runtime})
		if err != nil {
			t.Fatal(err)
		}
		cls, jbs = append(cls, r.Cluster.Id), append(jbs, r.Job.Id)
	}
	x.cl1, x.cl2, x.cl3 = cls[0], cls[1], cls[2]
	x.job1, x.job2, x.job3 = jbs[0], jbs[1], jbs[2]
	// As if the engine had run the first two creates.
	for i := range 2 {
		if _, err := store.Update(context.Background(), h.st, store.JobKey(jbs[i]), func() *pilotv1.Job { return &pilotv1.Job{} }, func(j *pilotv1.Job) error {
			j.State = pilotv1.JobState_JOB_STATE_SUCCEEDED
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Update(context.Background(), h.st, store.ClusterKey(cls[i]), func() *pilotv1.Cluster { return &pilotv1.Cluster{} }, func(c *pilotv1.Cluster) error {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	x.victim = "victim"
	h.addUser(t, alpha, x.victim, viewer)
	return x
}

// alphaRecords are the keys holding alpha's state.
func alphaRecords(x ids) (prefixes, keys []string) {
	prefixes = []string{store.TenantAppsPrefix(alpha), store.ArchivesPrefix + alpha + "/", store.TenantRuntimesPrefix(alpha), auth.UsersPrefix + alpha + "/"}
	for _, id := range []string{x.cl1, x.cl2, x.cl3} {
		keys = append(keys, store.ClusterKey(id))
	}
	for _, id := range []string{x.job1, x.job2, x.job3} {
		keys = append(keys, store.JobKey(id))
	}
	return prefixes, keys
}

// leaks reports which of alpha's names a response of another tenant holds.
func leaks(resp proto.Message, x ids) []string {
	if resp == nil {
		return nil
	}
	b, err := protojson.Marshal(resp)
	if err != nil {
		return []string{err.Error()}
	}
	var found []string
	for _, s := range []string{alpha, x.cl1, x.cl2, x.cl3, x.job1, x.job2, x.job3, x.victim} {
		if strings.Contains(string(b), s) {
			found = append(found, s)
		}
	}
	return found
}

func TestTenantsAndRolesOverEveryMethod(t *testing.T) {
	h := newHarness(t)
	x := setupAlpha(t, h)
	table := methodTable()

	t.Run("no token", func(t *testing.T) {
		bad := map[string]context.Context{
			"none":      context.Background(),
			"unknown":   withToken("hgt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
			"malformed": withToken("not-a-token"),
			"deleted":   h.deletedUserCtx(t),
		}
		for _, c := range table {
			if c.kind == noToken {
				// Served without a token: the stub answers.
				_, err := h.invoke(context.Background(), c.method, c.req(x))
				if status.Code(err) != c.allowed {
					t.Errorf("%s without a token: %v, want %s from the handler", c.method, err, c.allowed)
				}
				continue
			}
			for name, ctx := range bad {
				_, err := h.invoke(ctx, c.method, c.req(x))
				if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "HANGAR_TOKEN") {
					t.Errorf("%s with %s token: %v, want Unauthenticated saying how to pass a token", c.method, name, err)
				}
			}
		}
	})

	t.Run("roles below the least one are refused", func(t *testing.T) {
		for _, c := range table {
			if c.kind == noToken {
				continue
			}
			for _, role := range []pilotv1.Role{viewer, member, admin} {
				if role >= c.least {
					continue
				}
				_, err := h.invoke(h.asRole(t, alpha, role), c.method, c.req(x))
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "role "+auth.RoleName(c.least)) {
					t.Errorf("%s as %s: %v, want PermissionDenied naming role %s", c.method, auth.RoleName(role), err, auth.RoleName(c.least))
				}
			}
			if c.kind == platform {
				_, err := h.invoke(h.asRole(t, alpha, admin), c.method, c.req(x))
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), auth.DefaultTenant) {
					t.Errorf("%s as an admin of %s: %v, want PermissionDenied naming tenant %s", c.method, alpha, err, auth.DefaultTenant)
				}
			}
		}
	})

	prefixes, keys := alphaRecords(x)
	before := h.modRevisions(t, prefixes, keys)

	t.Run("another tenant cannot see, change or delete", func(t *testing.T) {
		other := h.asRole(t, beta, admin)
		missing := missingIDs(x.archive)
		for _, c := range table {
			if c.kind == noToken {
				continue
			}
			resp, err := h.invoke(other, c.method, c.req(x))
			switch c.kind {
			case onObject:
				if status.Code(err) != codes.NotFound {
					t.Errorf("%s on %s's object as %s: %v, want NotFound", c.method, alpha, beta, err)
					continue
				}
				// Exactly what a missing object gets: existence does not leak.
				_, merr := h.invoke(h.asRole(t, alpha, admin), c.method, c.req(missing))
				want := status.Convert(merr).Message()
				for _, p := range missing.pairs(x) {
					want = strings.ReplaceAll(want, p[0], p[1])
				}
				if got := status.Convert(err).Message(); status.Code(merr) != codes.NotFound || got != want {
					t.Errorf("%s: another tenant's object answers %q; a missing one %v", c.method, got, merr)
				}
			case listing, self, creating:
				if err != nil {
					t.Errorf("%s as %s: %v, want success within its own tenant", c.method, beta, err)
				}
				if l := leaks(resp, x); len(l) > 0 {
					t.Errorf("%s as %s shows %s's %v:\n%v", c.method, beta, alpha, l, resp)
				}
			case platform:
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s as an admin of %s: %v, want PermissionDenied", c.method, beta, err)
				}
			}
		}
	})

	t.Run("alpha's records are untouched", func(t *testing.T) {
		after := h.modRevisions(t, prefixes, keys)
		for k, rev := range before {
			if after[k] != rev {
				t.Errorf("%s: mod revision %d, was %d before %s's calls", k, after[k], rev, beta)
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("%s appeared under %s's keys during %s's calls", k, alpha, beta)
			}
		}
	})

	t.Run("the least role may", func(t *testing.T) {
		for _, c := range table {
			var ctx context.Context
			switch c.kind {
			case noToken:
				continue
			case platform:
				ctx = h.as(t, auth.DefaultTenant, "admin")
			default:
				ctx = h.asRole(t, alpha, c.least)
			}
			_, err := h.invoke(ctx, c.method, c.req(x))
			if status.Code(err) != c.allowed {
				t.Errorf("%s as %s: %v, want %s", c.method, auth.RoleName(c.least), err, c.allowed)
			}
		}
		// The allowed changes happened.
		cl, err := pilotv1.NewClusterServiceClient(h.conn).GetCluster(h.asRole(t, alpha, viewer), &pilotv1.GetClusterRequest{Id: x.cl2})
		if err != nil || cl.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_DELETING {
			t.Errorf("cluster %s after DeleteCluster: %v %v, want deleting", x.cl2, cl.GetStatus(), err)
		}
		if _, err := h.users.Get(context.Background(), alpha, x.victim); err == nil {
			t.Errorf("user %s still exists after DeleteUser", x.victim)
		}
	})

	t.Run("audit", func(t *testing.T) {
		// A failed create is recorded with its code.
		_, err := pilotv1.NewClusterServiceClient(h.conn).CreateCluster(h.asRole(t, alpha, member), &pilotv1.CreateClusterRequest{App: x.app, Runtime: x.runtime, Params: map[string]string{"env.port": "80"}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad create: %v", err)
		}
		resp, err := pilotv1.NewAuditServiceClient(h.conn).ListAudit(h.asRole(t, alpha, admin), &pilotv1.ListAuditRequest{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		es := resp.Entries
		has := func(method, user, result, target string) bool {
			return slices.ContainsFunc(es, func(e *pilotv1.AuditEntry) bool {
				return e.Method == method && e.User == user && e.Result == result && (target == "" || e.Target == target)
			})
		}
		for _, want := range []struct{ method, user, result, target string }{
			{pilotv1.ClusterService_CreateCluster_FullMethodName, "member", "OK", x.cl1},
			{pilotv1.ClusterService_CreateCluster_FullMethodName, "member", "InvalidArgument", ""},
			{pilotv1.ClusterService_DeleteCluster_FullMethodName, "member", "OK", x.cl2},
			{pilotv1.ClusterService_DeleteCluster_FullMethodName, "viewer", "PermissionDenied", x.cl2},
			{pilotv1.UserService_DeleteUser_FullMethodName, "admin", "OK", x.victim},
			{pilotv1.AppService_PushApp_FullMethodName, "member", "OK", x.app + "@1.0.0"},
			{pilotv1.RuntimeService_CreateRuntime_FullMethodName, "member", "AlreadyExists", x.runtime},
		} {
			if !has(want.method, want.user, want.result, want.target) {
				t.Errorf("audit log lacks %s by %s → %s (target %q)", want.method, want.user, want.result, want.target)
			}
		}
		if es[0].Method != pilotv1.ClusterService_CreateCluster_FullMethodName || es[0].Result != "InvalidArgument" || !strings.Contains(es[0].Message, "env.port") {
			t.Errorf("newest entry %v, want the failed create, first", es[0])
		}
		if !sort.SliceIsSorted(es, func(i, j int) bool { return es[i].Time.AsTime().After(es[j].Time.AsTime()) }) {
			t.Errorf("entries are not newest first")
		}
		for _, e := range es {
			if e.Tenant != alpha {
				t.Errorf("%s's audit log holds an entry of tenant %s: %v", alpha, e.Tenant, e)
			}
			if m := e.Method; !auth.Methods()[m].Mutates {
				t.Errorf("audit entry for %s, which changes nothing", m)
			}
		}
		// Another tenant sees none of it: its viewer may not read the log,
		// and its admin reads its own.
		if _, err := pilotv1.NewAuditServiceClient(h.conn).ListAudit(h.asRole(t, beta, viewer), &pilotv1.ListAuditRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("viewer's ListAudit: %v, want PermissionDenied", err)
		}
		bresp, err := pilotv1.NewAuditServiceClient(h.conn).ListAudit(h.asRole(t, beta, admin), &pilotv1.ListAuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range bresp.Entries {
			if e.Tenant != beta || e.User == "" {
				t.Errorf("%s's audit log shows %v", beta, e)
			}
		}
		if len(bresp.Entries) == 0 {
			t.Errorf("%s's own changes are not in its audit log", beta)
		}
	})
}

func withToken(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// deletedUserCtx carries the token of a user deleted since.
func (h *harness) deletedUserCtx(t *testing.T) context.Context {
	t.Helper()
	h.addUser(t, alpha, "gone", admin)
	if err := h.users.Delete(context.Background(), alpha, "gone"); err != nil {
		t.Fatal(err)
	}
	return h.as(t, alpha, "gone")
}

func TestHandlersRefuseCallsWithoutACaller(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"ListClusters": func() error { _, err := s.ListClusters(ctx, &pilotv1.ListClustersRequest{}); return err },
		"GetCluster":   func() error { _, err := s.GetCluster(ctx, &pilotv1.GetClusterRequest{Id: "cl-1"}); return err },
		"ListApps":     func() error { _, err := s.ListApps(ctx, &pilotv1.ListAppsRequest{}); return err },
		"PushApp":      func() error { _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{}); return err },
		"ListJobs":     func() error { _, err := s.ListJobs(ctx, &pilotv1.ListJobsRequest{}); return err },
		"CancelJob":    func() error { _, err := s.CancelJob(ctx, &pilotv1.CancelJobRequest{Id: "job-1"}); return err },
		"ListRuntimes": func() error { _, err := s.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{}); return err },
		"ListUsers":    func() error { _, err := s.ListUsers(ctx, &pilotv1.ListUsersRequest{}); return err },
		"ListAudit":    func() error { _, err := s.ListAudit(ctx, &pilotv1.ListAuditRequest{}); return err },
	} {
		if err := call(); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a caller: %v, want Unauthenticated", name, err)
		}
	}
}

// Two tenants may push different packages under the same name and
// version; each sees and deploys its own.
func TestSameAppNameInTwoTenants(t *testing.T) {
	h := newHarness(t)
	apps := pilotv1.NewAppServiceClient(h.conn)
	a, b := h.asRole(t, alpha, member), h.asRole(t, beta, member)
	if _, err := apps.PushApp(a, &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatal(err)
	}
	changed := copyPackage(t, func(d string) {
		replaceIn(t, d+"/config.json", `"default": "hello from hangar"`, `"default": "beta's own"`)
	})
	if _, err := apps.PushApp(b, &pilotv1.PushAppRequest{Archive: changed}); err != nil {
		t.Fatalf("beta pushing its own kv 1.0.0: %v", err)
	}
	for ctx, want := range map[context.Context]string{a: "hello from hangar", b: "beta's own"} {
		app, err := apps.GetApp(ctx, &pilotv1.GetAppRequest{Name: "kv", Version: "1.0.0"})
		if err != nil || !strings.Contains(app.ConfigJson, want) {
			t.Errorf("GetApp: %v, want the config holding %q", err, want)
		}
	}
	// Each tenant's cluster renders from its own package.
	for _, tc := range []struct {
		ctx  context.Context
		want string
	}{{a, "hello from hangar"}, {b, "beta's own"}} {
		if _, err := pilotv1.NewRuntimeServiceClient(h.conn).CreateRuntime(tc.ctx, &pilotv1.CreateRuntimeRequest{Id: "rt", Provider: "fake"}); err != nil {
			t.Fatal(err)
		}
		r, err := pilotv1.NewClusterServiceClient(h.conn).CreateCluster(tc.ctx, &pilotv1.CreateClusterRequest{App: "kv", Runtime: "rt"})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Cluster.Params["env.motd"]; got != tc.want {
			t.Errorf("cluster's env.motd %q, want %q from its tenant's package", got, tc.want)
		}
	}
}
