// Package agentcheck answers HAProxy's agent-check (HAProxy configuration
// manual, 5.2, "agent-check") from the agent's cached samples: the same
// values a KEEPALIVE_ACK carries to feedbackd-master.
//
// HAProxy opens a TCP connection to the server's agent-port, reads one
// ASCII line of words (ended by CR or LF) and closes. Words it knows set
// the server's weight ("75%"), its administrative state ("ready", "drain",
// "maint") or its operational state ("up", "down", "fail", "stopped");
// text after "#" is a description. A word the agent leaves out leaves that
// setting as it was.
//
// This file is the pure part: which line a service's state gives. The
// listener that writes it is serve.go.
package agentcheck

import (
	"strconv"
	"strings"
)

// Admin is a service's administrative state as HAProxy knows it.
type Admin int

const (
	// Ready: in rotation at the weight its health gives.
	Ready Admin = iota
	// Drain: no new connections but those held by persistence; open ones
	// go on (HAProxy's DRAIN).
	Drain
	// Maint: no new connections at all (HAProxy's MAINT).
	Maint
)

// Word is the agent-check word for a, as HAProxy spells it.
func (a Admin) Word() string {
	switch a {
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return "ready"
}

// MaxReason bounds the description after "#", so that a monitor's long
// error (an exec command's stderr) cannot make the line large; HAProxy
// shows the description in its logs and stats, where a short one is read.
const MaxReason = 120

// State is what one answer is made from.
type State struct {
	// Health is the wire health, as in a KEEPALIVE_ACK: 0..100, or
	// necp.HealthUnknown (255) when the monitor has no good, fresh value.
	Health uint8
	// Admin is the administrative state to announce.
	Admin Admin
	// Reason, optional, says why (health unknown, why drained); it goes
	// after "#" for a person reading the line.
	Reason string
}

// Reply is the line for one agent-check, newline included.
//
//   - The administrative word is always sent: HAProxy keeps an
//     administrative state set by an agent until an agent says otherwise,
//     so a "ready" must follow every "drain" or "maint", including after
//     an agent restart that lost what was announced before. The agent
//     therefore owns the admin state of servers that check it: a drain set
//     on HAProxy's CLI is undone at the next check (HAProxy's
//     "disable agent" stops that).
//   - Health 0..100 is the weight as a percentage of the server's
//     configured weight, as the master turns health into a share of
//     max-weight; health 0 is "0%", which HAProxy shows as DRAIN on its
//     stats page but without the DRAIN admin state, as the master keeps a
//     realserver at weight 0.
//   - Unknown health (a failed, stuck or not yet run monitor) sends no
//     weight, so HAProxy keeps the weight it has, as the master leaves the
//     IPVS weight alone for health 255. A failing monitor says nothing
//     about the service, and HAProxy's own "check" is there for liveness.
//   - Neither "up" nor "down" is ever sent: liveness is HAProxy's own
//     health check. HAProxy's agent "up" also resets that check's counter
//     to healthy, so an agent saying "up" on every check would keep a dead
//     server UP; and a "down" would have to be undone by an "up".
func Reply(s State) string {
	var b strings.Builder
	b.WriteString(s.Admin.Word())
	known := s.Health <= 100
	if known {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(int(s.Health)))
		b.WriteByte('%')
	}
	reason := s.Reason
	if !known && reason == "" {
		reason = "health unknown"
	}
	if r := clean(reason); r != "" {
		b.WriteString(" #")
		b.WriteString(r)
	}
	b.WriteByte('\n')
	return b.String()
}

// clean makes reason safe for the one line: printable ASCII only (a CR or
// LF would end the line early and the rest would be read as nothing, a
// NUL would cut it in HAProxy's C string), blanks folded, at most
// MaxReason bytes.
func clean(reason string) string {
	var b strings.Builder
	space := false
	for _, r := range reason {
		if r <= ' ' || r > '~' {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len() >= MaxReason {
			break
		}
		b.WriteRune(r)
	}
	s := b.String()
	if len(s) > MaxReason {
		s = s[:MaxReason]
	}
	return s
}
