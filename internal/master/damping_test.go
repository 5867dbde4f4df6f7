package master

import (
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func TestDampingNext(t *testing.T) {
	d := Damping{Threshold: 5, MaxStep: 20}
	for _, c := range []struct {
		cur, target, want int
		why               string
	}{
		{50, 50, 50, "no change"},
		{50, 54, 50, "inside the threshold"},
		{50, 45, 50, "inside the threshold, downwards"},
		{50, 56, 56, "beyond the threshold"},
		{50, 44, 44, "beyond the threshold, downwards"},
		{50, 0, 0, "quiesce at once, whatever the cap"},
		{0, 90, 90, "back from 0 at once, whatever the cap"},
		{97, 100, 100, "max-weight is written inside the threshold"},
		{50, 100, 70, "capped upwards"},
		{90, 10, 70, "capped downwards"},
	} {
		if got := d.Next(c.cur, c.target, 100); got != c.want {
			t.Errorf("%s: Next(%d, %d) = %d, want %d", c.why, c.cur, c.target, got, c.want)
		}
	}
	if got := (Damping{}).Next(50, 51, 100); got != 51 {
		t.Errorf("no damping must write every change, got %d", got)
	}
	if d := DampingFor(5, 20, 200); d.Threshold != 10 || d.MaxStep != 40 {
		t.Errorf("percentages of max-weight 200: %+v", d)
	}
}

// dampedTable is one realserver of "http" (max-weight 100) with the
// given policy, already at weight 50.
func dampedTable(t *testing.T, thresholdPct, maxStepPct int) *table {
	cfg := testConfig()
	cfg.WeightThreshold, cfg.WeightMaxStep = thresholdPct, maxStepPct
	tb := newTable(cfg, slog.New(slog.DiscardHandler))
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardDR)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 50}}, t0)
	apply(t, tb)
	return tb
}

// kernelWeight is the weight last written for rs1 under "http".
func kernelWeight(tb *table) int { return tb.entries[id(vip1, necp.ProtoTCP, 80, rs1)].kernel.Weight }

// runSeries feeds one health report per keepalive-interval and applies
// the diff after each, as the owner loop does; it returns the number of
// IPVS writes and the weight after each report.
func runSeries(t *testing.T, tb *table, series []int) (writes int, weights []int) {
	now := t0
	for _, h := range series {
		now = now.Add(tb.cfg.KeepaliveInterval)
		tb.tick(now)
		tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: uint8(h)}}, now)
		writes += len(apply(t, tb))
		weights = append(weights, kernelWeight(tb))
	}
	return writes, weights
}

// noisy is n health reports of true value 60 with uniform noise ±amp,
// seeded, as a cpuload monitor produces under steady load.
func noisy(n, amp int) []int {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]int, n)
	for i := range s {
		s[i] = 60 + r.IntN(2*amp+1) - amp
	}
	return s
}

// TestDampingNoisySeries feeds the same noisy health series to an
// undamped and a damped table (the default policy: threshold 5 %): the
// damped one writes far less, never strays from the true value by more
// than noise + threshold, and does not drift over a long run.
func TestDampingNoisySeries(t *testing.T) {
	for _, c := range []struct {
		amp       int
		maxDamped int // writes allowed with damping, out of 2000 reports
	}{
		// Noise wider than the threshold still gets through sometimes:
		// a third of the writes at most.
		{amp: 4, maxDamped: 600},
		// Noise inside the threshold: only the first move from 50 to
		// about 60 is written, then nothing for 2000 reports.
		{amp: 2, maxDamped: 1},
	} {
		series := noisy(2000, c.amp)
		plainWrites, _ := runSeries(t, dampedTable(t, 0, 0), series)
		dampedWrites, weights := runSeries(t, dampedTable(t, config.DefaultWeightThreshold, 0), series)
		t.Logf("2000 reports of 60±%d: %d IPVS writes undamped, %d damped", c.amp, plainWrites, dampedWrites)
		if plainWrites < 1000 {
			t.Fatalf("the series is not noisy enough to test anything: %d undamped writes", plainWrites)
		}
		if dampedWrites > c.maxDamped {
			t.Errorf("±%d: damping let %d writes through, want at most %d", c.amp, dampedWrites, c.maxDamped)
		}
		lo, hi := 60-c.amp-config.DefaultWeightThreshold, 60+c.amp+config.DefaultWeightThreshold
		for i, w := range weights {
			if w < lo || w > hi {
				t.Fatalf("±%d, report %d: weight %d strayed outside %d..%d", c.amp, i, w, lo, hi)
			}
		}
		// No drift: the mean weight of the last 500 reports is as close
		// to the true value as the mean of the first 500 allows.
		if m := mean(weights[1500:]); m < 60-float64(c.amp)-1 || m > 60+float64(c.amp)+1 {
			t.Errorf("±%d: mean weight of the last 500 reports %.1f drifted from 60", c.amp, m)
		}
	}
}

func mean(xs []int) float64 {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

// TestDampingFollowsSlowRamp: changes that are each below the threshold
// must still move the weight once they add up (compared with the kernel's
// weight, not the previous report).
func TestDampingFollowsSlowRamp(t *testing.T) {
	tb := dampedTable(t, 5, 0)
	var ramp []int
	for h := 50; h >= 20; h-- {
		ramp = append(ramp, h)
	}
	_, weights := runSeries(t, tb, ramp)
	if w := weights[len(weights)-1]; w < 20 || w > 25 {
		t.Fatalf("after a ramp 50→20 in steps of 1 the weight is %d; want within the threshold of 20", w)
	}
}

// TestDampingStepCap: with weight-max-step 20 %, a fall from 50 to 10
// takes two keepalive-intervals of steps (50→30→10), and the second step
// happens on the timer, without a new report.
func TestDampingStepCap(t *testing.T) {
	tb := dampedTable(t, 5, 20)
	now := t0.Add(time.Second)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 10}}, now)
	// rs1 is in http (max-weight 100: steps of 20) and http2 (max-weight
	// 10: steps of 2).
	expectOps(t, tb, "update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=30 Route", "update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=3 Route")
	if d, ok := tb.nextDeadline(); !ok || !d.Equal(now.Add(tb.cfg.KeepaliveInterval)) {
		t.Fatalf("next step due %v (%v), want one interval later", d, ok)
	}
	tb.tick(now.Add(time.Second)) // not yet
	expectOps(t, tb)
	tb.tick(now.Add(tb.cfg.KeepaliveInterval))
	expectOps(t, tb, "update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=10 Route", "update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=1 Route")
	if len(tb.steps.m) != 0 {
		t.Fatalf("still stepping after reaching the target")
	}
	// A quiesce in the middle of a capped climb is immediate and ends it.
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 100}}, now.Add(5*time.Second))
	expectOps(t, tb, "update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=30 Route", "update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=3 Route")
	tb.stop(1, nil, "agent sent STOP", now.Add(6*time.Second))
	expectOps(t, tb, "update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=0 Route", "update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=0 Route")
	if len(tb.steps.m) != 0 {
		t.Fatalf("a quiesced realserver is still stepping")
	}
}
