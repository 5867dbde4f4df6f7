package master

// The world the simulation test (sim_test.go) runs the master in: a
// recording IPVS wrapper, a state store that can fail, a log handler that
// counts and checks lines, the configurations and agents it draws from,
// and the model of what the master should believe. Nothing here runs a
// goroutine, a socket or a real timer: the owner is driven by direct calls
// on a virtual clock, so a seed replays exactly.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// ---- the cluster the simulation draws from ----

var (
	simT0   = time.Unix(1_700_000_000, 0)
	simVIP1 = netip.MustParseAddr("192.0.2.1")
	simVIP2 = netip.MustParseAddr("192.0.2.2")
	// Realservers that run agents.
	simHosts = []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"),
		netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("10.0.0.5"),
	}
	// Addresses agents may claim in START records besides the hosts: a
	// second address of a multi-homed realserver, and one outside every
	// allow list below.
	simExtra = []netip.Addr{netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("198.51.100.7")}
	// simAddrs is every realserver address a destination can have.
	simAddrs = append(slices.Clone(simHosts), simExtra...)
)

// simVS is the pool of virtual services a configuration picks from. Two of
// them share tcp/80, so one START record can land in two services; tcp/443
// is offered by agents but never configured (NO MATCH).
var simVS = []struct {
	name        string
	vip         netip.Addr
	proto       uint8
	port        uint16
	sched       string
	max, altMax int
}{
	{"http", simVIP1, necp.ProtoTCP, 80, "wrr", 100, 60},
	{"http2", simVIP2, necp.ProtoTCP, 80, "wrr", 10, 20},
	{"dns", simVIP1, necp.ProtoUDP, 53, "rr", 100, 40},
	{"smtp", simVIP1, necp.ProtoTCP, 25, "wlc", 50, 100},
	{"alt", simVIP2, necp.ProtoTCP, 8080, "wrr", 100, 7},
}

func simVSKey(vi int) ipvs.ServiceKey {
	v := simVS[vi]
	return ipvs.ServiceKey{Protocol: uint16(v.proto), Address: v.vip, Port: v.port}
}

func simDest(vi int, a netip.Addr) destID {
	return destID{simVSKey(vi), ipvs.DestKey{Address: a, Port: simVS[vi].port}}
}

// Agent services: tcp/80, udp/53, tcp/25, tcp/8080 match some virtual
// service (when configured), tcp/443 never does.
var simSvcs = []svcPort{{necp.ProtoTCP, 80}, {necp.ProtoUDP, 53}, {necp.ProtoTCP, 25}, {necp.ProtoTCP, 8080}, {necp.ProtoTCP, 443}}

var simAllows = [][]netip.Prefix{
	nil, // any address
	{netip.MustParsePrefix("10.0.0.0/24")},
	{netip.MustParsePrefix("10.0.0.0/30")}, // .1 .2 .3
	{netip.MustParsePrefix("10.0.0.4/30"), netip.MustParsePrefix("10.0.0.1/32")}, // .1 .4-.7
}

var simSecrets = [][]byte{nil, []byte("alpha secret"), []byte("bravo secret")}

var simTimers = []struct {
	interval, timeout, removal time.Duration
	retries                    int
}{
	{2 * time.Second, 5 * time.Second, 10 * time.Second, 1},
	{time.Second, 3 * time.Second, 30 * time.Second, 3},
	{2 * time.Second, 10 * time.Second, 30 * time.Second, 3},
}

// simMaxRemoval is the longest removal-interval of simTimers: the master
// resyncs with the kernel at least that often.
const simMaxRemoval = 30 * time.Second

// simResyncWait is how long after another tool's change the master may
// take to notice it: a resync runs at the first owner pass at or after
// removal-interval since the previous one, and passes run at least once a
// second.
const simResyncWait = simMaxRemoval + 2*time.Second

