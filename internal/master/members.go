package master

import (
	"crypto/subtle"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Membership and ownership: which sessions offer which destinations, and
// which one of them sets each destination's weight.
//
// The rules, which the simulation test (sim_test.go) checks after every
// event of long random runs:
//
//   - A destination passes between sessions, never through 0, while some
//     live session still offers it: several sessions may offer one
//     destination (two agent instances on one host, or a reconnect whose
//     old connection is not dead yet). Only when the last one STOPs or
//     goes is the destination quiesced.
//   - Which session owns it follows one fixed order (best): a session
//     whose peer address is the realserver's address beats one that only
//     claims that address in its START record, and among equals the
//     newest session wins (a reconnecting agent gets its entry back at
//     once). The order depends on nothing but the sessions, so a reload,
//     which offers every START record again, cannot move an entry.
//   - A STOP removes its START records: nothing but a new START brings
//     the service back.
//   - Every START and every reload checks the access policy in force;
//     a session it no longer admits is closed (kick) and loses its
//     entries, and an address claim it no longer trusts is withdrawn.

// join handles a START: it matches each service record against the
// configured virtual services by (protocol, port) and returns a status per
// record, with the destinations each accepted record offers (the owner
// checks them again before answering: see replyJoins). The realserver
// address is the agent's TCP peer address unless the record claims another.
func (t *table) join(ev joinEvent, now time.Time) (st []necp.Status, ids [][]destID) {
	st = make([]necp.Status, len(ev.recs))
	ids = make([][]destID, len(ev.recs))
	if reason := t.inadmissible(ev.peer.Addr(), ev.auth); reason != "" {
		// The policy was tightened by a reload between this session's
		// handshake and its START.
		for i := range st {
			st[i] = necp.StatusRefused
		}
		t.obs.Refused(reason)
		t.log.Warn("agent refused at START: the access policy in force does not admit it",
			"agent", ev.peer.String(), "reason", reason)
		t.gone(ev.sid, reason, now)
		if ev.kick != nil {
			ev.kick(reason)
		}
		return st, ids
	}
	si := t.sessions[ev.sid]
	if si == nil {
		si = &sessionInfo{peer: ev.peer, since: now, auth: ev.auth, kick: ev.kick,
			health: map[svcPort]uint8{}}
		t.sessions[ev.sid] = si
	}
	over := 0
	for i, rec := range ev.recs {
		// A service STARTed again replaces its record, so repeating START
		// cannot grow the session; new services count against
		// max-services, which bounds what one agent can make the master
		// hold and write to IPVS.
		j := si.startedIndex(rec)
		var prev necp.ServiceRecord
		switch {
		case j >= 0:
			prev, si.started[j] = si.started[j], rec
		case len(si.started) >= t.cfg.MaxServices:
			st[i] = necp.StatusRefused
			over++
			continue
		default:
			si.started = append(si.started, rec)
		}
		st[i], ids[i] = t.joinOne(ev.sid, si, rec, now, true)
		if st[i] == necp.StatusRefused {
			// A refused record is not kept, so that a reload cannot bring
			// in what the agent was told is out; one that replaced an
			// earlier record gives that record back (a record that
			// matched nothing stays, for a virtual service added later).
			if j >= 0 {
				si.started[j] = prev
			} else {
				si.started = si.started[:len(si.started)-1]
			}
		}
	}
	for range over {
		t.obs.Refused("max-services reached")
	}
	if over > 0 {
		t.log.Warn("services refused: the agent offers more than max-services", "agent", si.peer.String(),
			"refused", over, "max_services", t.cfg.MaxServices, "reason", "max-services reached")
	}
	return st, ids
}

// unstart forgets a START record the master answered "refused": a reload
// must not bring in what the agent was told is out (a record that matched
// nothing stays, so that a virtual service added later picks it up). Any
// offer an earlier START of the same record made is withdrawn with it.
func (t *table) unstart(si *sessionInfo, sid sessionID, rec necp.ServiceRecord, reason string, now time.Time) {
	if j := si.startedIndex(rec); j >= 0 {
		si.started = slices.Delete(si.started, j, j+1)
	}
	a := si.peer.Addr().Unmap()
	if c, ok := claimed(rec, si.peer); ok {
		a = c
	}
	for _, id := range sortedOffers(si) {
		if si.offers.of(id).feed == (svcPort{rec.Protocol, rec.Port}) && id.Dest.Address == a {
			t.withdrawOffer(si, sid, id, reason, now)
		}
	}
}

// inadmissible says why the access policy in force refuses a session from
// addr that proved auth, "" when it admits it.
func (t *table) inadmissible(addr netip.Addr, auth []byte) string {
	if !config.Allowed(t.cfg.Allow, addr) {
		return "address not in allow"
	}
	if t.cfg.Secret != nil && subtle.ConstantTimeCompare(auth, t.cfg.Secret) != 1 {
		return "not authenticated"
	}
	return ""
}

// startedIndex finds an earlier START record for the same service
// (protocol, port and claimed address), -1 if there is none.
func (si *sessionInfo) startedIndex(rec necp.ServiceRecord) int {
	return slices.IndexFunc(si.started, func(r necp.ServiceRecord) bool {
		return r.Protocol == rec.Protocol && r.Port == rec.Port && r.Address == rec.Address
	})
}

// claimed returns the realserver address a record names other than the
// session's own, if it names one.
func claimed(rec necp.ServiceRecord, peer netip.AddrPort) (netip.Addr, bool) {
	if rec.Address.IsValid() && !rec.Address.IsUnspecified() && rec.Address.Unmap() != peer.Addr().Unmap() {
		return rec.Address.Unmap(), true
	}
	return netip.Addr{}, false
}

// claimRefusal says why the policy in force refuses an address claim.
func (t *table) claimRefusal(addr netip.Addr) string {
	switch {
	case !t.cfg.TrustAgentAddress:
		return "address claim not trusted"
	case !config.Allowed(t.cfg.Allow, addr):
		return "address not in allow"
	}
	return ""
}

// joinOne offers one START record to every virtual service it matches.
// loud is false when a reload matches records again: what was said at the
// START is not said again at every reload.
func (t *table) joinOne(sid sessionID, si *sessionInfo, rec necp.ServiceRecord, now time.Time, loud bool) (necp.Status, []destID) {
	log := t.log.With("agent", si.peer.String(), "service", serviceName(rec.Protocol, rec.Port))
	if rec.Unsupported > 0 {
		t.obs.Refused("unsupported extension")
		log.Warn("refused service: its START entry uses an extension version or address family this master does not know (necp-protocol.md §5.5)",
			"reason", "unsupported extension")
		return necp.StatusRefused, nil
	}
	fwd, ok := forwardingFromNECP(rec.Forwarding)
	if !ok {
		t.obs.Refused("invalid forwarding")
		log.Warn("refused service: invalid forwarding method", "forwarding", rec.Forwarding.String(), "reason", "invalid forwarding")
		return necp.StatusRefused, nil
	}
	addr := si.peer.Addr().Unmap()
	if c, ok := claimed(rec, si.peer); ok {
		// The agent names a realserver address other than its own: right
		// for a multi-homed realserver, but also exactly what a hostile
		// host would do to point traffic at someone else.
		if reason := t.claimRefusal(c); reason != "" {
			if loud {
				t.obs.Refused(reason)
				log.Warn("refused service: the agent claims another realserver address (trust-agent-address = yes, and the address inside allow, are needed)",
					"realserver", c.String(), "reason", reason)
			}
			return necp.StatusRefused, nil
		}
		addr = c
	}
	if addr.Is6() && (!addr.IsGlobalUnicast() && !addr.IsLoopback() || addr.Zone() != "") {
		// Link-local and other scoped addresses cannot be put into IPVS
		// (it has no zone), and multicast or unspecified is no realserver.
		t.obs.Refused("invalid address")
		log.Warn("refused service: the realserver address cannot be an IPVS destination", "realserver", addr.String(), "reason", "invalid address")
		return necp.StatusRefused, nil
	}
	matched, mixed := false, false
	var ids []destID
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		if vs.Protocol != rec.Protocol || vs.FeedPort() != rec.Port {
			continue
		}
		matched = true
		id := destID{vsKey(vs), ipvs.DestKey{Address: addr, Port: vs.DestPort(rec.Port)}}
		// A firewall-mark service has no address; it is IPv4 in this
		// version (ipvs.FWMarkKey without a family).
		if vsIs4 := !vs.Address.IsValid() || vs.Address.Is4(); vsIs4 != addr.Is4() &&
			(!vs.MixedFamily || effectiveForwarding(vs, fwd) != ipvs.ForwardTunnel) {
			// Across families only where the service says mixed-family
			// = yes, and only by tunnel (the kernel refuses any other
			// method, ipvs.CheckDestination too): the same-family
			// virtual services of this port still take the realserver.
			// A reload that takes either away withdraws the offer.
			mixed = true
			if si.offers.has(id) {
				t.withdrawOffer(si, sid, id, "address family mismatch", now)
			}
			continue
		}
		if t.dormant[id] {
			// Recorded as ours, not yet adopted (its virtual service came
			// back without a read of the kernel): creating an entry would
			// meet our own destination as EEXIST and disown it. It is
			// offered once adopted.
			continue
		}
		if t.foreign[id] {
			if loud {
				t.obs.Refused("foreign destination")
				log.Warn("refused: this destination exists in IPVS but was not created by feedbackd; it is left alone",
					"vs", vs.Name, "realserver", addr.String(), "reason", "foreign destination")
			}
			continue
		}
		f := t.forwardingFor(si, vs, id, fwd, log)
		e := t.entries[id]
		if e == nil {
			e = &entry{id: id, vsName: vs.Name, maxWeight: vs.MaxWeight, fwd: f,
				state: stateActive, health: necp.HealthUnknown, want: 0, since: now}
			t.put(e)
			log.Info("realserver joined", "vs", vs.Name, "realserver", addr.String(), "forwarding", f.String(), "weight", 0)
		}
		si.offers.set(id, offer{f, svcPort{rec.Protocol, rec.Port}})
		if !slices.Contains(e.offers, sid) {
			e.offers = append(e.offers, sid)
		}
		t.elect(e, now)
		ids = append(ids, id)
	}
	switch {
	case len(ids) > 0:
		return necp.StatusAccepted, ids
	case mixed:
		if loud {
			t.obs.Refused("address family mismatch")
			log.Warn("refused service: the realserver's address family differs from that of every virtual service of this port "+
				"(a virtual service takes the other family only with mixed-family = yes, and IPVS only with tunnel forwarding)",
				"realserver", addr.String(), "reason", "address family mismatch")
		}
		return necp.StatusRefused, nil
	case matched:
		return necp.StatusRefused, nil
	}
	if loud {
		log.Info("service matches no virtual service; ignored")
	}
	return necp.StatusNoMatch, nil
}

