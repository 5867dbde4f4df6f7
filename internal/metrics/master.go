// Package metrics holds the master's metrics, served in Prometheus' text
// format through internal/promtext: counters and histograms fed by the
// master's Observer hooks, and the per-realserver gauges read from a
// snapshot at each scrape, so that what a scrape shows is what feedbackctl
// status and ipvsadm show at the same moment.
//
// It does not use the Prometheus client library, for the reasons the
// agent does not (promtext): the client's package initialisation alone
// costs 3.4 MB of resident memory, a sixth of a master's at 1 000
// agents, and at each scrape it built a metric object per series, seven
// per realserver, where promtext appends text to one buffer.
package metrics

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
)

const namespace = "feedbackd_"

// Histogram bounds, in seconds.
var (
	rttBuckets   = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	writeBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1}
)

// Master holds the master's metrics. It implements master.Observer and is
// safe for concurrent use.
type Master struct {
	version string
	snap    Snapshot

	mu        sync.Mutex
	rtt       promtext.Hist
	missed    uint64
	refused   map[string]uint64 // by reason
	writes    map[string]uint64 // by op
	writeErrs map[string]uint64 // by op
	writeDur  promtext.Hist
	reloads   map[string]uint64 // by result
	saves     map[string]uint64 // by result
}

// Snapshot returns the destinations (as feedbackctl status has them) and
// the open agent connections and joined agents.
type Snapshot func(ctx context.Context) (dests []control.Destination, connections, agents int, err error)

// NewMaster returns the master's metrics; snap is called at each scrape.
func NewMaster(version string, snap Snapshot) *Master {
	m := &Master{
		version: version, snap: snap,
		rtt: promtext.NewHist(rttBuckets), writeDur: promtext.NewHist(writeBuckets),
		refused: map[string]uint64{}, writes: map[string]uint64{}, writeErrs: map[string]uint64{},
		reloads: map[string]uint64{}, saves: map[string]uint64{},
	}
	// Every label value a counter can take is there from the start, so
	// that a rate() over it has a series from the first scrape.
	for _, op := range []string{"add", "update", "delete"} {
		m.writes[op], m.writeErrs[op] = 0, 0
	}
	m.reloads["applied"], m.reloads["refused"] = 0, 0
	m.saves["ok"], m.saves["error"] = 0, 0
	return m
}

func (m *Master) KeepaliveAnswered(rtt time.Duration) {
	m.mu.Lock()
	m.rtt.Observe(rtt.Seconds())
	m.mu.Unlock()
}

func (m *Master) KeepaliveMissed() {
	m.mu.Lock()
	m.missed++
	m.mu.Unlock()
}

func (m *Master) Refused(reason string) {
	m.mu.Lock()
	m.refused[reason]++
	m.mu.Unlock()
}

func (m *Master) IPVSWrite(op string, took time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes[op]++
	m.writeDur.Observe(took.Seconds())
	if err != nil {
		m.writeErrs[op]++
	}
}

func (m *Master) Reloaded(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.reloads["refused"]++
		return
	}
	m.reloads["applied"]++
}

func (m *Master) StateSaved(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.saves["error"]++
		return
	}
	m.saves["ok"]++
}