// simCfg is a configuration as a small comparable value, so that events
// print readably and a reload to the same configuration is recognised.
type simCfg struct {
	vs        [5]int8 // per simVS: 0 absent, 1 present, 2 present with altMax, persistence (and one-packet on UDP)
	allow     int8
	trust     bool
	secret    int8
	timers    int8
	threshold int8 // weight-threshold in percent
	law       int8 // simLaws
}

// simLaws are the weight laws a configuration picks from: the direct law,
// the smoothed law with slow start as configured by default, and a
// faster filter without slow start.
var simLaws = []struct {
	law                  string
	smoothing, slowStart time.Duration
}{
	{config.WeightLawDirect, 0, 0},
	{config.WeightLawSmoothed, config.DefaultWeightSmoothing, config.DefaultSlowStart},
	{config.WeightLawSmoothed, 2 * time.Second, 0},
}

// settle is how long a destination's owner, health and configuration must
// stay unchanged before its weight must be exactly what the health asks
// for: at once with the direct law; with the smoothed law, once slow start
// is over and the filter has come within rounding of the goal (from at
// most 100 away, ln 200 ≈ 5.3 time constants), plus a few periods for the
// feedback ticks and the exact write of a settled health.
func (c simCfg) settle() time.Duration {
	l := simLaws[c.law]
	if l.law == config.WeightLawDirect {
		return 0
	}
	return l.slowStart + 6*l.smoothing + 3*simTimers[c.timers].interval + 2*time.Second
}

func (c simCfg) has(vi int) bool { return c.vs[vi] != 0 }

func (c simCfg) maxWeight(vi int) int {
	if c.vs[vi] == 2 {
		return simVS[vi].altMax
	}
	return simVS[vi].max
}

func (c simCfg) build() *config.Master {
	tm := simTimers[c.timers]
	m := &config.Master{
		File:              "sim.conf",
		KeepaliveInterval: tm.interval,
		KeepaliveTimeout:  tm.timeout,
		KeepaliveRetries:  tm.retries,
		RemovalInterval:   tm.removal,
		Allow:             simAllows[c.allow],
		TrustAgentAddress: c.trust,
		WeightThreshold:   int(c.threshold),
		WeightLaw:         simLaws[c.law].law,
		WeightSmoothing:   simLaws[c.law].smoothing,
		SlowStart:         simLaws[c.law].slowStart,
	}
	if s := simSecrets[c.secret]; s != nil {
		m.SecretFile, m.Secret = "sim.secret", s
	}
	for vi, v := range simVS {
		if c.has(vi) {
			vs := config.VirtualService{
				Name: v.name, Address: v.vip, Protocol: v.proto, Port: v.port,
				Scheduler: v.sched, MaxWeight: c.maxWeight(vi), Line: 10 * (vi + 1),
			}
			if c.vs[vi] == 2 {
				// The variant also asks for other service settings, so
				// that reloads flip them: the pool's services are not
				// the master's, and it must leave them as they are
				// (invariant 2s).
				vs.PersistenceTimeout, vs.PersistenceNetmask = 300, 24
				vs.OnePacket = v.proto == necp.ProtoUDP
			}
			m.VirtualServices = append(m.VirtualServices, vs)
		}
	}
	m.FillLimits()
	return m
}

func (c simCfg) String() string {
	var vs []string
	for vi := range simVS {
		switch c.vs[vi] {
		case 1:
			vs = append(vs, simVS[vi].name)
		case 2:
			vs = append(vs, fmt.Sprintf("%s(max %d, persistent)", simVS[vi].name, simVS[vi].altMax))
		}
	}
	allow := "any"
	if a := simAllows[c.allow]; a != nil {
		allow = fmt.Sprint(a)
	}
	secret := "none"
	if c.secret != 0 {
		secret = string(simSecrets[c.secret])
	}
	tm := simTimers[c.timers]
	law := simLaws[c.law].law
	if l := simLaws[c.law]; l.law == config.WeightLawSmoothed {
		law += fmt.Sprintf(" %v slow-start %v", l.smoothing, l.slowStart)
	}
	return fmt.Sprintf("{vs %s; allow %s; trust-agent-address %v; secret %s; keepalive %v/%v×%d removal %v; threshold %d%%; %s}",
		strings.Join(vs, ","), allow, c.trust, secret, tm.interval, tm.timeout, 1+tm.retries, tm.removal, c.threshold, law)
}

