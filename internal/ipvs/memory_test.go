package ipvs

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
)

var (
	vip    = netip.MustParseAddr("10.0.0.1")
	svcKey = ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 80}
	rs1    = DestKey{Address: netip.MustParseAddr("10.0.0.2"), Port: 80}
	rs2    = DestKey{Address: netip.MustParseAddr("10.0.0.3"), Port: 80}
	rs3    = DestKey{Address: netip.MustParseAddr("10.0.0.4"), Port: 8080}
)

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMemoryServiceExistsAndHashed(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))

	err := m.AddService(Service{ServiceKey: svcKey, Scheduler: "rr"})
	if !errors.Is(err, ErrExist) || !errors.Is(err, os.ErrExist) {
		t.Fatalf("second AddService: got %v, want ErrExist (and os.ErrExist)", err)
	}

	svcs, err := m.Services()
	mustNoErr(t, err)
	if len(svcs) != 1 {
		t.Fatalf("got %d services, want 1", len(svcs))
	}
	s := svcs[0]
	if s.Flags&FlagHashed == 0 {
		t.Errorf("reported flags %#x lack FlagHashed", s.Flags)
	}
	if s.Flags&^FlagHashed != 0 {
		t.Errorf("reported flags %#x carry more than FlagHashed", s.Flags)
	}
	if s.Scheduler != "wrr" {
		t.Errorf("scheduler %q changed by the failed second add", s.Scheduler)
	}
	if s.Netmask != 0xffffffff {
		t.Errorf("netmask %#x, want the kernel default 0xffffffff", s.Netmask)
	}
	if m.Writes() != 1 {
		t.Errorf("Writes() = %d, want 1 (the failed add does not count)", m.Writes())
	}
}

// Passing FlagHashed in would make the real kernel leak the service; it
// must be stripped before the write, and what reads back is the same as
// without it.
func TestMemoryAddServiceStripsHashed(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wlc", Flags: FlagHashed | FlagPersistent, Timeout: 300}))
	svcs, _ := m.Services()
	if got, want := svcs[0].Flags, FlagHashed|FlagPersistent; got != want {
		t.Errorf("flags %#x, want %#x", got, want)
	}
	if svcs[0].Timeout != 300 {
		t.Errorf("timeout %d, want 300", svcs[0].Timeout)
	}
}

func TestMemoryServicesSortedIPv6Default(t *testing.T) {
	m := NewMemory(nil)
	v6 := ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 443}
	udp := ServiceKey{Protocol: ProtoUDP, Address: vip, Port: 53}
	tcp2 := ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 22}
	for _, k := range []ServiceKey{v6, udp, svcKey, tcp2} {
		mustNoErr(t, m.AddService(Service{ServiceKey: k, Scheduler: "rr"}))
	}
	svcs, _ := m.Services()
	var got []ServiceKey
	for _, s := range svcs {
		got = append(got, s.ServiceKey)
	}
	want := []ServiceKey{tcp2, svcKey, v6, udp}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	if svcs[2].Netmask != 128 {
		t.Errorf("IPv6 netmask %d, want default 128", svcs[2].Netmask)
	}
}

func TestMemoryDestinationErrors(t *testing.T) {
	m := NewMemory(nil)
	d := Destination{DestKey: rs1, Weight: 10, Forwarding: ForwardRoute}

	if err := m.AddDestination(svcKey, d); !errors.Is(err, ErrNotExist) {
		t.Errorf("AddDestination to a missing service: %v, want ErrNotExist", err)
	}
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, m.AddDestination(svcKey, d))
	if err := m.AddDestination(svcKey, d); !errors.Is(err, ErrExist) || !errors.Is(err, os.ErrExist) {
		t.Errorf("duplicate AddDestination: %v, want ErrExist", err)
	}
	if err := m.UpdateDestination(svcKey, Destination{DestKey: rs2, Weight: 1}); !errors.Is(err, ErrNotExist) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UpdateDestination of a missing destination: %v, want ErrNotExist", err)
	}
	if err := m.DeleteDestination(svcKey, rs2); !errors.Is(err, ErrNotExist) {
		t.Errorf("DeleteDestination of a missing destination: %v, want ErrNotExist", err)
	}
	other := ServiceKey{Protocol: ProtoUDP, Address: vip, Port: 80}
	if err := m.UpdateDestination(other, d); !errors.Is(err, ErrNotExist) {
		t.Errorf("UpdateDestination in a missing service: %v, want ErrNotExist", err)
	}
	if err := m.DeleteDestination(other, rs1); !errors.Is(err, ErrNotExist) {
		t.Errorf("DeleteDestination in a missing service: %v, want ErrNotExist", err)
	}
	if m.Writes() != 2 {
		t.Errorf("Writes() = %d, want 2", m.Writes())
	}

	// The kernel's dump of a missing service is empty, not an error.
	ds, err := m.Destinations(other)
	if err != nil || len(ds) != 0 {
		t.Errorf("Destinations of a missing service: %v, %v; want none, nil", ds, err)
	}
}

