package master

import (
	"math"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Law is how reported health becomes a weight over time.
//
// The 2007 master used the direct law: weight = health × max-weight / 100
// from the latest report. On a loaded cluster that is the herd effect:
// the least loaded realserver gets nearly every new connection, saturates,
// reports low health, loses its share to another that was idle a moment
// ago, and the roles swap every few samples (docs/experiment.md measured
// the healthy realservers' weights swinging between 0 and 90 in
// antiphase). In the loop the direct law has a gain far above 1 — one
// point of weight moved to a server comes back as many points of health
// lost — so any noise grows until the weights hit their bounds.
//
// The smoothed law follows the same mapping, but through a low-pass
// filter of the health with a time constant (weight-smoothing): each
// feedback period (keepalive-interval) the weight moves a fraction
// 1 − e^(−period/τ) of the way to what the latest health says. That
// divides the loop gain by that fraction, and the loop settles. It keeps
// what health means: a realserver that steadily reports 80 still gets 80,
// as the HOWTO says, whether its health is a load measure that feeds back
// (cpuload) or a statement of capacity that does not (constant, exec).
//
// Two things are never smoothed: health 0 (a real failure) is weight 0
// at once, and a realserver that joins or comes back from 0 starts from
// what its health says (slow start then ramps it in).
//
// Also considered, in the closed-loop model of law_test.go: Wensong
// Zhang's incremental law from the LVS project, weight += A·∛(target −
// load). It steers every realserver to a load target, so all those below
// it end at max-weight: a constant or exec health of 80 would no longer
// mean 80, and once the healthy servers were above the target it swung
// again (weight sd 10.6 in the model at 65 % load, against 0.6 smoothed).
type Law struct {
	// Smoothing is the filter's time constant; 0 is the direct law.
	Smoothing time.Duration
	// Period is the feedback period (keepalive-interval).
	Period time.Duration
}

// Next returns the law's new value (a real number: small moves add up
// between writes) from its current value ctl, after a period in which the
// latest health was h. ok is false when h is unknown (255): the weight is
// left alone.
func (l Law) Next(ctl float64, h uint8, maxWeight int) (next float64, ok bool) {
	if h == necp.HealthUnknown {
		return ctl, false
	}
	direct, _ := Weight(h, maxWeight)
	if l.Smoothing <= 0 || h == 0 || ctl <= 0 {
		return float64(direct), true
	}
	a := 1 - math.Exp(-float64(l.Period)/float64(l.Smoothing))
	next = ctl + a*(float64(direct)-ctl)
	if math.Abs(next-float64(direct)) < 0.5 {
		// Within rounding of the goal: arrive, rather than approach it
		// for ever.
		return float64(direct), true
	}
	return next, true
}

// AtRest says whether stepping from ctl with health h would change
// nothing. Entries at rest are not stepped until their health changes.
func (l Law) AtRest(ctl float64, h uint8, maxWeight int) bool {
	n, _ := l.Next(ctl, h, maxWeight)
	return n == ctl
}

// SlowStart caps the weight of a realserver that joined, or came back
// from 0, at start: it ramps linearly from 1 to w over d, so that a cold
// cache does not take a full share of new connections at once. The ramp
// needs no writes of its own beyond its steps, which the damping
// threshold thins out like any other change.
func SlowStart(w int, start, now time.Time, d time.Duration) int {
	if d <= 0 || w <= 1 || start.IsZero() {
		return w
	}
	el := now.Sub(start)
	if el >= d {
		return w
	}
	return max(1, int(math.Ceil(float64(w)*float64(el)/float64(d))))
}
