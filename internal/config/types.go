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

	// Limits against broken and hostile agents. An agent needs a few
	// round trips to say INIT and START; ten seconds is the HOWTO's
	// keepalive-timeout, which bounded the handshake before this key.
	DefaultHandshakeTimeout = 10 * time.Second
	// The master is sized for 20 000 agents (docs/benchmarks.md); the
	// default leaves room above that and stays well under the unit's
	// LimitNOFILE of 65536.
	DefaultMaxSessions = 25000
	// DefaultMaxSessionsPerAddress bounds the connections from one source
	// address, so that one host cannot take every max-sessions slot and
	// lock the others out. A realserver runs a few agent instances, not
	// hundreds; NAT in front of many realservers needs it raised.
	DefaultMaxSessionsPerAddress = 64
	// A realserver offers a handful of services; 64 is generous and bounds
	// what one agent can make the master allocate and write to IPVS.
	DefaultMaxServices = 64

	// Damping (see internal/master/weight.go). Health from cpuload moves
	// by a few points between samples; rewriting the weight for each of
	// those moves restarts the wrr scheduler's round for no benefit.
	DefaultWeightThreshold = 5 // percent of max-weight
	DefaultWeightMaxStep   = 0 // percent of max-weight per keepalive-interval; 0 = no cap

	// The weight law (internal/master/law.go, feedbackd-master.conf(5)).
	WeightLawSmoothed      = "smoothed"
	WeightLawDirect        = "direct"
	DefaultWeightLaw       = WeightLawSmoothed
	DefaultWeightSmoothing = 5 * time.Second // the health filter's time constant
	DefaultSlowStart       = 10 * time.Second

	// MinSecretLen is the shortest shared secret accepted: 16 bytes, the
	// strength of a random 128-bit key.
	MinSecretLen = 16
)

// Floors of the timers. A timer below its floor cannot do its job even on
// a healthy network: it fires before the event it waits for can happen, or
// the work it paces runs back to back. -t and a reload refuse such values
// (issue 13: keepalive-timeout = 0.0000001 passed -t and, reloaded, made
// every KEEPALIVE time out and quiesced every healthy realserver).
const (
	// A period between two KEEPALIVEs to one agent. Below 10 ms the
	// period is the scale of the scheduler's own delays on a loaded host,
	// so the timer measures those instead of the agent, and every agent
	// costs the master more than a hundred messages a second.
	MinKeepaliveInterval = 10 * time.Millisecond
	// A wait for an answer, and the deadline of every write to an agent.
	// It must cover a round trip plus the delays of two loaded hosts
	// (scheduling, GC, a full socket buffer draining); on a LAN the round
	// trip is well under a millisecond, the delays reach tens of
	// milliseconds. Below 100 ms healthy agents are declared dead.
	MinKeepaliveTimeout = 100 * time.Millisecond
	// INIT, INIT_ACK, (AUTH,) START: two round trips, same reasoning as
	// MinKeepaliveTimeout.
	MinHandshakeTimeout = 100 * time.Millisecond
	// Each removal pass also reads the whole IPVS table back and diffs
	// it (40 ms for 1000 destinations, docs/benchmarks.md); below a
	// second the passes would run back to back on a large director and
	// starve the owner loop that applies the agents' reports.
	MinRemovalInterval = 1 * time.Second
	// The agent's master-timeout is also its deadline for the whole
	// handshake, in which the master records the realserver in its state
	// file before START_ACK (a write and fsync: tens to hundreds of
	// milliseconds on a busy disk); and it must outlast the
	// master's keepalive-interval. Below a second an agent would drop
	// healthy connections, and each drop quiesces its realserver.
	MinMasterTimeout = 1 * time.Second
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

	// Access control (docs/access-control.md). Allow nil: any address.
	Allow []netip.Prefix
	// TrustAgentAddress lets a START record name a realserver address
	// other than the connection's source (multi-homed realservers); the
	// address must still be inside Allow.
	TrustAgentAddress bool
	// SecretFile and Secret: when set, agents must prove the secret
	// (NECP AUTH) before START. Secret is read by the config loader so
	// that -t checks the file too.
	SecretFile string
	Secret     []byte

	// Limits.
	HandshakeTimeout time.Duration // INIT (and AUTH) and START must arrive within this after accept
	MaxSessions      int           // open agent connections, handshakes included
	// MaxSessionsPerAddress: open connections from one source address.
	MaxSessionsPerAddress int
	MaxServices           int // distinct services one agent may START

	// Damping, in percent of each virtual service's max-weight.
	WeightThreshold int // a change of this much or less is not written
	WeightMaxStep   int // largest change per keepalive-interval; 0 = no cap
	// WeightLaw is "smoothed" or "direct"; "" (a zero Master, as tests
	// build it) means direct, the 2007 behaviour.
	WeightLaw       string
	WeightSmoothing time.Duration // smoothed: the health filter's time constant
	SlowStart       time.Duration // ramp of a realserver that joins or returns from 0; 0 = off
	// ControlGroup may change admin states through the control socket
	// besides root; ControlGID is its gid, -1 when none is set.
	ControlGroup string
	ControlGID   int
	// MetricsListen is host:port for the Prometheus metrics, "" when off.
	MetricsListen string

	VirtualServices []VirtualService
	// Warnings are doubts that do not stop the master, formatted like
	// Error ("FILE:LINE: KEY: MSG"), for the caller to log or print (-t).
	Warnings []string
}

