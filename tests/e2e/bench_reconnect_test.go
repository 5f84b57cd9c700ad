package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/api/providerv1"
)

// BenchmarkScaleReconnect restarts pilot with N drones behind F frontgates
// on sim (2,000 behind 20; 200 behind 4 quick; HANGAR_BENCH_RECONNECT=N/F
// sets them, e.g. 10000/100) and measures, from the restarted pilot's
// start: until every frontgate is connected again, until every node
// answers a command (the fleet app's ping on every cluster at once), and
// the peak number of frontgates connecting in one second, against all F
// at once (what the frontgates' jittered backoff keeps lower). The
// instances live in a sim cloud, a process of its own, so that they
// outlive pilot's restart (and its plugin's) as a cloud's machines do.
// The drones stay connected to their frontgates throughout: only the F
// frontgates dial pilot again. One cloud holds at most 2,500 drones, each
// of which holds about five descriptors, as machines here may open 20,000
// files a process: N is spread over as many clouds as that takes.
//
// Then liveness among them: one drone's machine is powered off (the
// cloud's StopInstance, called as pilot's plugin would) and the time until
// pilot shows its node lost is measured with the other N-1 connected.
func BenchmarkScaleReconnect(b *testing.B) {
	n, f := sized(2000, 200), sized(20, 4)
	if v := os.Getenv("HANGAR_BENCH_RECONNECT"); v != "" {
		if _, err := fmt.Sscanf(v, "%d/%d", &n, &f); err != nil || n < f || f < 1 {
			b.Fatalf("HANGAR_BENCH_RECONNECT=%q: want DRONES/FRONTGATES, e.g. 10000/100", v)
		}
	}
	clouds := make([]simCloud, (n+perCloud-1)/perCloud)
	if f%len(clouds) != 0 || n%f != 0 {
		b.Fatalf("%d drones behind %d frontgates in %d clouds: want the frontgates a multiple of the clouds and the drones of the frontgates", n, f, len(clouds))
	}
	for i := range clouds {
		clouds[i] = startSimCloud(b)
	}
	p := startPilot(b)
	b.Cleanup(func() { p.keepLog(b, "pilot-reconnect.log") })
	p.mustHangar("app", "push", fleetApp)
	var frontgatesBack, nodesBack, apiBack, detection time.Duration
	var perSecond []int
	var cloudMiB float64
	for b.Loop() {
		var ids []string
		cloudMiB = 0
		for i, c := range clouds {
			ids = append(ids, fleetClusters(b, p, fmt.Sprintf("rc%d", i), f/len(clouds), n/len(clouds), map[string]string{"cloud_socket": c.path})...)
		}
		for i, c := range clouds {
			cloudMiB += settledMiB(b, strconv.Itoa(c.pid))
			c.saveHeap(b, fmt.Sprintf("sim-cloud-heap-%d", i))
		}
		from := p.logSize(b)
		p.stop()
		start := time.Now()
		p.start()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		waitFor(b, time.Minute, "the restarted pilot to answer", func() (bool, string) {
			_, err := p.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
			return err == nil, fmt.Sprint(err)
		})
		apiBack = time.Since(start)
		var connects []time.Time
		waitFor(b, 5*time.Minute, "every frontgate to connect to the restarted pilot", func() (bool, string) {
			connects = p.frontgateConnects(b, from)
			return len(connects) >= f, fmt.Sprintf("%d of %d", len(connects), f)
		})
		frontgatesBack = connects[len(connects)-1].Sub(start)
		perSecond = perSecondCounts(connects)
		// Every node answering a command through its frontgate.
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := p.clusters.RunClusterService(ctx, &pilotv1.RunClusterServiceRequest{Id: id, Service: "ping"})
				if err != nil {
					b.Errorf("ping %s: %v", id, err)
					return
				}
				j := p.waitJob(ctx, r.Job.Id)
				if j.State != pilotv1.JobState_JOB_STATE_SUCCEEDED {
					b.Errorf("ping %s after the restart: %s %s", id, j.State, j.Error)
				}
			}()
		}
		wg.Wait()
		nodesBack = time.Since(start)
		if b.Failed() {
			b.FailNow()
		}
		detection = powerOffOne(ctx, b, p, clouds[0], "rc0-1", ids[0])
		cancel()
		deleteClusters(b, p, ids)
	}
	peak := 0
	for _, c := range perSecond {
		peak = max(peak, c)
	}
	rows := []benchRow{
		row(fmt.Sprintf("%d frontgates connected again", f), frontgatesBack.Seconds(), "Salt, ~1,000 minions back (published)", 60, "s", 0).withTarget(30),
		row(fmt.Sprintf("%d nodes answering a command", n), nodesBack.Seconds(), "pilot's API answering", apiBack.Seconds(), "s", 0).withTarget(30),
		row("peak frontgate connections in one second", float64(peak), "all at once", float64(f), "/s", 0),
		row(fmt.Sprintf("a drone powered off → node lost, %d drones up", n-1), detection.Seconds(), "BOSH (published)", 60, "s", 0).withTarget(10),
		row("sim cloud RSS per drone (drone + frontgate share)", cloudMiB*1024/float64(n), "target per frontgate drone", 50, "KiB", 0),
	}
	reportBench(b, "reconnect", rows, map[string]any{"drones": n, "frontgates": f, "clouds": len(clouds), "connections_per_second": perSecond,
		"api_seconds": apiBack.Seconds(), "cloud_mib": cloudMiB})
}