// forwardingFor is the forwarding method a destination gets from an
// agent that asks for agent: the virtual service's own when it sets one
// (the director's network design decides; feedbackd-master.conf(5),
// forwarding), else the agent's. A disagreement is logged once per session
// and destination, not at every START repeat or reload.
func (t *table) forwardingFor(si *sessionInfo, vs *config.VirtualService, id destID, agent ipvs.Forwarding, log *slog.Logger) ipvs.Forwarding {
	f := effectiveForwarding(vs, agent)
	if f != agent && !si.fwdNoted[id] {
		if si.fwdNoted == nil {
			si.fwdNoted = map[destID]bool{}
		}
		si.fwdNoted[id] = true
		log.Warn("agent's forwarding method overridden by the virtual service's",
			"vs", vs.Name, "realserver", id.Dest.Address.String(), "forwarding", f.String(),
			"agent_forwarding", agent.String(), "reason", "forwarding overridden")
	}
	return f
}

// effectiveForwarding is forwardingFor without its log: the virtual
// service's forwarding method when it sets one, else the agent's.
func effectiveForwarding(vs *config.VirtualService, agent ipvs.Forwarding) ipvs.Forwarding {
	if vs.Forwarding == necp.ForwardNone {
		return agent
	}
	if f, ok := forwardingFromNECP(vs.Forwarding); ok {
		return f
	}
	return agent // config accepts only DR, TUN and NAT
}

