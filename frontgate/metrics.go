package frontgate

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is the frontgate's own registry: nothing is registered globally,
// so several frontgates can run in one test process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hangar_frontgate_relayed_requests_total",
			Help: "Requests from pilot served by the frontgate, by kind and result (ok or the error code).",
		}, []string{"kind", "result"}),
	}
	m.reg.MustRegister(m.requests,
		// The GC's own figures too (go_gc_heap_live_bytes: the heap marked
		// live by the last collection), so that memory per drone can be
		// told from garbage not yet collected.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(kind, result string) { m.requests.WithLabelValues(kind, result).Inc() }

// watch registers the gauges read from the running parts.
func (m *metrics) watch(drones func() int, pilotUp func() bool) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hangar_frontgate_connected_drones",
			Help: "Drones with a live stream to this frontgate.",
		}, func() float64 { return float64(drones()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hangar_frontgate_pilot_link_up",
			Help: "1 while the stream to pilot is up, else 0.",
		}, func() float64 {
			if pilotUp() {
				return 1
			}
			return 0
		}),
	)
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}
