package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// deployedCluster is cl-new as it looks after its create job.
func deployedCluster() *pilotv1.Cluster {
	return &pilotv1.Cluster{
		Id: "cl-new", Name: "cache", App: "kv", AppVersion: "1.0.0", Runtime: "local",
		Status: pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, JobId: "j-create",
		Params: map[string]string{"cluster.name": "cache", "env.port": "6379"},
		Nodes: []*pilotv1.Node{
			{Id: "cln-a", Role: "primary", InstanceId: "i-1", Address: "127.1.0.2", Sid: 1, Status: pilotv1.NodeStatus_NODE_STATUS_ACTIVE},
			{Id: "cln-b", Role: "replica", InstanceId: "i-2", Address: "127.1.0.3", Sid: 2, Status: pilotv1.NodeStatus_NODE_STATUS_ACTIVE},
		},
		Endpoints: []*pilotv1.Endpoint{{Name: "client", Role: "primary", Address: "127.1.0.2", Port: 6379, Protocol: "tcp"}},
	}
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func TestClusterCreateSendsRequestAndPrintsIDs(t *testing.T) {
	s := newFakeState()
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "create", "kv", "--param", "a=b", "--param", "env.whitelist=srvr,ruok",
		"-p", "cluster.name=cache", "--version", "1.0.0")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout, "cl-new", "j-create", "hangar job watch j-create")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.createReqs) != 1 {
		t.Fatalf("%d create requests, want 1", len(s.createReqs))
	}
	req := s.createReqs[0]
	want := map[string]string{"a": "b", "env.whitelist": "srvr,ruok", "cluster.name": "cache"}
	if req.GetApp() != "kv" || req.GetAppVersion() != "1.0.0" || req.GetRuntime() != "local" || !maps.Equal(req.GetParams(), want) {
		t.Errorf("request = %v, want app kv 1.0.0 on local with %v", req, want)
	}
}

func TestClusterCreateRejectsBadParamBeforeCallingPilot(t *testing.T) {
	s := newFakeState()
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "create", "kv", "--param", "a=b", "--param", "replicas")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1", res.code)
	}
	mustContain(t, "stderr", res.stderr, `--param "replicas"`, "KEY=VALUE")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.createReqs) != 0 {
		t.Errorf("pilot got %d requests for a bad command line", len(s.createReqs))
	}
}

func TestClusterCreateWaitFollowsJobThenShowsCluster(t *testing.T) {
	s := newFakeState()
	s.watches["j-create"] = [][]*pilotv1.Job{progressingJob("j-create")}
	s.clusters["cl-new"] = deployedCluster()
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "create", "kv", "--wait")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout,
		"Cluster cl-new created; job j-create",
		"[3/3] ✓ start on role primary (order 1)  2.1s",
		"Job j-create succeeded",
		"Status:    active",
		"cln-a", "127.1.0.2", "cln-b", "replica",
		"client", "6379", "tcp",
		"env.port",
	)
	// The cluster is printed after the job ends.
	if strings.Index(res.stdout, "succeeded") > strings.Index(res.stdout, "127.1.0.2") {
		t.Errorf("cluster printed before the job ended:\n%s", res.stdout)
	}
}

func TestClusterCreateWaitJSONPrintsOneObject(t *testing.T) {
	s := newFakeState()
	s.watches["j-create"] = [][]*pilotv1.Job{progressingJob("j-create")}
	s.clusters["cl-new"] = deployedCluster()
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "create", "kv", "--wait", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var got pilotv1.ClusterJob
	if err := protojson.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("stdout is not one ClusterJob: %v\n%s", err, res.stdout)
	}
	if got.GetJob().GetState() != jSucceeded || len(got.GetCluster().GetNodes()) != 2 {
		t.Errorf("got %v, want the finished job and the deployed cluster", &got)
	}
	// People still see progress, on stderr.
	mustContain(t, "stderr", res.stderr, "✓ run instances")
}