// best is the offer that should own e: the realserver's own address before
// a claim, then the newest session. 0 when nobody offers it.
func (t *table) best(e *entry) sessionID {
	var win sessionID
	winNative := false
	for _, sid := range e.offers {
		si := t.sessions[sid]
		if si == nil {
			continue
		}
		native := si.peer.Addr().Unmap() == e.id.Dest.Address
		if win == 0 || native && !winNative || native == winNative && sid > win {
			win, winNative = sid, native
		}
	}
	return win
}

// elect gives e to its best offer, taking that session's forwarding method
// and latest health. It changes nothing when the owner is already the best.
func (t *table) elect(e *entry, now time.Time) {
	best := t.best(e)
	if best == 0 {
		return
	}
	si := t.sessions[best]
	if fwd := si.offers.of(e.id).fwd; e.fwd != fwd {
		e.fwd = fwd
		t.markDirty(e, now)
	}
	if best == e.owner && e.state == stateActive {
		return
	}
	prev := e.owner
	switch {
	case prev != 0:
		t.log.Info("realserver now reported by another agent session", "vs", e.vsName,
			"realserver", e.id.Dest.Address.String(), "agent", si.peer.String(), "previous_agent", t.peerOf(prev))
	case e.state != stateActive:
		t.log.Info("realserver rejoined", "vs", e.vsName, "realserver", e.id.Dest.Address.String(),
			"agent", si.peer.String(), "state", e.state.String(), "weight", e.kernel.Weight)
	}
	e.owner, e.remove = best, false
	if e.state != stateActive {
		e.since = now
		t.setState(e, stateActive)
	}
	if h, ok := si.health[si.offers.of(e.id).feed]; ok {
		t.setHealth(e, h, now)
	}
	t.markDirty(e, now)
}