// ---- the kernel: ipvs.Memory behind a wrapper that sees every write ----

// simKernel is the IPVS the master gets. It injects faults into the
// master's calls only (foreign writes go to the Memory directly), and
// checks each of the master's successful writes against the model at the
// moment it is made.
type simKernel struct {
	w       *simWorld
	mem     *ipvs.Memory
	failW   []error // the master's next writes fail with these
	failR   []error // the master's next reads fail with these
	race    simEvKind
	faulted bool // an injected fault reached the master since the last check
	wrote   bool // a write of the master succeeded since wrote was reset
	// perPass counts the master's write attempts per destination in the
	// current owner pass (invariant 6).
	perPass map[destID]int
}

func (k *simKernel) readFault() error {
	if len(k.failR) == 0 {
		return nil
	}
	err := k.failR[0]
	k.failR = k.failR[1:]
	if err != nil {
		k.faulted = true
		k.w.readFaulted()
	}
	return err
}

func (k *simKernel) writeFault() error {
	if len(k.failW) == 0 {
		return nil
	}
	err := k.failW[0]
	k.failW = k.failW[1:]
	k.faulted = true
	return err
}

func (k *simKernel) Services() ([]ipvs.Service, error) {
	if err := k.readFault(); err != nil {
		return nil, err
	}
	return k.mem.Services()
}

func (k *simKernel) AddService(s ipvs.Service) error {
	if err := k.writeFault(); err != nil {
		return err
	}
	return k.mem.AddService(s)
}

// UpdateService is never the master's to call here: every virtual
// service of the pool was created by someone else before the master
// started (setup), and a service the master did not create is left as it
// is (invariant 2, for services).
func (k *simKernel) UpdateService(s ipvs.Service) error {
	k.w.failf("2s", "the master updated virtual service %s, which it did not create, to %s", s.ServiceKey, ipvs.Settings(s))
	if err := k.writeFault(); err != nil {
		return err
	}
	return k.mem.UpdateService(s)
}

func (k *simKernel) Destinations(s ipvs.ServiceKey) ([]ipvs.Destination, error) {
	if err := k.readFault(); err != nil {
		return nil, err
	}
	return k.mem.Destinations(s)
}

func (k *simKernel) AddDestination(s ipvs.ServiceKey, d ipvs.Destination) error {
	id := destID{s, d.DestKey}
	k.attempt(id)
	if k.race == evRaceAdd && !k.w.everMaster[id] && !k.w.inKernel(id) {
		// Another tool adds the same destination just before the master
		// does: the master's add meets EEXIST.
		k.race, k.faulted = 0, true
		k.w.foreignAdd(id, 1, d.Forwarding)
	}
	if err := k.writeFault(); err != nil {
		return err
	}
	err := k.mem.AddDestination(s, d)
	if err == nil {
		k.w.masterWrote("add", id, d.Weight)
		k.wrote = true
	}
	return err
}

func (k *simKernel) UpdateDestination(s ipvs.ServiceKey, d ipvs.Destination) error {
	id := destID{s, d.DestKey}
	k.attempt(id)
	k.raceDelete(id)
	if err := k.writeFault(); err != nil {
		return err
	}
	err := k.mem.UpdateDestination(s, d)
	if err == nil {
		k.w.masterWrote("update", id, d.Weight)
		k.wrote = true
	}
	return err
}

func (k *simKernel) DeleteDestination(s ipvs.ServiceKey, dk ipvs.DestKey) error {
	id := destID{s, dk}
	k.attempt(id)
	k.raceDelete(id)
	if err := k.writeFault(); err != nil {
		return err
	}
	err := k.mem.DeleteDestination(s, dk)
	if err == nil {
		k.w.masterWrote("delete", id, 0)
		k.wrote = true
	}
	return err
}

