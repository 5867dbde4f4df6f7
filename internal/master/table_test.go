package master

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

var (
	vip1 = netip.MustParseAddr("192.0.2.1")
	vip2 = netip.MustParseAddr("192.0.2.2")
	rs1  = netip.MustParseAddr("10.0.0.11")
	rs2  = netip.MustParseAddr("10.0.0.12")
	t0   = time.Unix(1_700_000_000, 0)
)

func testConfig() *config.Master {
	return &config.Master{
		KeepaliveInterval: 2 * time.Second,
		KeepaliveTimeout:  10 * time.Second,
		KeepaliveRetries:  3,
		RemovalInterval:   30 * time.Second,
		VirtualServices: []config.VirtualService{
			{Name: "http", Address: vip1, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
			{Name: "http2", Address: vip2, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 10},
			{Name: "dns", Address: vip1, Protocol: necp.ProtoUDP, Port: 53, Scheduler: "rr", MaxWeight: 100},
		},
	}
}

func svc(vip netip.Addr, proto uint8, port uint16) ipvs.ServiceKey {
	return ipvs.ServiceKey{Protocol: uint16(proto), Address: vip, Port: port}
}

func id(vip netip.Addr, proto uint8, port uint16, rs netip.Addr) destID {
	return destID{svc(vip, proto, port), ipvs.DestKey{Address: rs, Port: port}}
}

func peer(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 40000) }

func rec(proto uint8, port uint16, fwd necp.Forwarding) necp.ServiceRecord {
	return necp.ServiceRecord{Protocol: proto, Port: port, Forwarding: fwd}
}

// apply runs one diff as if every write succeeded and renders the ops.
func apply(t testing.TB, tb *table) []string {
	t.Helper()
	var out []string
	tb.recordedAll() // the owner records ownership before it writes
	for _, o := range tb.diff() {
		out = append(out, fmt.Sprintf("%s %s w=%d %s", o.kind, o.id, o.dest.Weight, o.dest.Forwarding))
		tb.applied(o, nil)
	}
	tb.clean()
	checkIndexes(t, tb)
	return out
}

func expectOps(t *testing.T, tb *table, want ...string) {
	t.Helper()
	got := apply(t, tb)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ops:\n  got  %q\n  want %q", got, want)
	}
}

// joinT STARTs recs for session sid as an agent at peer that proved no
// secret, and returns the statuses the table decided.
func joinT(tb *table, sid sessionID, p netip.AddrPort, recs []necp.ServiceRecord, now time.Time) []necp.Status {
	st, _ := tb.join(joinEvent{sid: sid, peer: p, recs: recs}, now)
	// What the owner does before it writes: record ownership.
	tb.recordedAll()
	return st
}

func newTestTable() *table { return newTable(testConfig(), slog.New(slog.DiscardHandler)) }

func TestJoinMatchesByProtocolAndPort(t *testing.T) {
	tb := newTestTable()
	st := joinT(tb, 1, peer(rs1), []necp.ServiceRecord{
		rec(necp.ProtoTCP, 80, necp.ForwardDR),  // two VIPs on port 80
		rec(necp.ProtoUDP, 53, necp.ForwardNAT), // one
		rec(necp.ProtoTCP, 25, necp.ForwardNAT), // none
		rec(necp.ProtoTCP, 80, necp.ForwardNone),
		rec(necp.ProtoTCP, 80, 9),
	}, t0)
	want := []necp.Status{necp.StatusAccepted, necp.StatusAccepted, necp.StatusNoMatch, necp.StatusRefused, necp.StatusRefused}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", st, want)
	}
	// Joined at weight 0 (the HOWTO: "initially with a weight of zero"),
	// with the forwarding method the agent asked for.
	expectOps(t, tb,
		"add TCP 192.0.2.1:80 -> 10.0.0.11:80 w=0 Route",
		"add TCP 192.0.2.2:80 -> 10.0.0.11:80 w=0 Route",
		"add UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq",
	)
}

