package clusterops

import (
	"context"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

// SetRecovery refuses values out of range, naming the field, and stores
// nothing then.
func TestSetRecoveryRefusesBadValues(t *testing.T) {
	h, c := opsappHarness(t)
	for _, tc := range []struct {
		p    *pilotv1.RecoveryPolicy
		want string
	}{
		{nil, "recovery: required"},
		{&pilotv1.RecoveryPolicy{Enabled: true, MaxDownPercent: 101}, "recovery.max_down_percent: 101"},
		{&pilotv1.RecoveryPolicy{Enabled: true, LostAfterSec: -1}, "recovery.lost_after_sec: -1"},
		{&pilotv1.RecoveryPolicy{Enabled: true, MinDown: -3}, "recovery.min_down: -3"},
	} {
		if _, err := h.life.SetRecovery(context.Background(), c, tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetRecovery(%v) = %v, want an error with %q", tc.p, err, tc.want)
		}
	}
	got, _ := h.cluster(t, c.Id)
	if got.Recovery != nil {
		t.Errorf("a refused policy was stored: %v", got.Recovery)
	}
}

// An autoscaling policy is checked against the cluster's package when it
// is set: its role, metric (cpu, memory or a monitor item of the role),
// target, and min and max within the role's count range.
func TestSetAutoscaleChecksThePackage(t *testing.T) {
	h := newOpsHarness(t) // examples/kv: replica count 0..9, monitor keys, version, requests
	ctx := context.Background()
	created := h.create(t, nil)
	for _, task := range created.Job.Tasks {
		if err := h.run(t, created.Job, task); err != nil {
			t.Fatalf("create %s: %v", task.Id, err)
		}
	}
	h.finish(t, created.Job, pilotv1.JobState_JOB_STATE_SUCCEEDED)
	c, _ := h.cluster(t, created.Cluster.Id)
	ok := func() *pilotv1.AutoscalePolicy {
		return &pilotv1.AutoscalePolicy{Role: "replica", Metric: "requests", Target: 50, Min: 1, Max: 4}
	}
	for _, tc := range []struct {
		name string
		edit func(p *pilotv1.AutoscalePolicy)
		want string
	}{
		{"no such role", func(p *pilotv1.AutoscalePolicy) { p.Role = "web" }, `policy.role: "web" is not a role`},
		{"no such metric", func(p *pilotv1.AutoscalePolicy) { p.Metric = "qps" }, `policy.metric: "qps" is not reported by role replica; give cpu, memory or one of its monitor items (keys, requests, version)`},
		{"a percentage over 100", func(p *pilotv1.AutoscalePolicy) { p.Metric, p.Target = "cpu", 150 }, "policy.target: 150; cpu is a percentage"},
		{"no target", func(p *pilotv1.AutoscalePolicy) { p.Target = 0 }, "policy.target: 0"},
		{"min above max", func(p *pilotv1.AutoscalePolicy) { p.Min, p.Max = 5, 2 }, "policy.min 5, max 2"},
		{"max beyond the package", func(p *pilotv1.AutoscalePolicy) { p.Max = 12 }, "policy.max: 12 is a count the package refuses"},
		{"a step beyond max", func(p *pilotv1.AutoscalePolicy) { p.Step = 5 }, "policy.step: 5"},
		{"a ratio of 1", func(p *pilotv1.AutoscalePolicy) { p.ScaleInRatio = 1 }, "policy.scale_in_ratio: 1"},
	} {
		p := ok()
		tc.edit(p)
		if _, err := h.life.SetAutoscale(ctx, c, p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if got, _ := h.cluster(t, c.Id); len(got.Autoscale) != 0 {
		t.Fatalf("refused policies were stored: %v", got.Autoscale)
	}
	got, err := h.life.SetAutoscale(ctx, c, ok())
	if err != nil || len(got.Autoscale) != 1 || got.Autoscale[0].Metric != "requests" {
		t.Fatalf("a good policy: %v, %v", got.GetAutoscale(), err)
	}
	// Set again for the role: replaced, not added.
	p := ok()
	p.Metric = "cpu"
	if got, err = h.life.SetAutoscale(ctx, got, p); err != nil || len(got.Autoscale) != 1 || got.Autoscale[0].Metric != "cpu" {
		t.Fatalf("the role's policy set again: %v, %v", got.GetAutoscale(), err)
	}
	if got, err = h.life.DeleteAutoscale(ctx, got, "replica"); err != nil || len(got.Autoscale) != 0 {
		t.Fatalf("delete: %v, %v", got.GetAutoscale(), err)
	}
	if _, err = h.life.DeleteAutoscale(ctx, got, "replica"); err == nil {
		t.Fatal("deleting a policy the role does not have: no error")
	}
}
