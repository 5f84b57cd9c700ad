package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/drone/render"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
)

// BenchmarkScalePropagation changes one value of a cluster's metadata
// (the fleet app's env "stamp", by update-env) and takes, for every drone,
// the time from the start of the job's metadata write until its rendered
// /etc/fleet/stamp changed (the file's mtime), at 100 and 1,000 drones on
// sim (50 quick). The floor: one etcd put plus the time of N single
// renders of the drone's renderer (same template, a tree of N hosts)
// spread over this machine's cores. The peer: N confd processes
// (abtreece/confd, the version go.mod names) watching the same key of an
// etcd holding the same-sized tree and rendering the same template.
func BenchmarkScalePropagation(b *testing.B) {
	sizes := []int{100, 1000}
	if benchQuick() {
		sizes = []int{50}
	}
	rounds := sized(3, 2)
	p := startPilot(b)
	root := createSimRuntime(b, p, nil)
	p.mustHangar("app", "push", fleetApp)
	confd, confdErr := confdBinary(b)
	lat := map[int][]time.Duration{}
	register := map[int][]float64{}
	for b.Loop() {
		for _, n := range sizes {
			c, job := createClusterOn(b, p, "sim", "fleet", map[string]string{"cluster.node.count": fmt.Sprint(n)})
			mustSucceed(b, job)
			for r := range rounds {
				l, reg := propagate(b, p, root, c, fmt.Sprintf("s-%d-%d", n, r))
				lat[n], register[n] = append(lat[n], l...), append(register[n], reg)
			}
			deleteClusters(b, p, []string{c.Id})
		}
	}
	var rows []benchRow
	detail := map[string]any{"rounds": rounds}
	for _, n := range sizes {
		floor, put, single := propagationFloor(b, n)
		detail[fmt.Sprintf("n%d", n)] = map[string]any{"register_seconds": register[n], "put_seconds": put.Seconds(), "single_render_seconds": single.Seconds()}
		// The targets: p99 within 100 ms up to 100 drones, within 2× the
		// floor beyond.
		p99 := row(fmt.Sprintf("propagation to %d drones p99", n), percentile(lat[n], 99).Seconds(), "floor", floor.Seconds(), "s", 2)
		if n <= 100 {
			p99 = row(p99.Metric, p99.Hangar, p99.Against, p99.Other, "s", 0).withTarget(0.1)
		}
		rows = append(rows, row(fmt.Sprintf("propagation to %d drones p50", n), percentile(lat[n], 50).Seconds(), "floor", floor.Seconds(), "s", 0), p99)
		if confdErr != nil {
			detail[fmt.Sprintf("confd_n%d", n)] = confdErr.Error()
			continue
		}
		peer, err := confdPeer(b, confd, n, rounds)
		if err != nil {
			detail[fmt.Sprintf("confd_n%d", n)] = err.Error()
			continue
		}
		rows = append(rows, row(fmt.Sprintf("propagation to %d drones p99", n), percentile(lat[n], 99).Seconds(), fmt.Sprintf("%d confd processes p99", n), percentile(peer, 99).Seconds(), "s", 1))
	}
	reportBench(b, "propagation", rows, detail)
}

// propagate sets env stamp on c and returns each drone's time from the
// start of the job's metadata write to its file's change, and that
// write's own time.
func propagate(b *testing.B, p *pilot, root string, c *pilotv1.Cluster, stamp string) ([]time.Duration, float64) {
	b.Helper()
	ctx := context.Background()
	r, err := p.clusters.UpdateClusterEnv(ctx, &pilotv1.UpdateClusterEnvRequest{Id: c.Id, Env: map[string]string{"stamp": stamp}})
	if err != nil {
		b.Fatal(err)
	}
	job := p.waitJob(ctx, r.Job.Id)
	mustSucceed(b, job)
	var start time.Time
	var register float64
	for _, t := range job.Tasks {
		if t.Id == "register" && t.StartedAt != nil && t.FinishedAt != nil {
			start = t.StartedAt.AsTime()
			register = t.FinishedAt.AsTime().Sub(start).Seconds()
		}
	}
	if start.IsZero() {
		b.Fatalf("update-env job %s has no finished register task", job.Id)
	}
	lat := make([]time.Duration, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		path := filepath.Join(root, "instances", n.InstanceId, "root", "etc", "fleet", "stamp")
		got, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(got), stamp) {
			b.Fatalf("node %s: %s is %q (%v) after the job, want stamp %s", n.Id, path, got, err, stamp)
		}
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, max(0, fi.ModTime().Sub(start)))
	}
	return lat, register
}

// treeOf is a cluster tree of n hosts shaped like pilot's (17 keys per
// host) and env stamp.
func treeOf(n int, stamp string) map[string]string {
	kvs := map[string]string{"env/stamp": stamp, "cluster/cluster_id": "cl-bench"}
	fields := []string{"instance_id", "ip", "role", "sid", "gid", "cpu", "memory", "gpu", "volume_size", "instance_class", "gpu_class", "volume_class", "status", "zone", "mac", "hostname"}
	for i := range n {
		p := fmt.Sprintf("hosts/node/i-%06d/", i)
		kvs[p+"node_id"] = fmt.Sprintf("cln-%06d", i)
		for _, f := range fields {
			kvs[p+f] = fmt.Sprintf("%s-%d", f, i)
		}
	}
	return kvs
}

