//go:build linux

package ipvs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func TestServiceToMoby(t *testing.T) {
	s, err := NormalizeService(Service{ServiceKey: svcKey, Scheduler: "wrr", Flags: FlagHashed})
	mustNoErr(t, err)
	m := toMobyService(s)
	if m.AddressFamily != unix.AF_INET {
		t.Errorf("AddressFamily %d, want AF_INET", m.AddressFamily)
	}
	if len(m.Address) != 4 || !m.Address.Equal(net.IPv4(10, 0, 0, 1)) {
		t.Errorf("Address %v (len %d), want 4-byte 10.0.0.1", m.Address, len(m.Address))
	}
	if m.Protocol != syscall.IPPROTO_TCP || m.Port != 80 || m.SchedName != "wrr" {
		t.Errorf("got %+v", m)
	}
	if m.Netmask != 0xffffffff {
		t.Errorf("Netmask %#x, want 0xffffffff", m.Netmask)
	}
	if m.Flags != 0 {
		t.Errorf("Flags %#x: FlagHashed must not be sent", m.Flags)
	}
	if m.FWMark != 0 || m.PEName != "" {
		t.Errorf("fwmark/pe set: %+v", m)
	}
}

// The kernel reads an IPv4 netmask as __be32, moby/ipvs writes a native
// uint32: what must reach the wire is the mask's bytes in network order.
func TestNetmaskByteOrder(t *testing.T) {
	s, err := NormalizeService(Service{ServiceKey: svcKey, Scheduler: "wlc", Flags: FlagPersistent, Timeout: 300, Netmask: 0xffffff00})
	mustNoErr(t, err)
	m := toMobyService(s)
	var wire [4]byte
	binary.NativeEndian.PutUint32(wire[:], m.Netmask) // what moby/ipvs puts in the attribute
	if wire != [4]byte{255, 255, 255, 0} {
		t.Errorf("IPv4 netmask on the wire %v, want 255.255.255.0", wire)
	}
	if m.Flags != FlagPersistent || m.Timeout != 300 {
		t.Errorf("flags %#x timeout %d", m.Flags, m.Timeout)
	}
	back, err := fromMobyService(m)
	mustNoErr(t, err)
	if back != s {
		t.Errorf("round trip %+v, want %+v", back, s)
	}

	// IPv6: a prefix length, read natively by the kernel.
	s6, err := NormalizeService(Service{ServiceKey: ServiceKey{Protocol: ProtoUDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53}, Scheduler: "rr", Netmask: 64})
	mustNoErr(t, err)
	if m6 := toMobyService(s6); m6.Netmask != 64 || m6.AddressFamily != unix.AF_INET6 || len(m6.Address) != 16 {
		t.Errorf("IPv6 service to moby: %+v", m6)
	}
}

func TestServiceRoundTrip(t *testing.T) {
	for _, in := range []Service{
		{ServiceKey: svcKey, Scheduler: "wrr"},
		{ServiceKey: ServiceKey{Protocol: ProtoUDP, Address: netip.MustParseAddr("192.0.2.7"), Port: 53}, Scheduler: "mh", Flags: FlagOnePacket},
		{ServiceKey: ServiceKey{Protocol: ProtoSCTP, Address: netip.MustParseAddr("0.0.0.0"), Port: 0}, Scheduler: "sh", Flags: FlagPersistent, Timeout: 1, Netmask: 0xfffe0000},
		{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 443}, Scheduler: "wlc"},
		{ServiceKey: ServiceKey{Protocol: ProtoTCP, Address: netip.MustParseAddr("2001:db8::1"), Port: 65535}, Scheduler: "lc", Flags: FlagPersistent, Timeout: 3600, Netmask: 48},
		{ServiceKey: FWMarkKey(1, netip.Addr{}), Scheduler: "sh", Flags: FlagPersistent | FlagSched1 | FlagSched2, Timeout: 600, Netmask: 0xffffff00},
		{ServiceKey: FWMarkKey(0xffffffff, netip.IPv6Unspecified()), Scheduler: "mh", Flags: FlagOnePacket},
	} {
		s, err := NormalizeService(in)
		mustNoErr(t, err)
		got, err := fromMobyService(toMobyService(s))
		mustNoErr(t, err)
		if got != s {
			t.Errorf("round trip of %+v: %+v", s, got)
		}
	}
}

