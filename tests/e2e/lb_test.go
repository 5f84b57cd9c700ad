package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/loadgen"
)

// The load balancer generated from membership (issue 13, examples/web):
// HAProxy on the lb node, its haproxy.cfg rendered by the drone's confd
// from /hosts/web, serves every web node at one address while the
// membership changes under a load that counts every request.

// lbLoad is a load running through the load balancer.
type lbLoad interface {
	stop(t *testing.T) loadgen.Stats
}

// lbRuntime is what differs between runtimes: where the load runs and how
// a node's files are read.
type lbRuntime struct {
	name string
	// params are the create parameters the runtime needs (ports).
	params map[string]string
	// load starts a load on url; probe runs a short one and returns it.
	load  func(t *testing.T, url string) lbLoad
	probe func(t *testing.T, url string) loadgen.Stats
	// readFile reads a file of a node, by its path from the node's root.
	readFile func(n *pilotv1.Node, path string) (string, error)
}

// localLoad runs in the test's process.
type localLoad struct{ run *loadgen.Run }

func (l localLoad) stop(*testing.T) loadgen.Stats { return l.run.Stop() }

// TestLBFromMembership runs examples/web on the local runtime: every web
// node serves through HAProxy's one address; after a scale-out the new
// node takes requests within seconds; a scale-in and a restart of the web
// role fail no request; a parameter whose haproxy.cfg fails `haproxy -c`
// is not applied (the old config serves on, the lb node reports why).
func TestLBFromMembership(t *testing.T) {
	requireTools(t, "HANGAR_REQUIRE_HAPROXY", "haproxy", "socat")
	p := startPilot(t)
	createLocalRuntime(t, p)
	lbScenario(t, p, lbRuntime{
		name: "local",
		params: map[string]string{
			"env.web_port":  freePortNumber(t),
			"env.http_port": freePortNumber(t),
			"env.tcp_port":  freePortNumber(t),
		},
		load: func(t *testing.T, url string) lbLoad {
			return localLoad{loadgen.Start(loadgen.Config{URL: url, Clients: 8})}
		},
		probe: func(t *testing.T, url string) loadgen.Stats {
			run := loadgen.Start(loadgen.Config{URL: url, Clients: 4})
			time.Sleep(300 * time.Millisecond) // the probe's length: a bounded load, not a wait for a condition
			return run.Stop()
		},
		readFile: func(n *pilotv1.Node, path string) (string, error) {
			b, err := os.ReadFile(filepath.Join(p.instanceRoot(n.InstanceId), path))
			return string(b), err
		},
	})
}

// TestDockerLBFromMembership is the same on the docker runtime: the lb
// runs hangar/haproxy:2.6, the web nodes hangar/web:1.0, and the load runs
// inside a web node's container (hangar-web load): the host has no
// address on the cluster's network.
func TestDockerLBFromMembership(t *testing.T) {
	p, _, rt := dockerPilot(t, "web", "haproxy")
	var loadFrom string // the container the load runs in: web node sid 1, which never leaves
	lbScenario(t, p, lbRuntime{
		name:   rt,
		params: map[string]string{},
		load: func(t *testing.T, url string) lbLoad {
			return startExecLoad(t, loadFrom, url, 0)
		},
		probe: func(t *testing.T, url string) loadgen.Stats {
			return startExecLoad(t, loadFrom, url, 300*time.Millisecond).stop(t)
		},
		readFile: func(n *pilotv1.Node, path string) (string, error) {
			if loadFrom == "" && n.Role == "web" && n.Sid == 1 {
				loadFrom = n.InstanceId
			}
			return dockerExec(n.InstanceId, "cat", "/"+path)
		},
	})
}

// execLoad is `hangar-web load` in a container; closing its stdin ends it.
type execLoad struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    bytes.Buffer
	stderr sync.WaitGroup // copying its stderr to the test's
}

// startExecLoad starts the load in container, for d (0: until stop). An
// unbounded one is waited for until it says its first request was
// answered: a docker exec takes a while to start, and a phase must not end
// before its load began.
func startExecLoad(t *testing.T, container, url string, d time.Duration) *execLoad {
	t.Helper()
	if container == "" {
		t.Fatal("no container to run the load in")
	}
	l := &execLoad{}
	l.cmd = exec.Command("docker", "exec", "-i", container, "hangar-web", "load", "--url", url, "--clients", "8", "--duration", d.String())
	l.cmd.Stdout = &l.out
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	errPipe, err := l.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("docker exec hangar-web load: %v", err)
	}
	running := make(chan struct{})
	l.stderr.Add(1)
	go func() {
		defer l.stderr.Done()
		sc := bufio.NewScanner(errPipe)
		said := false
		for sc.Scan() {
			if !said && sc.Text() == "hangar-web load: running" {
				said = true
				close(running)
				continue
			}
			fmt.Fprintln(os.Stderr, sc.Text())
		}
		if !said {
			close(running)
		}
	}()
	if d == 0 {
		select {
		case <-running:
		case <-time.After(30 * time.Second):
			t.Fatalf("hangar-web load in %s: no answered request within 30s", container)
		}
	}
	return l
}

