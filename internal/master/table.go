package master

import (
	"iter"
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
	// owner is the session whose reports set the weight, 0 when nobody
	// reports for it. offers lists every live session that has STARTed
	// this destination and not STOPped it, owner included: when the owner
	// goes, the entry passes to the best remaining offer instead of being
	// quiesced (members.go, elect).
	owner  sessionID
	offers []sessionID
	state  destState
	health uint8 // latest report; necp.HealthUnknown before the first
	want   int   // the weight it should have (what is written)
	// ctl is the weight law's own value (law.go): a real number, so that
	// the smoothed law's small steps add up between writes; 0 when the
	// entry has no weight yet or fell to 0.
	ctl float64
	// rampStart is when the entry went from weight 0 to a weight (slow
	// start); zero when it has not ramped since it was adopted.
	rampStart time.Time
	// healthAt is when the reported health last changed value: a value
	// that lasts a whole smoothing time is written exactly, even within
	// the damping threshold (step).
	healthAt time.Time
	// why says why the entry was quiesced (the reason logged).
	why string
	// target is the weight the law asks for now (ctl under the slow-start
	// cap); want moves towards it as the damping policy allows (weight.go).
	target    int
	since     time.Time
	nextCheck time.Time // orphan: end of grace; quiescing: next removal check

	inKernel bool
	kernel   ipvs.Destination // full copy as last read or written
	dirty    bool             // want/fwd may differ from kernel, or deletion pending
	remove   bool             // delete from the kernel on the next apply
	// recorded: the state file lists this destination. Nothing is added
	// to the kernel before it is recorded, so a crash can never leave a
	// destination the next run would not know as its own.
	recorded bool
}

// svcPort is how health and STOP records name a service of an agent.
type svcPort struct {
	proto uint8
	port  uint16
}

type sessionInfo struct {
	peer  netip.AddrPort
	since time.Time
	// auth is the secret the session proved (nil: none); checked against
	// the configuration at START and at every reload.
	auth []byte
	kick func(reason string)
	// started holds the START records in force: a STOP removes its
	// records, so a reload (which matches them again) cannot bring a
	// STOPped service back.
	started []necp.ServiceRecord
	// offers maps every destination this session offers to the forwarding
	// method it gets there and the agent service that offers it.
	offers offerSet
	// fwdNoted: destinations where the agent's forwarding method was
	// overridden by the virtual service's and this was logged, so that it
	// is logged once per session and destination (nil until then).
	fwdNoted map[destID]bool
	// health is the session's latest report per service. Sessions forward
	// only changed reports, so an entry that joins later (a reload adding a
	// virtual service, or the owner of an entry going away) takes its
	// weight from here.
	health map[svcPort]uint8
}

type table struct {
	cfg     *config.Master
	log     *slog.Logger
	obs     Observer
	dryRun  bool
	entries map[destID]*entry
	// foreign holds kernel destinations under configured virtual services
	// that this master did not create: they are never touched, and an agent
	// claiming one is refused.
	foreign map[destID]bool
	// admin holds the operators' admin states (drain, maint) by
	// destination; they outlive the entries (a destination in maint is
	// deleted, and stays out) and are saved with the state (AdminStore).
	admin        map[destID]string
	adminChanged bool
	// dormant holds destinations this master created under virtual
	// services that are not configured right now. They stay in the state
	// file, untouched, so that the service coming back (by reload or in a
	// later run) finds them still owned, not foreign.
	dormant  map[destID]bool
	sessions map[sessionID]*sessionInfo
	// dirty and timed index the entries that need work, so that a pass of
	// the owner loop costs what changed, not the size of the cluster: with
	// 20 000 realservers polled every 2 s there are 10 000 passes a second.
	dirty index // want/fwd may differ from the kernel, or deletion pending
	timed index // orphans and quiescing entries (they have a nextCheck)
	// steps holds the active entries the feedback tick must visit: the
	// smoothed law still moving, a slow start ramping, or a capped
	// step (weight-max-step) pending. It runs once per keepalive-interval
	// at nextTick, not on every pass: with 20 000 realservers there are
	// thousands of passes a second.
	steps    index
	nextTick time.Time
	// unrecorded: entries created since the state file was last written.
	unrecorded index
	nActive    int // entries in stateActive
	// ownedChanged is set when the set of owned destinations changed and
	// the state file must be written.
	ownedChanged bool
	// touched: the destinations whose ownership may have changed since the
	// state file was last written, so that a pass records only those (an
	// appended line each) and not the whole list. Every change to entries
	// or dormant goes through put, drop, setDormant or forgetDormant, which
	// add to it; a destination listed more than once costs nothing.
	touched []destID
	// gaveUp: offers were given up because the state file could not be
	// written; once it can, every session's records are offered again.
	gaveUp     bool
	lastChange time.Time
	ops        []op // diff's buffer
}