// A firewall-mark service goes to moby/ipvs as mark and family only
// (moby/ipvs then sends no protocol, address or port attribute), and so
// does its key in destination requests.
func TestFWMarkToMoby(t *testing.T) {
	s, err := NormalizeService(Service{ServiceKey: FWMarkKey(5, netip.Addr{}), Scheduler: "wrr", Flags: FlagPersistent, Timeout: 60})
	mustNoErr(t, err)
	for _, m := range []*mobyipvs.Service{toMobyService(s), mobyServiceKey(s.ServiceKey)} {
		if m.FWMark != 5 || m.AddressFamily != unix.AF_INET || m.Address != nil || m.Protocol != 0 || m.Port != 0 {
			t.Errorf("fwmark to moby: %+v", m)
		}
	}
	if m := toMobyService(s); m.Flags != FlagPersistent || m.Timeout != 60 || m.SchedName != "wrr" || m.Netmask != 0xffffffff {
		t.Errorf("fwmark settings to moby: %+v", m)
	}
}

// What moby/ipvs hands back from the kernel, as opposed to what we built.
func TestServiceFromMoby(t *testing.T) {
	var nm [4]byte = [4]byte{255, 255, 0, 0}
	m := &mobyipvs.Service{
		Address:       net.IP{10, 0, 0, 1}, // parseIP's 4-byte slice
		Protocol:      syscall.IPPROTO_TCP,
		Port:          80,
		SchedName:     "wrr",
		Flags:         FlagHashed | FlagPersistent,
		Timeout:       300,
		Netmask:       binary.NativeEndian.Uint32(nm[:]),
		AddressFamily: unix.AF_INET,
		Stats:         mobyipvs.SvcStats{Connections: 5},
	}
	got, err := fromMobyService(m)
	mustNoErr(t, err)
	want := Service{ServiceKey: svcKey, Scheduler: "wrr", Flags: FlagHashed | FlagPersistent, Timeout: 300, Netmask: 0xffff0000}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}

	m.Address = net.IPv4(10, 0, 0, 1) // 16-byte form of the same address
	if got, err := fromMobyService(m); err != nil || got.Address != vip {
		t.Errorf("16-byte IPv4: %v, %v", got.Address, err)
	}

	// A firewall-mark service as the kernel reports it: mark, family,
	// scheduler, flags, no protocol, address or port.
	fm, err := fromMobyService(&mobyipvs.Service{FWMark: 7, AddressFamily: unix.AF_INET, SchedName: "sh",
		Flags: FlagHashed | FlagSched1, Netmask: 0xffffffff})
	mustNoErr(t, err)
	if want := (Service{ServiceKey: FWMarkKey(7, netip.Addr{}), Scheduler: "sh", Flags: FlagHashed | FlagSched1, Netmask: 0xffffffff}); fm != want {
		t.Errorf("fwmark: got %+v, want %+v", fm, want)
	}
	if fm6, err := fromMobyService(&mobyipvs.Service{FWMark: 7, AddressFamily: unix.AF_INET6, SchedName: "wrr", Netmask: 64}); err != nil ||
		fm6.ServiceKey != FWMarkKey(7, netip.IPv6Unspecified()) || fm6.Netmask != 64 {
		t.Errorf("fwmark IPv6: %+v, %v", fm6, err)
	}
	if _, err := fromMobyService(&mobyipvs.Service{FWMark: 7}); err == nil {
		t.Error("firewall-mark service without family converted")
	}
	if _, err := fromMobyService(&mobyipvs.Service{Address: net.IP{1, 2, 3, 4}}); err == nil {
		t.Error("service without address family converted")
	}
	if _, err := fromMobyService(&mobyipvs.Service{Address: net.IP{1, 2, 3, 4}, AddressFamily: unix.AF_INET6}); err == nil {
		t.Error("4-byte address as AF_INET6 converted")
	}
	if _, err := fromMobyService(&mobyipvs.Service{AddressFamily: unix.AF_INET}); err == nil {
		t.Error("service without address converted")
	}
}