// Expose writes one scrape of the master's metrics, every family: what
// promtext.Serve serves at /metrics. Label names are in alphabetical order
// within a series, as the client library wrote them, so that a series
// reads the same as before.
func (m *Master) Expose(w *promtext.Writer) {
	// The snapshot first, without holding mu: it waits for the owner, and
	// the owner's hooks take mu.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	dests, conns, agents, err := m.snap(ctx)
	cancel()

	m.mu.Lock()
	rtt, writeDur := m.rtt.Clone(), m.writeDur.Clone()
	missed := m.missed
	refused, writes, writeErrs := sortedCounts(m.refused), sortedCounts(m.writes), sortedCounts(m.writeErrs)
	reloads, saves := sortedCounts(m.reloads), sortedCounts(m.saves)
	m.mu.Unlock()

	gauge := func(name, help string, v float64) {
		w.Family(namespace+name, help, "gauge")
		w.Sample(namespace+name, nil, v)
	}
	counters := func(name, help, label string, cs []count) {
		w.Family(namespace+name, help, "counter")
		for _, c := range cs {
			w.Sample(namespace+name, []promtext.Label{{Name: label, Value: c.label}}, float64(c.n))
		}
	}

	w.Family(namespace+"build_info", "Always 1; the labels say which build runs.", "gauge")
	w.Sample(namespace+"build_info", []promtext.Label{{Name: "goversion", Value: runtime.Version()}, {Name: "version", Value: m.version}}, 1)
	if err != nil {
		gauge("snapshot_ok", "1 when this scrape could read the master's table and IPVS.", 0)
	} else {
		gauge("snapshot_ok", "1 when this scrape could read the master's table and IPVS.", 1)
		gauge("agent_connections", "Open agent connections, handshakes included (what max-sessions bounds).", float64(conns))
		gauge("agents", "Agent sessions that have STARTed.", float64(agents))
		writeTable(w, dests)
	}
	w.Family(namespace+"keepalive_rtt_seconds", "Time from a KEEPALIVE's last transmission to its answer.", "histogram")
	w.WriteHist(namespace+"keepalive_rtt_seconds", nil, rtt)
	w.Family(namespace+"keepalives_missed_total", "KEEPALIVEs that went unanswered for keepalive-timeout.", "counter")
	w.Sample(namespace+"keepalives_missed_total", nil, float64(missed))
	counters("refusals_total", "Connections, STARTs and services refused, by the REASON= of the log line.", "reason", refused)
	counters("ipvs_writes_total", "Writes to IPVS, by operation.", "op", writes)
	counters("ipvs_write_errors_total", "Writes to IPVS that failed, by operation.", "op", writeErrs)
	w.Family(namespace+"ipvs_write_duration_seconds", "Time one write to IPVS took (a pass's writes go as one batch: its time divided by its writes).", "histogram")
	w.WriteHist(namespace+"ipvs_write_duration_seconds", nil, writeDur)
	counters("reloads_total", "Configuration reloads, by result (applied, refused).", "result", reloads)
	counters("state_file_writes_total", "Writes of the state file, by result (ok, error).", "result", saves)
	promtext.WriteProcess(w)
}

// writeTable writes the per-realserver gauges. Their number is bounded by
// what the master manages: max-sessions × services at most.
func writeTable(w *promtext.Writer, dests []control.Destination) {
	// One label array for every series: nothing is allocated per series,
	// and 20 000 realservers make 280 000 of them.
	rs := [2]promtext.Label{{Name: "realserver"}, {Name: "vs"}}
	family := func(name, help string, f func(d control.Destination) (float64, bool)) {
		name = namespace + name
		w.Family(name, help, "gauge")
		for _, d := range dests {
			if v, ok := f(d); ok {
				rs[0].Value, rs[1].Value = d.Realserver, d.VS
				w.Sample(name, rs[:], v)
			}
		}
	}
	family("realserver_health", "The latest health the agent reported, 0 to 100 (absent before the first report or while unknown).",
		func(d control.Destination) (float64, bool) {
			return float64(d.Health), d.Health >= 0 && d.Health <= 100
		})
	family("realserver_target_weight", "The weight the weight law asks for, before any admin state.",
		func(d control.Destination) (float64, bool) { return float64(d.Target), true })
	family("realserver_weight", "The weight the master wants in IPVS.",
		func(d control.Destination) (float64, bool) { return float64(d.Weight), true })
	family("realserver_kernel_weight", "The weight IPVS has (absent when the destination is not in IPVS).",
		func(d control.Destination) (float64, bool) { return float64(d.Kernel), d.Kernel >= 0 })
	family("realserver_active_connections", "Active connections, from IPVS.",
		func(d control.Destination) (float64, bool) { return float64(d.ActiveConn), d.Kernel >= 0 })
	oneOf := func(name, help string, states []string, of func(d control.Destination) string) {
		name = namespace + name
		w.Family(name, help, "gauge")
		ls := [3]promtext.Label{{Name: "realserver"}, {Name: "state"}, {Name: "vs"}}
		for _, d := range dests {
			cur := of(d)
			for _, s := range states {
				ls[0].Value, ls[1].Value, ls[2].Value = d.Realserver, s, d.VS
				w.Sample(name, ls[:], b2f(s == cur))
			}
		}
	}
	oneOf("realserver_admin_state", "1 for the realserver's admin state (ready, drain, maint).", []string{"ready", "drain", "maint"},
		func(d control.Destination) string { return cmp.Or(d.Admin, "ready") })
	oneOf("realserver_state", "1 for the destination's state (active, orphan, quiescing, absent).", []string{"active", "orphan", "quiescing", "absent"},
		func(d control.Destination) string { return d.State })
}

type count struct {
	label string
	n     uint64
}

func sortedCounts(m map[string]uint64) []count {
	cs := make([]count, 0, len(m))
	for l, n := range m {
		cs = append(cs, count{l, n})
	}
	slices.SortFunc(cs, func(a, b count) int { return cmp.Compare(a.label, b.label) })
	return cs
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
