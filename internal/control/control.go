// Package control is the master's local control interface: the protocol
// spoken on its unix socket (feedbackd-master.socket's second
// ListenStream, /run/feedbackd/control.sock) between feedbackctl and the
// running master, and the types both sides share.
//
// The protocol is one JSON request per connection, one JSON response
// back, then the server closes:
//
//	→ {"version":1,"command":"status","vs":"http","realserver":"10.0.0.11"}
//	← {"version":1,"ok":true,"status":{...}}
//
// The schema is versioned: Version is raised when a field changes meaning
// or goes away (adding a field does not raise it). A server answers a
// request of a newer version with an error that says so.
package control

import (
	"time"
)

// Version of the request and response schema.
const Version = 1

// DefaultSocket is where the master's control socket is.
const DefaultSocket = "/run/feedbackd/control.sock"

// Commands.
const (
	CmdStatus = "status" // destinations, filtered by vs and realserver
	CmdAgents = "agents" // agent sessions
	CmdEvents = "events" // the latest log events of one realserver
	CmdDrain  = "drain"  // admin state drain
	CmdMaint  = "maint"  // admin state maint
	CmdReady  = "ready"  // clear the admin state
)

// Admin states an operator sets. They override the agents' health and are
// persisted with the master's state.
const (
	AdminReady = ""      // follows the agent's health
	AdminDrain = "drain" // weight 0; existing connections go on; never deleted while drained
	AdminMaint = "maint" // weight 0, and deleted once its active connections reach 0
)

// Request is what feedbackctl sends.
type Request struct {
	Version int    `json:"version"`
	Command string `json:"command"`
	// VS names a [virtual-service] (its name); empty: all.
	VS string `json:"vs,omitempty"`
	// Realserver is an IP address; empty: all (status, agents only).
	Realserver string `json:"realserver,omitempty"`
}

// Response is what the master answers.
type Response struct {
	Version int    `json:"version"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	// Denied: the caller may read but not change state.
	Denied bool `json:"denied,omitempty"`
	// Changed lists the destinations an admin command changed.
	Changed []Destination `json:"changed,omitempty"`
	Status  *Status       `json:"status,omitempty"`
	Agents  []Agent       `json:"agents,omitempty"`
	Events  []Event       `json:"events,omitempty"`
}

// Status is the master's view of every destination it manages.
type Status struct {
	Time         time.Time     `json:"time"`
	Destinations []Destination `json:"destinations"`
}

// Destination is one realserver under one virtual service.
type Destination struct {
	VS         string `json:"vs"`          // the [virtual-service] name
	Service    string `json:"service"`     // "TCP 192.0.2.10:80"
	Realserver string `json:"realserver"`  // "10.0.0.11:80"
	State      string `json:"state"`       // active, orphan, quiescing
	Agent      string `json:"agent"`       // the owning session's peer, "" when none
	Offers     int    `json:"offers"`      // live sessions offering it (owner included)
	Health     int    `json:"health"`      // latest health 0..100, 255 unknown, -1 never reported
	HealthAge  string `json:"health_age"`  // time since that report, "" when none
	Target     int    `json:"target"`      // the weight the law asks for (before admin state)
	Weight     int    `json:"weight"`      // the weight the master wants in the kernel
	Kernel     int    `json:"kernel"`      // the weight IPVS has, -1 when not in IPVS
	ActiveConn int    `json:"active_conn"` // from IPVS
	InactConn  int    `json:"inact_conn"`  // from IPVS
	Forwarding string `json:"forwarding"`  // Route, Masq, Tunnel
	Admin      string `json:"admin"`       // "", drain, maint
	// Why says why the weight is 0, "" when it is not.
	Why string `json:"why,omitempty"`
}

// Agent is one agent session.
type Agent struct {
	Peer     string    `json:"peer"`
	Since    time.Time `json:"since"`
	Services []Service `json:"services"`
}

// Service is one service an agent STARTed.
type Service struct {
	Service    string `json:"service"`    // "tcp/80"
	Realserver string `json:"realserver"` // the address it registers
	Health     int    `json:"health"`     // -1 never reported
	Owns       int    `json:"owns"`       // destinations whose weight it sets
	Offers     int    `json:"offers"`     // destinations it offers
}

// Event is one log line about a realserver.
type Event struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}
