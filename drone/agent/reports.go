package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/health"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Reports carries what the drone tells of itself to the frontgate: the
// renderer's reports (Rendered), the health checker's (Healthed) and the
// metrics collector's (Measured). Each is handed over without waiting,
// and the agent sends the latest of each kind on the current stream, again
// on every new stream, so that pilot can tell when every drone rendered a
// metadata change and how every node is. Only the latest of a kind
// matters: a report replaces an unsent one, and only kinds with a new
// report are sent (metrics every few seconds do not resend the others).
type Reports struct {
	mu      sync.Mutex
	render  *streamv1.RenderReport
	health  *streamv1.HealthReport
	metrics *streamv1.MetricsReport
	// unsent marks the kinds with a report not sent yet (all of them
	// after a new stream).
	unsentRender, unsentHealth, unsentMetrics bool
	// wake has room for one signal: a new report, or a new stream.
	wake chan struct{}
}

// NewReports returns an empty carrier.
func NewReports() *Reports { return &Reports{wake: make(chan struct{}, 1)} }

// Rendered is render.Config.OnRendered: it keeps the report and returns at
// once.
func (r *Reports) Rendered(revision int64, err error) {
	rr := &streamv1.RenderReport{Revision: revision}
	if err != nil {
		rr.Error = err.Error()
	}
	r.mu.Lock()
	r.render, r.unsentRender = rr, true
	r.mu.Unlock()
	r.poke()
}

// Healthed is health.Config.OnChange: it keeps the report and returns at
// once.
func (r *Reports) Healthed(rep health.Report) {
	hr := &streamv1.HealthReport{
		Status:   string(rep.Status),
		Check:    commandRun(&rep.Check),
		Action:   commandRun(rep.Action),
		Since:    timestamppb.New(rep.Since),
		Failures: int32(rep.Failures),
	}
	r.mu.Lock()
	r.health, r.unsentHealth = hr, true
	r.mu.Unlock()
	r.poke()
}

func commandRun(res *health.Result) *streamv1.CommandRun {
	if res == nil {
		return nil
	}
	return &streamv1.CommandRun{ExitCode: int32(res.ExitCode), Output: health.CleanOutput(res.Output), At: timestamppb.New(res.At), Error: health.CleanOutput(res.Err)}
}

// Measured is metrics.Config.OnReport: it keeps the report and returns at
// once.
func (r *Reports) Measured(mr *streamv1.MetricsReport) {
	r.mu.Lock()
	r.metrics, r.unsentMetrics = mr, true
	r.mu.Unlock()
	r.poke()
}

// resend marks every kind unsent (a new stream: the frontgate hears the
// latest of each again).
func (r *Reports) resend() {
	r.mu.Lock()
	r.unsentRender, r.unsentHealth, r.unsentMetrics = true, true, true
	r.mu.Unlock()
	r.poke()
}

func (r *Reports) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns the latest report of each kind not sent yet, as requests.
func (r *Reports) take() []*streamv1.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*streamv1.Request
	if r.render != nil && r.unsentRender {
		out = append(out, &streamv1.Request{Body: &streamv1.Request_RenderReport{RenderReport: r.render}})
	}
	if r.health != nil && r.unsentHealth {
		out = append(out, &streamv1.Request{Body: &streamv1.Request_HealthReport{HealthReport: r.health}})
	}
	if r.metrics != nil && r.unsentMetrics {
		out = append(out, &streamv1.Request{Body: &streamv1.Request_MetricsReport{MetricsReport: r.metrics}})
	}
	r.unsentRender, r.unsentHealth, r.unsentMetrics = false, false, false
	return out
}

// send delivers each new report (and the latest again after a reconnect,
// which pokes it) until ctx ends; a failed send is retried with backoff,
// but a report the frontgate refused as invalid is dropped.
func (r *Reports) send(ctx context.Context, call func(context.Context, *streamv1.Request) (*streamv1.Response, error), timeout time.Duration, log *slog.Logger) {
	bo := backoff.New(500*time.Millisecond, 15*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for _, req := range r.take() {
			for {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				_, err := call(cctx, req)
				cancel()
				if err == nil {
					bo.Reset()
					break
				}
				if streamrpc.IsCode(err, streamrpc.CodeInvalid) {
					// The frontgate refused this report as it is: sent
					// again it would be refused again, and the reports
					// after it would wait forever behind it.
					log.Warn("report refused by the frontgate; dropped", "err", err)
					break
				}
				if backoff.Sleep(ctx, bo.Next()) != nil {
					return
				}
			}
		}
	}
}
