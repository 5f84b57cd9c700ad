package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// BenchmarkScaleOutRestart10 scales a role of a real cluster on the local
// runtime from 1 to 11 nodes, scales it in to 10, and restarts those 10,
// and prints each job's steps with their times from the job itself. Each
// figure is reported beside a floor measured in the same run, and their
// ratio:
//
//   - scale-out floor: 10 drone processes started directly (drone --help,
//     in parallel), then the job's own command lines run directly with
//     sh -c, step after step as the job's dependencies order them, the
//     nodes of a step in parallel;
//   - scale-in and restart floors: the job's command lines run the same
//     way (for the restart: the 10 restart commands at once).
//
// The op's time is the job's, from its first step's start to its last
// step's end (not the CLI's wall time).
//
//	go test -run '^$' -bench BenchmarkScaleOutRestart10 -benchtime 1x ./tests/e2e/
func BenchmarkScaleOutRestart10(b *testing.B) {
	p := startPilot(b)
	createLocalRuntime(b, p)
	p.mustHangar("app", "push", "tests/e2e/testdata/"+crashApp)
	newCrashTraces(b, p)
	floorRoot := filepath.Join(b.TempDir(), "floor")
	ctx := context.Background()
	var out, outFloor, in, inFloor, restart, restartFloor time.Duration
	for b.Loop() {
		c, job := createCluster(b, p, crashApp, map[string]string{"cluster.member.count": "1"})
		mustSucceed(b, job)

		j := benchJob(b, p, "scale-out 1 → 11", func() (*pilotv1.ClusterJob, error) {
			return p.clusters.ScaleCluster(ctx, &pilotv1.ScaleClusterRequest{Id: c.Id, Role: "member", Count: 11})
		})
		out += jobSpan(j)
		outFloor += commandFloor(b, p, j, floorRoot, 10)

		j = benchJob(b, p, "scale-in 11 → 10", func() (*pilotv1.ClusterJob, error) {
			return p.clusters.ScaleCluster(ctx, &pilotv1.ScaleClusterRequest{Id: c.Id, Role: "member", Count: 10})
		})
		in += jobSpan(j)
		inFloor += commandFloor(b, p, j, floorRoot, 0)

		j = benchJob(b, p, "restart of 10 members", func() (*pilotv1.ClusterJob, error) {
			return p.clusters.RestartCluster(ctx, &pilotv1.RestartClusterRequest{Id: c.Id, Roles: []string{"member"}})
		})
		restart += jobSpan(j)
		restartFloor += commandFloor(b, p, j, floorRoot, 0)

		r, err := p.clusters.DeleteCluster(ctx, &pilotv1.DeleteClusterRequest{Id: c.Id})
		if err != nil {
			b.Fatal(err)
		}
		mustSucceed(b, p.waitJob(ctx, r.Job.Id))
	}
	report := func(name string, op, floor time.Duration) {
		b.ReportMetric(float64(op.Milliseconds())/float64(b.N), name+"-ms/op")
		b.ReportMetric(float64(floor.Milliseconds())/float64(b.N), name+"-floor-ms/op")
		b.ReportMetric(float64(op)/float64(floor), name+"-ratio")
		b.Logf("%-10s %8v   floor %8v   ratio %.1f", name, (op / time.Duration(b.N)).Round(time.Millisecond),
			(floor / time.Duration(b.N)).Round(time.Millisecond), float64(op)/float64(floor))
	}
	report("scaleout", out, outFloor)
	report("scalein", in, inFloor)
	report("restart", restart, restartFloor)
}

// benchJob starts a job, waits for it to succeed, and logs its steps.
func benchJob(b *testing.B, p *pilot, what string, start func() (*pilotv1.ClusterJob, error)) *pilotv1.Job {
	b.Helper()
	r, err := start()
	if err != nil {
		b.Fatalf("%s: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mustSucceed(b, p.waitJob(ctx, r.Job.Id))
	j, err := p.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: r.Job.Id})
	if err != nil {
		b.Fatal(err)
	}
	first := jobStart(j)
	var lines []string
	for _, task := range j.Tasks {
		if task.StartedAt == nil || task.FinishedAt == nil {
			continue
		}
		s, f := task.StartedAt.AsTime(), task.FinishedAt.AsTime()
		lines = append(lines, fmt.Sprintf("  +%6dms %6dms  %s (%d nodes)", s.Sub(first).Milliseconds(), f.Sub(s).Milliseconds(), task.Title, len(task.NodeResults)))
	}
	b.Logf("%s: job %s took %v\n%s", what, j.Id, jobSpan(j).Round(time.Millisecond), strings.Join(lines, "\n"))
	return j
}

func jobStart(j *pilotv1.Job) time.Time {
	var first time.Time
	for _, task := range j.Tasks {
		if task.StartedAt != nil && (first.IsZero() || task.StartedAt.AsTime().Before(first)) {
			first = task.StartedAt.AsTime()
		}
	}
	return first
}

// jobSpan is a job's time: its first step's start to its last step's end.
func jobSpan(j *pilotv1.Job) time.Duration {
	var last time.Time
	for _, task := range j.Tasks {
		if task.FinishedAt != nil && task.FinishedAt.AsTime().After(last) {
			last = task.FinishedAt.AsTime()
		}
	}
	return last.Sub(jobStart(j))
}

// commandFloor runs what the job cannot avoid, directly: drones drone
// processes started at once, then the job's command lines with sh -c,
// wave after wave of its dependency graph, every node of a wave at once.
// The commands write their traces under root, not into the cluster.
func commandFloor(b *testing.B, p *pilot, j *pilotv1.Job, root string, drones int) time.Duration {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(root, "traces"), 0o755); err != nil {
		b.Fatal(err)
	}
	instRoot := filepath.Join(root, "instances", "i-floor", "root")
	if err := os.MkdirAll(instRoot, 0o755); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "HANGAR_ROOT="+instRoot, "HANGAR_INSTANCE_ID=i-floor")
	level := map[string]int{}
	var levelOf func(t *pilotv1.Task) int
	byID := map[string]*pilotv1.Task{}
	for _, task := range j.Tasks {
		byID[task.Id] = task
	}
	levelOf = func(t *pilotv1.Task) int {
		if l, ok := level[t.Id]; ok {
			return l
		}
		l := 0
		for _, d := range t.DependsOn {
			if dt := byID[d]; dt != nil {
				l = max(l, levelOf(dt)+1)
			}
		}
		level[t.Id] = l
		return l
	}
	waves := map[int][]string{}
	for _, task := range j.Tasks {
		for _, nr := range task.NodeResults {
			l := levelOf(task)
			waves[l] = append(waves[l], nr.Cmd)
		}
	}
	var keys []int
	for l := range waves {
		keys = append(keys, l)
	}
	sort.Ints(keys)

	run := func(name string, args ...string) {
		c := exec.Command(name, args...)
		c.Env, c.Dir = env, instRoot
		if out, err := c.CombinedOutput(); err != nil {
			b.Errorf("floor: %s %v: %v\n%s", name, args, err, out)
		}
	}
	parallel := func(n int, f func(i int)) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { f(i) })
		}
		wg.Wait()
	}
	t0 := time.Now()
	parallel(drones, func(int) { run(filepath.Join(p.bin, "drone"), "--help") })
	for _, l := range keys {
		cmds := waves[l]
		parallel(len(cmds), func(i int) { run("/bin/sh", "-c", cmds[i]) })
	}
	return time.Since(t0)
}