// An agent that names a realserver address other than its own is refused
// unless the master trusts claims (trust-agent-address), and even then
// only for addresses inside allow: a host that may talk to the master
// must not be able to point a virtual service at any address it likes.
func TestRecordAddressClaims(t *testing.T) {
	for _, c := range []struct {
		name  string
		trust bool
		allow []netip.Prefix
		claim netip.Addr
		want  necp.Status
		ops   []string
	}{
		{"claim refused by default", false, nil, rs2, necp.StatusRefused, nil},
		{"own address is no claim", false, nil, rs1, necp.StatusAccepted, []string{"add UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Tunnel"}},
		{"trusted claim", true, nil, rs2, necp.StatusAccepted, []string{"add UDP 192.0.2.1:53 -> 10.0.0.12:53 w=0 Tunnel"}},
		{"trusted claim inside allow", true, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, rs2, necp.StatusAccepted,
			[]string{"add UDP 192.0.2.1:53 -> 10.0.0.12:53 w=0 Tunnel"}},
		{"trusted claim outside allow", true, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
			netip.MustParseAddr("198.51.100.7"), necp.StatusRefused, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TrustAgentAddress, cfg.Allow = c.trust, c.allow
			tb := newTable(cfg, slog.New(slog.DiscardHandler))
			r := rec(necp.ProtoUDP, 53, necp.ForwardTUN)
			r.Address = c.claim
			if st := joinT(tb, 1, peer(rs1), []necp.ServiceRecord{r}, t0); st[0] != c.want {
				t.Fatalf("status %v, want %v", st, c.want)
			}
			expectOps(t, tb, c.ops...)
		})
	}
}

// TestMaxServices: repeating START does not grow a session; new services
// beyond max-services are refused, and the ones before keep working.
func TestMaxServices(t *testing.T) {
	cfg := testConfig()
	cfg.MaxServices = 2
	tb := newTable(cfg, slog.New(slog.DiscardHandler))
	recs := []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardDR), rec(necp.ProtoUDP, 53, necp.ForwardDR)}
	for range 1000 {
		joinT(tb, 1, peer(rs1), recs, t0)
	}
	if n := len(tb.sessions[1].started); n != 2 {
		t.Fatalf("1000 identical STARTs left %d records", n)
	}
	st := joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 8080, necp.ForwardDR), rec(necp.ProtoTCP, 80, necp.ForwardNAT)}, t0)
	if st[0] != necp.StatusRefused || st[1] != necp.StatusAccepted {
		t.Fatalf("statuses %v: want the third service refused and a known one accepted", st)
	}
	if n := len(tb.sessions[1].started); n != 2 {
		t.Fatalf("%d records after a refused service", n)
	}
	// The known service's new forwarding replaced the old record.
	if f := tb.sessions[1].started[0].Forwarding; f != necp.ForwardNAT {
		t.Fatalf("forwarding %v after a repeated START", f)
	}
}

func TestHealthSetsWeightAndOnlyChangesAreWritten(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardNAT)}, t0)
	apply(t, tb)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 75}}, t0)
	// max-weight 100 → 75; max-weight 10 → round(7.5) = 8.
	expectOps(t, tb,
		"update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=75 Masq",
		"update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=8 Masq",
	)
	// Same report again: nothing to write.
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 75}}, t0)
	expectOps(t, tb)
	// Unknown: the weight stays.
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: necp.HealthUnknown}}, t0)
	expectOps(t, tb)
	// A service never started, and a record missing from the list: ignored.
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 443, Health: 1}}, t0)
	expectOps(t, tb)
	// Clamped above 100.
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 200}}, t0)
	expectOps(t, tb,
		"update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=100 Masq",
		"update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=10 Masq",
	)
}