func TestJobWatchFailingJobExitsNonZeroWithNodeOutput(t *testing.T) {
	s := newFakeState()
	snaps := failingJob("j-fail")
	// The first stream breaks after two snapshots (pilot restarting); the
	// second replays the job from its start. Watch must reconnect and carry
	// on without repeating lines.
	s.watches["j-fail"] = [][]*pilotv1.Job{snaps[:2], snaps}
	addr := startFake(t, s)
	res := runCLI(t, addr, "job", "watch", "j-fail")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "stdout", res.stdout,
		"[2/3] ✗ start on role primary (order 1)",
		"Job j-fail failed",
		"node cln-b (role primary, instance i-2): exit code 3",
		"    | line 12",
	)
	mustContain(t, "stderr", res.stderr, "job j-fail failed")
	if n := strings.Count(res.stdout, "✓ create network"); n != 1 {
		t.Errorf("create network reported %d times across the reconnect:\n%s", n, res.stdout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchCalls["j-fail"] != 2 {
		t.Errorf("WatchJob called %d times, want 2 (one reconnect)", s.watchCalls["j-fail"])
	}
}

func TestJobWatchJSONLines(t *testing.T) {
	s := newFakeState()
	s.watches["j-ok"] = [][]*pilotv1.Job{progressingJob("j-ok")}
	addr := startFake(t, s)
	res := runCLI(t, addr, "job", "watch", "j-ok", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != len(progressingJob("j-ok")) {
		t.Fatalf("%d lines, want one per snapshot:\n%s", len(lines), res.stdout)
	}
	var last pilotv1.Job
	if err := protojson.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.GetState() != jSucceeded {
		t.Errorf("last line: %v, %v", &last, err)
	}
}

func TestJobWatchUnknownJob(t *testing.T) {
	addr := startFake(t, newFakeState())
	res := runCLI(t, addr, "job", "watch", "j-nope")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1", res.code)
	}
	mustContain(t, "stderr", res.stderr, `job "j-nope" not found`, "hangar job list")
}

func TestJobShowListsTasksAndFailedNodes(t *testing.T) {
	s := newFakeState()
	snaps := failingJob("j-fail")
	s.jobs["j-fail"] = snaps[len(snaps)-1]
	addr := startFake(t, s)
	res := runCLI(t, addr, "job", "show", "j-fail")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout,
		"State:     failed", "Progress:  3/3 tasks finished (1 skipped)",
		"succeeded  create network", "failed     start on role primary (order 1)", "skipped    register metadata",
		"exit code 3", "| line 12")

	res = runCLI(t, addr, "job", "list", "--cluster", "cl-new")
	if res.code != 0 {
		t.Fatalf("job list: exit %d\n%s", res.code, res.stderr)
	}
	mustContain(t, "job list", res.stdout, "j-fail", "create_cluster", "failed", "3/3")
}

func TestConnectionRefusedSaysToStartPilot(t *testing.T) {
	res := runCLI(t, deadPilot(t), "cluster", "list")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1", res.code)
	}
	mustContain(t, "stderr", res.stderr, "list clusters", "cannot reach pilot", "hangar up")
}

func TestAppPushSendsArchiveAndPrintsWarnings(t *testing.T) {
	s := newFakeState()
	addr := startFake(t, s)
	dir := t.TempDir()
	writePackage(t, dir)
	res := runCLI(t, addr, "app", "push", dir)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout, "Pushed kv 1.0.0", "primary, replica", "need_tag has no effect")
	s.mu.Lock()
	pushed := s.pushed
	s.mu.Unlock()
	if len(pushed) != 1 {
		t.Fatalf("%d pushes, want 1", len(pushed))
	}
	files := untar(t, pushed[0])
	if files["package.json"] != `{"name":"kv","version":"1.0.0"}` || files["confd/templates/kv.tmpl"] == "" {
		t.Errorf("pushed archive holds %v", files)
	}
	if _, ok := files[".git/HEAD"]; ok {
		t.Error("pushed archive holds .git")
	}

	// A ready archive is sent as it is.
	tgz := filepath.Join(t.TempDir(), "kv.tar.gz")
	if err := os.WriteFile(tgz, []byte("not really gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runCLI(t, addr, "app", "push", tgz); res.code != 0 {
		t.Fatalf("push archive: exit %d\n%s", res.code, res.stderr)
	}
	s.mu.Lock()
	if string(s.pushed[1]) != "not really gzip" {
		t.Errorf("archive was altered: %q", s.pushed[1])
	}
	s.mu.Unlock()

	for _, bad := range []string{filepath.Join(dir, "package.json"), filepath.Join(dir, "missing")} {
		res := runCLI(t, addr, "app", "push", bad)
		if res.code != 1 {
			t.Errorf("push %s: exit %d, want 1", bad, res.code)
		}
		mustContain(t, "push "+bad, res.stderr, "app package")
	}
}

