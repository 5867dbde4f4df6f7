package master

import (
	"errors"
	"os"
	"slices"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// The reconcile with the kernel and the state file: what the master owns,
// what it writes, and what it learns from reading IPVS back.
//
// Ownership is the one thing the kernel cannot tell: a destination carries
// no tag of who created it. So the master records a destination in the
// state file before it adds it to the kernel (owner.pass saves before it
// applies), keeps it recorded until it has deleted it, and treats every
// other destination under its virtual services as foreign, never to be
// changed or deleted.

// forwardingFromNECP maps the agent's requested method to the kernel's.
func forwardingFromNECP(f necp.Forwarding) (ipvs.Forwarding, bool) {
	switch f {
	case necp.ForwardDR:
		return ipvs.ForwardRoute, true
	case necp.ForwardTUN:
		return ipvs.ForwardTunnel, true
	case necp.ForwardNAT:
		return ipvs.ForwardMasq, true
	}
	return 0, false
}

// adopt sorts the kernel's destinations under the configured virtual
// services. owned (from the state file, at start-up) joins the dormant
// set first. A dormant destination found in the kernel becomes an orphan
// awaiting its agent, at its current weight; one not found is forgotten;
// every other destination is foreign. Dormant destinations of services
// not configured stay dormant.
func (t *table) adopt(kernel map[ipvs.ServiceKey][]ipvs.Destination, owned map[destID]bool, now time.Time) {
	for id := range owned {
		if _, ok := t.entries[id]; !ok {
			t.setDormant(id)
		}
	}
	grace := time.Duration(1+t.cfg.KeepaliveRetries) * t.cfg.KeepaliveTimeout
	configured := map[ipvs.ServiceKey]string{}
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		key := vsKey(vs)
		configured[key] = vs.Name
		for _, d := range kernel[key] {
			id := destID{key, d.DestKey}
			if _, ok := t.entries[id]; ok {
				continue
			}
			if !t.dormant[id] {
				t.foreign[id] = true
				continue
			}
			t.forgetDormant(id)
			t.put(&entry{
				id: id, vsName: vs.Name, maxWeight: vs.MaxWeight, fwd: d.Forwarding,
				state: stateOrphan, health: necp.HealthUnknown, want: d.Weight, ctl: float64(d.Weight),
				since: now, nextCheck: now.Add(grace), inKernel: true, kernel: d, recorded: true,
			})
			t.log.Info("adopted destination created earlier by feedbackd; waiting for its agent",
				"vs", vs.Name, "realserver", d.Address.String(), "weight", d.Weight, "grace", grace)
		}
	}
	for id := range t.dormant {
		if _, ok := configured[id.Service]; ok {
			// Recorded as ours but gone from the kernel: nothing to own.
			t.forgetDormant(id)
			t.log.Info("recorded destination is no longer in IPVS; forgetting it",
				"vs", configured[id.Service], "realserver", id.Dest.Address.String())
		}
	}
	t.ownedChanged = true
}

// pruneDormant forgets dormant destinations whose virtual service no
// longer exists in the kernel at all.
func (t *table) pruneDormant(services map[ipvs.ServiceKey]bool) {
	for id := range t.dormant {
		if !services[id.Service] {
			t.forgetDormant(id)
		}
	}
}

// op is one IPVS write.
type op struct {
	kind ipvs.OpKind
	id   destID
	dest ipvs.Destination
}

// diff returns the writes that bring the kernel to the wanted state: only
// destinations that changed are written, and each write carries the full
// destination (forwarding and thresholds from the kernel's own copy).
// Nothing is added before it is recorded in the state file.
func (t *table) diff() []op {
	ops := t.ops[:0] // reused: one diff per owner pass
	defer func() { t.ops = ops[:0] }()
	for id, e := range t.dirty.m {
		switch {
		case e.remove:
			if e.inKernel {
				ops = append(ops, op{ipvs.OpDelete, id, e.kernel})
			}
		case !e.inKernel:
			if e.recorded && t.admin[id] != AdminMaint {
				ops = append(ops, op{ipvs.OpAdd, id, ipvs.Destination{DestKey: id.Dest, Weight: e.want, Forwarding: e.fwd}})
			}
		case e.kernel.Weight != e.want || e.kernel.Forwarding != e.fwd:
			d := e.kernel
			d.Weight, d.Forwarding = e.want, e.fwd
			ops = append(ops, op{ipvs.OpUpdate, id, d})
		}
	}
	if len(ops) > 1 {
		slices.SortFunc(ops, func(a, b op) int { return cmpID(a.id, b.id) })
	}
	return ops
}

// applied records the result of a write. A failed write stays dirty and is
// retried on the next pass, except an add that finds the destination
// already there: someone else created it since the last read, so it is
// foreign and the master lets go of it.
func (t *table) applied(o op, err error) {
	e := t.entries[o.id]
	if e == nil {
		return
	}
	if err != nil {
		if o.kind == ipvs.OpAdd && errors.Is(err, os.ErrExist) {
			t.disown(e, "it was added to IPVS by someone else")
		}
		return
	}
	switch o.kind {
	case ipvs.OpDelete:
		if t.admin[o.id] == AdminMaint && e.owner != 0 {
			// Its agent still reports: keep the entry, out of the kernel,
			// until an operator says ready.
			e.inKernel, e.remove = false, false
			t.clearDirty(e)
			t.log.Info("realserver removed for maintenance; it stays out until feedbackctl ready",
				"vs", e.vsName, "realserver", o.id.Dest.Address.String(), "reason", "admin maint")
			return
		}
		t.drop(o.id)
		why := e.why
		if why == "" {
			why = "quiesced"
		}
		t.log.Info("realserver removed", "vs", e.vsName, "realserver", o.id.Dest.Address.String(), "reason", why)
		return
	default:
		e.inKernel, e.kernel = true, o.dest
	}
	if e.kernel.Weight == e.want && e.kernel.Forwarding == e.fwd && !e.remove {
		t.clearDirty(e)
	}
}

