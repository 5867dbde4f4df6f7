// Package ipvs is feedbackd's own view of the kernel's IP Virtual Server
// tables: a small interface, an implementation on github.com/moby/ipvs, an
// in-memory one for tests and --without-ipvs, and a dry-run wrapper.
//
// The interface is deliberately narrow: feedbackd only ever lists, creates
// and updates virtual services (only those it created), and adds, updates
// or deletes destinations under them.
package ipvs

import (
	"fmt"
	"net/netip"
)

// Service flags as the kernel reports them (include/uapi/linux/ip_vs.h).
// moby/ipvs defines no constants for them.
const (
	FlagPersistent uint32 = 0x1
	// FlagHashed is set by the kernel on every service it reports; it must be
	// masked before comparing desired with actual flags, or every service
	// looks changed on every pass.
	FlagHashed uint32 = 0x2
	// FlagSched1..3 are IP_VS_SVC_F_SCHED1..3, whose meaning depends on the
	// scheduler: for sh and mh, 1 is "fallback" (skip a destination of
	// weight 0 or overloaded and hash again) and 2 is "port" (hash the
	// source port too). ipvsadm -b sh-fallback,sh-port.
	FlagSched1 uint32 = 0x8
	FlagSched2 uint32 = 0x10
	FlagSched3 uint32 = 0x20
)

// Forwarding is the LVS packet-forwarding method of a destination, with the
// kernel's values (IP_VS_CONN_F_MASQ etc.).
type Forwarding uint32

const (
	ForwardMasq   Forwarding = 0 // NAT, ipvsadm -m
	ForwardLocal  Forwarding = 1 // local node
	ForwardTunnel Forwarding = 2 // IPIP, ipvsadm -i
	ForwardRoute  Forwarding = 3 // direct routing, ipvsadm -g
)

func (f Forwarding) String() string {
	switch f {
	case ForwardMasq:
		return "Masq"
	case ForwardLocal:
		return "Local"
	case ForwardTunnel:
		return "Tunnel"
	case ForwardRoute:
		return "Route"
	}
	return fmt.Sprintf("Forwarding(%d)", uint32(f))
}

// ServiceKey identifies a virtual service: protocol, virtual IP and port,
// or a firewall mark.
//
// A firewall-mark service (FWMark not 0) is keyed by the kernel on its
// mark and address family alone, and reports neither protocol, address
// nor port: its key has Protocol 0, Port 0 and as Address the unspecified
// address of its family (0.0.0.0 or ::), which is how Services reports it
// and how callers must spell it. FWMarkKey builds one.
type ServiceKey struct {
	Protocol uint16 // 6 = TCP, 17 = UDP, 132 = SCTP; 0 for a firewall mark
	Address  netip.Addr
	Port     uint16
	FWMark   uint32
}

// FWMarkKey is the key of the firewall-mark service mark in the family of
// family (any address of it; IPv4 when family is the zero Addr).
func FWMarkKey(mark uint32, family netip.Addr) ServiceKey {
	a := netip.IPv4Unspecified()
	if family.Is6() && !family.Is4In6() {
		a = netip.IPv6Unspecified()
	}
	return ServiceKey{Address: a, FWMark: mark}
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		// ipvsadm -Ln shows "FWM  5"; the family only when it is not IPv4.
		s := fmt.Sprintf("FWM %d", k.FWMark)
		if k.Address.Is6() {
			s += " IPv6"
		}
		return s
	}
	return protoName(k.Protocol) + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

// Service is a virtual service.
type Service struct {
	ServiceKey
	Scheduler string // rr, wrr, lc, wlc, sh, dh, mh, ...
	Flags     uint32 // kernel flags; compare with FlagHashed masked
	Timeout   uint32 // persistence timeout in seconds
	// Persistence netmask. IPv4: the mask as a number, 0xffffff00 for
	// 255.255.255.0; IPv6: the prefix length. Zero means the kernel's
	// default (0xffffffff, 128), which is what reads back.
	Netmask uint32
}

// DestKey identifies a destination (realserver) inside a service.
type DestKey struct {
	Address netip.Addr
	Port    uint16
}

func (k DestKey) String() string { return netip.AddrPortFrom(k.Address, k.Port).String() }

// Destination is a realserver entry of a virtual service. When writing, all
// of Forwarding, Weight and the thresholds are sent: the kernel's SET_DEST
// replaces the whole destination, so a partly filled one would silently
// reset the forwarding method to NAT.
type Destination struct {
	DestKey
	Weight         int
	Forwarding     Forwarding
	UpperThreshold uint32
	LowerThreshold uint32
	// Read-only counters; ignored when writing.
	ActiveConns   int
	InactiveConns int
}

// IPVS is the subset of the kernel's IPVS interface feedbackd uses.
// Implementations need not be safe for concurrent use unless they say so.
//
// UpdateService replaces scheduler, flags, timeout and netmask of an
// existing service (the kernel's SET_SERVICE: everything is sent, so the
// Service must be complete); its destinations and connections stay.
type IPVS interface {
	Services() ([]Service, error)
	AddService(Service) error
	UpdateService(Service) error
	Destinations(ServiceKey) ([]Destination, error)
	AddDestination(ServiceKey, Destination) error
	UpdateDestination(ServiceKey, Destination) error
	DeleteDestination(ServiceKey, DestKey) error
	Close() error
}