func TestAppShowListsParameters(t *testing.T) {
	s := newFakeState()
	s.apps["kv"] = &pilotv1.App{Name: "kv", Version: "1.0.0", Roles: []string{"primary"}, ConfigJson: sampleConfig}
	addr := startFake(t, s)
	res := runCLI(t, addr, "app", "show", "kv")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "output", res.stdout, "KEY", "TYPE", "DEFAULT", "RANGE",
		"cluster.primary.cpu", "1, 2, 4", "env.port", "6379", "1024..", "(hidden)")
	if strings.Contains(res.stdout, "s3cret") {
		t.Errorf("shows a password default:\n%s", res.stdout)
	}
	// Labels in a language of the package's locale/.
	s.apps["kv"].Locales = map[string]*pilotv1.Locale{"zh-cn": {Texts: map[string]string{"Name": "名称"}}}
	res = runCLI(t, addr, "app", "show", "kv", "--lang", "zh-cn")
	if res.code != 0 || !strings.Contains(res.stdout, "名称") {
		t.Fatalf("--lang zh-cn: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runCLI(t, addr, "app", "show", "kv", "--lang", "fr")
	mustContain(t, "--lang fr", res.stdout, "no locale/fr.json; it has: zh-cn")
	res = runCLI(t, addr, "app", "show", "nope")
	if res.code != 1 {
		t.Fatalf("unknown app: exit %d", res.code)
	}
	mustContain(t, "stderr", res.stderr, "not found", "hangar app list")
}

func TestRuntimeCreateAndList(t *testing.T) {
	s := newFakeState()
	addr := startFake(t, s)
	res := runCLI(t, addr, "runtime", "create", "d1", "--provider", "docker", "--zone", "z1", "--config", "network=a,b", "--config", "x=1")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	s.mu.Lock()
	got := s.runtimes[0]
	s.mu.Unlock()
	if got.GetId() != "d1" || got.GetProvider() != "docker" || got.GetZone() != "z1" ||
		!maps.Equal(got.GetConfig(), map[string]string{"network": "a,b", "x": "1"}) {
		t.Errorf("created %v", got)
	}
	res = runCLI(t, addr, "runtime", "list")
	mustContain(t, "runtime list", res.stdout, "d1", "docker", "z1", "network=a,b,x=1")

	res = runCLI(t, addr, "runtime", "create", "d2")
	if res.code != 1 {
		t.Fatalf("without --provider: exit %d", res.code)
	}
	mustContain(t, "stderr", res.stderr, "provider")

	res = runCLI(t, addr, "runtime", "create", "d1", "--provider", "docker")
	if res.code != 1 {
		t.Fatalf("duplicate: exit %d", res.code)
	}
	mustContain(t, "stderr", res.stderr, "exists", "hangar runtime list")
}

func TestClusterUpdateEnvAndDelete(t *testing.T) {
	s := newFakeState()
	s.clusters["cl-new"] = deployedCluster()
	addr := startFake(t, s)

	res := runCLI(t, addr, "cluster", "update-env", "cl-new", "port=6380", "replica.maxmemory=256")
	if res.code != 0 {
		t.Fatalf("update-env: exit %d\n%s", res.code, res.stderr)
	}
	mustContain(t, "update-env", res.stdout, "j-env")
	// Keys that begin with '-' go with --set, or after --.
	for _, args := range [][]string{{"--set", "-m=64", "--set", "-c=1"}, {"--", "-m=64", "-c=1"}} {
		res = runCLI(t, addr, append([]string{"cluster", "update-env", "cl-new"}, args...)...)
		if res.code != 0 {
			t.Fatalf("update-env %q: exit %d\n%s", args, res.code, res.stderr)
		}
	}
	res = runCLI(t, addr, "cluster", "update-env", "cl-new")
	if res.code != 1 || !strings.Contains(res.stderr, "give at least one KEY=VALUE") {
		t.Fatalf("no change: exit %d\n%s", res.code, res.stderr)
	}
	res = runCLI(t, addr, "cluster", "update-env", "cl-new", "env.port=1")
	if res.code != 1 {
		t.Fatalf("env. prefix: exit %d", res.code)
	}
	mustContain(t, "stderr", res.stderr, `"env.port=1"`, "port=1")

	res = runCLI(t, addr, "cluster", "delete", "cl-new", "--force")
	if res.code != 0 {
		t.Fatalf("delete: exit %d\n%s", res.code, res.stderr)
	}
	mustContain(t, "delete", res.stdout, "j-delete")
	res = runCLI(t, addr, "cluster", "delete", "cl-gone")
	if res.code != 1 {
		t.Fatalf("delete unknown: exit %d", res.code)
	}
	mustContain(t, "stderr", res.stderr, "not found", "hangar cluster list")

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.updateEnvReqs) != 3 || !maps.Equal(s.updateEnvReqs[0].GetEnv(), map[string]string{"port": "6380", "replica.maxmemory": "256"}) {
		t.Fatalf("update-env requests %v", s.updateEnvReqs)
	}
	for _, r := range s.updateEnvReqs[1:] {
		if !maps.Equal(r.GetEnv(), map[string]string{"-m": "64", "-c": "1"}) {
			t.Errorf("update-env with dashed keys sent %v", r.GetEnv())
		}
	}
	if len(s.deleteReqs) != 2 || !s.deleteReqs[0].GetForce() || s.deleteReqs[0].GetId() != "cl-new" {
		t.Errorf("delete requests %v", s.deleteReqs)
	}
}

