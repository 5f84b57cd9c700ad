package agent

import (
	"context"
	"sync"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/backoff"
)

// Reports carries the renderer's reports to the frontgate: the renderer
// hands each one over without waiting (Rendered), and the agent sends the
// latest on the current stream, again on every new stream, so that pilot
// can tell when every drone rendered a metadata change. Only the latest
// matters: a report replaces an unsent one.
type Reports struct {
	mu     sync.Mutex
	latest *streamv1.RenderReport
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
	r.latest = rr
	r.mu.Unlock()
	r.poke()
}

func (r *Reports) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Reports) take() *streamv1.RenderReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// send delivers each new report (and the latest again after a reconnect,
// which pokes it) until ctx ends; a failed send is retried with backoff.
func (r *Reports) send(ctx context.Context, call func(context.Context, *streamv1.Request) (*streamv1.Response, error), timeout time.Duration) {
	bo := backoff.New(500*time.Millisecond, 15*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			rr := r.take()
			if rr == nil {
				break
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			_, err := call(cctx, &streamv1.Request{Body: &streamv1.Request_RenderReport{RenderReport: rr}})
			cancel()
			if err == nil {
				bo.Reset()
				break
			}
			if backoff.Sleep(ctx, bo.Next()) != nil {
				return
			}
		}
	}
}