func TestMemoryInvalid(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	v6svc := ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 80}
	cases := []struct {
		name string
		err  error
	}{
		{"no scheduler", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 81}})},
		{"long scheduler", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 81}, Scheduler: "abcdefghijklmnop"})},
		{"protocol", m.AddService(Service{ServiceKey: ServiceKey{Protocol: 1, Address: vip, Port: 81}, Scheduler: "rr"})},
		{"no address", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Port: 81}, Scheduler: "rr"})},
		{"mapped address", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 81}, Scheduler: "rr"})},
		{"zone", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("fe80::1%eth0"), Port: 81}, Scheduler: "rr"})},
		{"holey netmask", m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 81}, Scheduler: "rr", Netmask: 0xff00ff00})},
		{"v6 netmask", m.AddService(Service{ServiceKey: v6svc, Scheduler: "rr", Netmask: 129})},
		{"negative weight", m.AddDestination(svcKey, Destination{DestKey: rs2, Weight: -1})},
		{"huge weight", m.AddDestination(svcKey, Destination{DestKey: rs2, Weight: MaxWeight + 1})},
		{"thresholds", m.AddDestination(svcKey, Destination{DestKey: rs2, LowerThreshold: 5})},
		{"forwarding", m.AddDestination(svcKey, Destination{DestKey: rs2, Forwarding: 7})},
		{"family", m.AddDestination(svcKey, Destination{DestKey: DestKey{Address: netip.MustParseAddr("2001:db8::2"), Port: 80}})},
		{"update weight", m.UpdateDestination(svcKey, Destination{DestKey: rs2, Weight: -5})},
	}
	for _, c := range cases {
		if !errors.Is(c.err, ErrInvalid) || !errors.Is(c.err, os.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.name, c.err)
		}
	}
	if m.Writes() != 1 {
		t.Errorf("Writes() = %d after invalid requests, want 1", m.Writes())
	}
	// Edge values that must pass.
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs2, Weight: MaxWeight, UpperThreshold: 5, LowerThreshold: 5}))
	mustNoErr(t, m.AddService(Service{ServiceKey: ServiceKey{Protocol: ProtoSCTP, Address: vip, Port: 81}, Scheduler: "mh", Netmask: 0xffffff00}))
	mustNoErr(t, m.AddService(Service{ServiceKey: v6svc, Scheduler: "rr", Netmask: 64}))
}

