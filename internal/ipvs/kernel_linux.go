//go:build linux

package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is the IPVS implementation on the running kernel, through
// github.com/moby/ipvs. It is safe for concurrent use.
//
// A moby/ipvs Handle is not: it has one netlink socket, and its receive
// loop drops replies whose sequence number is not the one it waits for, so
// two goroutines sharing it can lose each other's replies and hang
// (kubernetes/kubernetes#72361). Kernel therefore owns one goroutine that
// makes every call on the Handle, one at a time; the methods hand it a
// closure and wait for the answer.
//
// moby/ipvs has no timeout that works (a receive timeout just loops), so a
// call the kernel never answered would block its caller, and every later
// caller, indefinitely. The kernel answers IPVS requests synchronously, so
// this is not expected to happen.
type Kernel struct {
	log  *slog.Logger
	w    *genlWriter // destination writes; used by the worker only
	ops  chan func(*mobyipvs.Handle)
	quit chan struct{}
	done chan struct{}
	stop sync.Once
}

var _ IPVS = (*Kernel)(nil)

// NewKernel opens the IPVS table of the current network namespace. See
// NewKernelNetns.
func NewKernel(log *slog.Logger) (*Kernel, error) {
	return NewKernelNetns("", log)
}

// NewKernelNetns opens the IPVS table of the network namespace bound at
// netnsPath (e.g. /run/netns/lb), or of the current one if netnsPath is
// empty; a test can thus run against a fresh namespace. The netlink socket
// is created inside that namespace and stays bound to it, whatever thread
// later uses it.
//
// Before involving moby/ipvs it checks that the kernel has IPVS, because
// moby/ipvs looks up the IPVS generic-netlink family only once per process
// and, when that fails, only logs it: its handle then sends every request
// with family 0, which the kernel acknowledges without doing anything, so
// every write would "succeed" and every table read back empty. The lookup
// done here makes the kernel autoload ip_vs if it can; if it still fails,
// the error names what to fix, and moby/ipvs's one-time lookup has not been
// spent, so a later NewKernel can succeed once ip_vs is loaded.
//
// moby/ipvs.New also runs `modprobe -va ip_vs` once per process
// (unconditionally, before its own lookup). After the check above the
// module is loaded and modprobe has nothing to do, but it is still a
// fork+exec of /sbin/modprobe from the master; if modprobe is missing or
// not permitted, moby/ipvs logs a warning, which ends up here at DEBUG. The
// service unit should not rely on it: ship ip_vs in a modules-load.d file.
//
// moby/ipvs logs through logrus's global logger. NewKernel discards that
// logger's output and routes its entries to log at DEBUG instead (only two
// messages exist, both about the startup checks this function does better).
// No other dependency of feedbackd uses logrus; if one ever does, it is
// silenced too.
//
// Finally it reads the IPVS timeouts once, which needs CAP_NET_ADMIN, so a
// master without the capability fails here with a clear error rather than
// on its first write.
func NewKernelNetns(netnsPath string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	routeLogrus(log)
	family, err := probeIPVSFamily()
	if err != nil {
		return nil, fmt.Errorf("ipvs: the kernel offers no IPVS interface (generic netlink family \"IPVS\": %v): "+
			"load the ip_vs module (modprobe ip_vs; at boot via a file in /etc/modules-load.d/ or "+
			"/usr/lib/modules-load.d/ listing ip_vs; the kernel needs CONFIG_IP_VS), and run feedbackd-master "+
			"as root or with CAP_NET_ADMIN", err)
	}
	h, err := mobyipvs.New(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("ipvs: opening the IPVS netlink socket (netns %q): %w", netnsPath, err)
	}
	if err := checkHandle(h); err != nil {
		h.Close()
		return nil, err
	}
	conn, err := openGenl(netnsPath)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ipvs: opening the netlink socket for destination writes (netns %q): %w", netnsPath, err)
	}
	return startKernel(h, newGenlWriter(conn, family), log), nil
}

