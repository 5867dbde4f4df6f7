package value

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Address reads a service address, a virtual service's or a realserver's:
// IPv4 or IPv6. An IPv4-mapped IPv6 address is refused with the IPv4
// spelling to use, since IPVS would make it an IPv6 service; so is any
// address IPVS cannot hold (a zone) or that is no host (unspecified,
// multicast, broadcast, IPv6 link-local, which needs a zone).
func Address(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid address %q (want an address such as 192.0.2.10 or 2001:db8::10)", s)
	}
	switch {
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("address %q is IPv4-mapped IPv6; write it as %s", s, a.Unmap())
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q has a zone, which IPVS cannot hold", s)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) ||
		a.Is6() && a.IsLinkLocalUnicast():
		return netip.Addr{}, fmt.Errorf("address %q cannot be a virtual service address", s)
	}
	return a, nil
}

// Networks reads an access list: addresses and CIDR networks separated by
// commas or spaces, or the single word "any", which gives nil.
//
// A network with host bits set ("10.0.0.1/8") is refused rather than
// masked: on an access list it is more likely a typo for an address or a
// network than a wish for the network, and guessing wrong opens the door.
func Networks(s string) ([]netip.Prefix, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("empty allow list (want networks such as 10.0.0.0/24, or \"any\")")
	}
	if len(fields) == 1 && strings.EqualFold(fields[0], "any") {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(fields))
	for _, f := range fields {
		if strings.EqualFold(f, "any") {
			return nil, fmt.Errorf("\"any\" must be the only entry of an allow list")
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, fmt.Errorf("invalid network %q (want an address or a network such as 10.0.0.0/24)", f)
			}
			if p.Masked() != p {
				return nil, fmt.Errorf("network %q has host bits set (did you mean %s?)", f, p.Masked())
			}
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("invalid address %q (want an address or a network such as 10.0.0.0/24)", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		// Peers are compared unmapped (an IPv4 agent on a dual-stack
		// socket shows as ::ffff:a.b.c.d), so the list is kept unmapped.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

// Hostname reports whether s is a DNS name by RFC 1123 rules.
func Hostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// HostPort splits "host:port", ":port", "[v6]:port", "[v6]" or a bare
// "host" (port defaulting to defPort); the port is a number or a TCP
// service name. A bare IPv6 literal ("2001:db8::1") is taken whole as the
// host, so that its last group is never mistaken for a port.
func (sv Services) HostPort(s string, defPort uint16) (host string, port uint16, err error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", 0, fmt.Errorf("%q contains spaces or control characters", s)
	}
	port = defPort
	p, found := "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ] after the IPv6 address", s)
		}
		host, p = s[1:end], s[end+1:]
		if a, perr := netip.ParseAddr(host); perr != nil || !a.Is6() {
			return "", 0, fmt.Errorf("%q: %q in brackets is not an IPv6 address", s, host)
		}
		if p != "" {
			if p, found = strings.CutPrefix(p, ":"); !found {
				return "", 0, fmt.Errorf("%q: want [IPv6]:PORT", s)
			}
		}
	case strings.Count(s, ":") > 1:
		if _, perr := netip.ParseAddr(s); perr != nil {
			return "", 0, fmt.Errorf("%q: invalid IPv6 address (write [ADDRESS]:PORT to give a port)", s)
		}
		host = s
	default:
		host, p, found = strings.Cut(s, ":")
	}
	if found {
		if port, err = sv.Port(p, "tcp"); err != nil {
			return "", 0, err
		}
	}
	return host, port, nil
}

// Director reads the agent's director = HOST[:PORT] (an IPv6 literal in
// brackets when it has a port), and returns it as host:port. Any host
// that is not an IP is left for resolution at connect time (the director
// may not be resolvable when -t runs, and DNS may change between
// restarts); its A and AAAA records are both tried. A host that cannot
// possibly resolve, such as the HOWTO sample's literal "$DIP", is only a
// warning: the HOWTO's sample file must pass -t unchanged, and the agent
// will then fail, with a clear log line, when it tries to connect.
func (sv Services) Director(s string, defPort uint16) (addr, warning string, err error) {
	host, port, err := sv.HostPort(s, defPort)
	if err != nil {
		return "", "", err
	}
	if host == "" {
		return "", "", fmt.Errorf("invalid director %q: missing host", s)
	}
	if a, perr := netip.ParseAddr(host); perr == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return "", "", fmt.Errorf("director %q is not an address one can connect to", s)
		}
		if a.Is4In6() {
			return "", "", fmt.Errorf("director %q is IPv4-mapped IPv6; write it as %s", s, a.Unmap())
		}
		host = a.String() // one spelling, so that a director listed twice is seen
	} else if !Hostname(host) {
		warning = fmt.Sprintf("director %q is neither an IP address nor a valid hostname; connecting will fail until it is replaced", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), warning, nil
}

// Listen reads a listening address, HOST:PORT, [IPv6]:PORT, :PORT or a bare
// HOST (port defPort), and returns it as host:port ("" host: every address
// of both families).
func (sv Services) Listen(s string, defPort uint16) (string, error) {
	host, port, err := sv.HostPort(s, defPort)
	if err != nil {
		return "", err
	}
	if host != "" {
		if _, perr := netip.ParseAddr(host); perr != nil && !Hostname(host) {
			return "", fmt.Errorf("invalid listen host %q", host)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// Endpoint reads HOST:PORT, both required, for a connection a monitor
// makes: host an IPv4 address or a host name (looked up at each
// connection), port a number or a TCP service name.
func (sv Services) Endpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	// By its syntax: a bare IPv6 address has colons but no port.
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("invalid endpoint %q (want HOST:PORT or [IPv6]:PORT, such as 127.0.0.1:80)", s)
	}
	host, port, err := sv.HostPort(s, 0)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", fmt.Errorf("invalid endpoint %q: missing host (want HOST:PORT, such as 127.0.0.1:80)", s)
	}
	if a, perr := netip.ParseAddr(host); perr == nil {
		if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return "", fmt.Errorf("endpoint %q is not an address one can connect to", s)
		}
	} else if !Hostname(host) {
		return "", fmt.Errorf("invalid endpoint host %q", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// HTTPURL reads the URL of an HTTP health check: http or https, with a
// host. User and password are refused: the URL is logged with every
// failed check, and a password does not belong in a log.
func HTTPURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q (want http://HOST[:PORT]/PATH or https://...)", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("URL %q: scheme %q is not http or https", s, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("URL %q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("URL %q holds a user or password, which would be logged with every failed check", u.Redacted())
	case u.Fragment != "":
		return nil, fmt.Errorf("URL %q has a fragment (#...), which is never sent to the server", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("URL %q: port %q is not a number from 1 to 65535", s, p)
		}
	}
	return u, nil
}
