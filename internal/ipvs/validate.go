package ipvs

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"
)

// Protocol numbers feedbackd accepts for virtual services: the ones the
// kernel's IPVS supports for address/port services.
const (
	ProtoTCP  uint16 = 6
	ProtoUDP  uint16 = 17
	ProtoSCTP uint16 = 132
)

// FlagOnePacket is IP_VS_SVC_F_ONEPACKET (ipvsadm -o, "ops").
const FlagOnePacket uint32 = 0x4

// MaxWeight is the largest weight feedbackd writes. The kernel's field is a
// 32-bit int, but ipvsadm caps it at 65535 and moby/ipvs reads it back as a
// uint16, so anything larger would come back different from what was
// written and look changed on every pass.
const MaxWeight = 65535

// Sentinel errors shared by every implementation in this package, so that
// callers can tell the kernel's "already there" and "not there" apart from
// real failures without caring whether the table is the kernel's or the
// in-memory one. Each wraps the matching os error, so errors.Is(err,
// os.ErrExist) works as well as errors.Is(err, ErrExist); the kernel's own
// errno (EEXIST, ENOENT, ESRCH) is wrapped alongside when it is the source.
var (
	// ErrExist: a service or destination to be added is already present
	// (kernel EEXIST).
	ErrExist error = &sentinel{"already exists", os.ErrExist}
	// ErrNotExist: the service or destination to be changed is absent
	// (kernel ESRCH for a missing service, ENOENT for a missing destination).
	ErrNotExist error = &sentinel{"does not exist", os.ErrNotExist}
	// ErrInvalid: the request was refused before reaching the table because
	// the kernel would reject it or misreport it (bad address family,
	// weight out of range, thresholds inverted, ...).
	ErrInvalid error = &sentinel{"invalid request", os.ErrInvalid}
	// ErrClosed: the Kernel handle was closed.
	ErrClosed error = &sentinel{"IPVS handle closed", net.ErrClosed}
)

type sentinel struct {
	msg  string
	base error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.base }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// checkServiceKey refuses keys the kernel could not represent or would
// report differently from how they were written: an IPv4-mapped IPv6
// address, for instance, would be created as an IPv6 service, and the
// caller's key would then never match what Services returns.
func checkServiceKey(k ServiceKey) error {
	if k.FWMark != 0 {
		// The kernel ignores protocol, address and port of a mark and
		// reports none of them: anything in them here would make a key
		// that never matches what Services returns.
		if k.Protocol != 0 || k.Port != 0 || !k.Address.IsValid() || !k.Address.IsUnspecified() || k.Address.Zone() != "" {
			return invalidf("service %s: a firewall-mark key has protocol 0, port 0 and the unspecified address of its family (FWMarkKey)", k)
		}
		return nil
	}
	switch k.Protocol {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	default:
		return invalidf("service %s: protocol %d is not TCP, UDP or SCTP", k, k.Protocol)
	}
	return checkAddr("service "+k.String(), k.Address)
}

func checkAddr(what string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return invalidf("%s: no address", what)
	case a.Is4In6():
		return invalidf("%s: IPv4-mapped IPv6 address %s; use %s", what, a, a.Unmap())
	case a.Zone() != "":
		return invalidf("%s: address %s has a zone, IPVS has no notion of one", what, a)
	}
	return nil
}

// NormalizeService validates s and returns it as the kernel will report it
// back (apart from FlagHashed, which the kernel adds): FlagHashed is
// removed, and a zero Netmask becomes the kernel default, 0xffffffff
// (255.255.255.255) for IPv4 and 128 for IPv6. Every AddService in this
// package goes through it; callers comparing a desired service with a
// reported one can use it to get the same defaults.
//
// FlagHashed is stripped rather than passed through because the kernel
// refuses to hash a service that already carries it: older kernels then
// leak the service and leave it unreachable, newer ones mask it silently.
func NormalizeService(s Service) (Service, error) {
	if err := checkServiceKey(s.ServiceKey); err != nil {
		return Service{}, err
	}
	// IP_VS_SCHEDNAME_MAXLEN is 16 including the NUL; the kernel returns
	// ENOENT for an empty name and EINVAL for a long one.
	if s.Scheduler == "" || len(s.Scheduler) > 15 {
		return Service{}, invalidf("service %s: scheduler %q must be 1 to 15 characters", s.ServiceKey, s.Scheduler)
	}
	s.Flags &^= FlagHashed
	if s.Flags&FlagPersistent == 0 && s.Timeout != 0 {
		// The kernel stores a timeout without the flag, but it means
		// nothing; refusing it keeps "persistent" one bit to compare.
		return Service{}, invalidf("service %s: persistence timeout %d without the persistent flag", s.ServiceKey, s.Timeout)
	}
	if s.Flags&FlagPersistent != 0 && s.Timeout == 0 {
		return Service{}, invalidf("service %s: persistent with a timeout of 0", s.ServiceKey)
	}
	if s.Address.Is4() {
		if s.Netmask == 0 {
			s.Netmask = 0xffffffff
		}
		// A persistence netmask with holes is accepted by the kernel but
		// groups clients in ways nobody means.
		if ones := bits.LeadingZeros32(^s.Netmask); bits.TrailingZeros32(s.Netmask) != 32-ones {
			return Service{}, invalidf("service %s: netmask %#08x is not contiguous", s.ServiceKey, s.Netmask)
		}
	} else {
		if s.Netmask == 0 {
			s.Netmask = 128
		}
		// The kernel's own check (ip_vs_add_service): EINVAL otherwise.
		if s.Netmask > 128 {
			return Service{}, invalidf("service %s: IPv6 netmask (prefix length) %d is not 1..128", s.ServiceKey, s.Netmask)
		}
	}
	return s, nil
}

// CheckDestination validates d for adding to or updating in the service
// svc, with the kernel's rules (weight >= 0, lower threshold <= upper
// threshold, both ERANGE in the kernel) plus those that keep what is read
// back equal to what was written (weight <= MaxWeight), and the kernel's
// rule for mixed families: a destination of the other address family than
// its service's only with tunnel forwarding (the kernel's EINVAL otherwise).
func CheckDestination(svc ServiceKey, d Destination) error {
	if err := checkServiceKey(svc); err != nil {
		return err
	}
	if err := checkDestKey(svc, d.DestKey); err != nil {
		return err
	}
	if d.Weight < 0 || d.Weight > MaxWeight {
		return invalidf("destination %s of %s: weight %d is not 0..%d", d.DestKey, svc, d.Weight, MaxWeight)
	}
	if d.LowerThreshold > d.UpperThreshold {
		return invalidf("destination %s of %s: lower threshold %d above upper threshold %d",
			d.DestKey, svc, d.LowerThreshold, d.UpperThreshold)
	}
	switch d.Forwarding {
	case ForwardMasq, ForwardLocal, ForwardTunnel, ForwardRoute:
	default:
		return invalidf("destination %s of %s: unknown forwarding method %d", d.DestKey, svc, uint32(d.Forwarding))
	}
	if d.Address.Is4() != svc.Address.Is4() && d.Forwarding != ForwardTunnel {
		return invalidf("destination %s of %s: another address family than the service's needs tunnel forwarding, not %s",
			d.DestKey, svc, d.Forwarding)
	}
	return nil
}

func checkDestKey(svc ServiceKey, k DestKey) error {
	if err := checkAddr("destination "+k.String()+" of "+svc.String(), k.Address); err != nil {
		return err
	}
	return nil
}