// startKernel starts the worker that owns h and w.
func startKernel(h *mobyipvs.Handle, w *genlWriter, log *slog.Logger) *Kernel {
	k := &Kernel{
		log:  log,
		w:    w,
		ops:  make(chan func(*mobyipvs.Handle)),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go k.loop(h)
	return k
}

// probeIPVSFamily asks the generic-netlink controller for the "IPVS"
// family, exactly as moby/ipvs will, and returns its id (which generic
// netlink assigns at runtime, the same in every network namespace); the
// kernel loads ip_vs on this request if the module exists (module alias
// net-pf-16-proto-16-family-IPVS), even for an unprivileged caller.
func probeIPVSFamily() (uint16, error) {
	req := nl.NewNetlinkRequest(nl.GENL_ID_CTRL, 0)
	req.AddData(&nl.Genlmsg{Command: nl.GENL_CTRL_CMD_GETFAMILY, Version: nl.GENL_CTRL_VERSION})
	req.AddData(nl.NewRtAttr(nl.GENL_CTRL_ATTR_FAMILY_NAME, nl.ZeroTerminated("IPVS")))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 || len(msgs[0]) < genlHdrLen {
		return 0, errors.New("empty reply from the netlink controller")
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][genlHdrLen:])
	if err != nil {
		return 0, fmt.Errorf("reply from the netlink controller: %w", err)
	}
	for _, a := range attrs {
		if a.Attr.Type == nl.GENL_CTRL_ATTR_FAMILY_ID && len(a.Value) >= 2 {
			return binary.NativeEndian.Uint16(a.Value), nil
		}
	}
	return 0, errors.New("the netlink controller's reply has no family id")
}

// genlSocket is a generic-netlink socket of our own for destination
// writes, bound in the network namespace it was opened in.
type genlSocket struct{ s *nl.NetlinkSocket }

// openGenl opens a generic-netlink socket in the network namespace bound
// at netnsPath (the current one if empty), as moby/ipvs opens its own.
func openGenl(netnsPath string) (*genlSocket, error) {
	ns := netns.None()
	if netnsPath != "" {
		var err error
		if ns, err = netns.GetFromPath(netnsPath); err != nil {
			return nil, err
		}
		defer ns.Close()
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(genlReceiveTimeout.Nanoseconds())
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	return &genlSocket{s}, nil
}

func (g *genlSocket) send(b []byte) error {
	return unix.Sendto(g.s.GetFd(), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (g *genlSocket) recv(b []byte) (int, error) {
	for {
		n, _, err := unix.Recvfrom(g.s.GetFd(), b, 0)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func (g *genlSocket) close() error { g.s.Close(); return nil }

// checkHandle reads the IPVS timeouts through h. That needs CAP_NET_ADMIN
// (EPERM otherwise), and it is the one moby/ipvs call that notices a family
// id of 0: the kernel's bare acknowledgement leaves it no reply to parse
// and it indexes an empty slice. The panic is turned into an error here.
func checkHandle(h *mobyipvs.Handle) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ipvs: moby/ipvs has no IPVS family id in this process (it looks it up once, and ip_vs "+
				"was missing at that time); restart feedbackd-master now that ip_vs is loaded (%v)", r)
		}
	}()
	if _, err := h.GetConfig(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("ipvs: the kernel refused access to IPVS (%w): feedbackd-master needs root or CAP_NET_ADMIN", err)
		}
		return fmt.Errorf("ipvs: reading the IPVS configuration: %w", err)
	}
	return nil
}

// logrus → slog. The global logger is process-wide, so the hook reads the
// logger of the latest NewKernel from an atomic pointer.
var (
	logrusOnce sync.Once
	logrusDest atomic.Pointer[slog.Logger]
)

func routeLogrus(log *slog.Logger) {
	logrusDest.Store(log)
	logrusOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.AddHook(logrusHook{})
	})
}

type logrusHook struct{}

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (logrusHook) Fire(e *logrus.Entry) error {
	if l := logrusDest.Load(); l != nil {
		l.Debug("moby/ipvs: "+e.Message, "logrus_level", e.Level.String())
	}
	return nil
}

// loop is the only goroutine that touches h, and the one that closes it, so
// Close never closes the socket under a call in progress (closing a file
// descriptor another thread is about to use can hit a reused descriptor).
func (k *Kernel) loop(h *mobyipvs.Handle) {
	defer close(k.done)
	defer h.Close()
	defer k.w.conn.close()
	for {
		select {
		case op := <-k.ops:
			op(h)
		case <-k.quit:
			return
		}
	}
}

