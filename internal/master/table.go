package master

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// The table is the master's whole view of the cluster: which realserver
// destinations it owns, who reports for them, what weight each should have,
// and what the kernel was last seen to hold. It is plain data driven by the
// owner goroutine; nothing in this file does I/O, and every method takes the
// time as an argument, so all of the master's decisions are tested with
// tables (table_test.go).

type sessionID uint64

// destID names one destination: a realserver under a virtual service.
type destID = Ref

// Ref names one destination: a realserver under a virtual service.
type Ref struct {
	Service ipvs.ServiceKey
	Dest    ipvs.DestKey
}

func (d Ref) String() string { return d.Service.String() + " -> " + d.Dest.String() }

type destState int

const (
	// stateActive: a live agent session reports for this destination.
	stateActive destState = iota
	// stateOrphan: found in the kernel at start-up, created by an earlier
	// run of the master; its agent has not re-registered yet. Its weight is
	// left exactly as it was, so a master restart disturbs nothing.
	stateOrphan
	// stateQuiescing: weight 0, no new connections; deleted once its active
	// connection count is 0 at a removal check.
	stateQuiescing
)

func (s destState) String() string {
	return [...]string{"active", "orphan", "quiescing"}[s]
}

type entry struct {
	id        destID
	vsName    string
	maxWeight int
	fwd       ipvs.Forwarding
	owner     sessionID // 0 when nobody reports for it
	state     destState
	health    uint8 // latest report; necp.HealthUnknown before the first
	want      int   // the weight it should have (what is written)
	// target is the weight the latest health asks for; want moves towards
	// it as the damping policy allows (weight.go).
	target    int
	nextStep  time.Time // when the next capped step is due (in steps)
	since     time.Time
	nextCheck time.Time // orphan: end of grace; quiescing: next removal check

	inKernel bool
	kernel   ipvs.Destination // full copy as last read or written
	dirty    bool             // want/fwd may differ from kernel, or deletion pending
	remove   bool             // delete from the kernel on the next apply
}

// svcPort is how health and STOP records name a service of an agent.
type svcPort struct {
	proto uint8
	port  uint16
}

type sessionInfo struct {
	peer     netip.AddrPort
	services map[svcPort][]destID
	started  []necp.ServiceRecord // every START record, to match again on reload
	// health is the session's latest report per service. Sessions forward
	// only changed reports, so an entry that joins later (a reload adding a
	// virtual service) takes its first weight from here.
	health map[svcPort]uint8
}

type table struct {
	cfg     *config.Master
	log     *slog.Logger
	dryRun  bool
	entries map[destID]*entry
	// foreign holds kernel destinations under configured virtual services
	// that this master did not create: they are never touched, and an agent
	// claiming one is refused.
	foreign  map[destID]bool
	sessions map[sessionID]*sessionInfo
	// dirty and timed index the entries that need work, so that a pass of
	// the owner loop costs what changed, not the size of the cluster: with
	// 20 000 realservers polled every 2 s there are 10 000 passes a second.
	dirty   index // want/fwd may differ from the kernel, or deletion pending
	timed   index // orphans and quiescing entries (they have a nextCheck)
	steps   index // active entries still stepping towards target (weight-max-step)
	nActive int   // entries in stateActive
	// ownedChanged is set when the set of owned destinations changed and
	// the state file must be rewritten.
	ownedChanged bool
	lastChange   time.Time
	ops          []op // diff's buffer
}

func newTable(cfg *config.Master, log *slog.Logger) *table {
	cfg.FillLimits()
	return &table{
		cfg:      cfg,
		log:      log,
		entries:  map[destID]*entry{},
		foreign:  map[destID]bool{},
		sessions: map[sessionID]*sessionInfo{},
		dirty:    newIndex(),
		timed:    newIndex(),
		steps:    newIndex(),
	}
}

