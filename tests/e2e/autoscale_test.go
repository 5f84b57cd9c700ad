package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// TestAutoscaleKV: a policy on kv's replicas keeps its requests per second
// per replica near a target. A load above it scales the role out within
// window + cooldown, up to max; when the load stops the role scales back to
// min; a load that comes and goes faster than the window starts (almost)
// no job. On the local runtime.
func TestAutoscaleKV(t *testing.T) {
	p := startPilot(t, "--autoscale-interval", "1s")
	createLocalRuntime(t, p)
	autoscaleScenario(t, p, "local", func(ctx context.Context, _ *pilotv1.Cluster) load {
		g := &loadGen{}
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait) // after the scenario's ctx ends
		wg.Add(1)
		go func() { defer wg.Done(); g.run(ctx, 90) }()
		return g
	})
}

// TestDockerAutoscaleKV is the same on the docker runtime. The host is not
// on a cluster's network (docs/docker.md), so the load comes from inside:
// a shell loop in the primary's container, as fast as busybox's wget goes.
func TestDockerAutoscaleKV(t *testing.T) {
	p, _, rt := dockerPilotWith(t, []string{"kv"}, []string{"--autoscale-interval", "1s"})
	autoscaleScenario(t, p, rt, func(ctx context.Context, c *pilotv1.Cluster) load {
		return newContainerLoad(t, byRole(c, "primary")[0].InstanceId)
	})
}

// load is a load generator on a cluster's replicas.
type load interface {
	setAddrs(addrs []string)
	setOn(on bool)
}

// containerLoad loops GETs from inside a container while /tmp/load-on
// exists, over the addresses in /tmp/load-addrs.
type containerLoad struct {
	t         *testing.T
	container string
}

func newContainerLoad(t *testing.T, container string) *containerLoad {
	l := &containerLoad{t: t, container: container}
	script := `while :; do if [ -e /tmp/load-on ]; then for a in $(cat /tmp/load-addrs 2>/dev/null); do wget -q -O /dev/null "http://$a:6380/kv/load" 2>/dev/null; done; fi; sleep 0.02; done`
	if out, err := exec.Command("docker", "exec", "-d", container, "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("start the load loop in %s: %v: %s", container, err, out)
	}
	return l
}

func (l *containerLoad) setAddrs(addrs []string) {
	if out, err := dockerExec(l.container, "sh", "-c", "echo '"+strings.Join(addrs, " ")+"' > /tmp/load-addrs"); err != nil {
		l.t.Fatalf("set the load's addresses: %v: %s", err, out)
	}
}

func (l *containerLoad) setOn(on bool) {
	cmd := "rm -f /tmp/load-on"
	if on {
		cmd = "touch /tmp/load-on"
	}
	if out, err := dockerExec(l.container, "sh", "-c", cmd); err != nil {
		l.t.Fatalf("turn the load on/off: %v: %s", err, out)
	}
}

// loadGen sends GETs to the replicas of a kv cluster at a total rate
// spread over them (as a load balancer would), while on.
type loadGen struct {
	on    atomic.Bool
	mu    sync.Mutex
	addrs []string
}

func (g *loadGen) setAddrs(addrs []string) { g.mu.Lock(); g.addrs = addrs; g.mu.Unlock() }
func (g *loadGen) setOn(on bool)           { g.on.Store(on) }

func (g *loadGen) run(ctx context.Context, perSecond int) {
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		addrs := g.addrs
		g.mu.Unlock()
		if !g.on.Load() || len(addrs) == 0 {
			continue
		}
		resp, err := c.Get("http://" + addrs[i%len(addrs)] + ":6380/kv/load")
		if err == nil {
			resp.Body.Close()
		}
	}
}

