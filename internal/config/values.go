package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

var (
	secondsRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	digitsRE  = regexp.MustCompile(`^[0-9]+$`)
)

// ParseDuration reads a timer value. The HOWTO gives every timer in seconds
// as a bare number ("keepalive-interval = 2"), so a bare number, decimals
// allowed ("0.5"), means seconds; a Go duration with a unit ("500ms", "2s",
// "1m30s") is accepted as well because it is unambiguous. Exponents, signs
// and hexadecimal are refused: a timer is typed by a person, and "1e3" is
// more likely a typo than a wish for 16 minutes. Zero and negative values
// are refused because every timer is a period or a deadline.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	in := s
	if secondsRE.MatchString(s) {
		// Through time.ParseDuration rather than float64 so that "0.1"
		// is exactly 100ms and overflow is detected.
		in = s + "s"
	}
	d, err := time.ParseDuration(in)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want seconds such as 2 or 0.5, or a duration such as 500ms)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be greater than zero", s)
	}
	return d, nil
}

// parseTimer is ParseDuration with a floor, for a timer that cannot work
// below it; why says what goes wrong, for the operator.
func parseTimer(s string, floor time.Duration, why string) (time.Duration, error) {
	d, err := ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < floor {
		return 0, fmt.Errorf("%v is too short (at least %v: %s)", d, floor, why)
	}
	return d, nil
}

// parseCount reads a non-negative integer such as keepalive-retries.
func parseCount(s string) (int, error) {
	if !digitsRE.MatchString(s) {
		return 0, fmt.Errorf("invalid number %q (want a whole number, 0 or more)", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > math.MaxInt32 {
		return 0, fmt.Errorf("number %q is too large", s)
	}
	return n, nil
}

// parseRange reads an integer in lo..hi.
func parseRange(s string, lo, hi int) (int, error) {
	n, err := parseCount(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("invalid value %q (want a whole number from %d to %d)", s, lo, hi)
	}
	return n, nil
}

// parseProtocol and parseForwarding use internal/necp's parsers, which own
// the mapping from the HOWTO's spellings to wire codes, and restate their
// errors in the words of the other config messages (without "necp:").
func parseProtocol(s string) (uint8, error) {
	p, err := necp.ParseProtocol(s)
	if err != nil {
		return 0, fmt.Errorf("invalid protocol %q (want tcp or udp)", s)
	}
	return p, nil
}

func parseForwarding(s string) (necp.Forwarding, error) {
	f, err := necp.ParseForwarding(s)
	if err != nil {
		return necp.ForwardNone, fmt.Errorf("invalid forwarding %q (want DR, NAT or TUN)", s)
	}
	return f, nil
}

// schedulers are the IPVS scheduler names ipvsadm accepts. The kernel
// module for one may still be missing; that is found when the master
// creates the virtual service, not here.
var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

func parseScheduler(s string) (string, error) {
	l := strings.ToLower(s)
	if slices.Contains(schedulers, l) {
		return l, nil
	}
	return "", fmt.Errorf("unknown scheduler %q (want one of %s)", s, strings.Join(schedulers, " "))
}

// parseVIP reads a virtual service address: IPv4 only in v1, because NECP
// service records carry 4-byte addresses (necp-protocol.md §1).
func parseVIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid address %q (want an IPv4 address such as 192.0.2.10)", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("address %q is not IPv4 (IPv6 is not supported in this version)", s)
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("address %q cannot be a virtual service address", s)
	}
	return a, nil
}

// validHostname reports whether s is a DNS name by RFC 1123 rules.
func validHostname(s string) bool {
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

// splitHostPort splits "host:port", ":port" or a bare "host" (port
// defaulting to 3262, NECP's port). IPv6 literals are refused, bracketed or
// not, since v1 is IPv4 only: a master reached over IPv6 would see an IPv6
// realserver address that it cannot put into a NECP record.
func splitHostPort(s string) (host string, port uint16, err error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", 0, fmt.Errorf("%q contains spaces or control characters", s)
	}
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") > 1 {
		return "", 0, fmt.Errorf("%q: IPv6 is not supported in this version (IPv4 only)", s)
	}
	host, p, found := strings.Cut(s, ":")
	port = necp.DefaultPort
	if found {
		if port, err = ParsePort(p, "tcp"); err != nil {
			return "", 0, err
		}
	}
	return host, port, nil
}

// parseDirector reads the agent's director = HOST[:PORT]. Any host that
// is not an IP is left for resolution at connect time (the director may
// not be resolvable when -t runs, and DNS may change between restarts).
// A host that cannot possibly resolve, such as the HOWTO sample's literal
// "$DIP", is only a warning: the HOWTO's sample file must pass -t
// unchanged, and the agent will then fail, with a clear log line, when it
// tries to connect.
func parseDirector(s string) (addr, warning string, err error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", "", err
	}
	if host == "" {
		return "", "", fmt.Errorf("invalid director %q: missing host", s)
	}
	if a, perr := netip.ParseAddr(host); perr == nil {
		if !a.Is4() {
			return "", "", fmt.Errorf("director %q is not IPv4 (IPv6 is not supported in this version)", s)
		}
		if a.IsUnspecified() || a.IsMulticast() {
			return "", "", fmt.Errorf("director %q is not an address one can connect to", s)
		}
	} else if !validHostname(host) {
		warning = fmt.Sprintf("director %q is neither an IPv4 address nor a valid hostname; connecting will fail until it is replaced", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), warning, nil
}

// parseListen reads the master's listen = HOST:PORT, :PORT or HOST.
// ParseListen checks a listen address as the `listen` key and the master's
// --listen flag take it: host:port, :port, or a bare IPv4 host (port 3262).
func ParseListen(s string) (string, error) { return parseListen(s) }

func parseListen(s string) (string, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", err
	}
	if host != "" {
		if a, perr := netip.ParseAddr(host); perr == nil {
			if !a.Is4() {
				return "", fmt.Errorf("listen address %q is not IPv4 (IPv6 is not supported in this version)", s)
			}
		} else if !validHostname(host) {
			return "", fmt.Errorf("invalid listen host %q", host)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}
