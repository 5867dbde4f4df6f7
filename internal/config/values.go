package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

// The grammar of the values themselves (timers, counts, switches,
// addresses, ports) and the words of their errors are internal/value's,
// shared with internal/monitor; the names below keep this package's callers
// short.

// ParseDuration reads a timer value: seconds ("2", "0.5") or a Go
// duration ("500ms"), greater than zero; see value.Duration.
func ParseDuration(s string) (time.Duration, error) { return value.Duration(s) }

// parseTimer is ParseDuration with a floor, for a timer that cannot work
// below it; why says what goes wrong, for the operator.
func parseTimer(s string, floor time.Duration, why string) (time.Duration, error) {
	return value.Timer(s, floor, why)
}

// parseCount reads a non-negative integer such as keepalive-retries.
func parseCount(s string) (int, error) { return value.Count(s) }

// parseRange reads an integer in lo..hi.
func parseRange(s string, lo, hi int) (int, error) { return value.Range(s, lo, hi) }

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

// parseVIP reads a virtual service or realserver address, IPv4 or IPv6.
func parseVIP(s string) (netip.Addr, error) { return value.Address(s) }

// parseDirector reads the agent's director = HOST[:PORT] (port 3262 by
// default); see value.Services.Director.
func parseDirector(s string) (addr, warning string, err error) {
	return services().Director(s, necp.DefaultPort)
}

// parseDirectors reads the director key: one address, as the HOWTO has
// it, or several separated by commas or spaces, each reported to
// independently. The same director twice is an error: it would get two
// sessions that take turns owning the same destinations.
func parseDirectors(s string) (addrs, warnings []string, err error) {
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		a, w, err := parseDirector(f)
		if err != nil {
			return nil, nil, err
		}
		if seen[a] {
			return nil, nil, fmt.Errorf("director %s is listed twice", a)
		}
		seen[a] = true
		addrs = append(addrs, a)
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	if len(addrs) == 0 {
		return nil, nil, fmt.Errorf("no director address")
	}
	return addrs, warnings, nil
}

// ParseListen checks a listen address as the `listen` key and the master's
// --listen flag take it: host:port, [v6]:port, :port, or a bare host (port 3262).
func ParseListen(s string) (string, error) { return parseListen(s) }

func parseListen(s string) (string, error) { return services().Listen(s, necp.DefaultPort) }
