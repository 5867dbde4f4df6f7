package master

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Admin states and the operator's view of the table (feedbackctl).
//
//   - drain: weight 0 whatever the agent reports; existing connections go
//     on; the destination is never deleted while drained, even once its
//     agent has gone.
//   - maint: weight 0, and deleted once its active connections reach 0;
//     it stays out of IPVS, its agent still reporting, until ready.
//   - ready: back to the agent's health (through slow start).
//
// Admin states are keyed by destination and outlive entries, so that a
// destination in maint, deleted, stays out when its agent reconnects or
// the master restarts; they are saved with the state (AdminStore).

const (
	AdminDrain = control.AdminDrain
	AdminMaint = control.AdminMaint
)

// adminTargets resolves "RS [VS]" to the destinations it names: the
// realserver under the named virtual service, or under every configured
// one. Only destinations this master manages (or that carry an admin
// state already, for ready) are named.
func (t *table) adminTargets(vsName string, rs netip.Addr, state string) ([]destID, error) {
	var ids []destID
	found := vsName == ""
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		if vsName != "" && vs.Name != vsName {
			continue
		}
		found = true
		id := destID{vsKey(vs), ipvs.DestKey{Address: rs, Port: vs.DestPort(vs.FeedPort())}}
		_, managed := t.entries[id]
		_, marked := t.admin[id]
		if managed || marked && state == "" {
			ids = append(ids, id)
		}
	}
	if !found {
		return nil, fmt.Errorf("no virtual service named %q", vsName)
	}
	if len(ids) == 0 {
		where := "any virtual service"
		if vsName != "" {
			where = "virtual service " + vsName
		}
		return nil, fmt.Errorf("realserver %s is not managed by this master under %s", rs, where)
	}
	return ids, nil
}

// setAdmin applies an admin state ("" = ready) to "RS [VS]" and returns the
// destinations it changed.
func (t *table) setAdmin(vsName string, rs netip.Addr, state, who string, now time.Time) ([]destID, error) {
	ids, err := t.adminTargets(vsName, rs.Unmap(), state)
	if err != nil {
		return nil, err
	}
	var changed []destID
	for _, id := range ids {
		if t.admin[id] == state {
			continue
		}
		changed = append(changed, id)
		t.adminChanged = true
		reason := "admin ready"
		switch state {
		case AdminDrain:
			reason = "admin drain"
		case AdminMaint:
			reason = "admin maint"
		}
		if state == "" {
			delete(t.admin, id)
		} else {
			t.admin[id] = state
		}
		e := t.entries[id]
		vs := id.Service.String()
		if e != nil {
			vs = e.vsName
		}
		t.log.Info("admin state set", "vs", vs, "realserver", id.Dest.Address.String(),
			"admin", strings.TrimPrefix(reason, "admin "), "reason", reason, "by", who)
		if e == nil {
			continue
		}
		switch state {
		case AdminDrain, AdminMaint:
			e.nextCheck = now.Add(t.cfg.KeepaliveInterval)
			if e.state == stateActive {
				t.step(e, now)
			}
		default:
			if e.state == stateActive {
				// Back from 0: through slow start, like any return.
				e.rampStart = now
				e.want, e.target = 0, 0
				t.retarget(e, now)
				if !e.inKernel {
					t.markDirty(e, now) // taken out by maint: add it again
				}
			}
		}
	}
	return changed, nil
}

// maintDue returns the destinations in maint whose removal check is due;
// quiescing ones are checked by tick already.
func (t *table) maintDue(now time.Time) (due []destID) {
	for id, a := range t.admin {
		e := t.entries[id]
		if a != AdminMaint || e == nil || !e.inKernel || e.remove || e.state == stateQuiescing || e.nextCheck.After(now) {
			continue
		}
		due = append(due, id)
	}
	return due
}

// status describes every destination under the configured virtual
// services that matches the filters, with what the kernel has now.
func (t *table) status(kernel map[destID]ipvs.Destination, vsName string, rs netip.Addr, now time.Time) []control.Destination {
	var out []control.Destination
	ids := t.owned()
	for id := range t.admin {
		if _, ok := t.entries[id]; !ok {
			ids = append(ids, id)
		}
	}
	sortIDs(ids)
	names := map[ipvs.ServiceKey]string{}
	for i := range t.cfg.VirtualServices {
		names[vsKey(&t.cfg.VirtualServices[i])] = t.cfg.VirtualServices[i].Name
	}
	for _, id := range slices.Compact(ids) {
		name, configured := names[id.Service]
		if !configured || vsName != "" && name != vsName || rs.IsValid() && id.Dest.Address != rs.Unmap() {
			continue
		}
		d := control.Destination{VS: name, Service: id.Service.String(), Realserver: id.Dest.String(),
			Health: -1, Kernel: -1, Admin: t.admin[id], State: "absent"}
		if k, ok := kernel[id]; ok {
			d.Kernel, d.ActiveConn, d.InactConn = k.Weight, k.ActiveConns, k.InactiveConns
			d.Forwarding = k.Forwarding.String()
		}
		e := t.entries[id]
		if e != nil {
			d.State, d.Offers, d.Target, d.Weight = e.state.String(), len(e.offers), e.target, e.want
			if d.Forwarding == "" {
				d.Forwarding = e.fwd.String()
			}
			if e.owner != 0 {
				d.Agent = t.peerOf(e.owner)
			}
			if e.health != necp.HealthUnknown || e.owner != 0 {
				d.Health = int(e.health)
			}
			if !e.healthAt.IsZero() {
				d.HealthAge = now.Sub(e.healthAt).Round(time.Second).String()
			}
		}
		if d.Kernel <= 0 {
			d.Why = t.why(id, e)
		}
		out = append(out, d)
	}
	return out
}

// why says why a destination has weight 0 (or is not in IPVS).
func (t *table) why(id destID, e *entry) string {
	switch a := t.admin[id]; {
	case a == AdminMaint && (e == nil || !e.inKernel):
		return "admin maint: removed, kept out until ready"
	case a != "":
		return "admin " + a
	case e == nil:
		return "not managed"
	case e.state == stateQuiescing:
		return e.why
	case e.state == stateOrphan:
		return "taken back at start-up; waiting for its agent"
	case !e.inKernel:
		return "not in IPVS yet"
	case e.health == 0:
		return "agent reports health 0"
	case e.health == necp.HealthUnknown:
		return "no health reported yet"
	}
	return ""
}

// agents describes every agent session.
func (t *table) agents(now time.Time) []control.Agent {
	sids := make([]sessionID, 0, len(t.sessions))
	for sid := range t.sessions {
		sids = append(sids, sid)
	}
	slices.Sort(sids)
	out := make([]control.Agent, 0, len(sids))
	for _, sid := range sids {
		si := t.sessions[sid]
		a := control.Agent{Peer: si.peer.String(), Since: si.since}
		for _, rec := range si.started {
			sp := svcPort{rec.Protocol, rec.Port}
			addr := si.peer.Addr().Unmap()
			if c, ok := claimed(rec, si.peer); ok {
				addr = c
			}
			s := control.Service{Service: serviceName(rec.Protocol, rec.Port), Realserver: addr.String(), Health: -1}
			if h, ok := si.health[sp]; ok {
				s.Health = int(h)
			}
			for id, o := range si.offers.all() {
				if o.feed == sp && id.Dest.Address == addr {
					s.Offers++
					if e := t.entries[id]; e != nil && e.owner == sid {
						s.Owns++
					}
				}
			}
			a.Services = append(a.Services, s)
		}
		out = append(out, a)
	}
	return out
}