func autoscaleScenario(t *testing.T, p *pilot, runtime string, newLoad func(context.Context, *pilotv1.Cluster) load) {
	p.mustHangar("app", "push", metricsKV(t))
	c, job := createClusterOn(t, p, runtime, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	const window, cooldown = 5 * time.Second, 5 * time.Second
	p.mustHangar("cluster", "autoscale", "set", c.Id, "replica", "--metric", "requests", "--target", "20",
		"--min", "1", "--max", "3", "--window", window.String(), "--cooldown", cooldown.String())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newLoad(ctx, c)
	replicas := func() int {
		got := p.cluster(c.Id)
		var addrs []string
		for _, nd := range byRole(got, "replica") {
			if nd.Address != "" && nd.Status == pilotv1.NodeStatus_NODE_STATUS_ACTIVE {
				addrs = append(addrs, nd.Address)
			}
		}
		g.setAddrs(addrs)
		return len(byRole(got, "replica"))
	}
	replicas()

	// 90 requests a second over the replicas, target 20 a replica: out
	// to 2 (45 each), then 3 (30 each), the max.
	g.setOn(true)
	loaded := time.Now()
	var first time.Duration
	waitFor(t, 2*time.Minute, "three replicas", func() (bool, string) {
		n := replicas()
		if n > 1 && first == 0 {
			first = time.Since(loaded)
		}
		return n == 3, lastLines(p.mustHangar("cluster", "events", c.Id), 2)
	})
	t.Logf("load on: first scale-out done %.1f s after the load began (window %s + cooldown %s), max (3) after %.1f s",
		first.Seconds(), window, cooldown, time.Since(loaded).Seconds())
	if first > window+cooldown+20*time.Second {
		t.Errorf("the first scale-out took %s, want about window + cooldown (%s) plus the job", first, window+cooldown)
	}

	// The load stops: back to min.
	g.setOn(false)
	stopped := time.Now()
	waitFor(t, 3*time.Minute, "back to one replica", func() (bool, string) {
		return replicas() == 1, lastLines(p.mustHangar("cluster", "events", c.Id), 2)
	})
	t.Logf("load off: back to min (1) after %.1f s", time.Since(stopped).Seconds())

	// A load that comes and goes faster than the window: 3 s on, 3 s off,
	// window 5 s, for 45 s.
	before := scaleJobs(p, c.Id)
	if before < 4 {
		// Two out, two in so far: a count that misses them would make
		// the bound below hold whatever happened.
		t.Fatalf("scaleJobs counted %d scale jobs so far, want 4:\n%s", before, p.mustHangar("cluster", "events", c.Id, "--limit", "1000"))
	}
	flapEnd := time.Now().Add(45 * time.Second)
	for on := true; time.Now().Before(flapEnd); on = !on {
		g.setOn(on)
		waitUntil(ctx, 3*time.Second)
		replicas()
	}
	g.setOn(false)
	jobs := scaleJobs(p, c.Id) - before
	t.Logf("45 s of load alternating every 3 s (window %s): %d scale jobs", window, jobs)
	if jobs > 1 {
		t.Errorf("%d scale jobs under a load that alternates faster than the window, want at most 1:\n%s", jobs, p.mustHangar("cluster", "events", c.Id, "--limit", "1000"))
	}
	// It saw the load and said why it did not act on it.
	if evs := p.mustHangar("cluster", "events", c.Id, "--limit", "1000"); !strings.Contains(evs, "but not over the whole") {
		t.Errorf("no event says the alternating load was seen and not acted on:\n%s", evs)
	}
	out := p.mustHangar("cluster", "autoscale", "list", c.Id)
	if !strings.Contains(out, "requests") || !strings.Contains(out, "replica") {
		t.Errorf("autoscale list:\n%s", out)
	}
}

// scaleJobs counts the scale jobs the autoscaler started on the cluster.
func scaleJobs(p *pilot, clusterID string) int {
	evs := p.mustHangar("cluster", "events", clusterID, "--limit", "1000")
	n := 0
	for _, line := range strings.Split(evs, "\n") {
		decided := strings.Contains(line, ": scale out ") || strings.Contains(line, ": scale in ")
		if strings.Contains(line, "autoscale") && decided && strings.Contains(line, ": job ") {
			n++
		}
	}
	return n
}

// waitUntil waits d or until ctx ends: the load's rhythm, not a wait on
// a condition.
func waitUntil(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