// do runs f on the worker goroutine and returns its error. A panic inside
// moby/ipvs (it parses kernel replies with unchecked slicing) becomes an
// error instead of taking the whole master down.
func (k *Kernel) do(f func(*mobyipvs.Handle) error) error {
	errc := make(chan error, 1)
	op := func(h *mobyipvs.Handle) {
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("ipvs: moby/ipvs panicked: %v", r)
			}
		}()
		errc <- f(h)
	}
	select {
	case k.ops <- op:
	case <-k.quit:
		return ErrClosed
	}
	return <-errc
}

// Close stops the worker goroutine after the call in progress, if any, and
// closes the netlink socket. Later calls return ErrClosed. Close is
// idempotent and always returns nil.
func (k *Kernel) Close() error {
	k.stop.Do(func() { close(k.quit) })
	<-k.done
	return nil
}

// Services lists the kernel's services, FlagHashed included; a
// firewall-mark service with the key FWMarkKey gives it.
func (k *Kernel) Services() ([]Service, error) {
	var ms []*mobyipvs.Service
	err := k.do(func(h *mobyipvs.Handle) (err error) {
		ms, err = h.GetServices()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	out := make([]Service, 0, len(ms))
	for _, m := range ms {
		s, err := fromMobyService(m)
		if err != nil {
			return nil, fmt.Errorf("ipvs: list services: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// AddService creates s after NormalizeService: address family, the default
// netmask and the scheduler are always sent, Flags exactly as given minus
// FlagHashed.
func (k *Kernel) AddService(s Service) error {
	n, err := NormalizeService(s)
	if err != nil {
		return err
	}
	m := toMobyService(n)
	err = k.do(func(h *mobyipvs.Handle) error { return h.NewService(m) })
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.ENOENT {
			// The kernel's ENOENT here is a scheduler (or persistence
			// engine) module it could not load, not a missing object.
			return fmt.Errorf("ipvs: add service %s: %w: scheduler %q not available in the kernel (module ip_vs_%s?): %v",
				n.ServiceKey, ErrInvalid, n.Scheduler, n.Scheduler, errno)
		}
		return fmt.Errorf("ipvs: add service %s: %w", n.ServiceKey, kernelErr(err))
	}
	return nil
}

// UpdateService sets scheduler, flags (all of them: moby/ipvs sends the
// mask 0xffffffff), timeout and netmask of an existing service.
func (k *Kernel) UpdateService(s Service) error {
	n, err := NormalizeService(s)
	if err != nil {
		return err
	}
	m := toMobyService(n)
	if err := k.do(func(h *mobyipvs.Handle) error { return h.UpdateService(m) }); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.ENOENT {
			// ESRCH is the missing service; ENOENT a scheduler module.
			return fmt.Errorf("ipvs: update service %s: %w: scheduler %q not available in the kernel (module ip_vs_%s?): %v",
				n.ServiceKey, ErrInvalid, n.Scheduler, n.Scheduler, errno)
		}
		return fmt.Errorf("ipvs: update service %s: %w", n.ServiceKey, kernelErr(err))
	}
	return nil
}

// Destinations lists the destinations of svc. Like the kernel, it returns
// none and no error if the service does not exist.
func (k *Kernel) Destinations(svc ServiceKey) ([]Destination, error) {
	if err := checkServiceKey(svc); err != nil {
		return nil, err
	}
	m := mobyServiceKey(svc)
	var md []*mobyipvs.Destination
	err := k.do(func(h *mobyipvs.Handle) (err error) {
		md, err = h.GetDestinations(m)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ipvs: list destinations of %s: %w", svc, kernelErr(err))
	}
	out := make([]Destination, 0, len(md))
	for _, x := range md {
		d, err := fromMobyDestination(x)
		if err != nil {
			return nil, fmt.Errorf("ipvs: list destinations of %s: %w", svc, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// AddDestination adds d, sending its forwarding method, weight, both
// thresholds and its address family.
func (k *Kernel) AddDestination(svc ServiceKey, d Destination) error {
	return k.ApplyDestinations([]DestOp{{OpAdd, svc, d}})[0]
}

// UpdateDestination replaces forwarding method, weight and thresholds of an
// existing destination. All of them are sent, because the kernel's
// SET_DEST replaces them all: d must be complete (read it, change it,
// write it back), or a DR destination silently turns into NAT.
func (k *Kernel) UpdateDestination(svc ServiceKey, d Destination) error {
	return k.ApplyDestinations([]DestOp{{OpUpdate, svc, d}})[0]
}

// DeleteDestination removes a destination. The kernel keeps serving its
// existing connections from its trash list, but it is no longer listed.
func (k *Kernel) DeleteDestination(svc ServiceKey, key DestKey) error {
	return k.ApplyDestinations([]DestOp{{OpDelete, svc, Destination{DestKey: key}}})[0]
}

// ApplyDestinations carries out destination writes in order through the
// project's own netlink piece (genlWriter), many per system call; see
// Batcher. Every write is checked first as the single calls check it (a
// refused one is not sent), and every error names its destination.
func (k *Kernel) ApplyDestinations(ops []DestOp) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case OpAdd, OpUpdate:
			errs[i] = CheckDestination(op.Service, op.Dest)
		case OpDelete:
			if errs[i] = checkServiceKey(op.Service); errs[i] == nil {
				errs[i] = checkDestKey(op.Service, op.Dest.DestKey)
			}
		default:
			errs[i] = invalidf("unknown destination write %v", op.Kind)
		}
	}
	sent := make([]bool, len(ops))
	for i := range ops {
		sent[i] = errs[i] == nil
	}
	if err := k.do(func(*mobyipvs.Handle) error { k.w.apply(ops, errs); return nil }); err != nil {
		for i := range ops {
			if sent[i] {
				errs[i] = err
			}
		}
	}
	for i, op := range ops {
		if !sent[i] || errs[i] == nil {
			continue
		}
		switch op.Kind {
		case OpAdd:
			errs[i] = fmt.Errorf("ipvs: add destination %s to %s: %w", op.Dest.DestKey, op.Service, kernelErr(errs[i]))
		case OpUpdate:
			errs[i] = fmt.Errorf("ipvs: update destination %s of %s: %w", op.Dest.DestKey, op.Service, kernelErr(errs[i]))
		case OpDelete:
			errs[i] = fmt.Errorf("ipvs: delete destination %s of %s: %w", op.Dest.DestKey, op.Service, kernelErr(errs[i]))
		}
	}
	return errs
}

// kernelErr adds this package's sentinel to the kernel's errno so callers
// can test errors.Is(err, ErrExist) (or os.ErrExist) whichever table they
// talk to; the errno stays in the chain for the log.
func kernelErr(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EEXIST:
		return fmt.Errorf("%w (%w)", ErrExist, errno)
	case syscall.ENOENT, syscall.ESRCH: // ESRCH: the service is missing
		return fmt.Errorf("%w (%w)", ErrNotExist, errno)
	case syscall.EINVAL, syscall.ERANGE:
		return fmt.Errorf("%w (%w)", ErrInvalid, errno)
	case syscall.EPERM, syscall.EACCES:
		return fmt.Errorf("%w (feedbackd-master needs CAP_NET_ADMIN)", errno)
	}
	return err
}

// Conversions between our types and moby/ipvs's. They are pure, so they
// are unit-tested here without a kernel; the inputs of the to-moby ones
// have been validated (NormalizeService, CheckDestination) before.

func addrFamily(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addrToIP gives the 4-byte form for IPv4, which is what moby/ipvs sends
// for an AF_INET address.
func addrToIP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// ipToAddr trusts the reported family over the slice length: the kernel
// reports IPv4 addresses in a 16-byte field.
func ipToAddr(ip net.IP, family uint16) (netip.Addr, error) {
	switch family {
	case unix.AF_INET:
		if v4 := ip.To4(); v4 != nil {
			return netip.AddrFrom4([4]byte(v4)), nil
		}
	case unix.AF_INET6:
		if len(ip) == net.IPv6len {
			return netip.AddrFrom16([16]byte(ip)), nil
		}
	default:
		return netip.Addr{}, fmt.Errorf("unknown address family %d", family)
	}
	return netip.Addr{}, fmt.Errorf("address %v does not fit address family %d", ip, family)
}

// netmaskToMoby: for IPv4 the kernel's netmask attribute is big-endian
// (__be32, bytes 255.255.255.0 for a /24) while moby/ipvs writes and reads
// it as a native-endian number; our Netmask is the mask as a number
// (0xffffff00 for a /24), so the conversion lays its bytes out big-endian
// and hands moby/ipvs whatever native number has those bytes. For IPv6 the
// kernel reads the same attribute as a plain prefix length, no swapping.
func netmaskToMoby(a netip.Addr, mask uint32) uint32 {
	if !a.Is4() {
		return mask
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], mask)
	return binary.NativeEndian.Uint32(b[:])
}

func netmaskFromMoby(a netip.Addr, mask uint32) uint32 {
	if !a.Is4() {
		return mask
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], mask)
	return binary.BigEndian.Uint32(b[:])
}

func toMobyService(s Service) *mobyipvs.Service {
	m := mobyServiceKey(s.ServiceKey)
	m.SchedName = s.Scheduler
	m.Flags = s.Flags
	m.Timeout = s.Timeout
	m.Netmask = netmaskToMoby(s.Address, s.Netmask)
	return m
}

// mobyServiceKey identifies a service in destination requests; moby/ipvs
// sends all service fields, the kernel looks only at family, protocol,
// address and port, or at family and mark (moby/ipvs then sends no
// protocol, address or port).
func mobyServiceKey(k ServiceKey) *mobyipvs.Service {
	if k.FWMark != 0 {
		return &mobyipvs.Service{FWMark: k.FWMark, AddressFamily: addrFamily(k.Address)}
	}
	return &mobyipvs.Service{
		Address:       addrToIP(k.Address),
		Protocol:      k.Protocol,
		Port:          k.Port,
		AddressFamily: addrFamily(k.Address),
	}
}

func fromMobyService(m *mobyipvs.Service) (Service, error) {
	if m.FWMark != 0 {
		// The kernel reports a mark with its family only (no protocol,
		// address or port attribute): keyed as FWMarkKey.
		var fam netip.Addr
		switch m.AddressFamily {
		case unix.AF_INET:
			fam = netip.IPv4Unspecified()
		case unix.AF_INET6:
			fam = netip.IPv6Unspecified()
		default:
			return Service{}, fmt.Errorf("firewall-mark service %d: unknown address family %d", m.FWMark, m.AddressFamily)
		}
		return Service{
			ServiceKey: FWMarkKey(m.FWMark, fam),
			Scheduler:  m.SchedName,
			Flags:      m.Flags,
			Timeout:    m.Timeout,
			Netmask:    netmaskFromMoby(fam, m.Netmask),
		}, nil
	}
	a, err := ipToAddr(m.Address, m.AddressFamily)
	if err != nil {
		return Service{}, fmt.Errorf("service port %d: %w", m.Port, err)
	}
	return Service{
		ServiceKey: ServiceKey{Protocol: m.Protocol, Address: a, Port: m.Port},
		Scheduler:  m.SchedName,
		Flags:      m.Flags,
		Timeout:    m.Timeout,
		Netmask:    netmaskFromMoby(a, m.Netmask),
	}, nil
}

func toMobyDestination(d Destination) *mobyipvs.Destination {
	return &mobyipvs.Destination{
		Address:         addrToIP(d.Address),
		Port:            d.Port,
		Weight:          d.Weight,
		ConnectionFlags: uint32(d.Forwarding) & mobyipvs.ConnectionFlagFwdMask,
		AddressFamily:   addrFamily(d.Address),
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}
}

func fromMobyDestination(m *mobyipvs.Destination) (Destination, error) {
	a, err := ipToAddr(m.Address, m.AddressFamily)
	if err != nil {
		return Destination{}, fmt.Errorf("destination port %d: %w", m.Port, err)
	}
	return Destination{
		DestKey:        DestKey{Address: a, Port: m.Port},
		Weight:         m.Weight,
		Forwarding:     Forwarding(m.ConnectionFlags & mobyipvs.ConnectionFlagFwdMask),
		UpperThreshold: m.UpperThreshold,
		LowerThreshold: m.LowerThreshold,
		ActiveConns:    m.ActiveConnections,
		InactiveConns:  m.InactiveConnections,
	}, nil
}