func putTree(b *testing.B, c *clientv3.Client, prefix string, kvs map[string]string) {
	b.Helper()
	var ops []clientv3.Op
	for k, v := range kvs {
		ops = append(ops, clientv3.OpPut(prefix+k, v))
		if len(ops) == 100 {
			if _, err := c.Txn(context.Background()).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if _, err := c.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		b.Fatal(err)
	}
}

// propagationFloor is one etcd put (the median of 20) plus N single
// renders of the drone's renderer over a tree of n hosts (the median of
// 20), spread over the machine's cores.
func propagationFloor(b *testing.B, n int) (floor, put, single time.Duration) {
	b.Helper()
	c := etcdtest.Client(b)
	putTree(b, c, "/clusters/floor/", treeOf(n, "s-0"))
	view, err := metaview.New(metaview.Config{Client: c, ClusterID: "floor", NodeID: "cln-000000"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := render.New(ctx, render.Config{DataDir: b.TempDir(), RootDir: b.TempDir(), View: view})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	files := map[string][]byte{}
	confdDir := filepath.Join(repoRoot(b), fleetApp, "confd")
	if err := filepath.WalkDir(confdDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(confdDir, path)
		files[filepath.ToSlash(rel)] = data
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if err := r.Configure(ctx, files, nil); err != nil {
		b.Fatal(err)
	}
	var puts, renders []time.Duration
	for i := range 20 {
		start := time.Now()
		if _, err := c.Put(ctx, "/clusters/floor/env/stamp", fmt.Sprint("s-", i+1)); err != nil {
			b.Fatal(err)
		}
		puts = append(puts, time.Since(start))
		start = time.Now()
		if err := r.Render(ctx); err != nil {
			b.Fatal(err)
		}
		renders = append(renders, time.Since(start))
	}
	put, single = percentile(puts, 50), percentile(renders, 50)
	return put + time.Duration(n)*single/time.Duration(runtime.NumCPU()), put, single
}

// confdBinary builds confd at the version go.mod names, once per machine
// (kept in the user's cache dir), or says why it cannot. bench/run builds
// it before the benchmarks enter their network namespace, which has no
// route to the module proxy.
func confdBinary(b *testing.B) (string, error) {
	if p := os.Getenv("HANGAR_BENCH_CONFD"); p != "" {
		return p, nil
	}
	out, err := exec.Command(filepath.Join(repoRoot(b), "bench", "confd")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("confd not built (bench/confd): %v: %s", err, tail(string(out), 300))
	}
	return strings.TrimSpace(string(out)), nil
}

// confdPeer runs n confd processes against an etcd holding a tree of n
// hosts, each watching env/stamp and rendering the fleet template into a
// file of its own, and returns each one's time from a put of the key to
// its file's change, over rounds puts.
func confdPeer(b *testing.B, bin string, n, rounds int) ([]time.Duration, error) {
	b.Helper()
	// Each confd is a Go process of its own (about 15 MB resident).
	if avail := memAvailableMiB(); avail < int64(n)*25 {
		return nil, fmt.Errorf("not run: %d confd processes need about %d MiB and %d MiB are available", n, n*25, avail)
	}
	c := etcdtest.Client(b)
	putTree(b, c, "/clusters/peer/", treeOf(n, "s-0"))
	endpoint := c.Endpoints()[0]
	dir := b.TempDir()
	tmpl, err := os.ReadFile(filepath.Join(repoRoot(b), fleetApp, "confd", "templates", "stamp.tmpl"))
	if err != nil {
		return nil, err
	}
	dests := make([]string, n)
	procs := make([]*exec.Cmd, 0, n)
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	for i := range n {
		cd := filepath.Join(dir, fmt.Sprint(i))
		dests[i] = filepath.Join(cd, "stamp")
		for name, data := range map[string]string{
			"conf.d/stamp.toml":    fmt.Sprintf("[template]\nsrc = \"stamp.tmpl\"\ndest = %q\nkeys = [\"/env/stamp\"]\n", dests[i]),
			"templates/stamp.tmpl": string(tmpl),
		} {
			if err := os.MkdirAll(filepath.Join(cd, filepath.Dir(name)), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(cd, name), []byte(data), 0o644); err != nil {
				return nil, err
			}
		}
		cmd := exec.Command(bin, "-backend", "etcd", "-node", endpoint, "-prefix", "/clusters/peer", "-watch", "-confdir", cd, "-log-level", "error")
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start confd %d: %w", i, err)
		}
		procs = append(procs, cmd)
	}
	all := func(stamp string) bool {
		for _, d := range dests {
			if got, err := os.ReadFile(d); err != nil || !strings.Contains(string(got), stamp) {
				return false
			}
		}
		return true
	}
	waitFor(b, 5*time.Minute, fmt.Sprintf("%d confd processes to render", n), func() (bool, string) { return all("s-0"), "" })
	var lat []time.Duration
	for r := range rounds {
		stamp := fmt.Sprint("s-", r+1)
		start := time.Now()
		if _, err := c.Put(context.Background(), "/clusters/peer/env/stamp", stamp); err != nil {
			return nil, err
		}
		waitFor(b, 5*time.Minute, "confd to render "+stamp, func() (bool, string) { return all(stamp), "" })
		for _, d := range dests {
			fi, err := os.Stat(d)
			if err != nil {
				return nil, err
			}
			lat = append(lat, max(0, fi.ModTime().Sub(start)))
		}
	}
	return lat, nil
}

// memAvailableMiB is the kernel's estimate of memory available for new
// processes.
func memAvailableMiB() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb >> 10
		}
	}
	return 0
}
