package agent

import (
	"testing"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/health"
)

// Only the kinds with a new report are sent (a metrics sample every few
// seconds does not resend the render and health reports); a new stream
// sends the latest of every kind again.
func TestReportsSendOnlyNewKinds(t *testing.T) {
	kinds := func(reqs []*streamv1.Request) []string {
		var out []string
		for _, r := range reqs {
			switch r.GetBody().(type) {
			case *streamv1.Request_RenderReport:
				out = append(out, "render")
			case *streamv1.Request_HealthReport:
				out = append(out, "health")
			case *streamv1.Request_MetricsReport:
				out = append(out, "metrics")
			}
		}
		return out
	}
	r := NewReports()
	if got := kinds(r.take()); len(got) != 0 {
		t.Fatalf("nothing reported yet, took %v", got)
	}
	r.Rendered(3, nil)
	r.Healthed(health.Report{Status: health.Healthy})
	r.Measured(&streamv1.MetricsReport{CpuPercent: 1})
	if got := kinds(r.take()); len(got) != 3 {
		t.Fatalf("took %v, want render, health and metrics", got)
	}
	r.Measured(&streamv1.MetricsReport{CpuPercent: 2})
	got := r.take()
	if k := kinds(got); len(k) != 1 || k[0] != "metrics" || got[0].GetMetricsReport().GetCpuPercent() != 2 {
		t.Fatalf("after a new sample took %v, want the new metrics report only", got)
	}
	if got := kinds(r.take()); len(got) != 0 {
		t.Fatalf("nothing new, took %v", got)
	}
	r.resend()
	if got := kinds(r.take()); len(got) != 3 {
		t.Fatalf("after a new stream took %v, want every kind again", got)
	}
}