// withdraw ends sid's offer of e. When sid owned it, the entry passes to
// the best remaining offer, or is quiesced when there is none.
func (t *table) withdraw(e *entry, sid sessionID, reason string, now time.Time) {
	e.offers = slices.DeleteFunc(e.offers, func(s sessionID) bool { return s == sid })
	if e.owner != sid {
		return
	}
	e.owner = 0
	if len(e.offers) > 0 && t.best(e) != 0 {
		t.log.Info("agent session ended its report; another live session keeps the realserver",
			"vs", e.vsName, "realserver", e.id.Dest.Address.String(), "previous_agent", t.peerOf(sid), "reason", reason)
		t.elect(e, now)
		return
	}
	if !e.inKernel {
		// Never added (a failed write, or removed by hand while active):
		// there is nothing to quiesce, and adding it at 0 would be wrong.
		t.drop(e.id)
		return
	}
	t.quiesce(e, reason, now)
}

// withdrawOffer removes one offer from both sides.
func (t *table) withdrawOffer(si *sessionInfo, sid sessionID, id destID, reason string, now time.Time) {
	si.offers.del(id)
	if e := t.entries[id]; e != nil {
		t.withdraw(e, sid, reason, now)
	}
}

// stop handles a STOP (recs empty = every service of the session): its
// START records are removed and its offers withdrawn.
func (t *table) stop(sid sessionID, recs []necp.ServiceRecord, reason string, now time.Time) {
	si := t.sessions[sid]
	if si == nil {
		return
	}
	if len(recs) == 0 {
		si.started = nil
		for _, id := range sortedOffers(si) {
			t.withdrawOffer(si, sid, id, reason, now)
		}
		return
	}
	for _, r := range recs {
		sp := svcPort{r.Protocol, r.Port}
		all := !r.Address.IsValid() || r.Address.IsUnspecified()
		si.started = slices.DeleteFunc(si.started, func(x necp.ServiceRecord) bool {
			if x.Protocol != r.Protocol || x.Port != r.Port {
				return false
			}
			a := si.peer.Addr().Unmap()
			if c, ok := claimed(x, si.peer); ok {
				a = c
			}
			return all || a == r.Address.Unmap()
		})
		for _, id := range sortedOffers(si) {
			if si.offers.of(id).feed == sp && (all || id.Dest.Address == r.Address.Unmap()) {
				t.withdrawOffer(si, sid, id, reason, now)
			}
		}
	}
}

func sortedOffers(si *sessionInfo) []destID {
	ids := make([]destID, 0, si.offers.len())
	for id := range si.offers.all() {
		ids = append(ids, id)
	}
	sortIDs(ids)
	return ids
}

// gone handles the end of a session: each of its offers is withdrawn.
func (t *table) gone(sid sessionID, reason string, now time.Time) {
	t.stop(sid, nil, reason, now)
	delete(t.sessions, sid)
}

func (t *table) quiesce(e *entry, reason string, now time.Time) {
	t.log.Info("realserver quiesced", "vs", e.vsName, "realserver", e.id.Dest.Address.String(),
		"reason", reason, "old_weight", e.want, "weight", 0)
	e.owner, e.want, e.target, e.ctl, e.since, e.why = 0, 0, 0, 0, now, reason
	e.rampStart = time.Time{}
	t.steps.del(e.id)
	t.setState(e, stateQuiescing)
	e.nextCheck = now.Add(t.cfg.RemovalInterval)
	t.markDirty(e, now)
}

