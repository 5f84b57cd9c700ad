package clusterops

import (
	"context"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// A resize lists the role under vertical-scaling-roles while it runs, runs
// stop, stops, resizes and starts the instances, runs start, and leaves the
// new sizes in the node records and the metadata; sequential takes the
// nodes one at a time.
func TestResize(t *testing.T) {
	for _, sequential := range []bool{false, true} {
		name := map[bool]string{false: "parallel", true: "sequential"}[sequential]
		t.Run(name, func(t *testing.T) {
			h, c := opsappHarness(t)
			if sequential {
				h.push(t, copyDir(t, "../../tests/e2e/testdata/opsapp", "1.0.1", func(s string) string {
					return strings.Replace(s, `"role": "member",`, `"role": "member", "vertical_scaling_policy": "sequential",`, 1)
				}))
				cr, err := h.life.Create(context.Background(), CreateRequest{Tenant: harnessTenant, App: "opsapp", AppVersion: "1.0.1", Runtime: harnessRuntime})
				if err != nil {
					t.Fatal(err)
				}
				h.runJob(t, cr.Job)
				c = cr.Cluster
			}
			ctx := context.Background()
			r, err := h.life.Resize(ctx, h.op(t, c.Id), "member", Sizes{CPU: 2, MemoryMiB: 256})
			if err != nil {
				t.Fatal(err)
			}
			before := h.ranCount()
			for _, task := range r.Job.Tasks {
				if err := h.run(t, r.Job, task); err != nil {
					t.Fatal(err)
				}
				if task.Id == "register" {
					h.fg.mu.Lock()
					vs := h.fg.metadata[c.Id]["vertical-scaling-roles"]
					h.fg.mu.Unlock()
					if vs != "member" {
						t.Fatalf("vertical-scaling-roles during the resize = %q, want member", vs)
					}
				}
			}
			h.finish(t, r.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
			ran := h.ranSince(before)
			if sequential {
				// stop, start on one member, then the other.
				if len(ran) != 4 || !strings.Contains(ran[0], "stop") || !strings.Contains(ran[1], "start") || strings.SplitN(ran[0], ":", 2)[0] != strings.SplitN(ran[1], ":", 2)[0] {
					t.Fatalf("sequential resize ran %q; want each member's stop then start before the next", ran)
				}
			} else if len(ran) != 4 || !strings.Contains(ran[0]+ran[1], "stop") || !strings.Contains(ran[2]+ran[3], "start") {
				t.Fatalf("parallel resize ran %q; want both stops, then both starts", ran)
			}
			after, _ := h.cluster(t, c.Id)
			h.fg.mu.Lock()
			tree := h.fg.metadata[c.Id]
			h.fg.mu.Unlock()
			if _, ok := tree["vertical-scaling-roles"]; ok {
				t.Error("vertical-scaling-roles left in the metadata")
			}
			for _, nd := range after.Nodes {
				want := int32(0)
				if nd.Role == "member" {
					want = 2
				}
				if nd.Cpu != want {
					t.Errorf("node %s (%s) has cpu %d, want %d", nd.Id, nd.Role, nd.Cpu, want)
				}
				if nd.Role == "member" && tree["hosts/member/"+nd.InstanceId+"/cpu"] != "2" {
					t.Errorf("metadata says member %s has cpu %q, want 2", nd.Id, tree["hosts/member/"+nd.InstanceId+"/cpu"])
				}
			}
			if after.Status != pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE {
				t.Fatalf("after the resize: %v", after.Status)
			}
		})
	}
}

func TestResizeRefusals(t *testing.T) {
	h, c := opsappHarness(t)
	for _, tc := range []struct {
		role string
		sz   Sizes
		want string
	}{
		{"member", Sizes{}, "give at least one new size"},
		{"member", Sizes{CPU: -1}, "above 0"},
		{"nobody", Sizes{CPU: 2}, `role: "nobody"`},
	} {
		if _, err := h.life.Resize(context.Background(), h.op(t, c.Id), tc.role, tc.sz); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resize %s %+v: %v; want %q", tc.role, tc.sz, err, tc.want)
		}
	}
	if after, _ := h.cluster(t, c.Id); after.JobId != c.JobId {
		t.Fatal("a refused resize started a job")
	}
}
