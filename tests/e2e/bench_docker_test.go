package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// densityCount is how many instances of one image the density benchmark
// runs on this host, as the many-services-per-host method does.
const densityCount = 50

// BenchmarkDockerDensity creates a cluster of 50 instances of the drone's
// own image (hangar/drone-base) on the docker runtime and measures the
// time from the create call until every drone is connected and has run
// the role's init and start (the create job succeeded), and the memory of
// each instance (its container's cgroup: the drone as init, the drone,
// nothing else), once idle. Beside them, the floor measured in the same
// run: 50 containers of the same image through the same Engine API
// (create and start, one after the other, as pilot's instance task does),
// with a no-op entrypoint (busybox sleep), and their memory. It prints
// the table and writes it as JSON to $HANGAR_BENCH_OUT (default: a
// temporary file, named in the table).
//
//	go test -run '^$' -bench BenchmarkDockerDensity -benchtime 1x -timeout 30m ./tests/e2e/
func BenchmarkDockerDensity(b *testing.B) {
	p, dc, rt := dockerPilot(b)
	p.mustHangar("app", "push", "tests/e2e/testdata/density")
	ctx := context.Background()

	// The floor: docker run of the same image with a no-op entrypoint.
	floorStart := time.Now()
	var floorIDs []string
	for i := range densityCount {
		name := fmt.Sprintf("hangar-density-floor-%d-%d", os.Getpid(), i)
		r, err := dc.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{
			Image: "hangar/drone-base:latest", Entrypoint: []string{"/bin/sleep", "3600"}, Labels: map[string]string{"hangar.bench": "density-floor"},
		}, HostConfig: &container.HostConfig{NetworkMode: "none", Init: boolPtr(false)}})
		if err != nil {
			b.Fatal(err)
		}
		floorIDs = append(floorIDs, r.ID)
		b.Cleanup(func() {
			_, _ = dc.ContainerRemove(context.Background(), r.ID, client.ContainerRemoveOptions{Force: true})
		})
		if _, err := dc.ContainerStart(ctx, r.ID, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	floorTime := time.Since(floorStart)

	var hangarTime time.Duration
	var phases []string
	var c *pilotv1.Cluster
	for b.Loop() {
		start := time.Now()
		r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "density", Runtime: rt, Params: map[string]string{"cluster.node.count": fmt.Sprint(densityCount)}})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		job := p.waitJob(wctx, r.Job.Id)
		cancel()
		hangarTime = time.Since(start)
		mustSucceed(b, job)
		c = p.cluster(r.Cluster.Id)
		for _, task := range job.Tasks {
			if task.StartedAt != nil && task.FinishedAt != nil {
				phases = append(phases, fmt.Sprintf("%s %v", task.Id, task.FinishedAt.AsTime().Sub(task.StartedAt.AsTime()).Round(time.Millisecond)))
			}
		}
	}
	var nodeIDs []string
	for _, n := range c.Nodes {
		nodeIDs = append(nodeIDs, n.InstanceId)
	}
	// Idle: the median has moved by less than 2% since the last sample,
	// a second before.
	var hangarMem uint64
	waitFor(b, time.Minute, "the instances' memory to settle", func() (bool, string) {
		prev := hangarMem
		hangarMem = medianMemory(b, dc, nodeIDs)
		d := int64(hangarMem) - int64(prev)
		return prev != 0 && d*50 < int64(prev) && -d*50 < int64(prev), fmt.Sprint(prev, " -> ", hangarMem)
	})
	floorMem := medianMemory(b, dc, floorIDs)

	mb := func(n uint64) float64 { return float64(n) / (1 << 20) }
	b.ReportMetric(hangarTime.Seconds(), "create-s")
	b.ReportMetric(floorTime.Seconds(), "floor-s")
	b.ReportMetric(mb(hangarMem), "MiB/instance")
	b.ReportMetric(mb(floorMem), "floor-MiB/instance")
	out := os.Getenv("HANGAR_BENCH_OUT")
	if out == "" {
		out = filepath.Join(os.TempDir(), "hangar-bench-docker-density.json")
	}
	res := map[string]any{
		"instances": densityCount, "create_seconds": hangarTime.Seconds(), "floor_seconds": floorTime.Seconds(),
		"time_ratio": hangarTime.Seconds() / floorTime.Seconds(), "memory_bytes_per_instance": hangarMem,
		"floor_memory_bytes_per_instance": floorMem, "memory_ratio": float64(hangarMem) / float64(floorMem), "phases": phases,
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, js, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("\n%d instances of hangar/drone-base on the docker runtime\n%-34s %10s %10s %7s\n%-34s %9.1fs %9.1fs %6.1fx\n%-34s %7.1fMi %7.1fMi %6.1fx\nphases: %v\nJSON: %s",
		densityCount, "", "hangar", "floor", "ratio",
		"until every drone connected+ran", hangarTime.Seconds(), floorTime.Seconds(), hangarTime.Seconds()/floorTime.Seconds(),
		"memory per instance (median)", mb(hangarMem), mb(floorMem), float64(hangarMem)/float64(floorMem), phases, out)
	p.mustHangar("cluster", "delete", c.Id, "--wait")
}

func boolPtr(v bool) *bool { return &v }

// medianMemory is the median of the containers' memory in use, as docker
// stats counts it: the cgroup's usage without its inactive file cache.
func medianMemory(b *testing.B, dc *client.Client, ids []string) uint64 {
	var all []uint64
	for _, id := range ids {
		r, err := dc.ContainerStats(context.Background(), id, client.ContainerStatsOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var s container.StatsResponse
		err = json.NewDecoder(r.Body).Decode(&s)
		r.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		m := s.MemoryStats
		cache := m.Stats["total_inactive_file"]
		if v, ok := m.Stats["inactive_file"]; ok && cache == 0 {
			cache = v
		}
		all = append(all, m.Usage-min(cache, m.Usage))
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[len(all)/2]
}