// index is a set of entries that is ranged over on every owner pass. Go
// maps never give back buckets, and ranging over one costs its peak size,
// not its length: after 20 000 agents joined at once, a plain map of dirty
// entries would cost 20 000 slots per pass for ever. So the map is rebuilt
// when it has shrunk to a quarter of its peak, which costs O(1) amortised.
type index struct {
	m    map[destID]*entry
	peak int
}

func newIndex() index { return index{m: map[destID]*entry{}} }

func (x *index) add(e *entry) {
	x.m[e.id] = e
	x.peak = max(x.peak, len(x.m))
}

func (x *index) del(id destID) {
	delete(x.m, id)
	if x.peak > 64 && len(x.m) < x.peak/4 {
		m := make(map[destID]*entry, len(x.m))
		for k, v := range x.m {
			m[k] = v
		}
		x.m, x.peak = m, len(m)
	}
}

// put adds a new entry; setState and drop are the only other places that
// change membership or state, so the indexes stay true.
func (t *table) put(e *entry) {
	t.entries[e.id] = e
	t.index(e)
	t.ownedChanged = true
}

func (t *table) setState(e *entry, s destState) {
	t.unindex(e)
	e.state = s
	t.index(e)
}

func (t *table) drop(id destID) {
	if e := t.entries[id]; e != nil {
		t.unindex(e)
		t.dirty.del(id)
		t.steps.del(id)
		delete(t.entries, id)
		t.ownedChanged = true
	}
}

func (t *table) index(e *entry) {
	if e.state == stateActive {
		t.nActive++
	} else {
		t.timed.add(e)
	}
}

func (t *table) unindex(e *entry) {
	if e.state == stateActive {
		t.nActive--
	} else {
		t.timed.del(e.id)
	}
}

func (t *table) clearDirty(e *entry) {
	e.dirty = false
	t.dirty.del(e.id)
}

func vsKey(vs *config.VirtualService) ipvs.ServiceKey {
	return ipvs.ServiceKey{Protocol: uint16(vs.Protocol), Address: vs.Address, Port: vs.Port}
}

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

func (t *table) markDirty(e *entry, now time.Time) {
	e.dirty = true
	t.dirty.add(e)
	t.lastChange = now
}

// adopt registers destinations found in the kernel at start-up. owned says
// which of them an earlier run created (from the state file); those become
// orphans awaiting their agents, the rest are foreign.
func (t *table) adopt(kernel map[ipvs.ServiceKey][]ipvs.Destination, owned map[destID]bool, now time.Time) {
	grace := time.Duration(1+t.cfg.KeepaliveRetries) * t.cfg.KeepaliveTimeout
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		key := vsKey(vs)
		for _, d := range kernel[key] {
			id := destID{key, d.DestKey}
			if !owned[id] {
				t.foreign[id] = true
				continue
			}
			if _, ok := t.entries[id]; ok {
				continue
			}
			t.put(&entry{
				id: id, vsName: vs.Name, maxWeight: vs.MaxWeight, fwd: d.Forwarding,
				state: stateOrphan, health: necp.HealthUnknown, want: d.Weight,
				since: now, nextCheck: now.Add(grace), inKernel: true, kernel: d,
			})
			t.log.Info("adopted destination from an earlier run; waiting for its agent",
				"vs", vs.Name, "realserver", d.Address.String(), "weight", d.Weight, "grace", grace)
		}
	}
	t.ownedChanged = true
}

// join handles a START: it matches each service record against the
// configured virtual services by (protocol, port) and returns a status per
// record. The realserver address is the agent's TCP peer address unless the
// record carries one.
func (t *table) join(sid sessionID, peer netip.AddrPort, recs []necp.ServiceRecord, now time.Time) []necp.Status {
	si := t.sessions[sid]
	if si == nil {
		si = &sessionInfo{peer: peer, services: map[svcPort][]destID{}, health: map[svcPort]uint8{}}
		t.sessions[sid] = si
	}
	st := make([]necp.Status, len(recs))
	over := 0
	for i, rec := range recs {
		// A service STARTed again replaces its record, so repeating START
		// cannot grow the session; new services count against
		// max-services, which bounds what one agent can make the master
		// hold and write to IPVS.
		if j := si.startedIndex(rec); j >= 0 {
			si.started[j] = rec
		} else if len(si.started) >= t.cfg.MaxServices {
			st[i] = necp.StatusRefused
			over++
			continue
		} else {
			si.started = append(si.started, rec)
		}
		st[i] = t.joinOne(sid, si, rec, now)
	}
	if over > 0 {
		t.log.Warn("services refused: the agent offers more than max-services", "agent", si.peer.String(),
			"refused", over, "max_services", t.cfg.MaxServices, "reason", "max-services reached")
	}
	return st
}

