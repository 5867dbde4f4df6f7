// Package agentmetrics holds an agent's metrics: what its monitors measure
// and how long and how reliably they do it, served in Prometheus' text
// format through internal/promtext (not the Prometheus client library,
// which would cost the agent a third of its memory; see promtext).
package agentmetrics

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
)

const prefix = "feedbackd_agent_"

// buckets of sample_duration_seconds, in seconds: from a constant
// monitor's microseconds to an exec monitor's timeout.
var buckets = []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Agent is an agent's metrics. Its Sampled method is agent.Options.OnSample;
// it is safe for concurrent use.
type Agent struct {
	version string

	mu     sync.Mutex
	series map[key]*series
}

type key struct{ service, monitor string }

type series struct {
	samples, failures uint64
	health            float64 // -1 after a failed sample
	hasHealth         bool
	last              float64 // seconds since the epoch; 0: none yet
	dur               promtext.Hist
}

// New registers the agent's services (name → monitor), so that every
// counter exists from the first scrape.
func New(version string, services map[string]string) *Agent {
	a := &Agent{version: version, series: map[key]*series{}}
	for svc, mon := range services {
		a.get(key{svc, mon})
	}
	return a
}

func (a *Agent) get(k key) *series {
	s := a.series[k]
	if s == nil {
		s = &series{dur: promtext.NewHist(buckets)}
		a.series[k] = s
	}
	return s
}

// Sampled records one finished sample.
func (a *Agent) Sampled(service, monitor string, took time.Duration, health int, err error) {
	now := float64(time.Now().UnixMilli()) / 1000
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.get(key{service, monitor})
	s.samples++
	s.dur.Observe(took.Seconds())
	s.last = now
	s.hasHealth = true
	if err != nil {
		s.failures++
		s.health = -1
		return
	}
	s.health = float64(health)
}

// Expose writes one scrape of the agent's metrics: what promtext.Serve
// serves at /metrics.
func (a *Agent) Expose(w *promtext.Writer) {
	a.mu.Lock()
	keys := make([]key, 0, len(a.series))
	for k := range a.series {
		keys = append(keys, k)
	}
	// Sorted by the label values in label-name order (monitor, service),
	// so that scrapes are stable.
	slices.SortFunc(keys, func(x, y key) int {
		if x.monitor != y.monitor {
			return cmp.Compare(x.monitor, y.monitor)
		}
		return cmp.Compare(x.service, y.service)
	})
	snap := make([]series, len(keys))
	for i, k := range keys {
		snap[i] = *a.series[k]
		snap[i].dur = snap[i].dur.Clone()
	}
	a.mu.Unlock()

	labels := func(k key) []promtext.Label {
		return []promtext.Label{{Name: "monitor", Value: k.monitor}, {Name: "service", Value: k.service}}
	}
	w.Family(prefix+"build_info", "Always 1; the labels say which build runs.", "gauge")
	w.Sample(prefix+"build_info", []promtext.Label{{Name: "goversion", Value: runtime.Version()}, {Name: "version", Value: a.version}}, 1)
	w.Family(prefix+"health", "The latest health measured, 0 to 100 (-1 when the latest sample failed).", "gauge")
	for i, k := range keys {
		if snap[i].hasHealth {
			w.Sample(prefix+"health", labels(k), snap[i].health)
		}
	}
	w.Family(prefix+"last_sample_timestamp_seconds", "When the latest sample finished, in seconds since the epoch.", "gauge")
	for i, k := range keys {
		if snap[i].hasHealth {
			w.Sample(prefix+"last_sample_timestamp_seconds", labels(k), snap[i].last)
		}
	}
	w.Family(prefix+"sample_duration_seconds", "Time one monitor sample took.", "histogram")
	for i, k := range keys {
		w.WriteHist(prefix+"sample_duration_seconds", labels(k), snap[i].dur)
	}
	w.Family(prefix+"sample_failures_total", "Monitor samples that failed (reported to the master as health unknown).", "counter")
	for i, k := range keys {
		w.Sample(prefix+"sample_failures_total", labels(k), float64(snap[i].failures))
	}
	w.Family(prefix+"samples_total", "Monitor samples taken.", "counter")
	for i, k := range keys {
		w.Sample(prefix+"samples_total", labels(k), float64(snap[i].samples))
	}
	promtext.WriteProcess(w)
}
