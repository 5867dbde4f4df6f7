package master

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// TestSimRecordsOfferedAgainOnceWritable: offers given up while the state
// file could not be written come back once it can (found by the simulation:
// a realserver stayed out of a virtual service its agents offered until a
// reload or a new START).
func TestSimRecordsOfferedAgainOnceWritable(t *testing.T) {
	c0 := simCfg{vs: [5]int8{1, 0, 2, 0, 0}, allow: 1, trust: true}
	c1 := simCfg{vs: [5]int8{0, 0, 2, 0, 0}, timers: 2}
	c2 := simCfg{vs: [5]int8{1, 0, 2, 0, 0}, timers: 2}
	rs := netip.MustParseAddr("10.0.0.2")
	tcp80 := necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}
	udp53 := necp.ServiceRecord{Protocol: necp.ProtoUDP, Port: 53, Forwarding: necp.ForwardNAT}
	s := func(d float64) time.Duration { return time.Duration(d * float64(time.Second)) }
	run := &simRun{cfg: c0, evs: []simEv{
		{at: s(93.7), kind: evReload, cfg: c1},
		{at: s(94.8), kind: evConnect, agent: 4, host: rs, recs: []necp.ServiceRecord{tcp80, udp53}},
		{at: s(103.1), kind: evConnect, agent: 5, host: rs, recs: []necp.ServiceRecord{tcp80}},
		{at: s(114.1), kind: evStoreFail, n: 2, err: simENOSPC},
		{at: s(207.8), kind: evConnect, agent: 7, host: rs, recs: []necp.ServiceRecord{tcp80, {Protocol: necp.ProtoUDP, Port: 53, Forwarding: necp.ForwardDR}}},
		{at: s(209.3), kind: evReload, cfg: c2},
		{at: s(210.1), kind: evStart, agent: 5, recs: []necp.ServiceRecord{tcp80}},
		{at: s(254.8), kind: evReload, cfg: c2},
	}}
	if w := run.replay(map[string]bool{}, run.evs); w.fail != nil {
		t.Fatal(w.fail.inv, w.fail.msg)
	}
}
