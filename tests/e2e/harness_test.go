// Package e2e runs Hangar's real binaries as separate processes — pilot, the
// local provider plugin, frontgates and drones — and checks what a user
// would: clusters come up in the declared order, configs render, changes
// propagate, failures are reported with the node's exit code and output,
// and deletes leave nothing behind.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		// Every test deletes what it created; an agent still running from
		// the binaries built here is a leak (of that test, or of a delete).
		if left := agentsOf(binDir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "processes left running from %s after the tests: %v\n", binDir, left)
			for _, pid := range left {
				cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
				fmt.Fprintf(os.Stderr, "  %s: %s\n", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
				if n, err := strconv.Atoi(pid); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
			code = 1
		}
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// repoRoot finds the module root from this test's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// binaries builds every command once per test binary run.
func binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hangar-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		// Local instances run as users of their own (pilot runs as root
		// in CI) and run the agents from here.
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// freePort finds a port for a listener of a process the test starts (and
// may restart on the same port). It is taken below the kernel's ephemeral
// range when it can: a port from that range, once freed, can be taken
// again by any bind to port 0 (another pilot's etcd) or any outgoing
// connection before the process binds it, and a pilot restarted after a
// crash would then fail with "address already in use".
func freePort(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const first = 10000
	for range 100 {
		if low-first < 1000 {
			break
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+mrand.IntN(low-first)))
		if err != nil {
			continue
		}
		defer l.Close()
		return l.Addr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pilot is a running pilot process and clients of its API.
type pilot struct {
	t        testing.TB
	bin      string
	dataDir  string
	addr     string
	httpAddr string
	token    string
	logPath  string
	args     []string // extra flags, after the harness's own
	cmd      *exec.Cmd
	conn     *grpc.ClientConn
	apps     pilotv1.AppServiceClient
	runtimes pilotv1.RuntimeServiceClient
	clusters pilotv1.ClusterServiceClient
	jobs     pilotv1.JobServiceClient
}

// startPilot starts pilot with the harness's flags and args.
func startPilot(t testing.TB, args ...string) *pilot {
	t.Helper()
	return startPilotAt(t, freePort(t), args...)
}

// startPilotAt starts pilot listening on addr (host:port).
func startPilotAt(t testing.TB, addr string, args ...string) *pilot {
	t.Helper()
	bin := binaries(t)
	p := &pilot{t: t, bin: bin, dataDir: t.TempDir(), addr: addr, httpAddr: freePort(t), args: args}
	// The local runtime's instances live next to pilot's data dir and run
	// as users of their own, who must traverse the test's temporary dir
	// (created 0700).
	if err := os.Chmod(filepath.Dir(p.dataDir), 0o711); err != nil {
		t.Fatal(err)
	}
	p.logPath = filepath.Join(p.dataDir, "pilot.log")
	p.start()
	// Pilot writes its CA and the first admin's token on first start.
	waitFor(t, 60*time.Second, "pilot to write its CA and admin token", func() (bool, string) {
		_, e1 := os.Stat(p.caPath())
		_, e2 := os.Stat(p.tokenPath())
		return e1 == nil && e2 == nil, fmt.Sprint(e1, e2)
	})
	tok, err := os.ReadFile(p.tokenPath())
	if err != nil {
		t.Fatal(err)
	}
	p.token = strings.TrimSpace(string(tok))
	tlsCfg, err := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(bearer(p.token)))
	if err != nil {
		t.Fatal(err)
	}
	p.conn = conn
	p.apps = pilotv1.NewAppServiceClient(conn)
	p.runtimes = pilotv1.NewRuntimeServiceClient(conn)
	p.clusters = pilotv1.NewClusterServiceClient(conn)
	p.jobs = pilotv1.NewJobServiceClient(conn)
	waitFor(t, 60*time.Second, "pilot to answer", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := p.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(func() {
		p.cleanupClusters()
		p.stop()
		conn.Close()
		if t.Failed() {
			p.dumpLogs()
		}
	})
	return p
}

func (p *pilot) start() {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(filepath.Join(p.bin, "pilot"), append([]string{"--data-dir", filepath.Join(p.dataDir, "pilot"),
		"--listen", p.addr, "--http-listen", p.httpAddr, "--log-format", "json"}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pilot) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// kill ends pilot abruptly, as a crash would.
func (p *pilot) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// cleanupClusters deletes what a failed test left, so no process outlives it.
func (p *pilot) cleanupClusters() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	if err != nil {
		return
	}
	for _, c := range list.Clusters {
		// A job the test left running makes the cluster busy until it
		// ends; retry until then.
		for ctx.Err() == nil {
			r, err := p.clusters.DeleteCluster(ctx, &pilotv1.DeleteClusterRequest{Id: c.Id, Force: true})
			if err == nil {
				p.waitJob(ctx, r.Job.Id)
				break
			}
			if status.Code(err) != codes.FailedPrecondition {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (p *pilot) dumpLogs() {
	b, _ := os.ReadFile(p.logPath)
	p.t.Logf("pilot log (last 8 KiB):\n%s", tail(string(b), 8192))
	_ = filepath.Walk(filepath.Dir(p.runtimeRoot()), func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "agent.log" {
			b, _ := os.ReadFile(path)
			p.t.Logf("%s (last 4 KiB):\n%s", path, tail(string(b), 4096))
		}
		return nil
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *pilot) caPath() string    { return filepath.Join(p.dataDir, "pilot", "ca", "ca.crt") }
func (p *pilot) tokenPath() string { return filepath.Join(p.dataDir, "pilot", "admin.token") }

func (p *pilot) caPEM() []byte {
	b, err := os.ReadFile(p.caPath())
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// ca is pilot's CA, read from its data dir: tests use it to make the
// certificates an attacker (or an operator) would hold.
func (p *pilot) ca() *pki.CA {
	ca, err := pki.LoadOrCreateCA(filepath.Join(p.dataDir, "pilot", "ca"))
	if err != nil {
		p.t.Fatal(err)
	}
	return ca
}

// bearer sends an API token with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// hangar runs the CLI against this pilot.
func (p *pilot) hangar(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(p.bin, "hangar"), append([]string{"--pilot", p.addr, "--ca", p.caPath(), "--token", p.token}, args...)...)
	cmd.Dir = repoRoot(p.t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (p *pilot) mustHangar(args ...string) string {
	p.t.Helper()
	out, err := p.hangar(args...)
	if err != nil {
		p.t.Fatalf("hangar %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *pilot) waitJob(ctx context.Context, id string) *pilotv1.Job {
	st, err := p.jobs.WatchJob(ctx, &pilotv1.WatchJobRequest{Id: id})
	if err != nil {
		p.t.Fatalf("watch job %s: %v", id, err)
	}
	var last *pilotv1.Job
	for {
		j, err := st.Recv()
		if err != nil {
			break
		}
		last = j
	}
	if last == nil || !terminal(last.State) {
		// The stream may have ended early (pilot restart): read it directly.
		j, err := p.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: id})
		if err != nil {
			p.t.Fatalf("get job %s: %v", id, err)
		}
		last = j
	}
	return last
}

func terminal(s pilotv1.JobState) bool {
	return s == pilotv1.JobState_JOB_STATE_SUCCEEDED || s == pilotv1.JobState_JOB_STATE_FAILED || s == pilotv1.JobState_JOB_STATE_CANCELLED
}

func (p *pilot) cluster(id string) *pilotv1.Cluster {
	p.t.Helper()
	c, err := p.clusters.GetCluster(context.Background(), &pilotv1.GetClusterRequest{Id: id})
	if err != nil {
		p.t.Fatalf("get cluster %s: %v", id, err)
	}
	return c
}

// runtimeRoot is where the local provider keeps this pilot's instances:
// the root_dir of runtime "local" as pilot recorded it (by default next to
// pilot's data dir).
func (p *pilot) runtimeRoot() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rt, err := p.runtimes.GetRuntime(ctx, &pilotv1.GetRuntimeRequest{Id: "local"}); err == nil && rt.Config["root_dir"] != "" {
		return rt.Config["root_dir"]
	}
	return filepath.Join(p.dataDir, "pilot-runtimes", "default", "local")
}

func (p *pilot) instanceRoot(instanceID string) string {
	return filepath.Join(p.runtimeRoot(), "instances", instanceID, "root")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processesOf lists pids whose environment names one of the instances.
func processesOf(instanceIDs ...string) []string {
	want := map[string]bool{}
	for _, id := range instanceIDs {
		want["HANGAR_INSTANCE_ID="+id] = true
	}
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
			if i := bytes.IndexByte(data, 0); i >= 0 {
				return i + 1, data[:i], nil
			}
			if atEOF && len(data) > 0 {
				return len(data), data, nil
			}
			return 0, nil, nil
		})
		for sc.Scan() {
			if want[sc.Text()] {
				pids = append(pids, e.Name())
				break
			}
		}
	}
	return pids
}

// agentsOf lists pids of processes whose executable is in dir.
func agentsOf(dir string) []string {
	var pids []string
	for _, name := range []string{"drone", "frontgate", "hangar-kv", "hangar-provider-local", "pilot"} {
		pids = append(pids, processesRunning(filepath.Join(dir, name))...)
	}
	return pids
}

// processesRunning lists pids whose command line starts with exe.
func processesRunning(exe string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if arg0, _, _ := bytes.Cut(b, []byte{0}); string(arg0) == exe {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