// raceDelete: another tool deletes the destination just before the
// master updates or deletes it, so the master's write meets ENOENT.
func (k *simKernel) raceDelete(id destID) {
	if k.race == evRaceDel && k.w.inKernel(id) {
		k.race, k.faulted = 0, true
		k.w.foreignDelete(id)
	}
}

func (k *simKernel) Close() error { return nil }

func (k *simKernel) attempt(id destID) {
	k.perPass[id]++
	if n := k.perPass[id]; n > simMaxWritesPerPass {
		k.w.failf("I6a", "%d IPVS writes to %s in one owner pass (bound %d)", n, id, simMaxWritesPerPass)
	}
}

// ---- the state store ----

// simStore is the state file: what the last successful Save wrote, with
// the appends since applied. Save, Append and Load fail on demand (EIO,
// ENOSPC); a failed append leaves a prefix of its lines, like a file
// whose write was cut short, and only a whole Save may follow it.
type simStore struct {
	w        *simWorld
	saved    map[destID]bool
	torn     bool
	fail     []error
	loadFail []error
	faulted  bool
	// svcs keeps the list of created virtual services across restarts,
	// without faults: none of the pool's is the master's (invariant 2s).
	svcs MemoryStore
}

func (s *simStore) LoadServices() ([]ipvs.ServiceKey, bool, error) { return s.svcs.LoadServices() }
func (s *simStore) SaveServices(k []ipvs.ServiceKey) error         { return s.svcs.SaveServices(k) }

func (s *simStore) Load() ([]Ref, error) {
	if len(s.loadFail) > 0 {
		err := s.loadFail[0]
		s.loadFail = s.loadFail[1:]
		s.faulted = true
		return nil, err
	}
	var refs []Ref
	for id := range s.saved {
		refs = append(refs, id)
	}
	sortIDs(refs)
	return refs, nil
}

func (s *simStore) Save(refs []Ref) error {
	if len(s.fail) > 0 {
		err := s.fail[0]
		s.fail = s.fail[1:]
		s.faulted = true
		s.w.storeFaulted()
		return err
	}
	s.saved = make(map[destID]bool, len(refs))
	for _, r := range refs {
		s.saved[r] = true
	}
	s.torn = false
	return nil
}

func (s *simStore) Append(added, removed []Ref) error {
	if s.torn {
		s.w.failf("I3d", "the state file was appended to after a failed append, before a whole write: the torn line would spoil the next one")
	}
	lines := len(removed) + len(added)
	var err error
	if len(s.fail) > 0 {
		err = s.fail[0]
		s.fail = s.fail[1:]
		s.faulted, s.torn = true, true
		lines /= 2 // what reached the disk
	}
	for _, r := range removed {
		if lines == 0 {
			break
		}
		delete(s.saved, r)
		lines--
	}
	for _, r := range added {
		if lines == 0 {
			break
		}
		s.saved[r] = true
		lines--
	}
	if err != nil {
		s.w.storeFaulted()
	}
	return err
}

func (s *simStore) String() string { return "(simulated state file)" }

// ---- the log ----

// simLog receives the master's log lines (INFO and above, the production
// level): it keeps the last ones for a failure report, counts the lines
// that name each peer, and checks the alarms about changes made outside
// feedbackd against what the simulated foreign tool really did.
type simLog struct {
	w       *simWorld
	recent  []string // ring of the last lines, for the failure report
	next    int
	perPeer map[netip.Addr]int // lines naming a peer address in the current step
	// quiet is set while a reload to the very same configuration is
	// handled: it must not log a line about any agent unless it changes
	// the kernel. quietLine is the first such line.
	quiet     bool
	quietLine string
}

const simRecentLines = 60

type simLogHandler struct {
	l     *simLog
	attrs []slog.Attr
}

func (h simLogHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }

func (h simLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return simLogHandler{h.l, append(slices.Clip(h.attrs), as...)}
}

func (h simLogHandler) WithGroup(string) slog.Handler { return h }

func (h simLogHandler) Handle(_ context.Context, r slog.Record) error {
	l := h.l
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	var agent, vs, rs string
	visit := func(a slog.Attr) bool {
		v := a.Value.String()
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		switch a.Key {
		case "agent":
			agent = v
		case "vs":
			vs = v
		case "realserver":
			rs = v
		}
		return true
	}
	for _, a := range h.attrs {
		visit(a)
	}
	r.Attrs(visit)
	line := b.String()
	if len(l.recent) < simRecentLines {
		l.recent = append(l.recent, line)
	} else {
		l.recent[l.next] = line
		l.next = (l.next + 1) % simRecentLines
	}
	if agent != "" {
		if ap, err := netip.ParseAddrPort(agent); err == nil {
			l.perPeer[ap.Addr()]++
			if n := l.perPeer[ap.Addr()]; n > simMaxLinesPerPeer {
				l.w.failf("I6c", "%d log lines about agent %s in one step (bound %d)", n, ap.Addr(), simMaxLinesPerPeer)
			}
		}
		if l.quiet && l.quietLine == "" {
			l.quietLine = line
		}
	}
	if r.Level >= slog.LevelWarn && strings.Contains(r.Message, "outside feedbackd") {
		l.w.checkAlarm(vs, rs, line)
	}
	return nil
}

func (l *simLog) lines() []string {
	return append(slices.Clone(l.recent[l.next:]), l.recent[:l.next]...)
}

// ---- the model ----

// simRec is one START record of an agent, as the model sees it.
type simRec struct {
	rec necp.ServiceRecord
	// stopped: STOPped since its latest START.
	stopped bool
	// withdrawn: an address claim a reload no longer permits; the master
	// withdraws it for good (until a new START).
	withdrawn bool
	// definite: its latest START was answered "accepted" while the policy
	// permitted it, and nothing has taken it back since. Only definite
	// offers oblige the master; the master may honour others (a reload
	// offers every START record again) but need not.
	definite bool
	pending  bool // its START awaits the answer
	// refused: its latest START was answered "refused". The master forgets
	// such a record (or keeps the one it replaced): it obliges nothing, its
	// health is not relied on, but the master may still honour it.
	refused bool
	// lost: virtual services (simVS indexes) for which the offer may have
	// been given up because the state file could not be written while
	// the destination was not in the kernel; the master need not offer it
	// there again until a new START.
	lost uint8
}

// simAgent is one agent session.
type simAgent struct {
	id     int // logical id: the connect event's, stable under shrinking
	sid    sessionID
	host   netip.Addr
	peer   netip.AddrPort
	auth   []byte
	recs   []*simRec
	health map[svcPort]uint8 // latest known report per service; absent = unknown
	// lastHealth: the master asks for health once per keepalive-interval,
	// so an agent cannot report faster.
	lastHealth  time.Time
	started     time.Time // its latest START
	silent      bool
	silentSince time.Time
	kicked      string // the reason the master closed the session
	gone        bool
	joined      bool // the owner has seen its START
	reply       chan []necp.Status
	replyRecs   []*simRec
	// starts is the session's START limiter, modelled with the session's
	// own type and limits: the owner never sees a START the session would
	// have refused.
	starts bucket
}

func (ag *simAgent) live() bool { return !ag.gone && ag.kicked == "" }

// addrOf is the realserver address a record names, and whether that is a
// claim (an address other than the session's own).
func (ag *simAgent) addrOf(r necp.ServiceRecord) (netip.Addr, bool) {
	if r.Address.IsValid() && !r.Address.IsUnspecified() && r.Address != ag.host {
		return r.Address, true
	}
	return ag.host, false
}

func (ag *simAgent) find(r necp.ServiceRecord) *simRec {
	for _, x := range ag.recs {
		if x.rec.Protocol == r.Protocol && x.rec.Port == r.Port && x.rec.Address == r.Address {
			return x
		}
	}
	return nil
}