func TestMemoryOrderUpdateDelete(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	for i, k := range []DestKey{rs3, rs1, rs2} {
		mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: k, Weight: i + 1, Forwarding: ForwardRoute,
			ActiveConns: 99, InactiveConns: 99})) // counters are read-only
	}
	ds, _ := m.Destinations(svcKey)
	if ds[0].DestKey != rs3 || ds[1].DestKey != rs1 || ds[2].DestKey != rs2 {
		t.Fatalf("order %v, want insertion order", ds)
	}
	if ds[0].ActiveConns != 0 || ds[0].InactiveConns != 0 {
		t.Errorf("AddDestination wrote counters: %+v", ds[0])
	}

	mustNoErr(t, m.SetConns(svcKey, rs1, 7, 3))
	mustNoErr(t, m.UpdateDestination(svcKey, Destination{DestKey: rs1, Weight: 50, Forwarding: ForwardTunnel, UpperThreshold: 100, LowerThreshold: 10}))
	ds, _ = m.Destinations(svcKey)
	want := Destination{DestKey: rs1, Weight: 50, Forwarding: ForwardTunnel, UpperThreshold: 100, LowerThreshold: 10, ActiveConns: 7, InactiveConns: 3}
	if ds[1] != want {
		t.Errorf("after update: %+v, want %+v (counters kept)", ds[1], want)
	}

	mustNoErr(t, m.DeleteDestination(svcKey, rs1))
	ds, _ = m.Destinations(svcKey)
	if len(ds) != 2 || ds[0].DestKey != rs3 || ds[1].DestKey != rs2 {
		t.Errorf("after delete: %v", ds)
	}
	if m.Writes() != 6 {
		t.Errorf("Writes() = %d, want 6 (SetConns is not a write)", m.Writes())
	}
	// The destinations after the deleted one moved up: each is still
	// found where it is now, and the deleted one nowhere.
	mustNoErr(t, m.UpdateDestination(svcKey, Destination{DestKey: rs2, Weight: 9, Forwarding: ForwardRoute}))
	if ds, _ = m.Destinations(svcKey); ds[1].Weight != 9 || ds[0].Weight != 1 {
		t.Errorf("update after delete: %v", ds)
	}
	if err := m.UpdateDestination(svcKey, Destination{DestKey: rs1, Weight: 1, Forwarding: ForwardRoute}); !errors.Is(err, ErrNotExist) {
		t.Errorf("update of the deleted destination: %v", err)
	}
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 4, Forwarding: ForwardRoute}))
	if ds, _ = m.Destinations(svcKey); len(ds) != 3 || ds[2].DestKey != rs1 {
		t.Errorf("re-added: %v", ds)
	}
}

func TestMemorySetConnsMissing(t *testing.T) {
	m := NewMemory(nil)
	if err := m.SetConns(svcKey, rs1, 1, 1); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing service: %v", err)
	}
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	if err := m.SetConns(svcKey, rs1, 1, 1); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing destination: %v", err)
	}
}

func TestMemoryReturnsCopies(t *testing.T) {
	m := NewMemory(nil)
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 1}))
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs2, Weight: 2}))

	ds, _ := m.Destinations(svcKey)
	ds[0].Weight = 1000
	_ = append(ds[:1], Destination{DestKey: rs3}) // would overwrite rs2 in a shared array
	svcs, _ := m.Services()
	svcs[0].Scheduler = "changed"
	snap := m.Snapshot()
	snap[svcKey][1].Weight = 2000
	delete(snap, svcKey)

	ds, _ = m.Destinations(svcKey)
	if ds[0].Weight != 1 || ds[1].DestKey != rs2 || ds[1].Weight != 2 {
		t.Errorf("table changed through a returned slice: %+v", ds)
	}
	svcs, _ = m.Services()
	if svcs[0].Scheduler != "wrr" {
		t.Errorf("service changed through a returned slice: %+v", svcs[0])
	}
	if s := m.Snapshot(); len(s) != 1 || len(s[svcKey]) != 2 {
		t.Errorf("snapshot %v", s)
	}
}

