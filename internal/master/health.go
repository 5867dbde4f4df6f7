package master

import (
	"context"
	"log/slog"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Health and weights: reports in, the weight each destination should have
// out, and the timers (capped steps, orphan grace, removal checks).

// health applies a KEEPALIVE_ACK: each record sets the weight of every
// destination the session owns for that (protocol, port).
func (t *table) health(sid sessionID, recs []necp.HealthRecord, now time.Time) {
	si := t.sessions[sid]
	if si == nil {
		return
	}
	for _, r := range recs {
		sp := svcPort{r.Protocol, r.Port}
		if !si.startedService(sp) {
			t.log.Debug("health for a service that was never started; ignored",
				"agent", si.peer.String(), "service", serviceName(r.Protocol, r.Port))
			continue
		}
		h := r.Health
		if h > necp.HealthMax && h != necp.HealthUnknown {
			t.log.Debug("health above 100 clamped", "agent", si.peer.String(), "health", h)
			h = necp.HealthMax
		}
		si.health[sp] = h
		for id := range si.offers {
			if svcPortOf(id) != sp {
				continue
			}
			if e := t.entries[id]; e != nil && e.owner == sid {
				t.setHealth(e, h, now)
			}
		}
	}
}

func (si *sessionInfo) startedService(sp svcPort) bool {
	for _, r := range si.started {
		if r.Protocol == sp.proto && r.Port == sp.port {
			return true
		}
	}
	return false
}

// setHealth records a report for one destination and sets its weight.
func (t *table) setHealth(e *entry, h uint8, now time.Time) {
	e.health = h
	w, ok := Weight(h, e.maxWeight)
	if !ok {
		if t.log.Enabled(context.Background(), slog.LevelDebug) {
			t.log.Debug("health unknown; weight left alone", "vs", e.vsName,
				"realserver", e.id.Dest.Address.String(), "weight", e.want)
		}
		return
	}
	e.target = w
	t.step(e, now)
}

// step moves an active entry's weight towards its target as far as the
// damping policy allows, and schedules the next step when the move was
// cut short by weight-max-step.
func (t *table) step(e *entry, now time.Time) {
	d := DampingFor(t.cfg.WeightThreshold, t.cfg.WeightMaxStep, e.maxWeight)
	if w := d.Next(e.want, e.target, e.maxWeight); w != e.want {
		if t.log.Enabled(context.Background(), slog.LevelInfo) {
			// Guarded: with cpuload monitors nearly every report changes a
			// weight, and the arguments would be boxed even at WARN.
			t.log.Info("weight changed", "vs", e.vsName, "realserver", e.id.Dest.Address.String(),
				"health", e.health, "old_weight", e.want, "weight", w, "target", e.target)
		}
		e.want = w
		t.markDirty(e, now)
	}
	if d.Next(e.want, e.target, e.maxWeight) != e.want {
		e.nextStep = now.Add(t.cfg.KeepaliveInterval)
		t.steps.add(e)
	} else {
		t.steps.del(e.id)
	}
}

// tick takes due capped steps, moves orphans whose grace has expired to
// quiescing, and returns the quiescing destinations whose removal check is
// due.
func (t *table) tick(now time.Time) (due []destID) {
	for _, e := range t.steps.m {
		if !e.nextStep.After(now) {
			t.step(e, now) // may delete e from steps: allowed while ranging
		}
	}
	for id, e := range t.timed.m {
		if e.nextCheck.After(now) || e.remove {
			continue
		}
		switch e.state {
		case stateOrphan:
			t.quiesce(e, "agent did not re-register after the master restarted", now)
		case stateQuiescing:
			due = append(due, id)
		}
	}
	sortIDs(due)
	return due
}

// removalChecked records the active connection count read for a due
// destination: zero means delete, otherwise check again one
// removal-interval later.
func (t *table) removalChecked(id destID, activeConns int, now time.Time) {
	e := t.entries[id]
	if e == nil || e.state != stateQuiescing {
		return
	}
	if activeConns > 0 {
		t.log.Debug("quiesced realserver still has active connections", "vs", e.vsName,
			"realserver", id.Dest.Address.String(), "active", activeConns)
		e.nextCheck = now.Add(t.cfg.RemovalInterval)
		return
	}
	e.remove = true
	t.markDirty(e, now)
}

// nextDeadline is the earliest time tick has something to do.
func (t *table) nextDeadline() (time.Time, bool) {
	var min time.Time
	found := false
	for _, e := range t.steps.m {
		if !found || e.nextStep.Before(min) {
			min, found = e.nextStep, true
		}
	}
	for _, e := range t.timed.m {
		if e.remove {
			continue
		}
		if !found || e.nextCheck.Before(min) {
			min, found = e.nextCheck, true
		}
	}
	return min, found
}
