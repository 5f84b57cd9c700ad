package e2e

// Attacks on pilot's API surface: the REST gateway, the gRPC API, the
// frontgate link and /metrics, each against the real binaries.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// rssGrowthBound is how much pilot's resident memory may grow while it
// refuses an attack: far below the sizes the attacks send.
const rssGrowthBound = 64 << 20

// rss is pilot's resident set size, from /proc.
func (p *pilot) rss() int64 {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatalf("read pilot's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				p.t.Fatalf("pilot's VmRSS %q: %v", line, err)
			}
			return kb << 10
		}
	}
	p.t.Fatal("pilot's /proc status has no VmRSS")
	return 0
}

// checkRSS fails the test when pilot grew by more than rssGrowthBound since
// before.
func (p *pilot) checkRSS(t *testing.T, what string, before int64) {
	t.Helper()
	now := p.rss()
	t.Logf("%s: pilot's memory %d MiB, %+d MiB", what, now>>20, (now-before)>>20)
	if grew := now - before; grew > rssGrowthBound {
		t.Errorf("%s: pilot's memory grew by %d MiB (from %d MiB), over the %d MiB bound", what, grew>>20, before>>20, rssGrowthBound>>20)
	}
}

// archiveBody generates, without holding it, the JSON of a PushApp whose
// archive takes size bytes of base64: what a client uploading a huge
// package sends.
type archiveBody struct {
	size, sent int64
}

const archivePrefix, archiveSuffix = `{"archive":"`, `"}`

func (b *archiveBody) total() int64 {
	return int64(len(archivePrefix)) + b.size + int64(len(archiveSuffix))
}