// startedIndex finds an earlier START record for the same service
// (protocol, port and claimed address), -1 if there is none.
func (si *sessionInfo) startedIndex(rec necp.ServiceRecord) int {
	return slices.IndexFunc(si.started, func(r necp.ServiceRecord) bool {
		return r.Protocol == rec.Protocol && r.Port == rec.Port && r.Address == rec.Address
	})
}

// rematch applies a new configuration: entries of virtual services that are
// no longer configured are forgotten (left in IPVS as they are, like
// everything the master stops managing), max-weights are updated and
// weights recomputed from the latest health, and every session's START
// records are matched again so that a new virtual service picks up the
// agents already connected.
func (t *table) rematch(now time.Time) {
	configured := map[ipvs.ServiceKey]*config.VirtualService{}
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		configured[vsKey(vs)] = vs
	}
	for id, e := range t.entries {
		vs := configured[id.Service]
		if vs == nil {
			t.log.Info("virtual service no longer configured; its realserver is left as it is",
				"vs", e.vsName, "realserver", id.Dest.Address.String())
			t.drop(id)
			if si := t.sessions[e.owner]; si != nil {
				for sp, ids := range si.services {
					si.services[sp] = removeID(ids, id)
				}
			}
			continue
		}
		e.vsName, e.maxWeight = vs.Name, vs.MaxWeight
		if e.state == stateActive {
			if w, ok := Weight(e.health, e.maxWeight); ok {
				e.target = w
				t.step(e, now)
			}
		}
		t.markDirty(e, now)
	}
	for sid, si := range t.sessions {
		for _, rec := range si.started {
			t.joinOne(sid, si, rec, now)
		}
	}
}