func TestClusterListAndShowJSON(t *testing.T) {
	s := newFakeState()
	s.clusters["cl-new"] = deployedCluster()
	addr := startFake(t, s)
	res := runCLI(t, addr, "-o", "json", "cluster", "list")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	var list pilotv1.ListClustersResponse
	if err := protojson.Unmarshal([]byte(res.stdout), &list); err != nil || len(list.GetClusters()) != 1 {
		t.Fatalf("list JSON: %v\n%s", err, res.stdout)
	}
	res = runCLI(t, addr, "cluster", "show", "cl-new")
	mustContain(t, "show", res.stdout, "cl-new (cache)", "kv 1.0.0", "127.1.0.3", "6379")
}

func TestClusterEvents(t *testing.T) {
	s := newFakeState()
	s.clusters["cl-new"] = deployedCluster()
	s.events = map[string][]*pilotv1.ClusterEvent{"cl-new": {
		{Id: "01", ClusterId: "cl-new", Kind: "health", NodeId: "cln-b", Message: "cln-b (role replica): healthy -> unhealthy; check exit 1: refused"},
		{Id: "02", ClusterId: "cl-new", Kind: "node", NodeId: "cln-b", Message: "cln-b (role replica): ACTIVE -> LOST"},
	}}
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "events", "cl-new")
	mustContain(t, "events", res.stdout, "health    cln-b", "healthy -> unhealthy; check exit 1: refused", "node      cln-b", "ACTIVE -> LOST")
	if i, j := strings.Index(res.stdout, "unhealthy"), strings.Index(res.stdout, "LOST"); i < 0 || j < i {
		t.Errorf("events out of order:\n%s", res.stdout)
	}
	res = runCLI(t, addr, "-o", "json", "cluster", "events", "cl-new")
	var list pilotv1.ListClusterEventsResponse
	if err := protojson.Unmarshal([]byte(res.stdout), &list); err != nil || len(list.GetEvents()) != 2 {
		t.Fatalf("events JSON: %v\n%s", err, res.stdout)
	}
	if res = runCLI(t, addr, "cluster", "events", "cl-none"); res.code == 0 || !strings.Contains(res.stderr, "cl-none") {
		t.Errorf("events of a cluster that does not exist: exit %d\n%s", res.code, res.stderr)
	}
	if res = runCLI(t, addr, "cluster", "events", "cl-new", "--limit", "0"); res.code == 0 || !strings.Contains(res.stderr, "--limit 0: give 1 to 1000") {
		t.Errorf("--limit 0: exit %d\n%s", res.code, res.stderr)
	}
	s.events["cl-new"] = nil
	mustContain(t, "no events", runCLI(t, addr, "cluster", "events", "cl-new").stdout, "No events.")
}

func TestGlobalFlagErrors(t *testing.T) {
	addr := startFake(t, newFakeState())
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-o", "yaml", "cluster", "list"}, []string{`"yaml"`, "text, json"}},
		{[]string{"cluster", "frobnicate"}, []string{`unknown command "frobnicate"`, "hangar cluster --help"}},
		{[]string{"cluster", "create"}, []string{"accepts 1 arg"}},
		{[]string{"cluster", "create", "kv", "--no-such-flag"}, []string{"--no-such-flag", "hangar cluster create --help"}},
	}
	for _, tt := range tests {
		res := runCLI(t, addr, tt.args...)
		if res.code != 1 {
			t.Errorf("%v: exit %d, want 1", tt.args, res.code)
		}
		mustContain(t, strings.Join(tt.args, " "), res.stderr, tt.want...)
	}
}

func TestPilotAddressCAAndTokenFromEnvironment(t *testing.T) {
	p := startFake(t, newFakeState())
	e := testEnv(t)
	e.getenv = func(k string) string {
		return map[string]string{envPilotAddr: p.addr, envCA: p.caFile, envToken: p.token}[k]
	}
	res := runCLIEnv(t, e, "runtime", "list")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	mustContain(t, "output", res.stdout, "No runtimes yet")
}

