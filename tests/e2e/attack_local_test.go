package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// Attacks through the local runtime, whose instances run on pilot's own
// host: a tenant must neither create one nor, from a cluster on one, reach
// pilot's keys or another cluster's.

// userToken creates a user with the platform admin's token and returns the
// new user's token.
func (p *pilot) userToken(t *testing.T, tenant, name, role string) string {
	t.Helper()
	args := []string{"user", "create", name, "--role", role, "-o", "json"}
	if tenant != "default" {
		args = append(args, "--tenant", tenant)
	}
	out := p.mustHangar(args...)
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || !strings.HasPrefix(resp.Token, "hgt_") {
		t.Fatalf("hangar user create %s: no token in %q (%v)", name, out, err)
	}
	return resp.Token
}

// runtimesAs is the runtime service as the holder of token.
func (p *pilot) runtimesAs(t *testing.T, token string) pilotv1.RuntimeServiceClient {
	t.Helper()
	tlsCfg, err := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pilotv1.NewRuntimeServiceClient(conn)
}

// TestAttackTenantCreatesLocalRuntime: a tenant's member (or admin) creates
// a runtime of the local provider to run its own code on pilot's host.
func TestAttackTenantCreatesLocalRuntime(t *testing.T) {
	p := startPilot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, who := range []struct{ tenant, name, role string }{
		{"acme", "mallory", "member"},
		{"acme", "acme-admin", "admin"},
		{"default", "dev", "member"},
	} {
		rts := p.runtimesAs(t, p.userToken(t, who.tenant, who.name, who.role))
		_, err := rts.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "mine", Provider: "local", Zone: "local"})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only admins of tenant default") {
			t.Errorf("%s (%s of tenant %s) creating a local runtime: %v; want PermissionDenied saying only admins of tenant default may", who.name, who.role, who.tenant, err)
		}
		list, err := rts.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
		if err != nil || len(list.GetRuntimes()) != 0 {
			t.Errorf("%s's runtimes after the refusal: %v (%v), want none", who.name, list.GetRuntimes(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "pilot-runtimes", "acme")); !os.IsNotExist(err) {
		t.Errorf("a refused runtime left a directory: %v", err)
	}
	// The platform team can.
	createLocalRuntime(t, p)
}

// longestLine is the most telling part of a secret file (a PEM body, a
// token): what a leak would show.
func longestLine(b []byte) string {
	best := ""
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); len(l) > len(best) {
			best = l
		}
	}
	return best
}

// TestAttackInstanceReadsPilotSecrets: on a local runtime the platform admin
// made, a cluster's init prints pilot's keys and another cluster's drone
// key. None may reach the job's output; every read is refused.
func TestAttackInstanceReadsPilotSecrets(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	victim, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	fgInstance, _ := frontgateInstance(t, p)

	pilotData := filepath.Join(p.dataDir, "pilot")
	targets := []string{
		filepath.Join(pilotData, "admin.token"),
		filepath.Join(pilotData, "ca", "ca.key"),
		filepath.Join(pilotData, "command.key"),
		filepath.Join(pilotData, "secret.key"),
		filepath.Join(p.instanceDir(victim.Nodes[0].InstanceId), "data", "tls", "key.pem"),
		filepath.Join(p.instanceDir(victim.Nodes[0].InstanceId), "userdata.json"),
		filepath.Join(p.instanceDir(fgInstance), "data", "tls", "key.pem"),
	}
	secrets := map[string]string{}
	for _, f := range targets {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("the test cannot read %s to compare: %v", f, err)
		}
		if secrets[f] = longestLine(b); len(secrets[f]) < 16 {
			t.Fatalf("%s: nothing telling to look for in %q", f, b)
		}
	}

	p.mustHangar("app", "push", "tests/e2e/testdata/thief")
	thief, job := createCluster(t, p, "thief", map[string]string{"env.targets": strings.Join(targets, ",")})
	if job.State != pilotv1.JobState_JOB_STATE_FAILED || !strings.Contains(job.Error, "thief-done") {
		t.Fatalf("the thief's init should run to its end and fail on purpose; job %v: %s", job.State, job.Error)
	}
	var out string
	for _, task := range job.Tasks {
		for _, r := range task.NodeResults {
			if r.NodeId == thief.Nodes[0].Id && strings.HasPrefix(task.Title, "init ") {
				out = r.Output
			}
		}
	}
	if !strings.Contains(out, "thief-done") {
		t.Fatalf("no init output of the thief in the job: %+v", job.Tasks)
	}
	for _, f := range targets {
		if s := secrets[f]; strings.Contains(out, s) || strings.Contains(job.Error, s) {
			t.Errorf("the thief read %s: it is in the job's output", f)
		}
		if !strings.Contains(out, f+": Permission denied") {
			t.Errorf("reading %s was not refused with permission denied", f)
		}
	}
	if t.Failed() {
		t.Logf("the thief's output (%d bytes, first 2 KiB):\n%s", len(out), out[:min(len(out), 2048)])
	}
	// The thief's identity: not root, not pilot's user.
	if strings.Contains(out, "uid=0(") {
		t.Errorf("the thief's commands run as root:\n%s", out)
	}
}

// TestAttackRuntimeRootDirOverlap: a local runtime whose root_dir is pilot's
// data directory, or another runtime's root_dir, would put instances next
// to pilot's keys or into another runtime's instances.
func TestAttackRuntimeRootDirOverlap(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pilotData := filepath.Join(p.dataDir, "pilot")
	for _, tc := range []struct {
		name, rootDir, mention string
	}{
		{"inside pilot's data dir", filepath.Join(pilotData, "runtimes", "evil"), pilotData},
		{"pilot's data dir itself", pilotData, pilotData},
		{"around pilot's data dir", p.dataDir, pilotData},
		{"another runtime's root_dir", p.runtimeRoot(), "runtime local of tenant default"},
		{"inside another runtime's root_dir", filepath.Join(p.runtimeRoot(), "instances"), "runtime local of tenant default"},
	} {
		_, err := p.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "evil", Provider: "local", Zone: "local",
			Config: map[string]string{"root_dir": tc.rootDir}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "runtime.config.root_dir") || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("root_dir %s: %v; want InvalidArgument naming runtime.config.root_dir and %s", tc.name, err, tc.mention)
		}
	}
	// Through the CLI, as an operator would try it.
	out, err := p.hangar("runtime", "create", "evil", "--provider", "local", "--config", "root_dir="+filepath.Join(pilotData, "x"))
	if err == nil || !strings.Contains(out, "runtime.config.root_dir") {
		t.Errorf("hangar runtime create with root_dir in pilot's data dir: %v\n%s", err, out)
	}
	list, err := p.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	if err != nil || len(list.GetRuntimes()) != 1 {
		t.Errorf("runtimes after the refusals: %v (%v), want only local", list.GetRuntimes(), err)
	}
	if _, err := os.Stat(filepath.Join(pilotData, "runtimes")); !os.IsNotExist(err) {
		t.Errorf("a refused runtime created its root_dir in pilot's data dir: %v", err)
	}
}
