package master

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func TestLawNext(t *testing.T) {
	sm := Law{Smoothing: 10 * time.Second, Period: 2 * time.Second}
	a := 1 - math.Exp(-0.2) // the fraction one 2 s period moves with τ = 10 s
	for _, c := range []struct {
		law    Law
		ctl    float64
		h      uint8
		want   float64
		wantOK bool
	}{
		{Law{}, 37, 80, 80, true},                  // direct: the health, whatever came before
		{Law{}, 37, necp.HealthUnknown, 37, false}, // unknown leaves it
		{sm, 0, 60, 60, true},                      // a start takes the health as it is
		{sm, 50, 0, 0, true},                       // a failure is 0 at once
		{sm, 50, necp.HealthUnknown, 50, false},    // unknown leaves it
		{sm, 50, 100, 50 + a*50, true},             // a fraction of the way up
		{sm, 50, 10, 50 - a*40, true},              // and down
		{sm, 79.6, 80, 80, true},                   // within rounding: arrived
		{sm, 80, 80, 80, true},                     // at rest
	} {
		got, ok := c.law.Next(c.ctl, c.h, 100)
		if ok != c.wantOK || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%+v.Next(%v, %d) = %v, %v; want %v, %v", c.law, c.ctl, c.h, got, ok, c.want, c.wantOK)
		}
	}
	if !sm.AtRest(80, 80, 100) || sm.AtRest(50, 80, 100) || !sm.AtRest(50, necp.HealthUnknown, 100) {
		t.Error("AtRest: at its goal, or with unknown health, it is at rest; anything else moves")
	}
	// A steady report of 80 ends at 80, as the HOWTO says: the law keeps
	// what health means.
	ctl := 30.0
	for range 50 {
		ctl, _ = sm.Next(ctl, 80, 100)
	}
	if ctl != 80 {
		t.Errorf("steady health 80 settles at %v", ctl)
	}
}

func TestSlowStart(t *testing.T) {
	start := t0
	for _, c := range []struct {
		w    int
		at   time.Duration
		d    time.Duration
		want int
	}{
		{80, 0, 10 * time.Second, 1},
		{80, 2500 * time.Millisecond, 10 * time.Second, 20},
		{80, 5 * time.Second, 10 * time.Second, 40},
		{80, 10 * time.Second, 10 * time.Second, 80},
		{80, time.Hour, 10 * time.Second, 80},
		{80, 0, 0, 80}, // off
		{1, 0, 10 * time.Second, 1},
	} {
		if got := SlowStart(c.w, start, start.Add(c.at), c.d); got != c.want {
			t.Errorf("SlowStart(%d, +%v, %v) = %d, want %d", c.w, c.at, c.d, got, c.want)
		}
	}
	if got := SlowStart(80, time.Time{}, t0, 10*time.Second); got != 80 {
		t.Errorf("no ramp start: %d", got)
	}
}

// loopModel is a closed loop without a VM: n realservers behind wrr, each
// with a capacity (requests a period) and a queue, an open-loop arrival
// rate, and an agent that reports health = the idle share of the last
// period (never below 1, like cpuload). One step is one keepalive-interval;
// the weights of step k come from the reports of step k-1, as on a real
// director.
type loopModel struct {
	capacity []float64 // requests a period each server can serve
	hog      []float64 // share of each server's capacity taken by a CPU hog
	queue    []float64
	arrivals float64 // requests a period, for the whole cluster
	// rnd makes each server's arrivals vary by a few percent from period
	// to period, as Poisson arrivals do: without noise a symmetric start
	// is a fixed point even of an unstable law.
	rnd *rand.Rand
}

// step sends one period's arrivals by the weights and returns each
// server's health and the requests that waited in its queue.
func (m *loopModel) step(weights []int) (health []uint8, waited []float64) {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	health = make([]uint8, len(weights))
	waited = make([]float64, len(weights))
	for i, w := range weights {
		share := 1 / float64(len(weights)) // all 0: IPVS has no choice either
		if sum > 0 {
			share = float64(w) / float64(sum)
		}
		cap := m.capacity[i] * (1 - m.hog[i])
		work := m.queue[i] + share*m.arrivals*(1+0.05*m.rnd.NormFloat64())
		served := math.Min(work, cap)
		m.queue[i] = work - served
		waited[i] = m.queue[i]
		busy := served/m.capacity[i] + m.hog[i]
		health[i] = uint8(max(1, math.Round(100*(1-math.Min(1, busy)))))
	}
	return health, waited
}