func TestUpdateKeepsKernelFields(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardDR)}, t0)
	apply(t, tb)
	e := tb.entries[id(vip1, necp.ProtoUDP, 53, rs1)]
	e.kernel.UpperThreshold, e.kernel.LowerThreshold = 500, 100 // set by an admin
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 40}}, t0)
	ops := tb.diff()
	if len(ops) != 1 || ops[0].dest.UpperThreshold != 500 || ops[0].dest.LowerThreshold != 100 ||
		ops[0].dest.Forwarding != ipvs.ForwardRoute || ops[0].dest.Weight != 40 {
		t.Fatalf("update must carry the full destination: %+v", ops)
	}
}

func TestGoneQuiescesThenRemovalWaitsForConnections(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 60}}, t0)
	apply(t, tb)

	tb.gone(1, "connection lost", t0.Add(time.Second))
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
	x := id(vip1, necp.ProtoUDP, 53, rs1)

	if due := tb.tick(t0.Add(30 * time.Second)); len(due) != 0 {
		t.Fatalf("removal check before removal-interval: %v", due)
	}
	if d, ok := tb.nextDeadline(); !ok || !d.Equal(t0.Add(31*time.Second)) {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	due := tb.tick(t0.Add(31 * time.Second))
	if len(due) != 1 || due[0] != x {
		t.Fatalf("due %v", due)
	}
	tb.removalChecked(x, 3, t0.Add(31*time.Second)) // live connections: wait
	expectOps(t, tb)
	if due := tb.tick(t0.Add(60 * time.Second)); len(due) != 0 {
		t.Fatalf("rechecked too early: %v", due)
	}
	due = tb.tick(t0.Add(61 * time.Second))
	tb.removalChecked(due[0], 0, t0.Add(61*time.Second))
	expectOps(t, tb, "delete UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
	if len(tb.entries) != 0 || !tb.ownedChanged {
		t.Fatalf("entry not forgotten after delete: %v", tb.entries)
	}
}

func TestRejoinInsideRemovalWindowReusesEntries(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 60}}, t0)
	apply(t, tb)
	tb.stop(1, nil, "agent sent STOP", t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
	tb.gone(1, "closed", t0)

	// A new connection from the same realserver: no add, the entry is reused.
	if st := joinT(tb, 2, netip.AddrPortFrom(rs1, 40001), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0.Add(5*time.Second)); st[0] != necp.StatusAccepted {
		t.Fatal(st)
	}
	expectOps(t, tb)
	if due := tb.tick(t0.Add(time.Hour)); len(due) != 0 {
		t.Fatalf("rejoined entry still scheduled for removal: %v", due)
	}
	tb.health(2, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 90}}, t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=90 Masq")
}

func TestStopOneServiceKeepsTheOthers(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT), rec(necp.ProtoTCP, 80, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 50}, {Protocol: necp.ProtoTCP, Port: 80, Health: 50}}, t0)
	apply(t, tb)
	tb.stop(1, []necp.ServiceRecord{{Protocol: necp.ProtoUDP, Port: 53}}, "agent sent STOP", t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 99}, {Protocol: necp.ProtoTCP, Port: 80, Health: 20}}, t0)
	expectOps(t, tb,
		"update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=20 Masq",
		"update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=2 Masq",
	)
}

func TestSessionsFromOneIPAreSeparate(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, netip.AddrPortFrom(rs1, 1000), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	joinT(tb, 2, netip.AddrPortFrom(rs1, 1001), []necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 50}}, t0)
	apply(t, tb)
	tb.gone(1, "closed", t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
	tb.health(2, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 30}}, t0)
	expectOps(t, tb,
		"update TCP 192.0.2.1:80 -> 10.0.0.11:80 w=30 Masq",
		"update TCP 192.0.2.2:80 -> 10.0.0.11:80 w=3 Masq",
	)
}