// rematch applies a new configuration (the owner has already swapped
// t.cfg). kernel is a fresh read of the configured virtual services, nil
// if it could not be read.
//
//   - Entries of virtual services that are no longer configured are left
//     in IPVS as they are, and become dormant: still recorded as this
//     master's, so that the service coming back finds them owned.
//   - Dormant entries of services configured again are adopted from the
//     kernel like at start-up; other destinations there are foreign.
//   - Sessions the new access policy does not admit are closed, and
//     claims it does not trust are withdrawn.
//   - Max-weights are updated and weights recomputed, and every session's
//     START records are matched again, so that a new virtual service
//     picks up the agents already connected. Ownership does not move.
func (t *table) rematch(kernel map[ipvs.ServiceKey][]ipvs.Destination, now time.Time) {
	configured := map[ipvs.ServiceKey]*config.VirtualService{}
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		configured[vsKey(vs)] = vs
	}
	for _, id := range t.owned() {
		e := t.entries[id]
		if e == nil {
			continue // dormant already
		}
		vs := configured[id.Service]
		if vs == nil {
			t.log.Info("virtual service no longer configured; its realserver is left as it is, still recorded as feedbackd's",
				"vs", e.vsName, "realserver", id.Dest.Address.String())
			for _, sid := range e.offers {
				if si := t.sessions[sid]; si != nil {
					si.offers.del(id)
				}
			}
			if e.inKernel {
				t.setDormant(id)
			}
			t.drop(id)
			continue
		}
		oldMax := e.maxWeight
		e.vsName, e.maxWeight = vs.Name, vs.MaxWeight
		if e.state == stateActive && e.health != necp.HealthUnknown {
			if l := t.law(); l.Smoothing > 0 && e.ctl > 0 && oldMax > 0 {
				// The law's state scales with max-weight, like the weight.
				e.ctl = min(float64(e.maxWeight), max(1, e.ctl*float64(e.maxWeight)/float64(oldMax)))
			} else {
				e.ctl, _ = t.law().Next(0, e.health, e.maxWeight)
			}
			t.retarget(e, now)
		}
		t.markDirty(e, now)
	}
	if kernel != nil {
		t.adopt(kernel, nil, now)
	}
	sids := make([]sessionID, 0, len(t.sessions))
	for sid := range t.sessions {
		sids = append(sids, sid)
	}
	slices.Sort(sids)
	for _, sid := range sids {
		si := t.sessions[sid]
		if reason := t.inadmissible(si.peer.Addr(), si.auth); reason != "" {
			t.obs.Refused(reason)
			t.log.Warn("agent session closed: the reloaded access policy does not admit it",
				"agent", si.peer.String(), "reason", reason)
			t.gone(sid, reason, now)
			if si.kick != nil {
				si.kick(reason)
			}
			continue
		}
		si.started = slices.DeleteFunc(si.started, func(rec necp.ServiceRecord) bool {
			c, ok := claimed(rec, si.peer)
			if !ok {
				return false
			}
			reason := t.claimRefusal(c)
			if reason == "" {
				return false
			}
			t.obs.Refused(reason)
			t.log.Warn("address claim withdrawn: the reloaded configuration does not allow it",
				"agent", si.peer.String(), "service", serviceName(rec.Protocol, rec.Port), "realserver", c.String(), "reason", reason)
			for _, id := range sortedOffers(si) {
				if si.offers.of(id).feed == (svcPort{rec.Protocol, rec.Port}) && id.Dest.Address == c {
					t.withdrawOffer(si, sid, id, reason, now)
				}
			}
			return true
		})
		for _, rec := range si.started {
			t.joinOne(sid, si, rec, now, false)
		}
	}
}

// reoffer matches every session's START records again, quietly: what was
// given up while the state file could not be written comes back once it
// can.
func (t *table) reoffer(now time.Time) {
	sids := make([]sessionID, 0, len(t.sessions))
	for sid := range t.sessions {
		sids = append(sids, sid)
	}
	slices.Sort(sids)
	for _, sid := range sids {
		si := t.sessions[sid]
		for _, rec := range si.started {
			t.joinOne(sid, si, rec, now, false)
		}
	}
}