// runLoop drives the table with the model: three realservers join, run
// for 60 periods, then a CPU hog takes 90 % of rs3 for 120 periods. It
// returns the kernel weights after the hog started, per period.
func runLoop(t *testing.T, law string, load float64) (weights [][]int, queued float64) {
	cfg := testConfig()
	cfg.VirtualServices = cfg.VirtualServices[:1]
	cfg.WeightLaw, cfg.WeightSmoothing = law, 10*time.Second
	cfg.WeightThreshold = 5
	tb := newTable(cfg, discard())
	rss := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	for i, rs := range rss {
		joinT(tb, sessionID(i+1), peerAt(rs), []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardDR)}, t0)
	}
	m := &loopModel{capacity: []float64{100, 100, 100}, hog: make([]float64, 3), queue: make([]float64, 3),
		arrivals: load * 300, rnd: rand.New(rand.NewPCG(1, 2))}
	now := t0
	cur := []int{0, 0, 0}
	for k := range 180 {
		if k == 60 {
			m.hog[2] = 0.9
		}
		h, waited := m.step(cur)
		now = now.Add(cfg.KeepaliveInterval)
		for i := range rss {
			tb.health(sessionID(i+1), []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: h[i]}}, now)
		}
		tb.tick(now)
		apply(t, tb)
		for i, rs := range rss {
			cur[i] = tb.entries[id(vip1, necp.ProtoTCP, 80, mustAddr(rs))].kernel.Weight
		}
		if k >= 90 { // settled after the hog
			weights = append(weights, append([]int(nil), cur...))
			queued += waited[0] + waited[1]
		}
	}
	return weights, queued
}

func spread(ws [][]int, i int) (mean, sd float64) {
	for _, w := range ws {
		mean += float64(w[i])
	}
	mean /= float64(len(ws))
	for _, w := range ws {
		sd += (float64(w[i]) - mean) * (float64(w[i]) - mean)
	}
	return mean, math.Sqrt(sd / float64(len(ws)))
}

// TestClosedLoopDoesNotSwing: the direct law swings the two healthy
// realservers' weights in antiphase once the sick one is out (the herd
// effect the experiment measured); the smoothed law holds them level,
// takes the sick one down, and leaves less waiting in the healthy
// servers' queues. Loads are the cluster's share of its full capacity.
func TestClosedLoopDoesNotSwing(t *testing.T) {
	for _, load := range []float64{0.5, 0.6, 0.65} {
		t.Run(fmt.Sprint(load), func(t *testing.T) {
			dw, dq := runLoop(t, "direct", load)
			iw, iq := runLoop(t, "smoothed", load)
			_, dsd := spread(dw, 0)
			_, isd := spread(iw, 0)
			imean3, _ := spread(iw, 2)
			imean1, _ := spread(iw, 0)
			t.Logf("healthy rs1 weight sd: direct %.1f, smoothed %.1f; smoothed means rs1 %.1f, sick rs3 %.1f; healthy queues %.0f vs %.0f",
				dsd, isd, imean1, imean3, dq, iq)
			if dsd < 10 {
				t.Errorf("the model does not show the herd effect with the direct law (sd %.1f): it tests nothing", dsd)
			}
			if isd > dsd/3 || isd > 5 {
				t.Errorf("smoothed law: healthy weight sd %.1f, want at most a third of direct's %.1f and at most 5", isd, dsd)
			}
			if imean3 > imean1/2 {
				t.Errorf("smoothed law: the sick realserver keeps mean weight %.1f against %.1f", imean3, imean1)
			}
			if iq > dq {
				t.Errorf("smoothed law: %.0f requests queued on the healthy servers, direct %.0f", iq, dq)
			}
		})
	}
}

// TestSlowStartRamp: a realserver joining at health 80 ramps to 80 over
// slow-start in steps thinned by the damping threshold, and health 0 in
// the middle of the ramp is weight 0 at once.
func TestSlowStartRamp(t *testing.T) {
	cfg := testConfig()
	cfg.VirtualServices = cfg.VirtualServices[:1]
	cfg.SlowStart = 20 * time.Second
	cfg.WeightThreshold = 5
	tb := newTable(cfg, discard())
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardDR)}, t0)
	apply(t, tb)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 80}}, t0)
	var seen []int
	writes := 0
	for now := t0; now.Before(t0.Add(30 * time.Second)); now = now.Add(time.Second) {
		tb.tick(now)
		writes += len(apply(t, tb))
		seen = append(seen, kernelWeight(tb))
	}
	if seen[0] > 5 || seen[len(seen)-1] != 80 {
		t.Fatalf("ramp %v: want a small first weight and 80 at the end", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("ramp %v goes down", seen)
		}
	}
	// 2 s ticks over 20 s, each a step of 8: at most one write a tick.
	if writes > 11 {
		t.Fatalf("%d writes for one ramp: %v", writes, seen)
	}
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 0}}, t0.Add(31*time.Second))
	apply(t, tb)
	if w := kernelWeight(tb); w != 0 {
		t.Fatalf("health 0 gave weight %d", w)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func peerAt(s string) netip.AddrPort { return peer(mustAddr(s)) }
