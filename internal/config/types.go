// Package config reads feedbackd-master and feedbackd-agent configuration
// files in the syntax of the 2007 HOWTO, and reports every problem with the
// file, line and key it concerns.
//
// The syntax, as read here (gopkg.in/ini.v1 plus a line scanner, see
// scan.go): one "key = value" per line, "=" the only delimiter; "#" or ";"
// starts a comment only at the beginning of a line, so a value keeps any
// "#" or ";" in it; surrounding "..." or '...' quotes are removed; there
// are no continuation lines; key and section names ignore case. Keys
// before the first section are the globals. Unknown keys and sections,
// duplicate keys in one block and malformed lines are errors.
package config

import (
	"net/netip"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Default paths and values. Timer defaults are the HOWTO's.
const (
	DefaultMasterPath = "/etc/feedbackd/master.conf"
	DefaultAgentPath  = "/etc/feedbackd/agent.conf"
	DefaultAgentDir   = "/etc/feedbackd/agent.d"

	DefaultKeepaliveInterval = 2 * time.Second
	DefaultKeepaliveTimeout  = 10 * time.Second
	DefaultKeepaliveRetries  = 3
	DefaultRemovalInterval   = 30 * time.Second
	DefaultMasterTimeout     = 30 * time.Second
	DefaultConnectionRetries = 0 // never give up
	DefaultScheduler         = "wrr"
	DefaultMaxWeight         = 100
	DefaultLogLevel          = logging.LevelWarn
)

// DefaultListen is all addresses, port 3262.
var DefaultListen = ":3262"

// Master is a parsed master.conf.
type Master struct {
	File              string
	LogFile           string // empty: stderr
	LogLevel          logging.Level
	KeepaliveInterval time.Duration
	KeepaliveTimeout  time.Duration
	KeepaliveRetries  int
	RemovalInterval   time.Duration
	Listen            string // host:port for use without socket activation
	VirtualServices   []VirtualService
	// Warnings are doubts that do not stop the master, formatted like
	// Error ("FILE:LINE: KEY: MSG"), for the caller to log or print (-t).
	Warnings []string
}

// VirtualService is one [virtual-service] block.
type VirtualService struct {
	Name      string
	Address   netip.Addr
	Protocol  uint8 // necp.ProtoTCP or necp.ProtoUDP
	Port      uint16
	Scheduler string
	MaxWeight int // weight given to health 100 (default 100)
	Line      int // line of the [virtual-service] header, for messages
}

// Agent is a parsed agent.conf (possibly layered with an agent.d file).
type Agent struct {
	File              string // the last file read
	Director          string // host:port, port defaulting to 3262
	ConnectionRetries int
	MasterTimeout     time.Duration
	ModuleDir         string // accepted and ignored: monitors are built in
	LogFile           string
	LogLevel          logging.Level
	Services          []Service
	// Warnings are doubts that do not stop the agent (moduledir ignored,
	// a director that cannot resolve), formatted like Error.
	Warnings []string
}

// Service is one [service] block of an agent file.
type Service struct {
	Name       string
	Protocol   uint8
	Port       uint16
	Forwarding necp.Forwarding
	// Address is the realserver address to register; the zero Addr means
	// the source address of the agent's connection (the normal case).
	Address netip.Addr
	Monitor string            // canonical name, without ".so"
	Params  map[string]string // the monitor's own keys (value, command, file, timeout, interval)
	File    string
	Line    int
}

// WarningLines returns the warnings; it is safe on the nil result of a
// failed load, so callers can report either outcome in one place.
func (m *Master) WarningLines() []string {
	if m == nil {
		return nil
	}
	return m.Warnings
}

// WarningLines returns the warnings; safe on nil, like Master's.
func (a *Agent) WarningLines() []string {
	if a == nil {
		return nil
	}
	return a.Warnings
}
