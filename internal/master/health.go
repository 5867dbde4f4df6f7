package master

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
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
		for id, o := range si.offers.all() {
			if o.feed != sp {
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

// law is the weight law the configuration asks for.
func (t *table) law() Law {
	if t.cfg.WeightLaw != config.WeightLawSmoothed {
		return Law{}
	}
	return Law{Smoothing: t.cfg.WeightSmoothing, Period: t.cfg.KeepaliveInterval}
}

// setHealth records a report for one destination. The direct law sets the
// weight from it at once; the smoothed law takes it into its next
// feedback tick, except that health 0, and the first health after 0, act
// at once: a failure is never slowed down, and a realserver that comes
// back starts from what its health says, under slow start.
func (t *table) setHealth(e *entry, h uint8, now time.Time) {
	if h != e.health {
		e.healthAt = now
	}
	e.health = h
	if h == necp.HealthUnknown {
		if t.log.Enabled(context.Background(), slog.LevelDebug) {
			t.log.Debug("health unknown; weight left alone", "vs", e.vsName,
				"realserver", e.id.Dest.Address.String(), "weight", e.want)
		}
		return
	}
	if l := t.law(); l.Smoothing <= 0 || h == 0 || e.ctl <= 0 {
		e.ctl, _ = l.Next(e.ctl, h, e.maxWeight)
	}
	t.retarget(e, now)
}

// retarget sets the target from ctl under the slow-start cap, moves the
// weight as damping allows, and keeps the entry in the feedback tick for
// as long as anything is still moving.
func (t *table) retarget(e *entry, now time.Time) {
	w := int(math.Round(e.ctl))
	if w > 0 && e.want == 0 && e.target == 0 {
		// From 0 to a weight: a join, or a return after health 0 or a
		// quiesce. An entry adopted at its weight does not ramp.
		e.rampStart = now
	}
	e.target = SlowStart(w, e.rampStart, now, t.cfg.SlowStart)
	t.step(e, now)
}

// step moves an active entry's weight towards its target as far as the
// damping policy allows, and keeps it in the tick while something is
// still to move: a step cut short by weight-max-step, the smoothed law
// not at rest, or a slow start under way.
func (t *table) step(e *entry, now time.Time) {
	if t.admin[e.id] != "" {
		// An admin state overrides the health: weight 0, at once. The law
		// goes on following the health underneath (status shows it), and
		// ready takes the weight back from there.
		if e.want != 0 {
			e.want = 0
			t.markDirty(e, now)
		}
		t.steps.del(e.id)
		return
	}
	d := DampingFor(t.cfg.WeightThreshold, t.cfg.WeightMaxStep, e.maxWeight)
	w := d.Next(e.want, e.target, e.maxWeight)
	settling := false
	if w == e.want && e.target != e.want && t.law().Smoothing > 0 {
		// Held back by the damping threshold. Noise is meant to be, but a
		// health that has lasted a whole smoothing time is not noise:
		// write it exactly, so that a steady 20 is 20 in the kernel, not
		// whatever the filter passed on its way within the threshold.
		if t.settled(e, d, now) {
			direct, _ := Weight(e.health, e.maxWeight)
			e.ctl, e.target, w = float64(direct), direct, direct
		} else {
			settling = true
		}
	}
	if w != e.want {
		t.logWeight(e, w, now)
		e.want = w
		t.markDirty(e, now)
	}
	moving := settling || d.Next(e.want, e.target, e.maxWeight) != e.want ||
		!t.law().AtRest(e.ctl, e.health, e.maxWeight) ||
		t.cfg.SlowStart > 0 && !e.rampStart.IsZero() && now.Sub(e.rampStart) < t.cfg.SlowStart
	if moving && e.state == stateActive && e.want > 0 || moving && e.ctl > 0 {
		if len(t.steps.m) == 0 {
			t.nextTick = now.Add(t.cfg.KeepaliveInterval)
		}
		t.steps.add(e)
	} else {
		t.steps.del(e.id)
	}
}

// logWeight logs one weight change. Every change is logged: the journal's
// last WEIGHT= for a destination is the weight in the kernel (feedbackd-
// master(8), JOURNAL), and the damping threshold already bounds how often
// a weight is written.
func (t *table) logWeight(e *entry, w int, _ time.Time) {
	// Guarded: the arguments would be boxed even when INFO is off.
	if t.log.Enabled(context.Background(), slog.LevelInfo) {
		t.log.Info("weight changed", "vs", e.vsName, "realserver", e.id.Dest.Address.String(),
			"health", e.health, "old_weight", e.want, "weight", w, "target", e.target)
	}
}

// settled says whether e's health has not changed for a smoothing time
// and the filter has come within the damping threshold of it, with any
// slow start over: then the rest of the way is no longer worth waiting
// for.
func (t *table) settled(e *entry, d Damping, now time.Time) bool {
	direct, ok := Weight(e.health, e.maxWeight)
	return ok && e.ctl > 0 && !e.healthAt.IsZero() &&
		now.Sub(e.healthAt) >= max(t.law().Smoothing, t.cfg.KeepaliveInterval) &&
		math.Abs(e.ctl-float64(direct)) <= max(float64(d.Threshold), 0.5) &&
		(e.rampStart.IsZero() || now.Sub(e.rampStart) >= t.cfg.SlowStart)
}

// tick runs the feedback tick when it is due, moves orphans whose grace
// has expired to quiescing, and returns the quiescing destinations whose
// removal check is due.
func (t *table) tick(now time.Time) (due []destID) {
	if len(t.steps.m) > 0 && !t.nextTick.After(now) {
		t.nextTick = now.Add(t.cfg.KeepaliveInterval)
		for _, e := range t.steps.m {
			// step may delete e from steps: allowed while ranging.
			if e.state != stateActive {
				t.steps.del(e.id)
				continue
			}
			if e.ctl > 0 {
				e.ctl, _ = t.law().Next(e.ctl, e.health, e.maxWeight)
			}
			t.retarget(e, now)
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
			if t.admin[id] != AdminDrain { // never deleted while drained
				due = append(due, id)
			}
		}
	}
	due = append(due, t.maintDue(now)...)
	sortIDs(due)
	return due
}

// removalChecked records the active connection count read for a due
// destination: zero means delete, otherwise check again one
// removal-interval later.
func (t *table) removalChecked(id destID, activeConns int, now time.Time) {
	e := t.entries[id]
	if e == nil || e.state != stateQuiescing && t.admin[id] != AdminMaint || t.admin[id] == AdminDrain {
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
	if len(t.steps.m) > 0 {
		min, found = t.nextTick, true
	}
	for _, e := range t.timed.m {
		if e.remove {
			continue
		}
		if !found || e.nextCheck.Before(min) {
			min, found = e.nextCheck, true
		}
	}
	for id, a := range t.admin {
		if e := t.entries[id]; a == AdminMaint && e != nil && e.inKernel && !e.remove &&
			(!found || e.nextCheck.Before(min)) {
			min, found = e.nextCheck, true
		}
	}
	return min, found
}