func TestNewestSessionTakesOver(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, netip.AddrPortFrom(rs1, 1000), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	apply(t, tb)
	joinT(tb, 2, netip.AddrPortFrom(rs1, 1001), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 10}}, t0) // stale session: ignored
	tb.health(2, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 70}}, t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=70 Masq")
	tb.gone(1, "closed", t0) // the old session's end must not quiesce the new owner's entry
	expectOps(t, tb)
}

func TestForeignDestinationsAreNeverTouched(t *testing.T) {
	tb := newTestTable()
	k := map[ipvs.ServiceKey][]ipvs.Destination{
		svc(vip1, necp.ProtoUDP, 53): {{DestKey: ipvs.DestKey{Address: rs1, Port: 53}, Weight: 5}},
	}
	tb.adopt(k, nil, t0)
	tb.resync(k, t0)
	st := joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	if st[0] != necp.StatusRefused {
		t.Fatalf("claiming a foreign destination: %v", st)
	}
	expectOps(t, tb)
	if d, ok := tb.nextDeadline(); ok {
		t.Fatalf("foreign destination scheduled: %v", d)
	}
}

func TestRestartAdoptsOwnEntriesAtTheirWeight(t *testing.T) {
	tb := newTestTable()
	x := id(vip1, necp.ProtoUDP, 53, rs1)
	k := map[ipvs.ServiceKey][]ipvs.Destination{
		svc(vip1, necp.ProtoUDP, 53): {{DestKey: x.Dest, Weight: 42, Forwarding: ipvs.ForwardRoute}},
	}
	tb.adopt(k, map[destID]bool{x: true}, t0)
	tb.resync(k, t0)
	tb.clean()
	expectOps(t, tb) // a restart writes nothing
	// The agent comes back and reports: the weight follows, forwarding kept.
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardDR)}, t0.Add(time.Second))
	expectOps(t, tb)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 43}}, t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=43 Route")
}

func TestOrphanQuiescedAfterGrace(t *testing.T) {
	tb := newTestTable()
	x := id(vip1, necp.ProtoUDP, 53, rs1)
	k := map[ipvs.ServiceKey][]ipvs.Destination{svc(vip1, necp.ProtoUDP, 53): {{DestKey: x.Dest, Weight: 42}}}
	tb.adopt(k, map[destID]bool{x: true}, t0)
	grace := 40 * time.Second // (1 + retries) × timeout
	if due := tb.tick(t0.Add(grace - time.Millisecond)); len(due) != 0 {
		t.Fatal(due)
	}
	expectOps(t, tb)
	tb.tick(t0.Add(grace))
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
}

func TestResyncRestoresForeignEditsAndRespectsManualRemoval(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	joinT(tb, 2, peer(rs2), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53, Health: 50}}, t0)
	apply(t, tb)
	tb.gone(2, "closed", t0)
	apply(t, tb)
	// Someone ran ipvsadm -e on rs1 and ipvsadm -d on the quiesced rs2.
	k := map[ipvs.ServiceKey][]ipvs.Destination{
		svc(vip1, necp.ProtoUDP, 53): {{DestKey: ipvs.DestKey{Address: rs1, Port: 53}, Weight: 7}},
	}
	tb.resync(k, t0)
	expectOps(t, tb, "update UDP 192.0.2.1:53 -> 10.0.0.11:53 w=50 Masq")
	if _, ok := tb.entries[id(vip1, necp.ProtoUDP, 53, rs2)]; ok {
		t.Fatal("manually removed quiesced entry must be forgotten, not re-added")
	}
	// And an active entry deleted by hand is put back.
	tb.resync(map[ipvs.ServiceKey][]ipvs.Destination{}, t0)
	expectOps(t, tb, "add UDP 192.0.2.1:53 -> 10.0.0.11:53 w=50 Masq")
}

