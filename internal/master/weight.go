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