func (b *archiveBody) Read(p []byte) (int, error) {
	pre := int64(len(archivePrefix))
	n := 0
	for n < len(p) && b.sent < b.total() {
		var k int
		switch i := b.sent; {
		case i < pre:
			k = copy(p[n:], archivePrefix[i:])
		case i < pre+b.size:
			k = int(min(int64(len(p)-n), pre+b.size-i))
			for j := range k {
				p[n+j] = 'A'
			}
		default:
			k = copy(p[n:], archiveSuffix[i-pre-b.size:])
		}
		n += k
		b.sent += int64(k)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// postHuge POSTs a PushApp of size bytes to /v1/apps on its own connection,
// streaming the body while it reads the answer, so an answer that comes
// before the body is done is seen as it is. chunked sends no
// Content-Length.
func (p *pilot) postHuge(t *testing.T, token string, size int64, chunked bool) (int, string) {
	t.Helper()
	cfg, err := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", p.httpAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := &archiveBody{size: size}
	wrote := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		fmt.Fprintf(w, "POST /v1/apps HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", p.httpAddr)
		if token != "" {
			fmt.Fprintf(w, "Authorization: Bearer %s\r\n", token)
		}
		if chunked {
			fmt.Fprint(w, "Transfer-Encoding: chunked\r\n\r\n")
		} else {
			fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", body.total())
		}
		buf := make([]byte, 32<<10)
		for {
			n, rerr := body.Read(buf)
			if n > 0 {
				if chunked {
					fmt.Fprintf(w, "%x\r\n", n)
				}
				if _, err := w.Write(buf[:n]); err != nil {
					wrote <- err // pilot closed the connection: expected after a refusal
					return
				}
				if chunked {
					fmt.Fprint(w, "\r\n")
				}
			}
			if rerr != nil {
				break
			}
		}
		if chunked {
			fmt.Fprint(w, "0\r\n\r\n")
		}
		wrote <- w.Flush()
	}()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("POST of %d MiB: no answer: %v", size>>20, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	conn.Close() // stops the writer if pilot has not
	<-wrote
	return resp.StatusCode, string(b)
}

// gatewayError is the REST gateway's error body.
type gatewayError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func errorMessage(body string) string {
	var e gatewayError
	_ = json.Unmarshal([]byte(body), &e)
	return e.Message
}

// The gRPC API's refusal of a missing token, which the REST gateway must
// give in the same words.
const unauthenticatedMsg = "missing or invalid API token; pass --token or set HANGAR_TOKEN"

// TestAttackUnauthenticatedLargeBody uploads 200 MB to the REST gateway
// without a token: pilot must refuse it (401) without reading it, rather
// than buffer it (it grew by ~850 MB and answered 429). With a token, a
// body over the cap is refused (413) without pilot holding it either. The
// gRPC API refuses a caller without a token before reading its message.
func TestAttackUnauthenticatedLargeBody(t *testing.T) {
	p := startPilot(t)
	const huge = 200 << 20
	base := p.rss()

	for _, chunked := range []bool{false, true} {
		code, body := p.postHuge(t, "", huge, chunked)
		if code != http.StatusUnauthorized || errorMessage(body) != unauthenticatedMsg {
			t.Errorf("200 MB without a token (chunked: %v): %d %s, want 401 %q", chunked, code, body, unauthenticatedMsg)
		}
		p.checkRSS(t, fmt.Sprintf("200 MB without a token (chunked: %v)", chunked), base)
	}
	code, body := p.postHuge(t, "hgt_"+strings.Repeat("A", 43), huge, false)
	if code != http.StatusUnauthorized || errorMessage(body) != unauthenticatedMsg {
		t.Errorf("200 MB with an unknown token: %d %s, want 401", code, body)
	}
	p.checkRSS(t, "200 MB with an unknown token", base)

	for _, chunked := range []bool{false, true} {
		code, body := p.postHuge(t, p.token, huge, chunked)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(errorMessage(body), "-byte limit of pilot's REST API") {
			t.Errorf("200 MB with a token (chunked: %v): %d %s, want 413 naming the limit", chunked, code, body)
		}
		p.checkRSS(t, fmt.Sprintf("200 MB with a token (chunked: %v)", chunked), base)
	}

	// The gRPC API: a caller without a token is refused before its
	// message is read; any message is bounded by the receive limit.
	cfg, _ := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := &pilotv1.PushAppRequest{Archive: make([]byte, 48<<20)}
	if _, err := pilotv1.NewAppServiceClient(conn).PushApp(ctx, big); status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != unauthenticatedMsg {
		t.Errorf("gRPC PushApp of 48 MiB without a token: %v, want Unauthenticated", err)
	}
	octx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer hgt_"+strings.Repeat("A", 43))
	if _, err := pilotv1.NewAppServiceClient(conn).PushApp(octx, big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC PushApp of 48 MiB with a well-formed unknown token: %v, want ResourceExhausted (the receive limit)", err)
	}
	p.checkRSS(t, "48 MiB gRPC messages", base)
}

// TestAttackHugeRoleCount asks for a million and for ten thousand nodes of
// one role with a package whose config.json sets no bound: pilot must
// refuse both naming the parameter and its own limit, store nothing, and
// not grow (a million took 630 MB before failing; ten thousand was
// accepted and planned).
func TestAttackHugeRoleCount(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	dir := unboundedKV(t)
	p.mustHangar("app", "push", dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := p.rss()
	for _, tc := range []struct{ count, want string }{
		{"1000000", "cluster.replica.count: 1000000 nodes; this pilot allows at most 1000 nodes in one cluster (pilot --max-cluster-nodes)"},
		{"10000", "cluster.replica.count: 10000 nodes; this pilot allows at most 1000"},
		{"1000", "cluster.primary.count 1 + cluster.replica.count 1000: 1001 nodes in all; this pilot allows at most 1000"},
	} {
		r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", Runtime: "local", Params: map[string]string{"cluster.replica.count": tc.count}})
		if err == nil {
			t.Errorf("cluster.replica.count=%s: accepted, %d nodes; want InvalidArgument saying %q", tc.count, len(r.Cluster.Nodes), tc.want)
			// Stop it before it starts thousands of instances; the
			// harness's cleanup deletes what it started.
			if _, err := p.jobs.CancelJob(ctx, &pilotv1.CancelJobRequest{Id: r.Job.Id}); err == nil {
				p.waitJob(ctx, r.Job.Id)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cluster.replica.count=%s: %v, want InvalidArgument saying %q", tc.count, err, tc.want)
		}
	}
	// The CLI says the same.
	out, err := p.hangar("cluster", "create", "kv", "--param", "cluster.replica.count=1000000")
	if err == nil || !strings.Contains(out, "cluster.replica.count") || !strings.Contains(out, "at most 1000") {
		t.Errorf("hangar cluster create with a million replicas: %v\n%s", err, tail(out, 2000))
	}
	p.checkRSS(t, "refusing huge counts", base)
	cl, err := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	if err != nil || len(cl.Clusters) != 0 {
		t.Errorf("clusters after the refusals: %d (%v); want none", len(cl.GetClusters()), err)
	}
	js, err := p.jobs.ListJobs(ctx, &pilotv1.ListJobsRequest{})
	if err != nil || len(js.Jobs) != 0 {
		t.Errorf("jobs after the refusals: %d (%v); want none", len(js.GetJobs()), err)
	}
}

// unboundedKV is examples/kv without config.json's bound on the replica
// count: what an attacker pushes to ask for any number of nodes.
func unboundedKV(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "examples", "kv")
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "config.json" {
			if !bytes.Contains(b, []byte(`"max": 9,`)) {
				return fmt.Errorf("examples/kv/config.json no longer bounds the replica count with \"max\": 9")
			}
			b = bytes.Replace(b, []byte(`"max": 9,`), []byte(`"max": 100000000,`), 1)
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// frontgatesConnected reads hangar_pilot_frontgates_connected.
func (p *pilot) frontgatesConnected() (string, error) {
	m, err := p.restGet("/metrics")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(l, "hangar_pilot_frontgates_connected "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no hangar_pilot_frontgates_connected in /metrics")
}

// TestAttackSecondFrontgateStream opens a second FrontgateLink stream with
// a running frontgate's own certificate and closes it again. Pilot used to
// keep the frontgate's real stream open but, once the second one ended,
// count the frontgate as gone: jobs waited for it until pilot restarted.
// Now the second stream replaces the first (which is cut, telling the
// frontgate why), the frontgate reconnects, and work goes on.
func TestAttackSecondFrontgateStream(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	first, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	if n, err := p.frontgatesConnected(); n != "1" {
		t.Fatalf("frontgates connected before the attack: %q (%v), want 1", n, err)
	}
	fgInstance, fgUD := frontgateInstance(t, p)
	creds, err := tlsutil.Load(filepath.Join(p.instanceDir(fgInstance), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	replaced := func() int {
		b, _ := os.ReadFile(p.logPath)
		return strings.Count(string(b), "replacing its previous stream")
	}
	before := replaced()

	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig("127.0.0.1", pki.Identity{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := streamrpc.SendHello(st, &streamv1.Hello{Component: "frontgate", Id: fgUD.FrontgateID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "pilot to take the second stream", func() (bool, string) {
		return replaced() > before, "no replacement in pilot's log"
	})
	scancel()
	conn.Close()

	// The frontgate's stream was cut, telling it why, and it came back
	// (its second "connected to pilot"): pilot counts it connected.
	fgLog := filepath.Join(p.instanceDir(fgInstance), "agent.log")
	waitFor(t, 60*time.Second, "the frontgate to reconnect and pilot to count it connected", func() (bool, string) {
		b, _ := os.ReadFile(fgLog)
		n, err := p.frontgatesConnected()
		return strings.Count(string(b), `"msg":"connected to pilot"`) >= 2 && n == "1", fmt.Sprintf("frontgates connected: %s (%v)", n, err)
	})
	if b, _ := os.ReadFile(fgLog); !strings.Contains(string(b), "replaced by a newer stream") {
		t.Errorf("the frontgate was not told why its stream was cut; its log ends:\n%s", tail(string(b), 1500))
	}

	// Work through the frontgate goes on, without restarting pilot.
	second, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	for _, c := range []*pilotv1.Cluster{second, first} {
		out, err := p.hangar("cluster", "delete", c.Id, "--wait")
		if err != nil {
			t.Fatalf("delete %s after the attack: %v\n%s", c.Id, err, out)
		}
	}
}

// TestAttackInvalidUTF8Path sends paths whose percent-encoding decodes to
// bytes that are not UTF-8: each is a 400 naming the field, not a 500 from
// gRPC's marshalling.
func TestAttackInvalidUTF8Path(t *testing.T) {
	p := startPilot(t)
	for _, tc := range []struct{ method, path, field string }{
		{http.MethodGet, "/v1/clusters/%ff%fe", "id"},
		{http.MethodDelete, "/v1/clusters/%ff%fe", "id"},
		{http.MethodGet, "/v1/apps/%c3%28", "name"},
		{http.MethodGet, "/v1/jobs/%ff", "id"},
		{http.MethodGet, "/v1/jobs/%ff/watch", "id"},
		{http.MethodGet, "/v1/jobs?cluster_id=%ff", "cluster_id"},
	} {
		code, body, err := p.rest(tc.method, tc.path, p.token, nil)
		want := tc.field + ": not valid UTF-8"
		if err != nil || code != http.StatusBadRequest || !strings.Contains(errorMessage(body), want) {
			t.Errorf("%s %s: %d %s (%v), want 400 saying %q", tc.method, tc.path, code, body, err, want)
		}
	}
}

// TestAttackRevocationBadID revokes ids that cannot exist: a 400 naming
// the field and what it allows, not a 503 telling the caller to retry.
func TestAttackRevocationBadID(t *testing.T) {
	p := startPilot(t)
	for _, tc := range []struct{ body, want string }{
		{`{"kind":"frontgate","id":"../../etc/passwd"}`, `id "../../etc/passwd": 1 to 128 letters, digits, '.', '_' and '-'`},
		{`{"kind":"drone","id":"cln 1"}`, `id "cln 1"`},
		{`{"kind":"frontgate","id":""}`, "id: required"},
		{`{"kind":"drone","id":"` + strings.Repeat("n", 200) + `"}`, "1 to 128"},
		{`{"kind":"pilot","id":"pilot"}`, `kind "pilot": want frontgate or drone`},
	} {
		code, body, err := p.rest(http.MethodPost, "/v1/revocations", p.token, strings.NewReader(tc.body))
		if err != nil || code != http.StatusBadRequest || !strings.Contains(errorMessage(body), tc.want) {
			t.Errorf("POST /v1/revocations %s: %d %s (%v), want 400 saying %q", tc.body, code, body, err, tc.want)
		}
	}
	if body, err := p.restGet("/v1/revocations"); err != nil || strings.Contains(body, `"kind"`) {
		t.Errorf("revocations after the refusals: %s (%v), want none", body, err)
	}
}

// TestAttackMetricsForTenantViewer reads /metrics, which counts every
// tenant's jobs and frontgates, as users of another tenant: refused (403).
// The platform's admins read it, and so does a scraper holding the token
// of pilot --metrics-token-file. /debug/pprof/ is for the admins alone.
func TestAttackMetricsForTenantViewer(t *testing.T) {
	p := startPilot(t)
	viewer := createUser(t, p, "vic", "viewer", "acme")
	tenantAdmin := createUser(t, p, "ada", "admin", "acme")
	platformViewer := createUser(t, p, "intern", "viewer", "default")
	for _, tc := range []struct {
		who, token string
		code       int
	}{
		{"a viewer of another tenant", viewer, http.StatusForbidden},
		{"an admin of another tenant", tenantAdmin, http.StatusForbidden},
		{"a viewer of the platform's tenant", platformViewer, http.StatusForbidden},
		{"nobody", "", http.StatusUnauthorized},
		{"the platform admin", p.token, http.StatusOK},
	} {
		code, body, err := p.rest(http.MethodGet, "/metrics", tc.token, nil)
		if err != nil || code != tc.code {
			t.Errorf("/metrics as %s: %d (%v), want %d", tc.who, code, err, tc.code)
		}
		if leaks := strings.Contains(body, "hangar_pilot_jobs") || strings.Contains(body, "hangar_pilot_frontgates_connected"); leaks != (tc.code == http.StatusOK) {
			t.Errorf("/metrics as %s shows the platform's metrics: %v", tc.who, leaks)
		}
		// Profiles are the platform admins' alone, like the metrics.
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			code, body, err := p.rest(http.MethodGet, path, tc.token, nil)
			if err != nil || code != tc.code {
				t.Errorf("%s as %s: %d (%v), want %d", path, tc.who, code, err, tc.code)
			}
			if shown := strings.Contains(body, "goroutine") || strings.Contains(body, "pilot"); path != "/debug/pprof/heap" && shown != (tc.code == http.StatusOK) {
				t.Errorf("%s as %s shows the profile: %v", path, tc.who, shown)
			}
		}
	}

	// A scrape credential, held in a file only pilot's user may read.
	const scrapeToken = "scrape-0123456789abcdef0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(tokenFile, []byte(scrapeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startPilot(t, "--metrics-token-file", tokenFile)
	for _, tc := range []struct {
		who, token string
		code       int
	}{
		{"the scrape token", scrapeToken, http.StatusOK},
		{"a near miss of it", scrapeToken[:len(scrapeToken)-1] + "0", http.StatusUnauthorized},
		{"the platform admin", s.token, http.StatusOK},
	} {
		code, body, err := s.rest(http.MethodGet, "/metrics", tc.token, nil)
		if err != nil || code != tc.code || (code == http.StatusOK) != strings.Contains(body, "hangar_pilot_frontgates_connected") {
			t.Errorf("/metrics with %s: %d (%v), want %d", tc.who, code, err, tc.code)
		}
	}
	// The scrape token opens nothing else.
	for _, path := range []string{"/v1/clusters", "/debug/pprof/heap"} {
		if code, _, _ := s.rest(http.MethodGet, path, scrapeToken, nil); code != http.StatusUnauthorized {
			t.Errorf("%s with the scrape token: %d, want 401", path, code)
		}
	}

	// A token file others may read is refused at start, naming the flag.
	if err := os.Chmod(tokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binaries(t), "pilot"), "--data-dir", t.TempDir(), "--listen", freePort(t), "--http-listen", freePort(t),
		"--metrics-token-file", tokenFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--metrics-token-file") || !strings.Contains(string(out), "chmod 600") {
		t.Errorf("pilot with a world-readable metrics token file: %v\n%s\nwant it refused naming the flag", err, out)
	}
}

// createUser creates a user with the CLI, as the platform admin, and
// returns its token.
func createUser(t *testing.T, p *pilot, name, role, tenant string) string {
	t.Helper()
	out := p.mustHangar("user", "create", name, "--role", role, "--tenant", tenant, "-o", "json")
	var r struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Token == "" {
		t.Fatalf("hangar user create %s -o json: %v\n%s", name, err, out)
	}
	return r.Token
}
