package master

import "github.com/lvs-feedbackd/feedbackd/internal/necp"

// Weight turns a reported health into an IPVS weight for a virtual service
// whose max-weight is maxWeight:
//
//	weight = round(health × maxWeight / 100), clamped to 0..maxWeight
//
// Health 0 gives weight 0 (quiesced: existing connections continue, no new
// ones). Health values 101..254 are treated as 100. Health 255 (unknown:
// the agent's monitor failed) returns ok=false: the caller leaves the
// current weight alone rather than guess.
//
// The weight is always recomputed from the latest report, never adjusted by
// a delta, so it cannot drift however many reports are lost or repeated
// (keepalived#2720 is what drift looks like).
func Weight(health uint8, maxWeight int) (weight int, ok bool) {
	if health == necp.HealthUnknown {
		return 0, false
	}
	if health > necp.HealthMax {
		health = necp.HealthMax
	}
	if maxWeight <= 0 {
		return 0, true
	}
	return (int(health)*maxWeight + 50) / 100, true
}

// Damping is the anti-oscillation policy: which weight to write given the
// weight the kernel has (cur) and the one the latest health asks for
// (target). Both limits are in weight units; zero turns each off.
//
// The rules, in order:
//
//  1. target 0 or cur 0 is written at once: quiescing a sick realserver
//     and taking a recovered one back are decisions, never noise.
//  2. a move of Threshold or less is not written: cpuload health jitters
//     by a few points between samples, and each IPVS weight write restarts
//     the wrr scheduler's round. Except a move to max-weight, so that a
//     realserver that is fully healthy again gets its full share.
//  3. a move larger than MaxStep is cut to MaxStep; the caller takes the
//     next step one keepalive-interval later.
//
// Damping never drifts: the comparison is always between the kernel's
// weight and a target computed afresh from the latest report, so however
// many small changes arrive, the written weight stays within Threshold of
// the last target and follows any lasting change.
type Damping struct {
	Threshold int
	MaxStep   int
}

// DampingFor converts the configuration's percentages of max-weight into
// weight units for one virtual service, rounding to the nearest unit.
func DampingFor(thresholdPct, maxStepPct, maxWeight int) Damping {
	return Damping{
		Threshold: (thresholdPct*maxWeight + 50) / 100,
		MaxStep:   (maxStepPct*maxWeight + 50) / 100,
	}
}

// Next returns the weight to write (cur when nothing should be written).
func (d Damping) Next(cur, target, maxWeight int) int {
	delta := target - cur
	switch {
	case delta == 0:
		return cur
	case target == 0 || cur == 0:
		return target
	case delta <= d.Threshold && -delta <= d.Threshold && target != maxWeight:
		return cur
	case d.MaxStep > 0 && delta > d.MaxStep:
		return cur + d.MaxStep
	case d.MaxStep > 0 && -delta > d.MaxStep:
		return cur - d.MaxStep
	}
	return target
}
