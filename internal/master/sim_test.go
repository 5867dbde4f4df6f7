package master

// TestSimulation drives the real master logic (owner and table) with long
// seeded random sequences of events on a virtual clock, in the manner of
// FoundationDB's simulation testing and TigerBeetle's VOPR, and checks the
// invariants below after every owner pass, most of them also at every IPVS
// write. The world it runs in is in simkit_test.go.
//
// Events: agents connecting (from their realserver's address, or claiming
// another address in START records), STARTing services that match some
// virtual services or none, reporting health (0-100 and 255 = unknown),
// STOPping one or all services, closing, going silent (declared dead after
// (1+keepalive-retries) × keepalive-timeout, as the session would), and
// START floods; several live sessions for one realserver; reloads that add,
// remove and change virtual services, timers, allow, the secret and
// trust-agent-address; master crash and restart from the state file;
// another tool adding, changing and deleting destinations, also in the
// middle of the master's pass (EEXIST, ENOENT); injected IPVS errors (EIO
// on reads and writes) and state file errors (EIO, ENOSPC); active
// connections; time passing (the owner passes at least once a second of
// virtual time, so resyncs, orphan grace and removal checks run).
//
// Invariants (issue 13). "Offers" means: a live session, admitted by the
// access policy in force (allow, secret), has STARTed the service and not
// STOPped it, and the record is permitted (a valid forwarding method; an
// address claim only with trust-agent-address and inside allow). An offer
// is definite when its START was answered "accepted"; the master may, but
// need not, honour other offers (a reload offers every START record again).
//
//  1. A destination with a definite offer, when no other offer outranks it,
//     is in the kernel after every clean owner pass (one in which no fault
//     was injected), with the weight the owning session's latest health asks
//     for (round(health × max-weight / 100), within weight-threshold) and its
//     forwarding method; and no write ever sets it to 0 or deletes it while
//     that health asks for more. The owner is the best offer: the
//     realserver's own address before a claim, then the newest session.
//  2. A destination the master did not create is never updated or deleted
//     by it. (The wrapper knows who created every destination.) Nor is a
//     virtual service (2s): the pool's are all created before the master
//     starts, so it may update none, whatever its reloads configure.
//  3. Every destination the master created is listed in the state file
//     (the last successful save) before the add reaches the kernel, and for
//     as long as it is in the kernel, across reloads, restarts and virtual
//     services absent from the configuration; only a delete (the master's
//     or another tool's) ends that. After a clean pass the state file lists
//     exactly the destinations the master holds as its own (3c), whether it
//     was written whole or appended to; and nothing is appended after a
//     failed append until the file was written whole.
//  4. Access: a session the policy in force does not admit is closed (kick)
//     within the owner pass that follows the reload, and only such sessions
//     are; no START outside the policy is answered "accepted"; a destination
//     that only forbidden offers name is at weight 0 or gone after one
//     clean pass.
//  5. A destination a session offered and nobody offers any more (STOP,
//     close, death) is at weight 0 or gone after one clean pass, and no
//     write ever gives weight > 0 to a destination that nobody offers: a
//     STOPped service returns only with a new START, reloads included.
//  6. Bounds: at most simMaxWritesPerPass IPVS writes per destination per
//     pass; at most simMaxWritesPerSession writes to one destination caused
//     by one session's messages in any simWriteWindow; at most
//     simMaxLinesPerPeer log lines naming one peer address per step; a
//     reload to the same configuration logs nothing about any agent unless
//     it changes the kernel; and
//     every WARN about a change "outside feedbackd" names a destination
//     another tool did change (one alarm per change).
//  7. A START record answered "accepted" has at least one of its
//     destinations in the kernel, created by the master and listed in the
//     state file, at the moment of the answer.
//
// Where the model cannot know what the master may do, it does not check:
// a destination another tool ever created is only checked by 2; after
// another tool changed or deleted one of the master's destinations, 1 and
// 5 wait until the master's next resync (one removal-interval).
//
// A failure prints its seed and the shortest event sequence that
// reproduces it: the events are recorded, and the sequence is shrunk by
// delta debugging (remove chunks, then single events; every candidate is
// replayed from scratch) to one that still fails the same invariant.
//
// go test ./internal/master/ runs simSeedsDefault seeds of simStepsDefault
// steps. Long runs: make simulate, or
//
//	go test -run TestSimulation -v ./internal/master/ -sim.seeds=N -sim.steps=M
//
// with -sim.seed=S to start elsewhere, -sim.skip=I3,I6d to look past an
// invariant known to fail (a number skips the whole invariant; the letters
// name its parts: I1a write to 0 or delete, I1b missing, I1c weight, I1d
// forwarding; I3a added before recorded, I3b forgotten, I3c the file not
// what the master owns, I3d appended after a failed append; I4a START accepted
// outside the policy, I4b not closed, I4c closed although admitted, I4d
// weight from forbidden offers; I5a weight written without an offer, I5b
// weight kept without one; I6a-e the five bounds of 6, in order)., -sim.all to report every failing seed.