func newTable(cfg *config.Master, log *slog.Logger) *table {
	cfg.FillLimits()
	return &table{
		cfg:      cfg,
		log:      log,
		obs:      noObserver{},
		entries:  map[destID]*entry{},
		foreign:  map[destID]bool{},
		dormant:  map[destID]bool{},
		admin:    map[destID]string{},
		sessions: map[sessionID]*sessionInfo{},
		dirty:    newIndex(),
		timed:    newIndex(),
		steps:    newIndex(),

		unrecorded: newIndex(),
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
	if !e.recorded {
		t.unrecorded.add(e)
	}
	t.touch(e.id)
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
		t.unrecorded.del(id)
		delete(t.entries, id)
		t.touch(id)
	}
}

// touch notes that id may have joined or left the owned set.
func (t *table) touch(id destID) {
	t.touched = append(t.touched, id)
	t.ownedChanged = true
}

// setDormant and forgetDormant are the only writers of t.dormant, so that
// the state file hears of every change.
func (t *table) setDormant(id destID) {
	t.dormant[id] = true
	t.touch(id)
}

func (t *table) forgetDormant(id destID) {
	delete(t.dormant, id)
	t.touch(id)
}

// ownedDelta says what changed in the owned set since the state file was
// last written: for each touched destination, whether it is owned now. A
// destination that left and came back is listed as added, one that came
// and went as removed; both are true of the set, whatever the file held.
func (t *table) ownedDelta() (added, removed []Ref) {
	ids := t.touched
	sortIDs(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		if t.entries[id] != nil || t.dormant[id] {
			added = append(added, id)
		} else {
			removed = append(removed, id)
		}
	}
	t.touched = ids
	return added, removed
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

// offerOf says whether the session (nil: gone) offers id.
func (si *sessionInfo) offerOf(id destID) (ipvs.Forwarding, bool) {
	if si == nil {
		return 0, false
	}
	o, ok := si.offers.get(id)
	return o.fwd, ok
}

func (t *table) clearDirty(e *entry) {
	e.dirty = false
	t.dirty.del(e.id)
}

func vsKey(vs *config.VirtualService) ipvs.ServiceKey {
	if vs.FWMark != 0 {
		return ipvs.FWMarkKey(vs.FWMark, vs.Address)
	}
	return ipvs.ServiceKey{Protocol: uint16(vs.Protocol), Address: vs.Address, Port: vs.Port}
}

func (t *table) markDirty(e *entry, now time.Time) {
	e.dirty = true
	t.dirty.add(e)
	t.lastChange = now
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

// serviceName formats an agent service as "tcp/80" for log lines.
func serviceName(proto uint8, port uint16) string {
	return necp.ProtocolName(proto) + "/" + strconv.Itoa(int(port))
}

// offer is one session's offer of one destination: the forwarding method
// the destination gets from it, and the agent service (protocol and
// port) whose START made it and whose health sets the weight. The
// service is kept rather than derived from the destination because a
// firewall-mark service has neither protocol nor port of its own.
type offer struct {
	fwd  ipvs.Forwarding
	feed svcPort
}

// offerSet is a session's offers: the destinations it offers, each with its
// offer. Almost every session offers one or a few, so a slice searched in
// order costs 80 bytes for one where a map cost about 700 (a whole group of
// slots): 10 MB at 20 000 agents. Order is insertion order; callers that
// act in a stable order sort (sortedOffers).
type offerSet []offerAt

type offerAt struct {
	id destID
	offer
}

func (s offerSet) index(id destID) int {
	return slices.IndexFunc(s, func(o offerAt) bool { return o.id == id })
}

// get returns id's offer and whether there is one.
func (s offerSet) get(id destID) (offer, bool) {
	if i := s.index(id); i >= 0 {
		return s[i].offer, true
	}
	return offer{}, false
}

// of returns id's offer, the zero offer if none (as a map would).
func (s offerSet) of(id destID) offer { o, _ := s.get(id); return o }

func (s offerSet) has(id destID) bool { return s.index(id) >= 0 }

func (s offerSet) len() int { return len(s) }

// set adds or replaces id's offer.
func (s *offerSet) set(id destID, o offer) {
	if i := s.index(id); i >= 0 {
		(*s)[i].offer = o
		return
	}
	*s = append(*s, offerAt{id, o})
}

// del removes id's offer, if any.
func (s *offerSet) del(id destID) {
	if i := s.index(id); i >= 0 {
		*s = slices.Delete(*s, i, i+1)
	}
}

// all yields every offer; the set must not change meanwhile.
func (s offerSet) all() iter.Seq2[destID, offer] {
	return func(yield func(destID, offer) bool) {
		for _, o := range s {
			if !yield(o.id, o.offer) {
				return
			}
		}
	}
}