func TestRematchPicksUpNewVirtualService(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 443, necp.ForwardNAT)}, t0)
	tb.health(1, []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 443, Health: 80}}, t0)
	expectOps(t, tb)
	cfg := testConfig()
	cfg.VirtualServices = append(cfg.VirtualServices, config.VirtualService{Name: "https", Address: vip1, Protocol: necp.ProtoTCP, Port: 443, Scheduler: "wrr", MaxWeight: 100})
	tb.cfg = cfg
	tb.rematch(nil, t0)
	// The session's latest report is remembered: sessions forward only
	// changed reports, so the new destination must not wait for one.
	expectOps(t, tb, "add TCP 192.0.2.1:443 -> 10.0.0.11:443 w=80 Masq")
}

func TestFailedWriteIsRetried(t *testing.T) {
	tb := newTestTable()
	joinT(tb, 1, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
	for _, o := range tb.diff() {
		tb.applied(o, fmt.Errorf("netlink: EBUSY"))
	}
	tb.clean()
	expectOps(t, tb, "add UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Masq")
}

// checkIndexes recomputes the table's indexes from its entries; every test
// that applies ops runs it, so a transition that forgets an index fails.
func checkIndexes(t testing.TB, tb *table) {
	t.Helper()
	active := 0
	for id, e := range tb.entries {
		if e.id != id {
			t.Fatalf("entry %v filed under %v", e.id, id)
		}
		if e.state == stateActive {
			active++
			if _, ok := tb.timed.m[id]; ok {
				t.Fatalf("active entry %v in the timed index", id)
			}
		} else if tb.timed.m[id] != e {
			t.Fatalf("%s entry %v missing from the timed index", e.state, id)
		}
		if e.dirty != (tb.dirty.m[id] == e) {
			t.Fatalf("entry %v dirty=%v but dirty index says %v", id, e.dirty, tb.dirty.m[id] != nil)
		}
	}
	if active != tb.nActive {
		t.Fatalf("nActive %d, counted %d", tb.nActive, active)
	}
	for id := range tb.timed.m {
		if tb.entries[id] == nil {
			t.Fatalf("timed index holds dropped entry %v", id)
		}
	}
	for id, e := range tb.steps.m {
		if tb.entries[id] != e || e.state != stateActive {
			t.Fatalf("steps index holds %v, which is dropped or not active", id)
		}
	}
	for id := range tb.dirty.m {
		if tb.entries[id] == nil {
			t.Fatalf("dirty index holds dropped entry %v", id)
		}
	}
}

// An index rebuilds its map once it has shrunk to a quarter of its peak, so
// that ranging over it costs what it holds, not what it once held.
func TestIndexShrinks(t *testing.T) {
	x := newIndex()
	for i := 0; i < 1000; i++ {
		x.add(&entry{id: id(vip1, necp.ProtoTCP, uint16(i), rs1)})
	}
	if x.peak != 1000 {
		t.Fatalf("peak %d", x.peak)
	}
	for i := 0; i < 990; i++ {
		x.del(id(vip1, necp.ProtoTCP, uint16(i), rs1))
	}
	if len(x.m) != 10 || x.peak > 250 {
		t.Fatalf("after deleting 990 of 1000: len %d, peak %d; want 10 and a rebuilt map", len(x.m), x.peak)
	}
	for i := 990; i < 1000; i++ {
		if x.m[id(vip1, necp.ProtoTCP, uint16(i), rs1)] == nil {
			t.Fatalf("entry %d lost in the rebuild", i)
		}
	}
}

// A dry run loads the real ownership list but never writes it.
func TestReadOnlyStore(t *testing.T) {
	inner := &MemoryStore{}
	x := id(vip1, necp.ProtoUDP, 53, rs1)
	inner.Save([]Ref{x})
	ro := ReadOnly(inner)
	if refs, err := ro.Load(); err != nil || len(refs) != 1 || refs[0] != x {
		t.Fatalf("Load = %v, %v", refs, err)
	}
	if err := ro.Save(nil); err != nil {
		t.Fatal(err)
	}
	if refs, _ := inner.Load(); len(refs) != 1 {
		t.Fatalf("ReadOnly.Save changed the store: %v", refs)
	}
}