func TestDestinationRoundTrip(t *testing.T) {
	v6 := DestKey{Address: netip.MustParseAddr("2001:db8::10"), Port: 443}
	for _, f := range []Forwarding{ForwardMasq, ForwardLocal, ForwardTunnel, ForwardRoute} {
		for _, k := range []DestKey{rs1, v6} {
			d := Destination{DestKey: k, Weight: 65535, Forwarding: f, UpperThreshold: 1000, LowerThreshold: 900}
			m := toMobyDestination(d)
			if m.ConnectionFlags != uint32(f) || m.Weight != 65535 || m.UpperThreshold != 1000 || m.LowerThreshold != 900 {
				t.Errorf("%v to moby: %+v", d, m)
			}
			if k.Address.Is4() != (m.AddressFamily == unix.AF_INET) || len(m.Address) != len(k.Address.AsSlice()) {
				t.Errorf("%v: family %d, address %v", k, m.AddressFamily, m.Address)
			}
			m.ActiveConnections, m.InactiveConnections = 11, 22 // as the kernel reports them
			got, err := fromMobyDestination(m)
			mustNoErr(t, err)
			want := d
			want.ActiveConns, want.InactiveConns = 11, 22
			if got != want {
				t.Errorf("round trip %+v, want %+v", got, want)
			}
		}
	}
	// The constants are the kernel's and moby/ipvs's.
	for f, c := range map[Forwarding]uint32{
		ForwardMasq:   mobyipvs.ConnectionFlagMasq,
		ForwardLocal:  mobyipvs.ConnectionFlagLocalNode,
		ForwardTunnel: mobyipvs.ConnectionFlagTunnel,
		ForwardRoute:  mobyipvs.ConnectionFlagDirectRoute,
	} {
		if uint32(f) != c {
			t.Errorf("%v = %d, moby/ipvs says %d", f, f, c)
		}
	}
}

func TestDestinationFromMoby(t *testing.T) {
	m := &mobyipvs.Destination{
		Address:         net.IP{10, 0, 0, 2},
		Port:            80,
		Weight:          3,
		ConnectionFlags: 0x0100 | mobyipvs.ConnectionFlagDirectRoute, // other conn flags masked away
		AddressFamily:   unix.AF_INET,
	}
	got, err := fromMobyDestination(m)
	mustNoErr(t, err)
	if got != (Destination{DestKey: rs1, Weight: 3, Forwarding: ForwardRoute}) {
		t.Errorf("got %+v", got)
	}
	m.AddressFamily = 0
	if _, err := fromMobyDestination(m); err == nil {
		t.Error("destination without family converted")
	}
}

func TestMobyServiceKey(t *testing.T) {
	m := mobyServiceKey(ServiceKey{Protocol: ProtoUDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53})
	if m.AddressFamily != unix.AF_INET6 || m.Protocol != syscall.IPPROTO_UDP || m.Port != 53 ||
		!m.Address.Equal(net.ParseIP("2001:db8::1")) || m.FWMark != 0 {
		t.Errorf("got %+v", m)
	}
}

func TestKernelErr(t *testing.T) {
	wrapped := func(e syscall.Errno) error { return kernelErr(e) }
	if err := wrapped(syscall.EEXIST); !errors.Is(err, ErrExist) || !errors.Is(err, os.ErrExist) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("EEXIST: %v", err)
	}
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.ESRCH} {
		if err := wrapped(e); !errors.Is(err, ErrNotExist) || !errors.Is(err, os.ErrNotExist) || !errors.Is(err, e) {
			t.Errorf("%v: %v", e, err)
		}
	}
	if err := wrapped(syscall.ERANGE); !errors.Is(err, ErrInvalid) {
		t.Errorf("ERANGE: %v", err)
	}
	if err := wrapped(syscall.EPERM); !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("EPERM: %v", err)
	}
	other := errors.New("Socket got closed on receive")
	if err := kernelErr(other); err != other {
		t.Errorf("non-errno error changed: %v", err)
	}
	if err := wrapped(syscall.EBUSY); errors.Is(err, ErrExist) || errors.Is(err, ErrNotExist) || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("EBUSY: %v", err)
	}
}