func TestJobWatchGivesUpWhenPilotStaysAway(t *testing.T) {
	e := testEnv(t)
	e.watch.firstContactTimeout = 300 * time.Millisecond
	start := time.Now()
	p := deadPilot(t)
	res := runCLIEnv(t, e, "--pilot", p.addr, "--ca", p.caFile, "job", "watch", "j-1")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", res.code, res.stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("gave up after %s, want about 300ms", took)
	}
	mustContain(t, "stderr", res.stderr, "lost the job's watch stream", "no answer from pilot for 0.3s", "connection refused", "hangar up", "hangar job watch j-1")
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestInterruptedWaitLeavesJobRunning(t *testing.T) {
	s := newFakeState()
	s.watches["j-create"] = [][]*pilotv1.Job{progressingJob("j-create")[:2]}
	s.hang["j-create"] = true
	addr := startFake(t, s)

	var out, errb syncBuffer
	e := testEnv(t)
	e.stdout, e.stderr = &out, &errb
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--pilot", addr.addr, "--ca", addr.caFile, "--token", addr.token, "cluster", "create", "kv", "--wait"}, e)
	}()

	err := pollUntil(context.Background(), 10*time.Millisecond, 10*time.Second, func() (bool, error) {
		return strings.Contains(out.String(), "▸ run instances"), nil
	})
	if err != nil {
		t.Fatalf("progress never showed the running step: %v\n%s", err, out.String())
	}
	cancel() // Ctrl-C
	select {
	case c := <-code:
		if c != exitInterrupted {
			t.Errorf("exit %d, want %d", c, exitInterrupted)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command did not stop after cancel")
	}
	mustContain(t, "stderr", errb.String(), "stopped watching job j-create", "hangar job watch j-create")
	if strings.Contains(out.String(), "Nodes (") {
		t.Errorf("printed a cluster after an interrupted wait:\n%s", out.String())
	}
}

// hangar cluster recovery and autoscale send the policies as the flags
// say, refuse bad flags before calling, and show pilot's refusal.
func TestClusterPolicies(t *testing.T) {
	s := newFakeState()
	s.clusters["cl-new"] = deployedCluster()
	addr := startFake(t, s)
	res := runCLI(t, addr, "cluster", "recovery", "cl-new", "--enable", "--lost-after", "2m", "--max-down-percent", "30")
	mustContain(t, "recovery", res.stdout, "recovery on", "after 120s", "more than 30% and at least 5 down")
	s.mu.Lock()
	got := s.clusters["cl-new"].Recovery
	s.mu.Unlock()
	if !got.GetEnabled() || got.GetLostAfterSec() != 120 || got.GetMaxDownPercent() != 30 || got.GetUnhealthyAfterSec() != 0 {
		t.Errorf("recovery sent %v", got)
	}
	for _, args := range [][]string{
		{"cluster", "recovery", "cl-new"},
		{"cluster", "recovery", "cl-new", "--enable", "--lost-after", "1500ms"},
		{"cluster", "autoscale", "set", "cl-new", "web", "--metric", "cpu", "--target", "50", "--min", "1"},
	} {
		if res := runCLI(t, addr, args...); res.code == 0 {
			t.Errorf("%v: exit 0, want a usage error", args)
		}
	}
	res = runCLI(t, addr, "cluster", "autoscale", "set", "cl-new", "replica", "--metric", "requests", "--target", "50", "--min", "1", "--max", "4", "--window", "30s", "--cooldown", "1m")
	mustContain(t, "autoscale set", res.stdout, "ROLE", "replica", "requests", "50", "30s", "60s")
	s.mu.Lock()
	p := s.clusters["cl-new"].Autoscale[0]
	s.mu.Unlock()
	if p.Role != "replica" || p.Metric != "requests" || p.Target != 50 || p.Min != 1 || p.Max != 4 || p.WindowSec != 30 || p.CooldownSec != 60 {
		t.Errorf("policy sent %v", p)
	}
	res = runCLI(t, addr, "cluster", "autoscale", "set", "cl-new", "replica", "--metric", "bad", "--target", "1", "--min", "1", "--max", "2")
	if res.code == 0 || !strings.Contains(res.stderr, "policy.metric") {
		t.Errorf("a refused policy: exit %d, stderr %q; want pilot's reason", res.code, res.stderr)
	}
	res = runCLI(t, addr, "cluster", "autoscale", "unset", "cl-new", "replica")
	mustContain(t, "autoscale unset", res.stdout, "no longer autoscales")
	res = runCLI(t, addr, "cluster", "autoscale", "list", "cl-new")
	mustContain(t, "autoscale list", res.stdout, "no autoscaling policy")
}