func (t *table) joinOne(sid sessionID, si *sessionInfo, rec necp.ServiceRecord, now time.Time) necp.Status {
	log := t.log.With("agent", si.peer.String(), "service", serviceName(rec.Protocol, rec.Port))
	fwd, ok := forwardingFromNECP(rec.Forwarding)
	if !ok {
		log.Warn("refused service: invalid forwarding method", "forwarding", rec.Forwarding.String())
		return necp.StatusRefused
	}
	addr := si.peer.Addr().Unmap()
	if rec.Address.IsValid() && !rec.Address.IsUnspecified() && rec.Address.Unmap() != addr {
		// The agent names a realserver address other than its own: right
		// for a multi-homed realserver, but also exactly what a hostile
		// host would do to point traffic at someone else.
		claimed := rec.Address.Unmap()
		if !t.cfg.TrustAgentAddress {
			log.Warn("refused service: the agent claims another realserver address (set trust-agent-address = yes for multi-homed realservers)",
				"realserver", claimed.String(), "reason", "address claim not trusted")
			return necp.StatusRefused
		}
		if !config.Allowed(t.cfg.Allow, claimed) {
			log.Warn("refused service: the claimed realserver address is outside allow",
				"realserver", claimed.String(), "reason", "address not in allow")
			return necp.StatusRefused
		}
		addr = claimed
	}
	if !addr.Is4() {
		log.Warn("refused service: realserver address is not IPv4", "realserver", addr.String())
		return necp.StatusRefused
	}
	sp := svcPort{rec.Protocol, rec.Port}
	matched, accepted := false, false
	for i := range t.cfg.VirtualServices {
		vs := &t.cfg.VirtualServices[i]
		if vs.Protocol != rec.Protocol || vs.Port != rec.Port {
			continue
		}
		matched = true
		id := destID{vsKey(vs), ipvs.DestKey{Address: addr, Port: rec.Port}}
		l := log.With("vs", vs.Name, "realserver", addr.String())
		if t.foreign[id] {
			l.Warn("refused: this destination exists in IPVS but was not created by feedbackd; it is left alone")
			continue
		}
		e := t.entries[id]
		switch {
		case e == nil:
			e = &entry{id: id, vsName: vs.Name, maxWeight: vs.MaxWeight, fwd: fwd,
				owner: sid, state: stateActive, health: necp.HealthUnknown, want: 0, since: now}
			t.put(e)
			l.Info("realserver joined", "forwarding", fwd.String(), "weight", 0)
		case e.owner != 0 && e.owner != sid:
			// Newest wins: an agent that reconnects before the master has
			// noticed its old connection died must get its entry back.
			if old := t.sessions[e.owner]; old != nil {
				old.services[sp] = removeID(old.services[sp], id)
			}
			l.Warn("realserver taken over by a new agent session", "previous_agent", t.peerOf(e.owner))
		default:
			l.Info("realserver rejoined", "state", e.state.String(), "weight", e.kernel.Weight)
		}
		if e.fwd != fwd {
			e.fwd = fwd
		}
		e.owner, e.since, e.remove = sid, now, false
		t.setState(e, stateActive)
		if h, ok := si.health[sp]; ok {
			t.setHealth(e, h, now)
		}
		if !containsID(si.services[sp], id) {
			si.services[sp] = append(si.services[sp], id)
		}
		t.markDirty(e, now)
		accepted = true
	}
	switch {
	case accepted:
		return necp.StatusAccepted
	case matched:
		return necp.StatusRefused
	}
	log.Info("service matches no virtual service; ignored")
	return necp.StatusNoMatch
}

