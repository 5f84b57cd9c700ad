package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/health"
	"github.com/hangarhq/hangar/internal/streamrpc"
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

// A report the frontgate refuses as invalid is dropped, not retried: the
// reports after it still go out. One that fails otherwise (the stream
// down) is retried until it is taken.
func TestReportsDropARefusedReport(t *testing.T) {
	r := NewReports()
	var mu sync.Mutex
	var sent []string
	failOnce := true
	refused := make(chan struct{}, 100)
	call := func(_ context.Context, req *streamv1.Request) (*streamv1.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		if req.GetMetricsReport().GetCpuPercent() == 1 {
			refused <- struct{}{}
			return nil, &streamrpc.Error{Code: streamrpc.CodeInvalid, Message: "items[0]: text above 256 bytes"}
		}
		if req.GetRenderReport() != nil && failOnce {
			failOnce = false
			return nil, errors.New("stream down")
		}
		sent = append(sent, fmt.Sprint(req.GetMetricsReport().GetCpuPercent(), req.GetRenderReport().GetRevision()))
		return &streamv1.Response{}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.send(ctx, call, time.Second, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()

	r.Measured(&streamv1.MetricsReport{CpuPercent: 1}) // refused
	select {
	case <-refused:
	case <-time.After(20 * time.Second):
		t.Fatal("the first report was never sent")
	}
	r.Rendered(7, nil) // fails once, then goes
	r.Measured(&streamv1.MetricsReport{CpuPercent: 2})
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(sent, " ")
		mu.Unlock()
		if strings.Contains(got, "0 7") && strings.Contains(got, "2 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent %q; want the render (7) and the later metrics (2) after the refused one", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