import (
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

const (
	simSeedsDefault = 200
	simStepsDefault = 300

	// simMaxWritesPerPass: the diff has one write per destination; one
	// more is tolerated (a retry), never a loop.
	simMaxWritesPerPass = 2
	// simMaxWritesPerSession bounds the writes one session's messages
	// cause to one destination in simWriteWindow. A working agent causes
	// about one per keepalive-interval (a health change) and a few when it
	// starts or stops; a session re-sending START (alternating the
	// forwarding method, or STOP/START) must not set the write rate. 48 in
	// 10 s is a burst of 8 STOP/START pairs, one pair a second after it,
	// and a health change every second: the session's START limit allows
	// no more, and without a limit a flood of 60 STARTs breaks it.
	simMaxWritesPerSession = 48
	simWriteWindow         = 10 * time.Second
	// simMaxLinesPerPeer: one step is one message (or one reload); with at
	// most 3 records per START, 2 virtual services per record, a line or
	// two per destination and a few about the session, 32 leaves room and
	// still catches a line per record per reload for every session.
	simMaxLinesPerPeer = 32
	// simMaxAgents bounds live sessions, so that sessions meet each other
	// on the same realservers often.
	simMaxAgents = 8
)

var (
	simSeeds    = flag.Int("sim.seeds", simSeedsDefault, "simulation: number of seeds")
	simSteps    = flag.Int("sim.steps", simStepsDefault, "simulation: events per seed")
	simSeed0    = flag.Uint64("sim.seed", 1, "simulation: first seed")
	simSkip     = flag.String("sim.skip", "", "simulation: invariants not to check, comma-separated (I1,...,I7)")
	simAll      = flag.Bool("sim.all", false, "simulation: run every seed and report each failing one, not only the first")
	simNoShrink = flag.Bool("sim.noshrink", false, "simulation: report failing seeds without shrinking them")
	simOff      = flag.String("sim.without", "", "simulation: event kinds not to generate, comma-separated: "+
		"connect,health,start,flood,stop,close,silent,reload,crash,foreign,ipvsfail,readfail,race,storefail,conns "+
		"(events), claims,invalid (START records), vs,maxweight,allow,trust,secret,timers,law (reload changes; "+
		"without law, every configuration has the direct law)")
)

// ---- events ----

type simEvKind uint8

const (
	evTick simEvKind = iota
	evConnect
	evStart
	evHealth
	evStop
	evClose
	evSilent
	evResume
	evReload
	evCrash
	evForeignAdd
	evForeignEdit
	evForeignDel
	evIPVSFail
	evReadFail
	evRaceAdd
	evRaceDel
	evStoreFail
	evConns
)

// simEv is one recorded event. Everything random is decided when the event
// is generated, so a replay needs no random source; agents are named by
// the logical id of their connect event, so that removing events while
// shrinking leaves the others meaning the same.
type simEv struct {
	at     time.Duration // since simT0
	kind   simEvKind
	agent  int
	host   netip.Addr
	secret int8
	recs   []necp.ServiceRecord
	health []necp.HealthRecord
	cfg    simCfg
	vs     int
	rs     netip.Addr
	weight int
	fwd    ipvs.Forwarding
	n      int
	err    error
}

func simRecString(r necp.ServiceRecord) string {
	s := necp.ProtocolName(r.Protocol) + "/" + fmt.Sprint(r.Port) + " " + r.Forwarding.String()
	if r.Address.IsValid() && !r.Address.IsUnspecified() {
		s += " address=" + r.Address.String()
	}
	return s
}

func (ev simEv) String() string {
	t := fmt.Sprintf("t=%-7s ", (ev.at).String())
	ag := fmt.Sprintf("agent#%d", ev.agent)
	recs := func() string {
		var s []string
		for _, r := range ev.recs {
			s = append(s, simRecString(r))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	dest := func() string { return simDest(ev.vs, ev.rs).String() + " (" + simVS[ev.vs].name + ")" }
	switch ev.kind {
	case evTick:
		return t + "time passes"
	case evConnect:
		sec := "no secret"
		if ev.secret != 0 {
			sec = "knows " + string(simSecrets[ev.secret])
		}
		return t + fmt.Sprintf("%s connects from %s (%s), START %s", ag, ev.host, sec, recs())
	case evStart:
		return t + fmt.Sprintf("%s START %s", ag, recs())
	case evHealth:
		var s []string
		for _, h := range ev.health {
			s = append(s, fmt.Sprintf("%s/%d=%d", necp.ProtocolName(h.Protocol), h.Port, h.Health))
		}
		return t + fmt.Sprintf("%s reports health %s", ag, strings.Join(s, " "))
	case evStop:
		if len(ev.recs) == 0 {
			return t + ag + " STOP (all services, connection stays open)"
		}
		return t + fmt.Sprintf("%s STOP %s", ag, recs())
	case evClose:
		return t + ag + " closes its connection"
	case evSilent:
		return t + ag + " goes silent (frozen process or dropped flow; connection not closed)"
	case evResume:
		return t + ag + " answers again"
	case evReload:
		if ev.n > 0 {
			return t + "reload " + ev.cfg.String() + fmt.Sprintf(", and the master's IPVS read number %d fails (%s)", ev.n, simErrName(ev.err))
		}
		return t + "reload " + ev.cfg.String()
	case evCrash:
		return t + "master crashes and restarts from the state file"
	case evForeignAdd:
		return t + fmt.Sprintf("another tool adds %s weight %d", dest(), ev.weight)
	case evForeignEdit:
		return t + fmt.Sprintf("another tool sets %s to weight %d %s", dest(), ev.weight, ev.fwd)
	case evForeignDel:
		return t + fmt.Sprintf("another tool deletes %s", dest())
	case evIPVSFail:
		return t + fmt.Sprintf("the master's next %d IPVS writes fail (%s)", ev.n, simErrName(ev.err))
	case evReadFail:
		return t + fmt.Sprintf("the master's next %d IPVS reads fail (%s)", ev.n, simErrName(ev.err))
	case evRaceAdd:
		return t + "another tool adds the next destination the master adds, just before it (EEXIST)"
	case evRaceDel:
		return t + "another tool deletes the next destination the master updates or deletes, just before it (ENOENT)"
	case evStoreFail:
		return t + fmt.Sprintf("the next %d state file writes fail (%s)", ev.n, simErrName(ev.err))
	case evConns:
		return t + fmt.Sprintf("%s has %d active connections", dest(), ev.n)
	}
	return t + "?"
}

// ---- the world ----

type simFailure struct {
	inv  string
	msg  string
	step int // index of the event during which it failed
}

type simWorld struct {
	skip map[string]bool

	now   time.Time
	mem   *ipvs.Memory
	k     *simKernel
	store *simStore
	boots int // master starts, counting the attempts a fault failed
	log   *simLog

	cfg  simCfg // the configuration in force
	mcfg *config.Master
	m    *Master
	o    *owner
	up   bool

	nextSid   sessionID
	agents    map[int]*simAgent
	agentList []*simAgent // connect order, for determinism

	// creator: who created each destination now in the kernel.
	creator    map[destID]byte // 'm' master, 'f' another tool
	everMaster map[destID]bool
	// tainted: another tool created it at some point; only invariant 2
	// is checked for it from then on.
	tainted map[destID]bool
	// suspended: another tool changed or deleted one of the master's
	// destinations; the master notices at its next resync.
	suspended map[destID]time.Time
	// license: one alarm about a change outside feedbackd is due.
	license map[destID]bool
	// offered: a definite offer existed since the master started (or the
	// virtual service was last (re)configured).
	offered map[destID]bool
	stable  map[destID]simStable
	// writes by session, for the per-session write bound.
	cause    *simAgent
	sessionW map[sessionID]map[destID][]time.Time

	kernel   map[destID]ipvs.Destination // cache of kernelMap
	kernelAt int                         // mem.Writes() when it was read

	step    int
	faults  int // injected faults that reached the master, in all
	fail    *simFailure
	reloads struct{ errApplied int }
}

func newSimWorld(skip map[string]bool, cfg simCfg) *simWorld {
	w := &simWorld{
		skip:       skip,
		now:        simT0,
		mem:        ipvs.NewMemory(nil),
		store:      &simStore{saved: map[destID]bool{}},
		cfg:        cfg,
		agents:     map[int]*simAgent{},
		creator:    map[destID]byte{},
		everMaster: map[destID]bool{},
		tainted:    map[destID]bool{},
		suspended:  map[destID]time.Time{},
		license:    map[destID]bool{},
		offered:    map[destID]bool{},
		stable:     map[destID]simStable{},
		sessionW:   map[sessionID]map[destID][]time.Time{},
	}
	w.k = &simKernel{w: w, mem: w.mem, perPass: map[destID]int{}}
	w.store.w = w
	w.log = &simLog{w: w, perPeer: map[netip.Addr]int{}}
	return w
}

func (w *simWorld) failf(inv, format string, args ...any) {
	if w.fail != nil || w.skip[inv] || w.skip[inv[:2]] {
		return
	}
	w.fail = &simFailure{inv: inv, msg: fmt.Sprintf(format, args...), step: w.step}
}

func (w *simWorld) inKernel(id destID) bool {
	_, ok := w.kernelDest(id)
	return ok
}

func (w *simWorld) kernelDest(id destID) (ipvs.Destination, bool) {
	ds, _ := w.mem.Destinations(id.Service)
	for _, d := range ds {
		if d.DestKey == id.Dest {
			return d, true
		}
	}
	return ipvs.Destination{}, false
}

// kernelMap reads the whole kernel table, again only after a write.
func (w *simWorld) kernelMap() map[destID]ipvs.Destination {
	if n := w.mem.Writes(); w.kernelAt != n || w.kernel == nil {
		w.kernel, w.kernelAt = map[destID]ipvs.Destination{}, n
		for key, ds := range w.mem.Snapshot() {
			for _, d := range ds {
				w.kernel[destID{key, d.DestKey}] = d
			}
		}
	}
	return w.kernel
}

// vsOf finds the pool index of a destination's virtual service.
func vsOf(id destID) int {
	for vi := range simVS {
		if simVSKey(vi) == id.Service {
			return vi
		}
	}
	return -1
}

// boot starts a master on the world's kernel and state file, retrying while
// injected faults make start-up fail (systemd restarts a master that exits).
func (w *simWorld) boot() {
	for try := 0; ; try++ {
		w.mcfg = w.cfg.build()
		var err error
		w.m, err = New(w.mcfg, Options{IPVS: w.k, Store: w.store, Logger: slog.New(simLogHandler{l: w.log})})
		if err != nil {
			w.failf("boot", "New: %v", err)
			return
		}
		w.o, err = w.m.newOwner()
		if err != nil {
			w.failf("boot", "newOwner: %v", err)
			return
		}
		// Every other run of the master appends a handful of lines
		// between whole writes, so that both ways of recording run all the
		// time with the pool's few destinations; the others append only,
		// so that a change the appends miss is not hidden by the next
		// whole write.
		w.boots++
		w.o.journalMin = 3
		if w.boots%2 == 0 {
			w.o.journalMin = 1 << 30
		}
		w.k.perPass = map[destID]int{}
		err = w.o.start(w.now)
		if err == nil {
			w.up = true
			w.afterPass()
			return
		}
		if try > 20 || !w.k.faulted && !w.store.faulted {
			w.failf("boot", "the master does not start without an injected fault: %v", err)
			return
		}
		w.k.faulted, w.store.faulted = false, false
	}
}

// crash throws the master away: every session ends with it, unnoticed.
func (w *simWorld) crash() {
	for _, ag := range w.agentList {
		ag.gone = true
	}
	w.agentList = nil
	clear(w.agents)
	w.offered = map[destID]bool{}
	w.m, w.o, w.up = nil, nil, false
}

// readFaulted: a resync may have missed another tool's change, so the
// waits for the next one start again.
func (w *simWorld) readFaulted() {
	for id, t := range w.suspended {
		if t.After(w.now) {
			w.suspended[id] = w.now.Add(simResyncWait)
		}
	}
}

// storeFaulted: the master cannot record new destinations now, so it may
// give up every offer of a destination that is not in the kernel.
func (w *simWorld) storeFaulted() {
	for _, ag := range w.agentList {
		for _, r := range ag.recs {
			a, _ := ag.addrOf(r.rec)
			for vi := range simVS {
				if simVS[vi].proto == r.rec.Protocol && simVS[vi].port == r.rec.Port && w.creator[simDest(vi, a)] != 'm' {
					r.lost |= 1 << vi
				}
			}
		}
	}
}

// ---- another tool's writes ----

func (w *simWorld) foreignAdd(id destID, weight int, fwd ipvs.Forwarding) bool {
	if w.inKernel(id) || w.everMaster[id] {
		return false
	}
	if err := w.mem.AddDestination(id.Service, ipvs.Destination{DestKey: id.Dest, Weight: weight, Forwarding: fwd}); err != nil {
		return false
	}
	w.creator[id] = 'f'
	w.tainted[id] = true
	return true
}

func (w *simWorld) foreignTouched(id destID) {
	if w.creator[id] == 'm' {
		w.suspended[id] = w.now.Add(simResyncWait)
		w.license[id] = true
	}
}

func (w *simWorld) foreignEdit(id destID, weight int, fwd ipvs.Forwarding) bool {
	d, ok := w.kernelDest(id)
	if !ok || d.Weight == weight && d.Forwarding == fwd {
		return false
	}
	d.Weight, d.Forwarding = weight, fwd
	if w.mem.UpdateDestination(id.Service, d) != nil {
		return false
	}
	w.foreignTouched(id)
	return true
}

func (w *simWorld) foreignDelete(id destID) bool {
	if !w.inKernel(id) || w.mem.DeleteDestination(id.Service, id.Dest) != nil {
		return false
	}
	w.foreignTouched(id)
	delete(w.creator, id)
	return true
}

// checkAlarm: a WARN about a change outside feedbackd must name a
// destination another tool did change, once per change.
func (w *simWorld) checkAlarm(vsName, rs, line string) {
	a, err := netip.ParseAddr(rs)
	vi := -1
	for i := range simVS {
		if simVS[i].name == vsName {
			vi = i
		}
	}
	if err != nil || vi < 0 {
		return
	}
	id := simDest(vi, a)
	if !w.license[id] {
		w.failf("I6e", "false alarm: no other tool changed %s: %s", id, line)
		return
	}
	delete(w.license, id)
}

// masterWrote checks one successful IPVS write of the master against the
// model, at the moment it is made.
func (w *simWorld) masterWrote(kind string, id destID, weight int) {
	switch kind {
	case "add":
		if !w.store.saved[id] {
			w.failf("I3a", "%s added to IPVS before it was recorded in the state file", id)
		}
		w.creator[id] = 'm'
		w.everMaster[id] = true
	case "update", "delete":
		if c := w.creator[id]; c != 'm' {
			w.failf("I2", "the master %sd %s, which it did not create (creator %q)", kind, id, c)
		}
		if kind == "delete" {
			delete(w.creator, id)
		}
	}
	if ag := w.cause; ag != nil {
		m := w.sessionW[ag.sid]
		if m == nil {
			m = map[destID][]time.Time{}
			w.sessionW[ag.sid] = m
		}
		ts := append(m[id], w.now)
		for len(ts) > 0 && w.now.Sub(ts[0]) >= simWriteWindow {
			ts = ts[1:]
		}
		m[id] = ts
		if len(ts) > simMaxWritesPerSession {
			w.failf("I6b", "%d IPVS writes to %s caused by agent#%d's messages within %v (bound %d)",
				len(ts), id, ag.id, simWriteWindow, simMaxWritesPerSession)
		}
	}
	vi := vsOf(id)
	if vi < 0 || w.tainted[id] || w.suspended[id].After(w.now) {
		return
	}
	x := w.expect(vi, id.Dest.Address)
	if kind != "delete" && weight > 0 && !x.any {
		switch {
		case x.forbidden:
			w.failf("I4d", "%s set to weight %d, but only sessions outside the access policy offer it", id, weight)
		default:
			w.failf("I5a", "%s set to weight %d, but no live session offers it (STOPped: %v)", id, weight, x.stopped)
		}
	}
	if (kind == "delete" || weight == 0) && x.owner != nil && !x.may {
		if h, ok := x.owner.health[simSvcPort(id)]; ok {
			if want, _ := Weight(h, w.cfg.maxWeight(vi)); want > 0 {
				w.failf("I1a", "%s %s while agent#%d (sid %d) offers it with health %d (weight %d)",
					id, map[bool]string{true: "deleted", false: "set to weight 0"}[kind == "delete"], x.owner.id, x.owner.sid, h, want)
			}
		}
	}
}

// ---- driving the owner ----

func (w *simWorld) handle(ev event) { w.o.handle(ev, w.now) }

// pass runs one owner pass and checks the invariants after it.
func (w *simWorld) pass() {
	w.k.perPass = map[destID]int{}
	w.o.pass(w.now)
	w.afterPass()
}

func (w *simWorld) afterPass() {
	w.collectReplies()
	w.check()
	w.cause = nil
	// A kicked session's connection is closed; its goodbye reaches the
	// owner next (once it is not waiting for a START answer).
	for _, ag := range slices.Clone(w.agentList) {
		if ag.kicked != "" && !ag.gone && ag.reply == nil && w.fail == nil {
			w.end(ag, "closed by the master: "+ag.kicked)
		}
	}
}

// end delivers the end of a session to the owner.
func (w *simWorld) end(ag *simAgent, reason string) {
	ag.gone = true
	w.removeAgent(ag)
	if ag.joined {
		w.handle(goneEvent{sid: ag.sid, reason: reason})
		w.pass()
	}
}

func (w *simWorld) removeAgent(ag *simAgent) {
	w.agentList = slices.DeleteFunc(w.agentList, func(x *simAgent) bool { return x == ag })
	delete(w.agents, ag.id)
}

func (w *simWorld) collectReplies() {
	for _, ag := range w.agentList {
		if ag.reply == nil {
			continue
		}
		var st []necp.Status
		select {
		case st = <-ag.reply:
		default:
			continue
		}
		recs := ag.replyRecs
		ag.reply, ag.replyRecs = nil, nil
		if len(st) != len(recs) {
			w.failf("I7", "agent#%d: %d statuses for %d START records", ag.id, len(st), len(recs))
			return
		}
		for i, r := range recs {
			r.pending = false
			r.definite = false
			if st[i] == necp.StatusRefused {
				r.refused = true
				sp := svcPort{r.rec.Protocol, r.rec.Port}
				if !ag.offering(sp) {
					delete(ag.health, sp)
				}
			}
			if st[i] != necp.StatusAccepted {
				continue
			}
			if !w.cfg.authorized(ag) || !w.cfg.permits(ag, r.rec) {
				w.failf("I4a", "agent#%d's START %s answered accepted, but the access policy does not permit it",
					ag.id, simRecString(r.rec))
				continue
			}
			a, _ := ag.addrOf(r.rec)
			ok := false
			var seen []string
			for vi := range simVS {
				if !w.cfg.has(vi) || simVS[vi].proto != r.rec.Protocol || simVS[vi].port != r.rec.Port {
					continue
				}
				id := simDest(vi, a)
				// After another tool deleted it, the master cannot know
				// before its next resync.
				if w.creator[id] == 'm' && w.store.saved[id] || w.suspended[id].After(w.now) {
					ok = true
				}
				seen = append(seen, fmt.Sprintf("%s in kernel by %q, recorded %v", id, w.creator[id], w.store.saved[id]))
			}
			if !ok {
				w.failf("I7", "agent#%d's START %s answered accepted, but none of its destinations is in the kernel and recorded: %s",
					ag.id, simRecString(r.rec), strings.Join(seen, "; "))
				continue
			}
			r.definite = !r.stopped
		}
	}
}

// check runs the invariants that hold after every owner pass.
func (w *simWorld) check() {
	faulted := w.k.faulted || w.store.faulted
	if faulted {
		w.faults++
	}
	w.k.faulted, w.store.faulted = false, false
	if w.fail != nil {
		return
	}
	// 3: everything the master created that is in the kernel is recorded.
	for id, c := range w.creator {
		if c == 'm' && !w.store.saved[id] {
			w.failf("I3b", "%s, created by the master and in the kernel, is not in the state file", id)
			return
		}
	}
	// 3c: after a clean pass the state file lists exactly what the master
	// holds as its own (entries and dormant destinations), whether it was
	// written whole or appended to: a line too many would make a restarted
	// master take another tool's later destination as its own.
	if !faulted && w.up {
		owned := w.o.t.owned()
		if len(owned) != len(w.store.saved) || slices.ContainsFunc(owned, func(id destID) bool { return !w.store.saved[id] }) {
			listed := slices.Collect(maps.Keys(w.store.saved))
			sortIDs(listed)
			w.failf("I3c", "the state file lists %v, the master owns %v", listed, owned)
			return
		}
	}
	// 4: sessions outside the policy are closed.
	for _, ag := range w.agentList {
		if ag.joined && ag.live() && !w.cfg.authorized(ag) {
			w.failf("I4b", "agent#%d (%s) is outside the access policy %s and still connected after the owner pass",
				ag.id, ag.peer, w.cfg)
			return
		}
	}
	var kernel map[destID]ipvs.Destination
	for vi := range simVS {
		if !w.cfg.has(vi) {
			for _, a := range simAddrs {
				delete(w.stable, simDest(vi, a))
			}
			continue
		}
		for _, a := range simAddrs {
			id := simDest(vi, a)
			if w.tainted[id] || w.suspended[id].After(w.now) {
				delete(w.stable, id)
				continue
			}
			x := w.expect(vi, a)
			if x.owner == nil || x.may {
				delete(w.stable, id)
			}
			if x.owner != nil {
				w.offered[id] = true
			}
			if faulted {
				continue
			}
			if kernel == nil {
				kernel = w.kernelMap()
			}
			d, in := kernel[id]
			if x.owner != nil && !x.may {
				if !in {
					w.failf("I1b", "%s is not in the kernel, but agent#%d (sid %d) offers it (START accepted)", id, x.owner.id, x.owner.sid)
					return
				}
				h, ok := x.owner.health[simSvcPort(id)]
				st := simStable{x.owner.sid, -1, w.cfg.maxWeight(vi), w.cfg.law, w.cfg.threshold, x.owner.started, w.now}
				if ok {
					st.health = int(h)
				}
				if old, seen := w.stable[id]; seen && old.same(st) {
					st.since = old.since
				}
				w.stable[id] = st
				if ok && !w.now.Before(st.since.Add(w.cfg.settle())) {
					maxW := w.cfg.maxWeight(vi)
					want, _ := Weight(h, maxW)
					if !simWeightOK(d.Weight, want, maxW, w.cfg.threshold) {
						w.failf("I1c", "%s has weight %d, but agent#%d (sid %d), its best offer, reports health %d: weight %d (unchanged for %v)",
							id, d.Weight, x.owner.id, x.owner.sid, h, want, w.now.Sub(st.since))
						return
					}
				}
				if fwd, _ := forwardingFromNECP(x.rec.rec.Forwarding); x.fwdOK && d.Forwarding != fwd {
					w.failf("I1d", "%s has forwarding %s, but agent#%d (sid %d), its best offer, asked for %s",
						id, d.Forwarding, x.owner.id, x.owner.sid, fwd)
					return
				}
			}
			if !x.any && w.offered[id] && in && d.Weight != 0 {
				if x.forbidden {
					w.failf("I4d", "%s is at weight %d, but only sessions outside the access policy offer it", id, d.Weight)
				} else {
					w.failf("I5b", "%s is at weight %d, but no live session offers it any more (STOPped: %v)", id, d.Weight, x.stopped)
				}
				return
			}
		}
	}
}

// simStable is what must stay unchanged, for the settle time of the
// weight law, before a destination's weight must be exact.
type simStable struct {
	owner     sessionID
	health    int // -1 unknown
	maxW      int
	law       int8
	threshold int8
	started   time.Time // the owner's latest START
	since     time.Time
}

func (a simStable) same(b simStable) bool {
	a.since = b.since
	return a == b
}

// simWeightOK: the kernel's weight is what the health asks for, within
// the damping threshold (a move to 0 or to max-weight is always exact).
func simWeightOK(got, want, maxW int, thresholdPct int8) bool {
	if got == want {
		return true
	}
	thr := DampingFor(int(thresholdPct), 0, maxW).Threshold
	return got != 0 && want != 0 && want != maxW && got-want <= thr && want-got <= thr
}

// ---- applying events ----

// advance moves the clock to t, running an owner pass at least every
// second of virtual time (the owner's LoopEvery) and ending silent
// sessions when their keepalives would have run out.
func (w *simWorld) advance(t time.Time) {
	for w.fail == nil {
		next := w.now.Add(time.Second)
		if !next.Before(t) {
			break
		}
		w.now = next
		w.deaths()
		if w.up && w.fail == nil {
			w.pass()
		}
	}
	if w.now.Before(t) {
		w.now = t
	}
	w.deaths()
}

func (w *simWorld) deaths() {
	if !w.up {
		return
	}
	tm := simTimers[w.cfg.timers]
	dead := time.Duration(1+tm.retries) * tm.timeout
	for _, ag := range slices.Clone(w.agentList) {
		if ag.silent && !ag.gone && !w.now.Before(ag.silentSince.Add(dead)) && w.fail == nil {
			if ag.reply != nil {
				continue // still inside the owner's START; the session ends after it
			}
			w.end(ag, "keepalives unanswered")
		}
	}
}

// do applies one recorded event: the model first, then the owner, then a
// pass and the checks.
func (w *simWorld) do(i int, ev simEv) {
	w.step = i
	clear(w.log.perPeer)
	w.advance(simT0.Add(ev.at))
	if w.fail != nil {
		return
	}
	defer func() { w.k.race = 0 }()
	ag := w.agents[ev.agent]
	// talking: the agent can send a message now.
	talking := w.up && ag != nil && ag.live() && !ag.silent && ag.reply == nil
	switch ev.kind {
	case evTick:
		if w.up {
			w.pass()
		}
	case evConnect:
		if !w.up || w.agents[ev.agent] != nil || len(w.agentList) >= simMaxAgents {
			return
		}
		if !simAllowed(simAllows[w.cfg.allow], ev.host) {
			return // closed at accept
		}
		var auth []byte
		if s := simSecrets[w.cfg.secret]; s != nil {
			if ev.secret != w.cfg.secret {
				return // refused at AUTH
			}
			auth = s
		}
		w.nextSid++
		ag = &simAgent{id: ev.agent, sid: w.nextSid, host: ev.host, auth: auth,
			peer: netip.AddrPortFrom(ev.host, uint16(40000+w.nextSid)), health: map[svcPort]uint8{}}
		w.agents[ev.agent] = ag
		w.agentList = append(w.agentList, ag)
		w.start(ag, ev.recs)
	case evStart:
		if talking {
			w.start(ag, ev.recs)
		}
	case evHealth:
		if !talking {
			return
		}
		if w.now.Sub(ag.lastHealth) < simTimers[w.cfg.timers].interval && !ag.lastHealth.IsZero() {
			return // the master has not asked yet
		}
		ag.lastHealth = w.now
		for _, h := range ev.health {
			sp := svcPort{h.Protocol, h.Port}
			if !ag.offering(sp) {
				continue
			}
			switch {
			case h.Health == necp.HealthUnknown:
				delete(ag.health, sp)
			case h.Health > necp.HealthMax:
				ag.health[sp] = necp.HealthMax
			default:
				ag.health[sp] = h.Health
			}
		}
		w.cause = ag
		w.handle(healthEvent{sid: ag.sid, recs: slices.Clone(ev.health)})
		w.pass()
	case evStop:
		if !talking {
			return
		}
		for _, r := range ag.recs {
			if simStops(ag, ev.recs, r.rec) {
				r.stopped, r.definite = true, false
			}
		}
		w.cause = ag
		w.handle(stopEvent{sid: ag.sid, recs: slices.Clone(ev.recs)})
		w.pass()
	case evClose:
		if w.up && ag != nil && !ag.gone && ag.reply == nil {
			w.end(ag, "agent closed the connection")
		}
	case evSilent:
		if w.up && ag != nil && ag.live() && !ag.silent {
			ag.silent, ag.silentSince = true, w.now
		}
	case evResume:
		if w.up && ag != nil && !ag.gone && ag.silent {
			ag.silent = false
		}
	case evReload:
		if w.up {
			if ev.n > 0 {
				w.k.failR = append(w.k.failR, make([]error, ev.n-1)...) // nil: these reads work
				w.k.failR = append(w.k.failR, ev.err)
			}
			w.reload(ev.cfg)
		}
	case evCrash:
		if w.up {
			w.crash()
			if ev.n > 0 {
				w.store.loadFail = append(w.store.loadFail, ev.err)
			}
			w.boot()
		}
	case evForeignAdd:
		w.foreignAdd(simDest(ev.vs, ev.rs), ev.weight, ev.fwd)
	case evForeignEdit:
		w.foreignEdit(simDest(ev.vs, ev.rs), ev.weight, ev.fwd)
	case evForeignDel:
		w.foreignDelete(simDest(ev.vs, ev.rs))
	case evIPVSFail:
		for range ev.n {
			w.k.failW = append(w.k.failW, ev.err)
		}
	case evReadFail:
		for range ev.n {
			w.k.failR = append(w.k.failR, ev.err)
		}
	case evRaceAdd, evRaceDel:
		if w.up {
			w.k.race = ev.kind
			w.pass()
		}
	case evStoreFail:
		for range ev.n {
			w.store.fail = append(w.store.fail, ev.err)
		}
	case evConns:
		id := simDest(ev.vs, ev.rs)
		w.mem.SetConns(id.Service, id.Dest, ev.n, 0)
	}
}

// simStops says whether a STOP with recs ends record r of ag.
func simStops(ag *simAgent, recs []necp.ServiceRecord, r necp.ServiceRecord) bool {
	if len(recs) == 0 {
		return true
	}
	a, _ := ag.addrOf(r)
	for _, s := range recs {
		if s.Protocol != r.Protocol || s.Port != r.Port {
			continue
		}
		if !s.Address.IsValid() || s.Address.IsUnspecified() || s.Address == a {
			return true
		}
	}
	return false
}

func (w *simWorld) start(ag *simAgent, recs []necp.ServiceRecord) {
	if !ag.starts.take(w.now, startBurst, startEvery) {
		// The session closes the connection of an agent that STARTs
		// faster than a working one does.
		w.end(ag, "protocol error")
		return
	}
	ag.replyRecs = nil
	for _, r := range recs {
		x := ag.find(r)
		sp := svcPort{r.Protocol, r.Port}
		if !ag.offering(sp) {
			// A service (re)started after a STOP: the report the master
			// may still hold from before is not one the model relies on.
			delete(ag.health, sp)
		}
		if x == nil {
			x = &simRec{}
			ag.recs = append(ag.recs, x)
		}
		x.rec, x.stopped, x.withdrawn, x.refused, x.definite, x.pending, x.lost = r, false, false, false, false, true, 0
		ag.replyRecs = append(ag.replyRecs, x)
	}
	ag.reply = make(chan []necp.Status, 1)
	ag.joined = true
	ag.started = w.now
	w.cause = ag
	w.handle(joinEvent{sid: ag.sid, peer: ag.peer, auth: ag.auth, recs: slices.Clone(recs), reply: ag.reply,
		kick: func(reason string) {
			if ag.kicked == "" {
				ag.kicked = reason
				if w.cfg.authorized(ag) {
					w.failf("I4c", "agent#%d (%s) closed by the master (%s) although the policy %s admits it",
						ag.id, ag.peer, reason, w.cfg)
				}
			}
		}})
	w.pass()
}

func (w *simWorld) reload(c simCfg) {
	newCfg := c.build()
	same := c == w.cfg
	w.log.quiet, w.log.quietLine, w.k.wrote = same, "", false
	done := make(chan error, 1)
	// Sessions the master closes during the reload are judged by the new
	// policy.
	old := w.cfg
	w.cfg = c
	w.handle(reloadEvent{cfg: newCfg, done: done})
	err := <-done
	readFailed := w.k.faulted
	w.cfg = old
	// Whatever the error says, the configuration in force is the one the
	// master publishes to its sessions.
	if w.m.cfg.Load() == newCfg {
		for vi := range simVS {
			if c.has(vi) != w.cfg.has(vi) {
				for _, a := range simAddrs {
					delete(w.offered, simDest(vi, a))
					if readFailed && c.has(vi) {
						// The master could not read what the returning
						// service holds: its own destinations there
						// are known again at its next resync.
						w.suspended[simDest(vi, a)] = w.now.Add(simResyncWait)
					}
				}
			}
		}
		w.cfg, w.mcfg = c, newCfg
		if err != nil {
			w.reloads.errApplied++
		}
		// Records the new policy does not permit are withdrawn for good.
		for _, ag := range w.agentList {
			for _, r := range ag.recs {
				if !c.permits(ag, r.rec) {
					r.definite = false
					if _, claim := ag.addrOf(r.rec); claim && !r.withdrawn {
						r.withdrawn = true
						if sp := (svcPort{r.rec.Protocol, r.rec.Port}); !ag.offering(sp) {
							delete(ag.health, sp)
						}
					}
				}
			}
		}
	}
	faults := w.faults
	w.pass()
	if l := w.log.quietLine; l != "" && !w.k.wrote && w.faults == faults {
		w.failf("I6d", "a reload to the same configuration changed nothing in IPVS but logged a line about an agent: %s", l)
	}
	w.log.quiet = false
}

// ---- generating events ----

type simGen struct {
	r      *rand.Rand
	w      *simWorld
	at     time.Duration
	nextID int
	storm  int // STARTs left in a START flood
	stormA int
	stormR necp.ServiceRecord
	off    map[string]bool // event kinds not generated (-sim.without)
}

func (g *simGen) pick(n int) int { return g.r.IntN(n) }

func (g *simGen) chance(p float64) bool { return g.r.Float64() < p }

func (g *simGen) dt() time.Duration {
	switch x := g.r.Float64(); {
	case x < 0.35:
		return 0
	case x < 0.80:
		return time.Duration(g.r.IntN(20)+1) * 100 * time.Millisecond
	case x < 0.95:
		return time.Duration(g.r.IntN(13)+2) * time.Second
	}
	return time.Duration(g.r.IntN(45)+15) * time.Second
}

func (g *simGen) fwd() necp.Forwarding {
	switch x := g.r.Float64(); {
	case x < 0.55:
		return necp.ForwardDR
	case x < 0.75:
		return necp.ForwardNAT
	case x < 0.97 || g.off["invalid"]:
		return necp.ForwardTUN
	}
	return necp.ForwardNone // invalid: refused
}

// record draws a START record for an agent on host; used lists the keys
// it already has (a fresh invalid record must not replace a valid one).
func (g *simGen) record(host netip.Addr, used []necp.ServiceRecord) (necp.ServiceRecord, bool) {
	for range 10 {
		sp := simSvcs[[]int{0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4}[g.pick(11)]]
		r := necp.ServiceRecord{Protocol: sp.proto, Port: sp.port, Forwarding: g.fwd()}
		switch x := g.r.Float64(); {
		case x < 0.05:
			r.Address = host // its own address, spelled out: no claim
		case x < 0.22 && !g.off["claims"]:
			a := simAddrs[g.pick(len(simAddrs))]
			if a != host {
				r.Address = a
			}
		}
		if !slices.ContainsFunc(used, func(u necp.ServiceRecord) bool {
			return u.Protocol == r.Protocol && u.Port == r.Port && u.Address == r.Address
		}) {
			return r, true
		}
	}
	return necp.ServiceRecord{}, false
}

func (g *simGen) agents(pred func(*simAgent) bool) []*simAgent {
	var out []*simAgent
	for _, ag := range g.w.agentList {
		if pred(ag) {
			out = append(out, ag)
		}
	}
	return out
}

func talkingAgent(ag *simAgent) bool { return ag.live() && !ag.silent && ag.reply == nil }

func (g *simGen) next() simEv {
	w := g.w
	if g.storm > 0 {
		g.storm--
		if ag := w.agents[g.stormA]; ag != nil && talkingAgent(ag) {
			// No time passes inside a flood.
			ev := simEv{at: g.at}
			if g.stormR.Forwarding == necp.ForwardDR {
				g.stormR.Forwarding = necp.ForwardNAT
			} else {
				g.stormR.Forwarding = necp.ForwardDR
			}
			ev.kind, ev.agent, ev.recs = evStart, ag.id, []necp.ServiceRecord{g.stormR}
			return ev
		}
		g.storm = 0
	}
	g.at += g.dt()
	ev := simEv{at: g.at}
	talking := g.agents(talkingAgent)
	for {
		switch x := g.pick(100); {
		case x < 12: // connect
			if g.off["connect"] {
				continue
			}
			if len(w.agentList) >= simMaxAgents {
				continue
			}
			g.nextID++
			ev.kind, ev.agent = evConnect, g.nextID
			ev.secret = w.cfg.secret
			if g.chance(0.12) && !g.off["secret"] {
				ev.secret = int8(g.pick(len(simSecrets)))
			}
			if live := g.agents((*simAgent).live); len(live) > 0 && g.chance(0.3) {
				// Another session for a realserver that has one: a second
				// agent instance, or a reconnect while the old connection
				// is still alive.
				old := live[g.pick(len(live))]
				ev.host = old.host
				for _, r := range old.recs {
					if !r.stopped {
						ev.recs = append(ev.recs, r.rec)
					}
				}
			} else {
				ev.host = simHosts[g.pick(len(simHosts))]
			}
			if len(ev.recs) == 0 {
				for range 1 + g.pick(3) {
					if r, ok := g.record(ev.host, ev.recs); ok {
						ev.recs = append(ev.recs, r)
					}
				}
			}
			return ev
		case x < 40: // health
			if g.off["health"] {
				continue
			}
			ag := simPickAgent(g, talking)
			if ag == nil {
				continue
			}
			ev.kind, ev.agent = evHealth, ag.id
			seen := map[svcPort]bool{}
			for _, r := range ag.recs {
				sp := svcPort{r.rec.Protocol, r.rec.Port}
				if r.stopped || seen[sp] || g.chance(0.15) {
					continue
				}
				seen[sp] = true
				h := uint8(1 + g.pick(100))
				switch y := g.r.Float64(); {
				case y < 0.10:
					h = 0
				case y < 0.15:
					h = necp.HealthUnknown
				case y < 0.17:
					h = 150
				}
				ev.health = append(ev.health, necp.HealthRecord{Protocol: sp.proto, Port: sp.port, Health: h})
			}
			return ev
		case x < 47: // START again: a new service, another forwarding method, a STOPped one
			if g.off["start"] {
				continue
			}
			ag := simPickAgent(g, talking)
			if ag == nil {
				continue
			}
			ev.kind, ev.agent = evStart, ag.id
			var used []necp.ServiceRecord
			for _, r := range ag.recs {
				used = append(used, r.rec)
			}
			if len(ag.recs) > 0 && g.chance(0.7) {
				r := ag.recs[g.pick(len(ag.recs))].rec
				if _, ok := forwardingFromNECP(r.Forwarding); ok {
					if f := g.fwd(); f != necp.ForwardNone {
						r.Forwarding = f
					}
					ev.recs = append(ev.recs, r)
					return ev
				}
			}
			if r, ok := g.record(ag.host, used); ok {
				ev.recs = append(ev.recs, r)
				return ev
			}
			continue
		case x < 48: // a START flood
			if g.off["flood"] {
				continue
			}
			ag := simPickAgent(g, talking)
			if ag == nil || len(ag.recs) == 0 {
				continue
			}
			r := ag.recs[g.pick(len(ag.recs))].rec
			if _, ok := forwardingFromNECP(r.Forwarding); !ok {
				continue
			}
			g.storm, g.stormA, g.stormR = 10+g.pick(50), ag.id, r
			ev.kind, ev.agent, ev.recs = evStart, ag.id, []necp.ServiceRecord{r}
			return ev
		case x < 54: // STOP
			if g.off["stop"] {
				continue
			}
			ag := simPickAgent(g, talking)
			if ag == nil || len(ag.recs) == 0 {
				continue
			}
			ev.kind, ev.agent = evStop, ag.id
			r := ag.recs[g.pick(len(ag.recs))].rec
			switch y := g.r.Float64(); {
			case y < 0.6:
				ev.recs = []necp.ServiceRecord{r}
			case y < 0.8:
				ev.recs = []necp.ServiceRecord{{Protocol: r.Protocol, Port: r.Port}}
			}
			return ev
		case x < 58: // close
			if g.off["close"] {
				continue
			}
			ag := simPickAgent(g, g.agents(func(a *simAgent) bool { return !a.gone && a.reply == nil }))
			if ag == nil {
				continue
			}
			ev.kind, ev.agent = evClose, ag.id
			return ev
		case x < 61: // silent, or answering again
			if g.off["silent"] {
				continue
			}
			ag := simPickAgent(g, g.agents((*simAgent).live))
			if ag == nil {
				continue
			}
			ev.kind, ev.agent = evSilent, ag.id
			if ag.silent {
				if !g.chance(0.4) {
					continue
				}
				ev.kind = evResume
			}
			return ev
		case x < 67: // reload
			if g.off["reload"] {
				continue
			}
			ev.kind, ev.cfg = evReload, g.mutate(w.cfg)
			if !g.off["readfail"] && g.chance(0.1) {
				// The reload's first or second read of IPVS fails.
				ev.n, ev.err = 1+g.pick(2), simEIO
			}
			return ev
		case x < 68: // crash
			if g.off["crash"] {
				continue
			}
			ev.kind = evCrash
			if g.chance(0.2) {
				ev.n, ev.err = 1, simEIO
			}
			return ev
		case x < 72: // another tool
			if g.off["foreign"] {
				continue
			}
			vi := g.pick(len(simVS))
			if _, err := w.mem.Destinations(simVSKey(vi)); err != nil {
				continue
			}
			ev.vs, ev.rs = vi, simAddrs[g.pick(len(simAddrs))]
			id := simDest(vi, ev.rs)
			d, in := w.kernelDest(id)
			switch {
			case !in && !w.everMaster[id] && g.chance(0.5):
				ev.kind, ev.weight, ev.fwd = evForeignAdd, g.pick(101), ipvs.ForwardRoute
			case in && g.chance(0.6):
				ev.kind, ev.weight, ev.fwd = evForeignEdit, g.pick(101), d.Forwarding
				if g.chance(0.2) {
					ev.fwd = ipvs.ForwardMasq
				}
			case in:
				ev.kind = evForeignDel
			default:
				continue
			}
			return ev
		case x < 75:
			if g.off["ipvsfail"] {
				continue
			}
			ev.kind, ev.n, ev.err = evIPVSFail, 1+g.pick(3), simEIO
			return ev
		case x < 76:
			if g.off["readfail"] {
				continue
			}
			ev.kind, ev.n, ev.err = evReadFail, 1, simEIO
			return ev
		case x < 78:
			if g.off["race"] {
				continue
			}
			ev.kind = evRaceAdd
			if g.chance(0.5) {
				ev.kind = evRaceDel
			}
			return ev
		case x < 81:
			if g.off["storefail"] {
				continue
			}
			ev.kind, ev.n, ev.err = evStoreFail, 1+g.pick(3), simEIO
			if g.chance(0.5) {
				ev.err = simENOSPC
			}
			return ev
		case x < 84:
			if g.off["conns"] {
				continue
			}
			snap := w.mem.Snapshot()
			var ids []destID
			for key, ds := range snap {
				for _, d := range ds {
					ids = append(ids, destID{key, d.DestKey})
				}
			}
			if len(ids) == 0 {
				continue
			}
			sortIDs(ids)
			id := ids[g.pick(len(ids))]
			ev.kind, ev.vs, ev.rs = evConns, vsOf(id), id.Dest.Address
			if g.chance(0.5) {
				ev.n = 1 + g.pick(3)
			}
			return ev
		default:
			ev.kind = evTick
			return ev
		}
	}
}

func simPickAgent(g *simGen, ags []*simAgent) *simAgent {
	if len(ags) == 0 {
		return nil
	}
	return ags[g.pick(len(ags))]
}

// mutate draws the configuration of a reload: one or two changes, or none.
func (g *simGen) mutate(c simCfg) simCfg {
	if g.chance(0.12) {
		return c
	}
	for range 1 + g.pick(2) {
		k := g.pick(8)
		if g.off[[]string{"vs", "vs", "maxweight", "allow", "trust", "secret", "timers", "law"}[k]] {
			continue
		}
		switch k {
		case 0, 1:
			vi := g.pick(len(simVS))
			if c.vs[vi] != 0 {
				c.vs[vi] = 0
			} else {
				c.vs[vi] = int8(1 + g.pick(2))
			}
			if c.vs == [5]int8{} {
				c.vs[0] = 1
			}
		case 2:
			if vi := g.pick(len(simVS)); c.vs[vi] != 0 {
				c.vs[vi] = 3 - c.vs[vi]
			}
		case 3:
			c.allow = int8(g.pick(len(simAllows)))
		case 4:
			c.trust = !c.trust
		case 5:
			c.secret = int8(g.pick(len(simSecrets)))
		case 6:
			if g.chance(0.5) {
				c.timers = int8(g.pick(len(simTimers)))
			} else {
				c.threshold = 10 - c.threshold
			}
		case 7:
			c.law = int8(g.pick(len(simLaws)))
		}
	}
	return c
}

// simInitial draws the starting configuration and the kernel's contents
// before the first master runs (another tool's destinations).
func simInitial(r *rand.Rand, off map[string]bool) (simCfg, []simEv) {
	var c simCfg
	for vi := range simVS {
		if r.Float64() < 0.6 {
			c.vs[vi] = int8(1 + r.IntN(2))
		}
	}
	c.vs[0] = 1
	if r.Float64() < 0.5 {
		c.allow = int8(r.IntN(len(simAllows)))
	}
	c.trust = r.Float64() < 0.5
	if r.Float64() < 0.3 {
		c.secret = int8(1 + r.IntN(2))
	}
	c.timers = int8(r.IntN(len(simTimers)))
	if r.Float64() < 0.2 {
		c.threshold = 10
	}
	if !off["law"] {
		c.law = int8(r.IntN(len(simLaws)))
	}
	var pre []simEv
	if r.Float64() < 0.3 && !off["foreign"] {
		vi := r.IntN(len(simVS))
		if c.has(vi) {
			pre = append(pre, simEv{kind: evForeignAdd, vs: vi, rs: simAddrs[r.IntN(len(simAddrs))], weight: r.IntN(101), fwd: ipvs.ForwardRoute})
		}
	}
	return c, pre
}

// ---- running, shrinking, reporting ----

type simRun struct {
	seed uint64
	cfg  simCfg
	pre  []simEv // applied to the kernel before the master starts
	evs  []simEv
}

// replay runs recorded events from scratch.
func (run *simRun) replay(skip map[string]bool, evs []simEv) *simWorld {
	w := newSimWorld(skip, run.cfg)
	w.setup(run.pre)
	for i, ev := range evs {
		if w.fail != nil {
			break
		}
		w.do(i, ev)
	}
	return w
}

func (w *simWorld) setup(pre []simEv) {
	for _, vi := range []int{0, 1, 2, 3, 4} {
		// Every virtual service of the pool exists in the kernel (an
		// earlier run, or the administrator, created it): another tool
		// can add to any of them.
		w.mem.AddService(ipvs.Service{ServiceKey: simVSKey(vi), Scheduler: simVS[vi].sched})
	}
	for _, ev := range pre {
		w.foreignAdd(simDest(ev.vs, ev.rs), ev.weight, ev.fwd)
	}
	w.boot()
}

// generate runs a fresh seed, recording its events.
func simGenerate(seed uint64, steps int, skip, off map[string]bool) (*simRun, *simWorld) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg, pre := simInitial(r, off)
	run := &simRun{seed: seed, cfg: cfg, pre: pre}
	w := newSimWorld(skip, cfg)
	w.setup(pre)
	g := &simGen{r: r, w: w, off: off}
	for i := 0; i < steps && w.fail == nil; i++ {
		ev := g.next()
		run.evs = append(run.evs, ev)
		w.do(i, ev)
	}
	return run, w
}

// shrink removes events while the run still fails the same invariant:
// delta debugging, chunks first, then single events.
func (run *simRun) shrink(skip map[string]bool, inv string) []simEv {
	// The master's own code may depend on Go's random map order: then a
	// sequence fails only some of the time, and each candidate gets
	// several tries.
	tries := 1
	if run.rate(skip, inv, run.evs, simTries) < simTries {
		tries = simTries
	}
	fails := func(evs []simEv) bool {
		for range tries {
			if w := run.replay(skip, evs); w.fail != nil && w.fail.inv == inv {
				return true
			}
		}
		return false
	}
	evs := slices.Clone(run.evs)
	if w := run.replay(skip, evs); w.fail != nil {
		evs = evs[:w.fail.step+1]
	}
	for n := len(evs) / 2; n >= 1; {
		removed := false
		for i := 0; i+n <= len(evs); {
			cand := slices.Concat(evs[:i], evs[i+n:])
			if fails(cand) {
				evs, removed = cand, true
				if w := run.replay(skip, evs); w.fail != nil {
					evs = evs[:w.fail.step+1]
				}
				continue
			}
			i += n
		}
		if !removed || n > 1 {
			n /= 2
		}
	}
	return evs
}

// simTries: replays of a sequence to tell a sometimes-failing one.
const simTries = 16

// rate counts the replays of evs, out of n, that fail invariant inv.
func (run *simRun) rate(skip map[string]bool, inv string, evs []simEv, n int) int {
	k := 0
	for range n {
		if w := run.replay(skip, evs); w.fail != nil && w.fail.inv == inv {
			k++
		}
	}
	return k
}

func (run *simRun) report(skip map[string]bool, w *simWorld) string {
	f := w.fail
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: invariant %s failed at event %d of %d: %s\n", run.seed, f.inv, f.step+1, len(run.evs), f.msg)
	if *simNoShrink {
		return b.String()
	}
	short := run.shrink(skip, f.inv)
	sw := run.replay(skip, short)
	for i := 0; i < simTries && (sw.fail == nil || sw.fail.inv != f.inv); i++ {
		sw = run.replay(skip, short)
	}
	fmt.Fprintf(&b, "shortest failing sequence found: %d events (from %d)", len(short), len(run.evs))
	if k := run.rate(skip, f.inv, short, 4*simTries); k < 4*simTries {
		fmt.Fprintf(&b, "; it fails in %d of %d replays (the master's behaviour depends on Go's map order)", k, 4*simTries)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  initial configuration %s\n", run.cfg)
	for _, ev := range run.pre {
		fmt.Fprintf(&b, "  before start: %s\n", ev)
	}
	for i, ev := range short {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, ev)
	}
	if sw.fail != nil {
		fmt.Fprintf(&b, "  => %s: %s\n", sw.fail.inv, sw.fail.msg)
		fmt.Fprintf(&b, "master log, last lines:\n")
		for _, l := range sw.log.lines() {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	} else {
		fmt.Fprintf(&b, "  (the shrunk sequence did not fail again on replay)\n")
	}
	flags := ""
	if *simOff != "" {
		flags += " -sim.without=" + *simOff
	}
	if *simSkip != "" {
		flags += " -sim.skip=" + *simSkip
	}
	fmt.Fprintf(&b, "replay: go test -run TestSimulation ./internal/master/ -sim.seed=%d -sim.seeds=1 -sim.steps=%d%s\n", run.seed, len(run.evs), flags)
	return b.String()
}

func simSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			set[s] = true
		}
	}
	return set
}

func TestSimulation(t *testing.T) {
	skip, off := simSet(*simSkip), simSet(*simOff)
	seeds, steps := *simSeeds, *simSteps
	start := time.Now()
	var (
		mu       sync.Mutex
		failures []string
		failed   atomic.Bool
		next     atomic.Uint64
		total    atomic.Int64
		errApply atomic.Int64
	)
	workers := max(1, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= uint64(seeds) || failed.Load() && !*simAll {
					return
				}
				seed := *simSeed0 + i
				run, w := simGenerate(seed, steps, skip, off)
				total.Add(int64(len(run.evs)))
				errApply.Add(int64(w.reloads.errApplied))
				if w.fail != nil {
					if failed.Swap(true) && !*simAll {
						return
					}
					rep := run.report(skip, w)
					mu.Lock()
					failures = append(failures, rep)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("simulation: %d seeds from %d, %d steps each, %d events in %v (%d workers); reloads that returned an error with the new configuration in force: %d",
		seeds, *simSeed0, steps, total.Load(), time.Since(start).Round(time.Millisecond), workers, errApply.Load())
	slices.Sort(failures)
	for _, f := range failures {
		t.Error(f)
	}
}
