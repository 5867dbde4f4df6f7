// Package metrics exports the daemons' metrics in the Prometheus format,
// with the Prometheus client library (github.com/prometheus/client_golang):
// counters and histograms fed by the master's Observer hooks, and the
// per-realserver gauges read from a snapshot at each scrape, so that what
// a scrape shows is what feedbackctl status and ipvsadm show at the same
// moment.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
)

const namespace = "feedbackd"

// Master holds the master's metrics. It implements master.Observer.
type Master struct {
	reg       *prometheus.Registry
	rtt       prometheus.Histogram
	missed    prometheus.Counter
	refused   *prometheus.CounterVec
	writes    *prometheus.CounterVec
	writeErrs *prometheus.CounterVec
	writeDur  prometheus.Histogram
	reloads   *prometheus.CounterVec
	saves     *prometheus.CounterVec
}

// Snapshot returns the destinations (as feedbackctl status has them) and
// the open agent connections and joined agents.
type Snapshot func(ctx context.Context) (dests []control.Destination, connections, agents int, err error)

// NewMaster registers the master's metrics; snap is called at each scrape.
func NewMaster(version string, snap Snapshot) *Master {
	m := &Master{
		reg: prometheus.NewRegistry(),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "keepalive_rtt_seconds",
			Help:    "Time from a KEEPALIVE's last transmission to its answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "keepalives_missed_total",
			Help: "KEEPALIVEs that went unanswered for keepalive-timeout.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "refusals_total",
			Help: "Connections, STARTs and services refused, by the REASON= of the log line.",
		}, []string{"reason"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ipvs_writes_total",
			Help: "Writes to IPVS, by operation.",
		}, []string{"op"}),
		writeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ipvs_write_errors_total",
			Help: "Writes to IPVS that failed, by operation.",
		}, []string{"op"}),
		writeDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "ipvs_write_duration_seconds",
			Help:    "Time one write to IPVS took (a pass's writes go as one batch: its time divided by its writes).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reloads_total",
			Help: "Configuration reloads, by result (applied, refused).",
		}, []string{"result"}),
		saves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "state_file_writes_total",
			Help: "Writes of the state file, by result (ok, error).",
		}, []string{"result"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	// Every label value a counter can take is created up front, so that a
	// rate() over it has a series from the start.
	for _, op := range []string{"add", "update", "delete"} {
		m.writes.WithLabelValues(op)
		m.writeErrs.WithLabelValues(op)
	}
	for _, r := range []string{"applied", "refused"} {
		m.reloads.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.saves.WithLabelValues(r)
	}
	m.reg.MustRegister(m.rtt, m.missed, m.refused, m.writes, m.writeErrs, m.writeDur, m.reloads, m.saves, build,
		&tableCollector{snap: snap},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Master) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (m *Master) KeepaliveAnswered(rtt time.Duration) { m.rtt.Observe(rtt.Seconds()) }
func (m *Master) KeepaliveMissed()                    { m.missed.Inc() }
func (m *Master) Refused(reason string)               { m.refused.WithLabelValues(reason).Inc() }

func (m *Master) IPVSWrite(op string, took time.Duration, err error) {
	m.writes.WithLabelValues(op).Inc()
	m.writeDur.Observe(took.Seconds())
	if err != nil {
		m.writeErrs.WithLabelValues(op).Inc()
	}
}

func (m *Master) Reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("refused").Inc()
		return
	}
	m.reloads.WithLabelValues("applied").Inc()
}

func (m *Master) StateSaved(err error) {
	if err != nil {
		m.saves.WithLabelValues("error").Inc()
		return
	}
	m.saves.WithLabelValues("ok").Inc()
}

// tableCollector turns a snapshot into per-realserver gauges. Their
// number is bounded by what the master manages: max-sessions × services
// at most.
type tableCollector struct{ snap Snapshot }

var (
	labels     = []string{"vs", "realserver"}
	descHealth = prometheus.NewDesc(namespace+"_realserver_health", "The latest health the agent reported, 0 to 100 (absent before the first report or while unknown).", labels, nil)
	descTarget = prometheus.NewDesc(namespace+"_realserver_target_weight", "The weight the weight law asks for, before any admin state.", labels, nil)
	descWant   = prometheus.NewDesc(namespace+"_realserver_weight", "The weight the master wants in IPVS.", labels, nil)
	descKernel = prometheus.NewDesc(namespace+"_realserver_kernel_weight", "The weight IPVS has (absent when the destination is not in IPVS).", labels, nil)
	descActive = prometheus.NewDesc(namespace+"_realserver_active_connections", "Active connections, from IPVS.", labels, nil)
	descAdmin  = prometheus.NewDesc(namespace+"_realserver_admin_state", "1 for the realserver's admin state (ready, drain, maint).", append(labels, "state"), nil)
	descState  = prometheus.NewDesc(namespace+"_realserver_state", "1 for the destination's state (active, orphan, quiescing, absent).", append(labels, "state"), nil)
	descConns  = prometheus.NewDesc(namespace+"_agent_connections", "Open agent connections, handshakes included (what max-sessions bounds).", nil, nil)
	descAgents = prometheus.NewDesc(namespace+"_agents", "Agent sessions that have STARTed.", nil, nil)
	descUp     = prometheus.NewDesc(namespace+"_snapshot_ok", "1 when this scrape could read the master's table and IPVS.", nil, nil)
)

func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealth, descTarget, descWant, descKernel, descActive, descAdmin, descState, descConns, descAgents, descUp} {
		ch <- d
	}
}

func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dests, conns, agents, err := c.snap(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(agents))
	for _, d := range dests {
		lv := []string{d.VS, d.Realserver}
		if d.Health >= 0 && d.Health <= 100 {
			ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, float64(d.Health), lv...)
		}
		ch <- prometheus.MustNewConstMetric(descTarget, prometheus.GaugeValue, float64(d.Target), lv...)
		ch <- prometheus.MustNewConstMetric(descWant, prometheus.GaugeValue, float64(d.Weight), lv...)
		if d.Kernel >= 0 {
			ch <- prometheus.MustNewConstMetric(descKernel, prometheus.GaugeValue, float64(d.Kernel), lv...)
			ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(d.ActiveConn), lv...)
		}
		admin := d.Admin
		if admin == "" {
			admin = "ready"
		}
		for _, s := range []string{"ready", "drain", "maint"} {
			ch <- prometheus.MustNewConstMetric(descAdmin, prometheus.GaugeValue, b2f(s == admin), append(lv, s)...)
		}
		for _, s := range []string{"active", "orphan", "quiescing", "absent"} {
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(s == d.State), append(lv, s)...)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