func TestMemoryOnChange(t *testing.T) {
	var calls []string
	var m *Memory
	m = NewMemory(func(table string) {
		// Reading the table from the callback must not deadlock.
		if got := m.String(); got != table {
			t.Errorf("callback table differs from the current one:\n%s\n%s", table, got)
		}
		calls = append(calls, table)
	})
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 75}))
	if err := m.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 75}); err == nil {
		t.Fatal("duplicate accepted")
	}
	mustNoErr(t, m.UpdateDestination(svcKey, Destination{DestKey: rs1, Weight: 20, Forwarding: ForwardRoute}))
	mustNoErr(t, m.SetConns(svcKey, rs1, 4, 5))
	mustNoErr(t, m.DeleteDestination(svcKey, rs1))
	if _, err := m.Services(); err != nil {
		t.Fatal(err)
	}

	if len(calls) != 4 || m.Writes() != 4 {
		t.Fatalf("%d onChange calls and %d writes, want 4 each:\n%s", len(calls), m.Writes(), strings.Join(calls, "---\n"))
	}
	if !strings.HasSuffix(calls[0], "InActConn\nTCP  10.0.0.1:80 wrr\n") {
		t.Errorf("after AddService:\n%s", calls[0])
	}
	if !strings.Contains(calls[1], "  -> 10.0.0.2:80                  Masq    75     0          0\n") {
		t.Errorf("after AddDestination:\n%s", calls[1])
	}
	if !strings.Contains(calls[2], "  -> 10.0.0.2:80                  Route   20     0          0\n") {
		t.Errorf("after UpdateDestination:\n%s", calls[2])
	}
	if strings.Contains(calls[3], "10.0.0.2") {
		t.Errorf("after DeleteDestination:\n%s", calls[3])
	}
}

func TestMemoryFailNext(t *testing.T) {
	boom, bang := errors.New("boom"), errors.New("bang")
	calls := 0
	m := NewMemory(func(string) { calls++ })
	m.FailNext(boom)
	m.FailNext(bang)
	if err := m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}); err != boom {
		t.Fatalf("first write: %v, want boom", err)
	}
	if err := m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}); err != bang {
		t.Fatalf("second write: %v, want bang", err)
	}
	if svcs, _ := m.Services(); len(svcs) != 0 {
		t.Fatalf("failed write changed the table: %v", svcs)
	}
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	if m.Writes() != 1 || calls != 1 {
		t.Errorf("writes %d, onChange calls %d; want 1, 1", m.Writes(), calls)
	}

	m.FailNextRead(boom)
	if _, err := m.Services(); err != boom {
		t.Errorf("Services: %v, want boom", err)
	}
	m.FailNextRead(bang)
	if _, err := m.Destinations(svcKey); err != bang {
		t.Errorf("Destinations: %v, want bang", err)
	}
	if _, err := m.Services(); err != nil {
		t.Errorf("third read: %v", err)
	}
}

// Run with -race: concurrent writers, readers and the callback.
func TestMemoryConcurrent(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	m := NewMemory(func(string) { mu.Lock(); calls++; mu.Unlock() })
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := DestKey{Address: netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), Port: 80}
			for w := range 20 {
				var err error
				if w == 0 {
					err = m.AddDestination(svcKey, Destination{DestKey: k, Weight: w})
				} else {
					err = m.UpdateDestination(svcKey, Destination{DestKey: k, Weight: w})
				}
				if err != nil {
					t.Error(err) // not Fatal: this is not the test's goroutine
				}
				if _, err := m.Destinations(svcKey); err != nil {
					t.Error(err)
				}
				_ = m.Snapshot()
			}
		}()
	}
	wg.Wait()
	ds, _ := m.Destinations(svcKey)
	if len(ds) != 8 || m.Writes() != 1+8*20 || calls != m.Writes() {
		t.Errorf("%d destinations, %d writes, %d calls", len(ds), m.Writes(), calls)
	}
}

func TestMemoryIsIPVS(t *testing.T) {
	var x IPVS = NewMemory(nil)
	mustNoErr(t, x.Close())
}

func TestObserveCallsOnlyOnSuccessfulWrites(t *testing.T) {
	m := NewMemory(nil)
	n := 0
	x := Observe(m, func() { n++ })
	svc := Service{ServiceKey: ServiceKey{Protocol: 6, Address: netip.MustParseAddr("192.0.2.1"), Port: 80}, Scheduler: "wrr"}
	if err := x.AddService(svc); err != nil {
		t.Fatal(err)
	}
	d := Destination{DestKey: DestKey{Address: netip.MustParseAddr("10.0.0.1"), Port: 80}, Weight: 1}
	x.AddDestination(svc.ServiceKey, d)
	x.AddDestination(svc.ServiceKey, d) // exists: fails
	d.Weight = 2
	x.UpdateDestination(svc.ServiceKey, d)
	x.DeleteDestination(svc.ServiceKey, d.DestKey)
	x.DeleteDestination(svc.ServiceKey, d.DestKey) // gone: fails
	x.Services()
	if n != 4 {
		t.Fatalf("onWrite called %d times, want 4 (successful writes only)", n)
	}
}