// The worker goroutine, without a kernel: the handle is never used for
// I/O by these closures (a zero Handle closes harmlessly).
func TestKernelWorker(t *testing.T) {
	k := startKernel(&mobyipvs.Handle{}, newGenlWriter(newFakeKernel(), 42), slog.New(slog.DiscardHandler))

	// Serialised: a plain int shared by all closures is a data race unless
	// they run one at a time (go test -race checks), and every closure sees
	// the same handle.
	var (
		counter int
		handles sync.Map
		wg      sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := k.do(func(h *mobyipvs.Handle) error {
					counter++
					handles.Store(h, true)
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	handles.Range(func(any, any) bool { n++; return true })
	if counter != 16*50 || n != 1 {
		t.Errorf("counter %d, %d distinct handles", counter, n)
	}

	// Errors come back; panics become errors and the worker survives.
	boom := errors.New("boom")
	if err := k.do(func(*mobyipvs.Handle) error { return boom }); err != boom {
		t.Errorf("error: %v", err)
	}
	if err := k.do(func(*mobyipvs.Handle) error { panic("index out of range") }); err == nil || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("panic: %v", err)
	}
	if err := k.do(func(*mobyipvs.Handle) error { return nil }); err != nil {
		t.Errorf("after panic: %v", err)
	}

	// Invalid requests are refused before reaching the handle (which, with
	// no socket, would panic and give another error).
	if err := k.AddDestination(svcKey, Destination{DestKey: rs1, Weight: MaxWeight + 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddDestination: %v", err)
	}
	if err := k.UpdateDestination(svcKey, Destination{DestKey: rs1, LowerThreshold: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("UpdateDestination: %v", err)
	}
	if err := k.AddService(Service{ServiceKey: svcKey}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddService: %v", err)
	}
	if err := k.DeleteDestination(svcKey, DestKey{Port: 80}); !errors.Is(err, ErrInvalid) {
		t.Errorf("DeleteDestination: %v", err)
	}
	if _, err := k.Destinations(ServiceKey{Protocol: 1, Address: vip}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Destinations: %v", err)
	}

	mustNoErr(t, k.Close())
	mustNoErr(t, k.Close())
	if err := k.do(func(*mobyipvs.Handle) error { t.Error("ran after Close"); return nil }); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if _, err := k.Services(); !errors.Is(err, ErrClosed) {
		t.Errorf("Services after Close: %v", err)
	}
	if err := k.AddDestination(svcKey, Destination{DestKey: rs1}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddDestination after Close: %v", err)
	}
}

func TestLogrusRouted(t *testing.T) {
	var buf bytes.Buffer
	routeLogrus(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { logrusDest.Store(nil) })
	if logrus.StandardLogger().Out != io.Discard {
		t.Error("logrus output not discarded")
	}
	logrus.Warnf("Running modprobe ip_vs failed with message: `%s`", "not found")
	got := buf.String()
	if !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "moby/ipvs: Running modprobe ip_vs failed") ||
		!strings.Contains(got, "logrus_level=warning") {
		t.Errorf("routed record: %q", got)
	}
}

// On a machine without IPVS (this development VM has no modules at all),
// NewKernel must fail early and say what to do. Skipped where ip_vs is
// loaded or could be autoloaded, since the probe would load it.
func TestNewKernelWithoutIPVS(t *testing.T) {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("ip_vs is loaded")
	}
	var u unix.Utsname
	mustNoErr(t, unix.Uname(&u))
	if _, err := os.Stat("/lib/modules/" + unix.ByteSliceToString(u.Release[:])); err == nil {
		t.Skip("kernel modules present; the probe might load ip_vs")
	}
	k, err := NewKernel(slog.New(slog.DiscardHandler))
	if err == nil {
		k.Close()
		t.Fatal("NewKernel succeeded without ip_vs")
	}
	for _, s := range []string{"ip_vs", "modules-load.d", "CAP_NET_ADMIN"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %s: %v", s, err)
		}
	}
}