func (l *execLoad) stop(t *testing.T) loadgen.Stats {
	t.Helper()
	l.stdin.Close()
	l.stderr.Wait() // before Wait, which closes the pipe
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("hangar-web load: %v\n%s", err, l.out.String())
	}
	var s loadgen.Stats
	if err := json.Unmarshal(l.out.Bytes(), &s); err != nil {
		t.Fatalf("hangar-web load printed %q: %v", l.out.String(), err)
	}
	return s
}

// lbScenario is the load-balancer test on one runtime.
func lbScenario(t *testing.T, p *pilot, rt lbRuntime) {
	p.mustHangar("app", "push", "examples/web")
	params := map[string]string{
		"cluster.web.count":     "2",
		"env.context_path":      "/web",
		"env.check_interval_ms": "500",
	}
	for k, v := range rt.params {
		params[k] = v
	}
	c, job := createClusterOn(t, p, rt.name, "web", params)
	mustSucceed(t, job)
	lb := byRole(c, "lb")[0]
	for _, n := range c.Nodes { // the docker variant picks its load's container here
		_, _ = rt.readFile(n, "opt/web/web.conf")
	}
	httpPort, tcpPort := c.Params["env.http_port"], c.Params["env.tcp_port"]
	if httpPort == "" {
		httpPort, tcpPort = "8000", "8001"
	}
	url := fmt.Sprintf("http://%s:%s/web/", lb.Address, httpPort)
	tcpURL := fmt.Sprintf("http://%s:%s/", lb.Address, tcpPort)
	webIDs := func() []string { return nodeIDs(byRole(p.cluster(c.Id), "web")) }
	cfg := func() string {
		s, err := rt.readFile(lb, "opt/lb/haproxy.cfg")
		if err != nil {
			t.Fatalf("read haproxy.cfg of %s: %v", lb.Id, err)
		}
		return s
	}
	servesAll := func(url string, ids []string) func() (bool, string) {
		return func() (bool, string) {
			s := rt.probe(t, url)
			for _, id := range ids {
				if s.ByBackend[id] == 0 {
					return false, s.String()
				}
			}
			return true, ""
		}
	}
	noFailures := func(phase string, s loadgen.Stats) {
		t.Helper()
		t.Logf("%s: %s", phase, s)
		if s.Failures > 0 {
			t.Errorf("%s: %d of %d requests failed: %v", phase, s.Failures, s.Requests, s.Errors)
		}
		if s.Requests == 0 {
			t.Errorf("%s: the load made no request", phase)
		}
	}

	// Every web node serves through HAProxy, HTTP (under the context
	// path) and TCP; outside the context path is a 404.
	ids := webIDs()
	waitFor(t, time.Minute, "every web node behind the HTTP frontend", servesAll(url, ids))
	waitFor(t, time.Minute, "every web node behind the TCP frontend", servesAll(tcpURL, ids))
	if s := rt.probe(t, fmt.Sprintf("http://%s:%s/elsewhere", lb.Address, httpPort)); s.Failures == 0 || !strings.Contains(fmt.Sprint(s.Errors), "404") {
		t.Errorf("outside the context path: %s, want 404s", s)
	}
	load := rt.load(t, url)
	waitFor(t, 30*time.Second, "the steady load to reach every node", servesAll(url, ids))
	noFailures("steady, 2 web nodes", load.stop(t))

	// Scale-out: the new node takes requests within seconds of the job.
	load = rt.load(t, url)
	began := time.Now()
	p.mustHangar("cluster", "scale", c.Id, "--role", "web", "--count", "3", "--wait")
	jobEnded := time.Now()
	grown := webIDs()
	var added string
	for _, id := range grown {
		if !slices.Contains(ids, id) {
			added = id
		}
	}
	if added == "" || len(grown) != 3 {
		t.Fatalf("after the scale-out: web nodes %v (were %v)", grown, ids)
	}
	if !strings.Contains(cfg(), "server "+added+" ") {
		t.Errorf("haproxy.cfg has no server %s after the scale-out:\n%s", added, cfg())
	}
	waitFor(t, time.Minute, "the new node to take requests", servesAll(url, []string{added}))
	s := load.stop(t)
	noFailures("scale-out 2 -> 3", s)
	if first, ok := s.FirstSeen[added]; ok {
		t.Logf("scale-out: the new node %s took its first request %.1f s after the scale-out began, %.1f s after its job ended (the job took %.1f s)",
			added, first.Sub(began).Seconds(), first.Sub(jobEnded).Seconds(), jobEnded.Sub(began).Seconds())
	} else {
		t.Errorf("the load never reached the new node %s: %s", added, s)
	}

	// Scale-in: the leaving node is drained from HAProxy (the lb renders
	// deleting-hosts and reloads) before its stop; no request fails.
	load = rt.load(t, url)
	out := p.mustHangar("cluster", "scale", c.Id, "--role", "web", "--count", "2", "--wait")
	s = load.stop(t)
	noFailures("scale-in 3 -> 2", s)
	left := webIDs()
	var removed string
	for _, id := range grown {
		if !slices.Contains(left, id) {
			removed = id
		}
	}
	if removed == "" || len(left) != 2 {
		t.Fatalf("after the scale-in: web nodes %v (were %v)\n%s", left, grown, out)
	}
	if strings.Contains(cfg(), "server "+removed+" ") {
		t.Errorf("haproxy.cfg still has the removed node %s:\n%s", removed, cfg())
	}
	t.Logf("scale-in: node %s left; its last share of the load: %d requests", removed, s.ByBackend[removed])
	// The drain is ordered by the job: the staying nodes (the lb) have
	// rendered deleting-hosts, and reloaded, before the leaving node stops.
	j, err := p.jobs.GetJob(context.Background(), &pilotv1.GetJobRequest{Id: p.cluster(c.Id).JobId})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, task := range j.Tasks {
		steps = append(steps, task.Id)
	}
	rendered, stopped := slices.Index(steps, "rendered-deleting"), slices.IndexFunc(steps, func(id string) bool { return strings.HasPrefix(id, "stop") })
	if j.Kind != "scale_in" || rendered < 0 || stopped < rendered {
		t.Errorf("scale-in job %s (%s): steps %v, want rendered-deleting before stop", j.Id, j.Kind, steps)
	}

	// A timeout_connect HAProxy refuses: the update fails on the lb node,
	// the old config keeps serving, and the node says why.
	before := cfg()
	load = rt.load(t, url)
	out, err = p.hangar("cluster", "update-env", c.Id, "timeout_connect=5parsecs", "--wait")
	if err == nil {
		t.Errorf("update-env with a config haproxy -c refuses succeeded:\n%s", out)
	}
	waitFor(t, 30*time.Second, "the steady load to reach every node after the refused config", servesAll(url, left))
	noFailures("refused config", load.stop(t))
	if got := cfg(); got != before {
		t.Errorf("haproxy.cfg changed although haproxy -c refused it:\n%s", got)
	}
	var renderErr string
	for _, n := range p.cluster(c.Id).Nodes {
		if n.Id == lb.Id {
			renderErr = n.RenderError
		} else if n.RenderError != "" {
			t.Errorf("node %s (role %s) has a render error: %s", n.Id, n.Role, n.RenderError)
		}
	}
	if !strings.Contains(renderErr, "check_cmd refused the output") || !strings.Contains(renderErr, "timeout connect") {
		t.Errorf("lb node %s render error = %q, want check_cmd's refusal with haproxy's reason", lb.Id, renderErr)
	}
	show := p.mustHangar("cluster", "show", c.Id)
	if !strings.Contains(show, lb.Id+": render of revision") {
		t.Errorf("cluster show does not report the lb's failed render:\n%s", show)
	}
	t.Logf("the refused config, as update-env and cluster show report it:\n%s\n%s", grepLines(out, "check_cmd refused", 3), grepLines(show, "render of revision", 3))

	// A good value applies, by a seamless reload, and clears the error:
	// a cluster whose env update failed takes the corrected one.
	load = rt.load(t, url)
	p.mustHangar("cluster", "update-env", c.Id, "timeout_connect=3s", "--wait")
	noFailures("update to a valid config", load.stop(t))
	if got := cfg(); !strings.Contains(got, "timeout connect 3s") {
		t.Errorf("haproxy.cfg after the valid update:\n%s", got)
	}
	for _, n := range p.cluster(c.Id).Nodes {
		if n.RenderError != "" {
			t.Errorf("node %s still reports a render error: %s", n.Id, n.RenderError)
		}
	}

	// A restart of the web role (each node hands its port to a new
	// process, then the old one drains): no request fails.
	pids := map[string]string{}
	for _, n := range byRole(p.cluster(c.Id), "web") {
		pids[n.Id], _ = rt.readFile(n, "var/run/web/web.pid")
	}
	load = rt.load(t, url)
	p.mustHangar("cluster", "restart", c.Id, "--role", "web", "--wait")
	noFailures("restart of the web role", load.stop(t))
	for _, n := range byRole(p.cluster(c.Id), "web") {
		if now, _ := rt.readFile(n, "var/run/web/web.pid"); now == pids[n.Id] || now == "" {
			t.Errorf("web node %s: pid %q after the restart, was %q", n.Id, now, pids[n.Id])
		}
	}
}

// grepLines returns up to n lines of s that contain sub.
func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