// UpdateService changes the settings of a service and keeps its
// destinations; a missing service is ErrNotExist; invalid settings are
// refused before anything changes.
func TestMemoryUpdateService(t *testing.T) {
	m := NewMemory(nil)
	fwm := FWMarkKey(7, netip.Addr{})
	mustNoErr(t, m.AddService(Service{ServiceKey: fwm, Scheduler: "wrr"}))
	mustNoErr(t, m.AddDestination(fwm, Destination{DestKey: DestKey{Address: netip.MustParseAddr("10.0.0.2")}, Weight: 3, Forwarding: ForwardRoute}))
	want := Service{ServiceKey: fwm, Scheduler: "sh", Flags: FlagPersistent | FlagSched1, Timeout: 600, Netmask: 0xffffff00}
	mustNoErr(t, m.UpdateService(want))
	svcs, err := m.Services()
	mustNoErr(t, err)
	want.Flags |= FlagHashed
	if len(svcs) != 1 || svcs[0] != want {
		t.Errorf("after update: %+v, want %+v", svcs, want)
	}
	if ds, _ := m.Destinations(fwm); len(ds) != 1 || ds[0].Weight != 3 {
		t.Errorf("destinations after update: %+v", ds)
	}
	before := m.Writes()
	if err := m.UpdateService(Service{ServiceKey: FWMarkKey(8, netip.Addr{}), Scheduler: "wrr"}); !errors.Is(err, ErrNotExist) {
		t.Errorf("update of a missing service: %v, want ErrNotExist", err)
	}
	for _, bad := range []Service{
		{ServiceKey: fwm, Scheduler: "wrr", Timeout: 60},                          // timeout without persistence
		{ServiceKey: fwm, Scheduler: "wrr", Flags: FlagPersistent},                // persistence without timeout
		{ServiceKey: ServiceKey{Protocol: ProtoTCP, FWMark: 7}, Scheduler: "wrr"}, // mark with a protocol
	} {
		if err := m.UpdateService(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpdateService(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	if m.Writes() != before {
		t.Error("a refused update counted as a write")
	}
}

// Mixed address families, by the kernel's rule: only tunnel forwarding
// crosses them, in either direction; deleting needs no forwarding.
func TestMixedFamilies(t *testing.T) {
	m := NewMemory(nil)
	v6 := ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 443}
	mustNoErr(t, m.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, m.AddService(Service{ServiceKey: v6, Scheduler: "wrr"}))
	rs6 := DestKey{Address: netip.MustParseAddr("2001:db8:1::5"), Port: 80}
	for _, f := range []Forwarding{ForwardMasq, ForwardLocal, ForwardRoute} {
		if err := m.AddDestination(svcKey, Destination{DestKey: rs6, Weight: 1, Forwarding: f}); !errors.Is(err, ErrInvalid) {
			t.Errorf("IPv6 destination of an IPv4 service with %s: %v", f, err)
		}
		if err := m.AddDestination(v6, Destination{DestKey: rs1, Weight: 1, Forwarding: f}); !errors.Is(err, ErrInvalid) {
			t.Errorf("IPv4 destination of an IPv6 service with %s: %v", f, err)
		}
	}
	mustNoErr(t, m.AddDestination(svcKey, Destination{DestKey: rs6, Weight: 1, Forwarding: ForwardTunnel}))
	mustNoErr(t, m.AddDestination(v6, Destination{DestKey: rs1, Weight: 1, Forwarding: ForwardTunnel}))
	if err := m.UpdateDestination(svcKey, Destination{DestKey: rs6, Weight: 2, Forwarding: ForwardRoute}); !errors.Is(err, ErrInvalid) {
		t.Errorf("tunnel turned into route across families: %v", err)
	}
	mustNoErr(t, m.DeleteDestination(svcKey, rs6))
	mustNoErr(t, m.DeleteDestination(v6, rs1))
}
