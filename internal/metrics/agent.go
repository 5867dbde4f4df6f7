package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Agent holds an agent's metrics: what its monitors measure and how long
// and how reliably they do it. Its Sampled method is agent.Options.OnSample.
type Agent struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
	samples  *prometheus.CounterVec
	health   *prometheus.GaugeVec
	last     *prometheus.GaugeVec
}

// NewAgent registers the agent's metrics for the given services (name →
// monitor), so that every series exists from the first scrape.
func NewAgent(version string, services map[string]string) *Agent {
	l := []string{"service", "monitor"}
	a := &Agent{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "agent", Name: "sample_duration_seconds",
			Help:    "Time one monitor sample took.",
			Buckets: []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, l),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "agent", Name: "samples_total",
			Help: "Monitor samples taken.",
		}, l),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "agent", Name: "sample_failures_total",
			Help: "Monitor samples that failed (reported to the master as health unknown).",
		}, l),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "agent", Name: "health",
			Help: "The latest health measured, 0 to 100 (-1 when the latest sample failed).",
		}, l),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "agent", Name: "last_sample_timestamp_seconds",
			Help: "When the latest sample finished, in seconds since the epoch.",
		}, l),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "agent", Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	for svc, mon := range services {
		a.samples.WithLabelValues(svc, mon)
		a.failures.WithLabelValues(svc, mon)
	}
	a.reg.MustRegister(a.duration, a.samples, a.failures, a.health, a.last, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return a
}

// Sampled records one finished sample.
func (a *Agent) Sampled(service, monitor string, took time.Duration, health int, err error) {
	a.samples.WithLabelValues(service, monitor).Inc()
	a.duration.WithLabelValues(service, monitor).Observe(took.Seconds())
	a.last.WithLabelValues(service, monitor).Set(float64(time.Now().UnixMilli()) / 1000)
	if err != nil {
		a.failures.WithLabelValues(service, monitor).Inc()
		a.health.WithLabelValues(service, monitor).Set(-1)
		return
	}
	a.health.WithLabelValues(service, monitor).Set(float64(health))
}

// Handler serves /metrics.
func (a *Agent) Handler() http.Handler {
	return promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