// health applies a KEEPALIVE_ACK: each record sets the weight of every
// destination the session registered for that (protocol, port).
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
		for _, id := range si.services[sp] {
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

// stop handles a STOP (recs nil or empty = every service of the session)
// and, with all=true, a lost connection: the destinations are quiesced.
func (t *table) stop(sid sessionID, recs []necp.ServiceRecord, reason string, now time.Time) {
	si := t.sessions[sid]
	if si == nil {
		return
	}
	if len(recs) == 0 {
		for sp, ids := range si.services {
			for _, id := range ids {
				t.quiesce(id, sid, reason, now)
			}
			delete(si.services, sp)
		}
		return
	}
	for _, r := range recs {
		sp := svcPort{r.Protocol, r.Port}
		keep := si.services[sp][:0]
		for _, id := range si.services[sp] {
			if r.Address.IsValid() && !r.Address.IsUnspecified() && r.Address.Unmap() != id.Dest.Address {
				keep = append(keep, id)
				continue
			}
			t.quiesce(id, sid, reason, now)
		}
		if len(keep) == 0 {
			delete(si.services, sp)
		} else {
			si.services[sp] = keep
		}
	}
}

// gone handles the end of a session: everything it reported for is quiesced.
func (t *table) gone(sid sessionID, reason string, now time.Time) {
	t.stop(sid, nil, reason, now)
	delete(t.sessions, sid)
}

func (t *table) quiesce(id destID, sid sessionID, reason string, now time.Time) {
	e := t.entries[id]
	if e == nil || (sid != 0 && e.owner != sid) {
		return
	}
	t.log.Info("realserver quiesced", "vs", e.vsName, "realserver", id.Dest.Address.String(),
		"reason", reason, "old_weight", e.want, "weight", 0)
	e.owner, e.want, e.target, e.since = 0, 0, 0, now
	t.steps.del(id)
	t.setState(e, stateQuiescing)
	e.nextCheck = now.Add(t.cfg.RemovalInterval)
	t.markDirty(e, now)
}

// tick moves orphans whose grace has expired to quiescing, and returns the
// quiescing destinations whose removal check is due.
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
			t.quiesce(id, 0, "agent did not re-register after the master restarted", now)
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

// op is one IPVS write.
type op struct {
	kind string // "add", "update", "delete"
	id   destID
	dest ipvs.Destination
}

// diff returns the writes that bring the kernel to the wanted state: only
// destinations that changed are written, and each write carries the full
// destination (forwarding and thresholds from the kernel's own copy).
func (t *table) diff() []op {
	ops := t.ops[:0] // reused: one diff per owner pass
	defer func() { t.ops = ops[:0] }()
	for id, e := range t.dirty.m {
		switch {
		case e.remove:
			if e.inKernel {
				ops = append(ops, op{"delete", id, e.kernel})
			}
		case !e.inKernel:
			ops = append(ops, op{"add", id, ipvs.Destination{DestKey: id.Dest, Weight: e.want, Forwarding: e.fwd}})
		case e.kernel.Weight != e.want || e.kernel.Forwarding != e.fwd:
			d := e.kernel
			d.Weight, d.Forwarding = e.want, e.fwd
			ops = append(ops, op{"update", id, d})
		}
	}
	if len(ops) > 1 {
		slices.SortFunc(ops, func(a, b op) int { return cmpID(a.id, b.id) })
	}
	return ops
}

// applied records the result of a write. A failed write stays dirty and is
// retried on the next pass.
func (t *table) applied(o op, err error) {
	e := t.entries[o.id]
	if e == nil {
		return
	}
	if err != nil {
		return
	}
	switch o.kind {
	case "delete":
		t.drop(o.id)
		t.log.Info("realserver removed", "vs", e.vsName, "realserver", o.id.Dest.Address.String())
		return
	default:
		e.inKernel, e.kernel = true, o.dest
	}
	if e.kernel.Weight == e.want && e.kernel.Forwarding == e.fwd && !e.remove {
		t.clearDirty(e)
	}
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
	for id, e := range t.entries {
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
		e.inKernel = true
		if e.state == stateOrphan {
			e.kernel, e.want, e.fwd = d, d.Weight, d.Forwarding
			continue
		}
		if d.Weight != e.kernel.Weight || d.Forwarding != e.kernel.Forwarding {
			t.log.Warn("destination was changed outside feedbackd; restoring",
				"vs", e.vsName, "realserver", id.Dest.Address.String(),
				"kernel_weight", d.Weight, "weight", e.want)
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
// state file.
func (t *table) owned() []destID {
	ids := make([]destID, 0, len(t.entries))
	for id := range t.entries {
		ids = append(ids, id)
	}
	sortIDs(ids)
	return ids
}

// counts summarises the table for status lines.
func (t *table) counts() (agents, active, quiescing int) {
	return len(t.sessions), t.nActive, len(t.entries) - t.nActive
}

func (t *table) peerOf(sid sessionID) string {
	if si := t.sessions[sid]; si != nil {
		return si.peer.String()
	}
	return "?"
}

func cmpID(a, b destID) int {
	switch {
	case lessID(a, b):
		return -1
	case lessID(b, a):
		return 1
	}
	return 0
}

func lessID(a, b destID) bool {
	if a.Service != b.Service {
		if a.Service.Protocol != b.Service.Protocol {
			return a.Service.Protocol < b.Service.Protocol
		}
		if c := a.Service.Address.Compare(b.Service.Address); c != 0 {
			return c < 0
		}
		return a.Service.Port < b.Service.Port
	}
	if c := a.Dest.Address.Compare(b.Dest.Address); c != 0 {
		return c < 0
	}
	return a.Dest.Port < b.Dest.Port
}

func sortIDs(ids []destID) { sort.Slice(ids, func(i, j int) bool { return lessID(ids[i], ids[j]) }) }

func containsID(ids []destID, id destID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func removeID(ids []destID, id destID) []destID {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// serviceName formats an agent service as "tcp/80" for log lines.
func serviceName(proto uint8, port uint16) string {
	return necp.ProtocolName(proto) + "/" + strconv.Itoa(int(port))
}