// disown lets go of an entry the master never had in the kernel, because
// another tool's destination is there: it becomes foreign, and every
// session's offer of it is withdrawn without touching the kernel.
func (t *table) disown(e *entry, why string) {
	t.obs.Refused("foreign destination")
	t.log.Warn("refused: this destination exists in IPVS but was not created by feedbackd; it is left alone",
		"vs", e.vsName, "realserver", e.id.Dest.Address.String(), "why", why, "reason", "foreign destination")
	for _, sid := range e.offers {
		if si := t.sessions[sid]; si != nil {
			si.offers.del(e.id)
		}
	}
	t.foreign[e.id] = true
	t.drop(e.id)
}

// clean marks entries whose kernel copy already matches as not dirty (a
// dirty flag set by a join that changed nothing).
func (t *table) clean() {
	for _, e := range t.dirty.m {
		if !e.remove && e.inKernel && e.kernel.Weight == e.want && e.kernel.Forwarding == e.fwd {
			t.clearDirty(e)
		}
	}
}

// recordedAll is called after the state file was written: every entry
// (and every dormant destination) is now recorded.
func (t *table) recordedAll() {
	for _, e := range t.unrecorded.m {
		e.recorded = true
	}
	t.unrecorded = newIndex()
	t.ownedChanged = false
	t.resetTouched()
}

// resetTouched forgets the touched destinations: recorded, or to be
// written whole.
func (t *table) resetTouched() {
	// After a join burst the buffer would keep its peak for ever.
	if cap(t.touched) > 1024 {
		t.touched = nil
	}
	t.touched = t.touched[:0]
}

// unrecordable is called when the state file could not be written: the
// entries that are neither recorded nor in the kernel are given up (their
// STARTs are refused), since adding them would make destinations a
// restarted master could not tell from foreign ones.
func (t *table) unrecordable() (n int) {
	for id, e := range t.unrecorded.m {
		if e.inKernel {
			continue
		}
		for _, sid := range e.offers {
			if si := t.sessions[sid]; si != nil {
				si.offers.del(id)
			}
		}
		t.drop(id)
		n++
	}
	if n > 0 {
		t.gaveUp = true
	}
	return n
}

// resync compares the table with a fresh read of the kernel under the
// configured virtual services. It is the full reconcile: destinations
// changed or removed outside feedbackd are noticed and logged, never fought
// silently.
func (t *table) resync(kernel map[ipvs.ServiceKey][]ipvs.Destination, now time.Time) {
	seen := map[destID]ipvs.Destination{}
	for key, ds := range kernel {
		for _, d := range ds {
			seen[destID{key, d.DestKey}] = d
		}
	}
	for id := range seen {
		if _, ours := t.entries[id]; !ours {
			t.foreign[id] = true
		}
	}
	for id := range t.foreign {
		if _, ok := seen[id]; !ok {
			delete(t.foreign, id)
		}
	}
	if t.dryRun {
		// Nothing was written, so the kernel cannot be expected to match.
		return
	}
	for _, id := range t.owned() {
		e := t.entries[id]
		if e == nil {
			continue
		}
		d, ok := seen[id]
		if !ok {
			if !e.inKernel {
				continue
			}
			switch e.state {
			case stateActive:
				t.log.Warn("destination was removed outside feedbackd while its agent is active; adding it again",
					"vs", e.vsName, "realserver", id.Dest.Address.String())
				e.inKernel = false
				t.markDirty(e, now)
			default:
				// An administrator removed a quiesced or orphaned entry by
				// hand: respect that and forget it.
				t.log.Info("destination was removed outside feedbackd; forgetting it",
					"vs", e.vsName, "realserver", id.Dest.Address.String(), "state", e.state.String())
				t.drop(id)
			}
			continue
		}
		if !e.inKernel {
			// Not added by us yet, and already there: another tool's.
			t.disown(e, "it appeared in IPVS before feedbackd added it")
			continue
		}
		if e.state == stateOrphan {
			e.kernel, e.want, e.fwd, e.ctl = d, d.Weight, d.Forwarding, float64(d.Weight)
			continue
		}
		if d.Weight != e.kernel.Weight || d.Forwarding != e.kernel.Forwarding {
			t.log.Warn("destination was changed outside feedbackd; restoring",
				"vs", e.vsName, "realserver", id.Dest.Address.String(),
				"kernel_weight", d.Weight, "kernel_forwarding", d.Forwarding.String(),
				"weight", e.want, "forwarding", e.fwd.String())
			t.markDirty(e, now)
		}
		e.kernel = d
		if d.Weight != e.want || d.Forwarding != e.fwd {
			e.dirty = true
			t.dirty.add(e)
		}
	}
}

// owned lists the destinations this master is responsible for, for the
// state file: its entries and the dormant ones.
func (t *table) owned() []destID {
	ids := make([]destID, 0, len(t.entries)+len(t.dormant))
	for id := range t.entries {
		ids = append(ids, id)
	}
	for id := range t.dormant {
		ids = append(ids, id)
	}
	sortIDs(ids)
	return ids
}
