package necp

import (
	"fmt"
	"strconv"
	"strings"
)

// The names are indexed by code, so that correcting a code in constants.go
// cannot leave a name behind.
var (
	typeNames = [...]string{
		TypeNoop:         "NOOP",
		TypeInit:         "INIT",
		TypeInitAck:      "INIT_ACK",
		TypeKeepalive:    "KEEPALIVE",
		TypeKeepaliveAck: "KEEPALIVE_ACK",
		TypeStart:        "START",
		TypeStartAck:     "START_ACK",
		TypeStop:         "STOP",
		TypeStopAck:      "STOP_ACK",
		TypeAuth:         "AUTH",
	}
	// Spelled as in the agent's "forwarding =" directive (HOWTO).
	forwardingNames = [...]string{
		ForwardNone: "none",
		ForwardDR:   "DR",
		ForwardTUN:  "TUN",
		ForwardNAT:  "NAT",
	}
	statusNames = [...]string{
		StatusAccepted:  "accepted",
		StatusNoMatch:   "no match",
		StatusRefused:   "refused",
		StatusContinued: "continued",
	}
)

func name(names []string, code uint8, kind string) string {
	if int(code) < len(names) && names[code] != "" {
		return names[code]
	}
	return kind + "(" + strconv.Itoa(int(code)) + ")"
}

// known reports whether t is one of the types of §3 that this package
// implements; anything else is skipped by receivers.
func (t Type) known() bool {
	return int(t) < len(typeNames) && typeNames[t] != ""
}

// String returns the specification's name for t, or "Type(N)".
func (t Type) String() string { return name(typeNames[:], uint8(t), "Type") }

// String returns the configuration spelling of f ("DR", "TUN", "NAT"),
// "none" for ForwardNone, or "Forwarding(N)".
func (f Forwarding) String() string { return name(forwardingNames[:], uint8(f), "Forwarding") }

// String returns "accepted", "no match", "refused" or "Status(N)".
func (s Status) String() string { return name(statusNames[:], uint8(s), "Status") }

// ParseForwarding parses the value of an agent's "forwarding =" directive.
// Case is ignored because the HOWTO does not say that it matters. "none" is
// refused: the HOWTO makes the directive required, and the master refuses
// ForwardNone in START anyway.
func ParseForwarding(s string) (Forwarding, error) {
	for f, n := range forwardingNames {
		if Forwarding(f) != ForwardNone && n != "" && strings.EqualFold(s, n) {
			return Forwarding(f), nil
		}
	}
	return ForwardNone, fmt.Errorf("necp: unknown forwarding method %q, want DR, TUN or NAT", s)
}

// ProtocolName returns "tcp", "udp" or "proto(N)", the spelling used in
// configuration files and log messages.
func ProtocolName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "tcp" or "udp", ignoring case: the HOWTO's
// "protocol =" directive allows only these two.
func ParseProtocol(s string) (uint8, error) {
	switch {
	case strings.EqualFold(s, "tcp"):
		return ProtoTCP, nil
	case strings.EqualFold(s, "udp"):
		return ProtoUDP, nil
	}
	return 0, fmt.Errorf("necp: unknown protocol %q, want tcp or udp", s)
}