// offering says whether the agent has a record for sp in force.
func (ag *simAgent) offering(sp svcPort) bool {
	for _, x := range ag.recs {
		if !x.stopped && !x.refused && !x.withdrawn && x.rec.Protocol == sp.proto && x.rec.Port == sp.port {
			return true
		}
	}
	return false
}

func simAllowed(allow []netip.Prefix, a netip.Addr) bool { return config.Allowed(allow, a) }

func (c simCfg) authorized(ag *simAgent) bool {
	if !simAllowed(simAllows[c.allow], ag.host) {
		return false
	}
	s := simSecrets[c.secret]
	return s == nil || bytes.Equal(ag.auth, s)
}

// permits says whether the policy permits the record itself: a valid
// forwarding method, and a claim only with trust-agent-address and inside
// allow.
func (c simCfg) permits(ag *simAgent, r necp.ServiceRecord) bool {
	if _, ok := forwardingFromNECP(r.Forwarding); !ok {
		return false
	}
	if a, claim := ag.addrOf(r); claim {
		return c.trust && simAllowed(simAllows[c.allow], a)
	}
	return true
}

// simExpect is what the model says about one destination.
type simExpect struct {
	owner *simAgent // the definite offer that must own it, nil if none
	rec   *simRec
	fwdOK bool // the owner's forwarding method is unambiguous
	// may: a permitted offer that is not definite ranks above every
	// definite one; the master may give it the destination or not.
	may bool
	// any: some live, authorized session offers it with a permitted record.
	any bool
	// forbidden: some live session offers it, but the policy forbids it.
	forbidden bool
	stopped   bool // some live session STOPped an offer of it
}

// expect computes the model's view of destination (vi, a) under the
// current configuration.
func (w *simWorld) expect(vi int, a netip.Addr) simExpect {
	var x simExpect
	if !w.cfg.has(vi) {
		return x
	}
	v := simVS[vi]
	rank := func(ag *simAgent) (bool, sessionID) { return ag.host == a, ag.sid }
	better := func(p, q *simAgent) bool { // p ranks above q
		pn, ps := rank(p)
		qn, qs := rank(q)
		return pn && !qn || pn == qn && ps > qs
	}
	var mayBest *simAgent
	for _, ag := range w.agentList {
		if !ag.live() {
			continue
		}
		auth := w.cfg.authorized(ag)
		for _, r := range ag.recs {
			if r.rec.Protocol != v.proto || r.rec.Port != v.port {
				continue
			}
			if ra, _ := ag.addrOf(r.rec); ra != a {
				continue
			}
			if r.stopped {
				x.stopped = true
				continue
			}
			if !auth || r.withdrawn || !w.cfg.permits(ag, r.rec) {
				x.forbidden = true
				continue
			}
			x.any = true
			if r.definite && r.lost&(1<<vi) == 0 {
				switch {
				case x.owner == nil || better(ag, x.owner):
					x.owner, x.rec, x.fwdOK = ag, r, true
				case x.owner == ag && x.rec.rec.Forwarding != r.rec.Forwarding:
					x.fwdOK = false // two records of one session name it
				}
			} else if mayBest == nil || better(ag, mayBest) {
				mayBest = ag
			}
		}
	}
	if mayBest != nil && (x.owner == nil || better(mayBest, x.owner) || mayBest == x.owner) {
		x.may = true
	}
	return x
}

// ---- injected errors ----

var (
	simEIO    = syscall.EIO
	simENOSPC = syscall.ENOSPC
)

func simErrName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case syscall.EIO:
			return "EIO"
		case syscall.ENOSPC:
			return "ENOSPC"
		}
	}
	return err.Error()
}

// simSvcPort is the agent service a destination belongs to.
func simSvcPort(id destID) svcPort { return svcPort{uint8(id.Service.Protocol), id.Dest.Port} }
