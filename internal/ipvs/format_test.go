package ipvs

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestFormatGolden(t *testing.T) {
	v6 := ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 443}
	udp := ServiceKey{Protocol: ProtoUDP, Address: netip.MustParseAddr("10.0.0.1"), Port: 53}
	sctp := ServiceKey{Protocol: ProtoSCTP, Address: netip.MustParseAddr("10.0.0.9"), Port: 9}
	pers := ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("10.0.0.5"), Port: 0}
	svcs := []Service{ // deliberately unsorted
		{ServiceKey: udp, Scheduler: "rr", Flags: FlagHashed | FlagOnePacket},
		{ServiceKey: v6, Scheduler: "mh", Flags: FlagHashed | FlagPersistent | 0x8, Timeout: 60, Netmask: 64},
		{ServiceKey: svcKey, Scheduler: "wrr", Flags: FlagHashed, Netmask: 0xffffffff},
		{ServiceKey: pers, Scheduler: "wlc", Flags: FlagHashed | FlagPersistent, Timeout: 300, Netmask: 0xffffff00},
		{ServiceKey: sctp, Scheduler: "sh"},
		{ServiceKey: FWMarkKey(3, netip.Addr{}), Scheduler: "sh", Flags: FlagHashed | FlagPersistent | FlagSched1 | FlagSched2, Timeout: 600, Netmask: 0xffffffff},
		{ServiceKey: FWMarkKey(2, netip.Addr{}), Scheduler: "wrr", Flags: FlagHashed | FlagSched1},
	}
	dests := map[ServiceKey][]Destination{
		svcKey: { // table order, not sorted
			{DestKey: rs2, Weight: 75, Forwarding: ForwardMasq, ActiveConns: 12, InactiveConns: 345},
			{DestKey: rs1, Weight: 0, Forwarding: ForwardRoute},
		},
		v6: {
			{DestKey: DestKey{Address: netip.MustParseAddr("2001:db8::10"), Port: 443}, Weight: 65535, Forwarding: ForwardTunnel, ActiveConns: 1234567890},
		},
		udp: {
			{DestKey: DestKey{Address: netip.MustParseAddr("10.0.0.7"), Port: 53}, Weight: 1, Forwarding: ForwardLocal},
		},
		FWMarkKey(3, netip.Addr{}): {{DestKey: DestKey{Address: netip.MustParseAddr("10.0.0.2")}, Weight: 5, Forwarding: ForwardRoute}},
		// A service that is not in svcs is not shown.
		{Protocol: ProtoTCP, Address: netip.MustParseAddr("192.0.2.1"), Port: 1}: {{DestKey: rs1}},
	}
	want := `IP Virtual Server table (feedbackd)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 wrr
  -> 10.0.0.3:80                  Masq    75     12         345
  -> 10.0.0.2:80                  Route   0      0          0
TCP  10.0.0.5:0 wlc persistent 300 mask 255.255.255.0
TCP  [2001:db8::1]:443 mh persistent 60 mask 64 (mh-fallback)
  -> [2001:db8::10]:443           Tunnel  65535  1234567890 0
UDP  10.0.0.1:53 rr ops
  -> 10.0.0.7:53                  Local   1      0          0
SCTP  10.0.0.9:9 sh
FWM  2 wrr flags 0x8
FWM  3 sh persistent 600 (sh-fallback,sh-port)
  -> 10.0.0.2:0                   Route   5      0          0
`
	got := Format(svcs, dests)
	if got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	if svcs[0].ServiceKey != udp {
		t.Error("Format sorted the caller's slice")
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.TrimRight(line, " ") != line {
			t.Errorf("trailing blanks in %q", line)
		}
	}
	// A head of the table is the same text cut after maxLines lines, and
	// says how many it left out.
	lines := strings.SplitAfter(want, "\n")
	lines = lines[:len(lines)-1]
	for n := 3; n <= len(lines)+1; n++ { // the 3 header lines always
		head, more := AppendFormat([]byte("x"), svcs, dests, n)
		wantHead, wantMore := strings.Join(lines[:min(n, len(lines))], ""), max(len(lines)-n, 0)
		if string(head) != "x"+wantHead || more != wantMore {
			t.Errorf("AppendFormat(%d) = %d left out, text:\n%s\nwant %d left out:\n%s", n, more, head, wantMore, wantHead)
		}
	}
	// A destination line costs no allocation once the buffer is large
	// enough: the printer renders tables after every pass of a join burst.
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { buf = appendDest(buf[:0], dests[v6][0]) }); a != 0 {
		t.Errorf("appendDest: %v allocations, want 0", a)
	}
}

func TestFormatEmpty(t *testing.T) {
	if got := Format(nil, nil); got != formatHeader {
		t.Errorf("empty table:\n%q", got)
	}
}

func TestDump(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 75}))
	mustNoErr(t, m.SetConns(svcKey, rs1, 3, 4))
	got, err := Dump(m)
	mustNoErr(t, err)
	want := formatHeader + "TCP  10.0.0.1:80 wrr\n" +
		"  -> 10.0.0.2:80                  Masq    75     3          4\n"
	if got != want {
		t.Errorf("Dump:\n%s\nwant:\n%s", got, want)
	}
	if got != m.String() {
		t.Errorf("Dump and Memory.String differ")
	}

	boom := errors.New("boom")
	m.FailNextRead(boom)
	if _, err := Dump(m); !errors.Is(err, boom) {
		t.Errorf("Dump with failing Services: %v", err)
	}
	m.FailNextRead(nil)  // the Services call succeeds...
	m.FailNextRead(boom) // ...and the Destinations call fails
	if _, err := Dump(m); !errors.Is(err, boom) {
		t.Errorf("Dump with failing Destinations: %v", err)
	}
}

func TestServiceKeyString(t *testing.T) {
	for k, want := range map[ServiceKey]string{
		svcKey: "TCP 10.0.0.1:80",
		{Protocol: ProtoUDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53}: "UDP [2001:db8::1]:53",
		{Protocol: ProtoSCTP, Address: vip, Port: 9}:                                "SCTP 10.0.0.1:9",
		{Protocol: 99, Address: vip, Port: 9}:                                       "proto99 10.0.0.1:9",
	} {
		if got := k.String(); got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}