// powerOffOne stops the machine of one node of cluster on runtime through
// the sim cloud and returns how long pilot took to show the node lost.
func powerOffOne(ctx context.Context, b *testing.B, p *pilot, sock simCloud, runtime, cluster string) time.Duration {
	b.Helper()
	rt, err := p.runtimes.GetRuntime(ctx, &pilotv1.GetRuntimeRequest{Id: runtime})
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+sock.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	nd := p.cluster(cluster).Nodes[0]
	waitFor(b, time.Minute, "the cluster to be active", func() (bool, string) {
		c := p.cluster(cluster)
		return c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, c.Status.String()
	})
	prov := providerv1.NewProviderClient(conn)
	prt := &providerv1.Runtime{Id: rt.Id, Zone: rt.Zone, Config: rt.Config}
	off := time.Now()
	if _, err := prov.StopInstance(ctx, &providerv1.StopInstanceRequest{Runtime: prt, InstanceId: nd.InstanceId}); err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	for took == 0 {
		for _, got := range p.cluster(cluster).Nodes {
			if got.Id == nd.Id && got.Status == pilotv1.NodeStatus_NODE_STATUS_LOST {
				took = time.Since(off)
			}
		}
		if time.Since(off) > time.Minute {
			b.Fatalf("node %s not shown lost a minute after its machine stopped", nd.Id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Power it on again, so that the cluster is whole for its delete.
	if _, err := prov.StartInstance(ctx, &providerv1.StartInstanceRequest{Runtime: prt, InstanceId: nd.InstanceId}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 2*time.Minute, "the node back and the cluster active", func() (bool, string) {
		c := p.cluster(cluster)
		return c.Status == pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, c.Status.String()
	})
	return took
}

// perCloud is the most drones the reconnect benchmark puts in one sim
// cloud (sim.RaiseFileLimit).
const perCloud = 2500

// simCloud is a running `hangar-provider-sim cloud`.
type simCloud struct {
	path  string
	pprof string // its --pprof-socket
	pid   int
}

// saveHeap keeps the cloud's heap profile as $HANGAR_BENCH_DIR/name.pb.gz
// (for go tool pprof: the drones' and frontgates' allocations apart by
// their stacks), when that dir is set.
func (c simCloud) saveHeap(b *testing.B, name string) {
	dir := os.Getenv("HANGAR_BENCH_DIR")
	if dir == "" {
		return
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", c.pprof)
		}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://sim/debug/pprof/heap")
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		if body, err = io.ReadAll(resp.Body); err == nil {
			err = os.WriteFile(filepath.Join(dir, name+".pb.gz"), body, 0o644)
		}
	}
	if err != nil {
		b.Logf("sim cloud heap profile not kept: %v", err)
	}
}

// startSimCloud runs a sim cloud until the benchmark ends, logging to a
// file beside the test's.
func startSimCloud(b *testing.B) simCloud {
	b.Helper()
	dir := b.TempDir()
	sock := filepath.Join(dir, "cloud.sock")
	logf, err := os.Create(filepath.Join(dir, "cloud.log"))
	if err != nil {
		b.Fatal(err)
	}
	pprofSock := filepath.Join(dir, "pprof.sock")
	cmd := exec.Command(filepath.Join(binaries(b), "hangar-provider-sim"), "cloud", "--socket", sock, "--pprof-socket", pprofSock, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	logf.Close()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	waitFor(b, 30*time.Second, "the sim cloud to serve its socket", func() (bool, string) {
		_, err := os.Stat(sock)
		return err == nil, fmt.Sprint(err)
	})
	return simCloud{path: sock, pprof: pprofSock, pid: cmd.Process.Pid}
}

// logSize is the length of pilot's log: where a restart's lines begin.
func (p *pilot) logSize(b *testing.B) int64 {
	fi, err := os.Stat(p.logPath)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// keepLog copies pilot's log to $HANGAR_BENCH_DIR/name, when that dir is
// set.
func (p *pilot) keepLog(b *testing.B, name string) {
	dir := os.Getenv("HANGAR_BENCH_DIR")
	if dir == "" {
		return
	}
	body, err := os.ReadFile(p.logPath)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), body, 0o644)
	}
	if err != nil {
		b.Logf("pilot log not kept: %v", err)
	}
}

// frontgateConnects reads pilot's log from offset and returns when each
// frontgate first connected, in order.
func (p *pilot) frontgateConnects(b *testing.B, offset int64) []time.Time {
	fh, err := os.Open(p.logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, 0); err != nil {
		b.Fatal(err)
	}
	seen := map[string]bool{}
	var out []time.Time
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time        time.Time `json:"time"`
			Msg         string    `json:"msg"`
			FrontgateID string    `json:"frontgate_id"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "frontgate connected" || seen[l.FrontgateID] {
			continue
		}
		seen[l.FrontgateID] = true
		out = append(out, l.Time)
	}
	return out
}

// perSecondCounts counts ts (in order) per second from the first.
func perSecondCounts(ts []time.Time) []int {
	if len(ts) == 0 {
		return nil
	}
	counts := make([]int, int(ts[len(ts)-1].Sub(ts[0])/time.Second)+1)
	for _, t := range ts {
		counts[int(t.Sub(ts[0])/time.Second)]++
	}
	return counts
}