// VirtualService is one [virtual-service] block.
type VirtualService struct {
	Name      string
	Address   netip.Addr // the zero Addr for a firewall-mark service
	Protocol  uint8      // necp.ProtoTCP or necp.ProtoUDP
	Port      uint16     // 0 for a firewall-mark service
	Scheduler string
	MaxWeight int // weight given to health 100 (default 100)
	Line      int // line of the [virtual-service] header, for messages

	// FWMark, when not 0, makes this a firewall-mark service (ipvsadm
	// -f): no address or port; it is fed by the agents' services with
	// Protocol and AgentPort, and its realservers are added with port 0,
	// so that each connection keeps the port the client asked for.
	FWMark    uint32
	AgentPort uint16
	// PersistenceTimeout in seconds, 0 for none (ipvsadm -p);
	// PersistenceNetmask a prefix length, 0 for the kernel default (one
	// client address per template; ipvsadm -M).
	PersistenceTimeout uint32
	PersistenceNetmask int
	// SchedulerFlags are ipvsadm -b names, each valid for Scheduler,
	// joined by "," in the order of the file ("" for none); a string
	// keeps VirtualService comparable.
	SchedulerFlags string
	OnePacket      bool // ipvsadm -o; UDP only
	// Forwarding, when set, is the director's method for every
	// realserver of this service: it overrides what the agents ask for.
	// necp.ForwardNone keeps the agents' choice.
	Forwarding necp.Forwarding
	// MixedFamily (mixed-family = yes) lets realservers of the other
	// address family join: IPv6 realservers of an IPv4 address, or the
	// reverse. IPVS forwards across families by tunnel only, so only
	// tunnel realservers join this way. Off by default, so that a
	// dual-stack port's realservers keep to their own family's service.
	MixedFamily bool
}

// FeedPort is the port of the agents' services that feed the virtual
// service: its port, or a firewall-mark service's agent-port.
func (vs *VirtualService) FeedPort() uint16 {
	if vs.FWMark != 0 {
		return vs.AgentPort
	}
	return vs.Port
}

// DestPort is the port a realserver offering its service on agentPort
// is added with: that port, or 0 under a firewall mark, where the kernel
// then keeps each connection's own destination port.
func (vs *VirtualService) DestPort(agentPort uint16) uint16 {
	if vs.FWMark != 0 {
		return 0
	}
	return agentPort
}

// Agent is a parsed agent.conf (possibly layered with an agent.d file).
type Agent struct {
	File string // the last file read
	// Directors are the masters to report to, host:port each (port
	// defaulting to 3262): one NECP session each, the same samples to all
	// (an HA pair, or active-active directors). Director is them joined
	// with ", ", for messages.
	Directors         []string
	Director          string
	ConnectionRetries int
	MasterTimeout     time.Duration
	ModuleDir         string // accepted and ignored: monitors are built in
	LogFile           string
	LogLevel          logging.Level
	// SecretFile and Secret: the shared secret proven to a master that asks
	// for it (NECP AUTH); nil when unset.
	SecretFile string
	Secret     []byte
	// MetricsListen is host:port for the Prometheus metrics, "" when off.
	MetricsListen string
	// AdminFile is the operator's local drain/maint file, "" when none
	// (see internal/localadmin).
	AdminFile string
	Services  []Service
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
	// AgentCheckListen is host:port where HAProxy's agent-check is
	// answered for this service, "" when off.
	AgentCheckListen string
	Monitor          string            // canonical name, without ".so"
	Params           map[string]string // the monitor's own keys (value, command, file, timeout, interval)
	File             string
	Line             int
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

// FillLimits sets limits left at zero to their defaults. ParseMaster
// always sets them; this is for a Master built in code (tests, tools), for
// which a zero limit would refuse every agent. Damping keys are left
// alone: zero is a meaningful setting there (no damping).
func (m *Master) FillLimits() {
	if m.HandshakeTimeout <= 0 {
		m.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if m.MaxSessionsPerAddress <= 0 {
		m.MaxSessionsPerAddress = DefaultMaxSessionsPerAddress
	}
	if m.MaxSessions <= 0 {
		m.MaxSessions = DefaultMaxSessions
	}
	if m.MaxServices <= 0 {
		m.MaxServices = DefaultMaxServices
	}
}
