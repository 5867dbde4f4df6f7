package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Keys of master.conf. Each list is the complete set for its place in the
// file; anything else is an error, since a misspelt key silently left at
// its default is the hardest kind of mistake to find on a live director.
var (
	masterGlobalKeys = []string{"logfile", "loglevel", "keepalive-interval", "keepalive-timeout", "keepalive-retries", "removal-interval", "listen",
		"allow", "trust-agent-address", "secret-file", "handshake-timeout", "max-sessions", "max-sessions-per-address", "max-services", "weight-threshold", "weight-max-step",
		"weight-law", "weight-smoothing", "slow-start", "control-group", "metrics-listen"}
	virtualKeys = []string{"name", "address", "protocol", "port", "scheduler", "max-weight",
		"fwmark", "agent-port", "persistence-timeout", "persistence-netmask", "scheduler-flags", "one-packet", "forwarding", "mixed-family"}
)

// schedulerFlags are the names of ipvsadm -b and the scheduler each
// belongs to (internal/ipvs.SchedFlag turns them into kernel flags; a test
// there checks both lists agree).
var schedulerFlags = map[string]string{"sh-fallback": "sh", "sh-port": "sh", "mh-fallback": "mh", "mh-port": "mh"}

// MaxPersistenceTimeout is the longest persistence-timeout: the kernel
// keeps it in jiffies in 32 bits, which at HZ=1000 wrap after about 49
// days; 30 days is far from that and longer than any session.
const MaxPersistenceTimeout = 30 * 24 * 3600

// LoadMaster reads and checks a master configuration file.
func LoadMaster(path string) (*Master, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	return ParseMaster(path, data)
}

// readError turns a failed read into an Errors value, keeping the cause
// for errors.Is.
func readError(path string, err error) Errors {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error() // the path is already in front
	}
	return Errors{{File: path, Msg: "cannot read: " + msg, Err: err}}
}

// ParseMaster checks data as the contents of the master configuration file
// named file (used in messages only). On any problem it returns nil and an
// Errors listing every problem found.
func ParseMaster(file string, data []byte) (*Master, error) {
	blocks, errs := scan(file, data)
	el := &errorList{file: file, errs: errs}
	m := &Master{
		File:                  file,
		LogLevel:              DefaultLogLevel,
		KeepaliveInterval:     DefaultKeepaliveInterval,
		KeepaliveTimeout:      DefaultKeepaliveTimeout,
		KeepaliveRetries:      DefaultKeepaliveRetries,
		RemovalInterval:       DefaultRemovalInterval,
		Listen:                DefaultListen,
		HandshakeTimeout:      DefaultHandshakeTimeout,
		MaxSessions:           DefaultMaxSessions,
		MaxSessionsPerAddress: DefaultMaxSessionsPerAddress,
		MaxServices:           DefaultMaxServices,
		WeightThreshold:       DefaultWeightThreshold,
		WeightMaxStep:         DefaultWeightMaxStep,
		WeightLaw:             DefaultWeightLaw,
		WeightSmoothing:       DefaultWeightSmoothing,
		SlowStart:             DefaultSlowStart,
		ControlGID:            -1,
	}
	var warn warnings
	warn.file = file

	nvs := 0
	for _, b := range blocks {
		switch {
		case b.line == 0:
			m.globals(el, &warn, b)
		case b.bad:
			// Malformed header, already reported. Its keys are not checked:
			// against which list would they be?
		case b.name == "virtual-service":
			nvs++
			if vs, ok := parseVirtual(el, &warn, b); ok {
				m.VirtualServices = append(m.VirtualServices, vs)
			}
		case b.name == "service":
			el.add(b.line, "", "unknown section [service] in a master file ([service] belongs in the agent's file; the master wants [virtual-service])")
		default:
			el.add(b.line, "", "unknown section [%s] (want [virtual-service])", b.name)
		}
	}

	// Two blocks for one (protocol, address, port) would both claim the
	// same IPVS service, with possibly different schedulers.
	type tuple struct {
		proto uint8
		addr  string
		port  uint16
	}
	seen := map[tuple]int{}
	marks := map[uint32]int{}
	names := map[string]int{}
	for _, vs := range m.VirtualServices {
		if vs.FWMark != 0 {
			// The kernel keys a mark service on the mark alone.
			if first, dup := marks[vs.FWMark]; dup {
				el.add(vs.Line, "", "[virtual-service] fwmark %d duplicates the one on line %d", vs.FWMark, first)
				continue
			}
			marks[vs.FWMark] = vs.Line
		} else if t := (tuple{vs.Protocol, vs.Address.String(), vs.Port}); seen[t] != 0 {
			el.add(vs.Line, "", "[virtual-service] %s:%d/%s duplicates the one on line %d", vs.Address, vs.Port, necp.ProtocolName(vs.Protocol), seen[t])
			continue
		} else {
			seen[t] = vs.Line
		}
		// Names only label log lines, so a repeat is confusing, not wrong.
		if first, dup := names[vs.Name]; dup {
			warn.add(vs.Line, "", "name %q is also used by the [virtual-service] on line %d; log lines will not tell them apart", vs.Name, first)
		}
		names[vs.Name] = vs.Line
	}
	if nvs == 0 {
		// Every agent's START would be answered "no match". Only a warning:
		// the packaged master.conf ships with its example commented out
		// rather than with a made-up address the master would create in
		// IPVS, and it must still pass -t.
		warn.add(0, "", "no [virtual-service] block: every agent will be answered \"no match\"")
	}

	// Relations between the timers. keepalive-interval and keepalive-timeout
	// have none that can break: the interval runs after an answer, the
	// timeout while one is awaited (internal/master/keepalive.go), so any
	// pair above the floors works. What can break is their product with the
	// retries: (1 + keepalive-retries) × keepalive-timeout is when a silent
	// agent is declared dead and how long a restarted master waits for its
	// agents, and past time.Duration's range (about 292 years) it wraps
	// negative, so that every destination taken back at start-up would be
	// quiesced at once.
	if t, r := m.KeepaliveTimeout, m.KeepaliveRetries; t > 0 && int64(r)+1 > math.MaxInt64/int64(t) {
		line, key := laterKey(blocks, "keepalive-timeout", "keepalive-retries")
		el.add(line, key, "(1 + keepalive-retries) × keepalive-timeout = (1 + %d) × %v, the time after which a silent agent is dead, is longer than the master can count (about 292 years)", r, t)
	}

	// The agent drops the connection after master-timeout without data;
	// a keepalive-interval near the agents' default would make every agent
	// reconnect in a loop.
	if m.KeepaliveInterval >= DefaultMasterTimeout/2 {
		warn.add(warn.lineOf(blocks, "keepalive-interval"), "keepalive-interval",
			"%v is close to or above the agents' default master-timeout of %v; agents may time out and reconnect unless their master-timeout is raised",
			m.KeepaliveInterval, DefaultMasterTimeout)
	}

	if len(el.errs) > 0 {
		sortErrors(el.errs, file)
		return nil, el.errs
	}
	m.Warnings = warn.strings()
	return m, nil
}

// globals checks the keys before the first section.
func (m *Master) globals(el *errorList, warn *warnings, b block) {
	for _, e := range b.entries {
		var err error
		switch e.key {
		case "allow":
			m.Allow, err = parseAllow(e.value)
		case "trust-agent-address":
			m.TrustAgentAddress, err = parseBool(e.value)
		case "secret-file":
			var w string
			m.SecretFile = e.value
			if m.Secret, w, err = readSecret(e.value); w != "" {
				warn.add(e.line, e.key, "%s", w)
			}
		case "handshake-timeout":
			m.HandshakeTimeout, err = parseTimer(e.value, MinHandshakeTimeout, "an agent needs two round trips to register")
		case "max-sessions":
			m.MaxSessions, err = parseRange(e.value, 1, 1<<20)
		case "max-sessions-per-address":
			m.MaxSessionsPerAddress, err = parseRange(e.value, 1, 1<<20)
		case "max-services":
			m.MaxServices, err = parseRange(e.value, 1, necp.MaxServices)
		case "weight-threshold":
			m.WeightThreshold, err = parseRange(e.value, 0, 50)
		case "weight-max-step":
			m.WeightMaxStep, err = parseRange(e.value, 0, 100)
		case "weight-law":
			m.WeightLaw, err = parseWeightLaw(e.value)
		case "weight-smoothing":
			m.WeightSmoothing, err = parseTimer(e.value, time.Second, "the filter moves once per keepalive-interval; for no smoothing, set weight-law = direct")
		case "slow-start":
			m.SlowStart, err = parseSlowStart(e.value)
		case "metrics-listen":
			m.MetricsListen, err = parseListen(e.value)
		case "control-group":
			m.ControlGroup = e.value
			m.ControlGID, err = lookupGroup(e.value)
		case "logfile":
			m.LogFile, err = nonEmpty(e.value, "log file path")
		case "loglevel":
			m.LogLevel, err = logging.ParseLevel(e.value)
		case "keepalive-interval":
			m.KeepaliveInterval, err = parseTimer(e.value, MinKeepaliveInterval, "shorter, the master polls every agent in a busy loop")
		case "keepalive-timeout":
			m.KeepaliveTimeout, err = parseTimer(e.value, MinKeepaliveTimeout, "shorter, healthy agents miss it and are declared dead")
		case "keepalive-retries":
			m.KeepaliveRetries, err = parseCount(e.value)
		case "removal-interval":
			m.RemovalInterval, err = parseTimer(e.value, MinRemovalInterval, "each pass reads the whole IPVS table back")
		case "listen":
			m.Listen, err = parseListen(e.value)
		default:
			if slices.Contains(virtualKeys, e.key) {
				el.add(e.line, e.key, "key belongs in a [virtual-service] block, not before the first one")
			} else {
				el.add(e.line, e.key, "unknown key (master keys: %s)", strings.Join(masterGlobalKeys, ", "))
			}
			continue
		}
		if err != nil {
			el.badValue(e, err)
		}
	}
}

// parseVirtual checks one [virtual-service] block. ok is false when the
// block has errors (all of them reported).
func parseVirtual(el *errorList, warn *warnings, b block) (vs VirtualService, ok bool) {
	before := len(el.errs)
	vs = VirtualService{Line: b.line, Scheduler: DefaultScheduler, MaxWeight: DefaultMaxWeight}
	keys := map[string]entry{}
	for _, e := range b.entries {
		switch {
		case slices.Contains(virtualKeys, e.key):
			keys[e.key] = e
		case slices.Contains(masterGlobalKeys, e.key):
			el.add(e.line, e.key, "global key inside [virtual-service]: put it before the first section")
		default:
			el.add(e.line, e.key, "unknown key in [virtual-service] (want %s)", strings.Join(virtualKeys, ", "))
		}
	}
	required := func(k string) (entry, bool) {
		e, ok := keys[k]
		if !ok && !b.rejected[k] {
			el.add(b.line, k, "required key missing from [virtual-service]")
		}
		return e, ok
	}
	var err error
	if e, ok := required("name"); ok {
		if vs.Name, err = nonEmpty(e.value, "name"); err != nil {
			el.badValue(e, err)
		}
	}
	// A firewall-mark service replaces address and port by the mark; the
	// agents' services that feed it are named by protocol and agent-port.
	if e, ok := keys["fwmark"]; ok {
		n, err := parseRange(e.value, 1, math.MaxUint32)
		if err != nil {
			el.badValue(e, err)
		}
		vs.FWMark = uint32(n)
		if vs.FWMark == 0 {
			vs.FWMark = math.MaxUint32 // marked as set, so address and port are not required
		}
		for _, k := range []string{"address", "port"} {
			if o, ok := keys[k]; ok {
				el.add(o.line, k, "a firewall-mark service (fwmark on line %d) has no %s: the mark selects the packets; protocol and agent-port name the agents' services that feed it", e.line, k)
			}
		}
		if _, ok := keys["agent-port"]; !ok && !b.rejected["agent-port"] {
			el.add(b.line, "agent-port", "required key missing from a [virtual-service] with fwmark: the port of the agents' services that feed it")
		}
	} else {
		if e, ok := required("address"); ok {
			if vs.Address, err = parseVIP(e.value); err != nil {
				el.badValue(e, err)
			}
		}
		if e, ok := keys["agent-port"]; ok {
			el.add(e.line, e.key, "only a firewall-mark service (fwmark) has an agent-port; here port names the agents' services")
		}
	}
	proto := ""
	if e, ok := required("protocol"); ok {
		if vs.Protocol, err = parseProtocol(e.value); err != nil {
			el.badValue(e, err)
		} else {
			proto = necp.ProtocolName(vs.Protocol)
		}
	}
	if vs.FWMark == 0 {
		if e, ok := required("port"); ok {
			if vs.Port, err = ParsePort(e.value, proto); err != nil {
				el.badValue(e, err)
			}
		}
	} else if e, ok := keys["agent-port"]; ok {
		if vs.AgentPort, err = ParsePort(e.value, proto); err != nil {
			el.badValue(e, err)
		}
	}
	if e, ok := keys["scheduler"]; ok {
		if vs.Scheduler, err = parseScheduler(e.value); err != nil {
			el.badValue(e, err)
		} else if vs.Scheduler == "rr" || vs.Scheduler == "lc" {
			// Not an error: quiescing at health 0 still works.
			warn.add(e.line, e.key, "%s ignores weights other than 0, so health only takes realservers in and out", vs.Scheduler)
		}
	}
	if e, ok := keys["max-weight"]; ok {
		// IPVS weights are 32-bit but ipvsadm documents 0..65535; 0 would
		// quiesce every realserver whatever its health.
		if vs.MaxWeight, err = parseRange(e.value, 1, 65535); err != nil {
			el.badValue(e, err)
		}
	}
	vs.parseOptions(el, keys, proto)
	return vs, len(el.errs) == before
}

// parseOptions reads the keys ipvsadm -A sets besides the scheduler:
// persistence, scheduler flags, one-packet scheduling, and the director's
// forwarding method. Each combination the kernel would refuse, or accept
// and ignore, is an error on the line of the key that makes it.
func (vs *VirtualService) parseOptions(el *errorList, keys map[string]entry, proto string) {
	var err error
	if e, ok := keys["persistence-timeout"]; ok {
		n, err := parseRange(e.value, 1, MaxPersistenceTimeout)
		if err != nil {
			el.badValue(e, fmt.Errorf("%v seconds (as ipvsadm -p; longer overflows the kernel's timer)", err))
		}
		vs.PersistenceTimeout = uint32(n)
	}
	if e, ok := keys["persistence-netmask"]; ok {
		if _, set := keys["persistence-timeout"]; !set {
			el.add(e.line, e.key, "needs persistence-timeout: without persistence the kernel ignores the netmask")
		} else if vs.PersistenceNetmask, err = parsePersistenceNetmask(e.value, vs.Address.Is6()); err != nil {
			el.badValue(e, err)
		}
	}
	if e, ok := keys["scheduler-flags"]; ok {
		var flags []string
		fields := strings.FieldsFunc(strings.ToLower(e.value), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		if len(fields) == 0 {
			el.add(e.line, e.key, "empty list (leave the key out for none)")
		}
		for _, f := range fields {
			sched, known := schedulerFlags[f]
			switch {
			case !known:
				el.add(e.line, e.key, "unknown scheduler flag %q (want sh-fallback, sh-port, mh-fallback or mh-port, as ipvsadm -b)", f)
			case vs.Scheduler == "":
				// The scheduler itself is wrong, and reported.
			case sched != vs.Scheduler:
				el.add(e.line, e.key, "%s needs scheduler = %s (this service's scheduler is %s, which ignores it)", f, sched, vs.Scheduler)
			case slices.Contains(flags, f):
				el.add(e.line, e.key, "%s is listed twice", f)
			default:
				flags = append(flags, f)
			}
		}
		vs.SchedulerFlags = strings.Join(flags, ",")
	}
	if e, ok := keys["one-packet"]; ok {
		if vs.OnePacket, err = parseBool(e.value); err != nil {
			el.badValue(e, err)
		} else if vs.OnePacket && proto != "" && proto != "udp" {
			el.add(e.line, e.key, "one-packet scheduling is for UDP only (the kernel ignores it for %s); set protocol = udp or remove it", proto)
		}
	}
	if e, ok := keys["forwarding"]; ok {
		if vs.Forwarding, err = parseForwarding(e.value); err != nil {
			el.badValue(e, err)
		}
	}
	if e, ok := keys["mixed-family"]; ok {
		if vs.MixedFamily, err = parseBool(e.value); err != nil {
			el.badValue(e, err)
		} else if vs.MixedFamily && vs.Forwarding != necp.ForwardNone && vs.Forwarding != necp.ForwardTUN {
			el.add(e.line, e.key, "realservers of the other address family need tunnel forwarding, and this service sets forwarding = %s; "+
				"set forwarding = TUN, or remove one of the two", vs.Forwarding)
		}
	}
}

// parsePersistenceNetmask reads persistence-netmask: a dotted IPv4 mask
// (255.255.255.0, as ipvsadm -M) or a prefix length (24 or /24), returned
// as a prefix length. 0 is refused: it would send every client to one
// realserver; a mask with holes groups clients in ways nobody means. An
// IPv6 service takes a prefix length only (1..128), as ipvsadm -M does.
func parsePersistenceNetmask(v string, v6 bool) (int, error) {
	t := strings.TrimPrefix(v, "/")
	if n, err := strconv.Atoi(t); err == nil {
		top := 32
		if v6 {
			top = 128
		}
		if n < 1 || n > top {
			return 0, fmt.Errorf("prefix length %d is not 1..%d", n, top)
		}
		return n, nil
	}
	if v6 {
		return 0, fmt.Errorf("invalid netmask %q for an IPv6 service (want a prefix length such as 64)", v)
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("invalid netmask %q (want a mask such as 255.255.255.0 or a prefix length such as 24)", v)
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := bits.LeadingZeros32(^m)
	if m<<n != 0 {
		return 0, fmt.Errorf("netmask %s is not contiguous (its one bits must come first, as in 255.255.255.0)", v)
	}
	if n == 0 {
		return 0, fmt.Errorf("netmask %s would put every client on one realserver", v)
	}
	return n, nil
}

// warnings collects the Warnings of one file, formatted like Error.
type warnings struct {
	file string
	list Errors
}

func (w *warnings) add(line int, key, format string, args ...any) {
	w.list = append(w.list, &Error{File: w.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// strings returns the warnings sorted by line, as the errors are.
func (w *warnings) strings() []string {
	sortErrors(w.list, w.file)
	s := make([]string, len(w.list))
	for i, e := range w.list {
		s[i] = e.Error()
	}
	return s
}

// lineOf finds the line of a global key, 0 when it was not set.
func (w *warnings) lineOf(blocks []block, key string) int { return globalLine(blocks, key) }

// globalLine finds the line of a global key, 0 when it was not set.
func globalLine(blocks []block, key string) int {
	for _, e := range blocks[0].entries {
		if e.key == key {
			return e.line
		}
	}
	return 0
}

// laterKey picks, of two global keys whose values conflict, the one set
// further down the file (the one set at all, if the other is left at its
// default), so that the error points at the line most likely just edited.
func laterKey(blocks []block, a, b string) (int, string) {
	la, lb := globalLine(blocks, a), globalLine(blocks, b)
	if lb > la {
		return lb, b
	}
	return la, a
}

func nonEmpty(s, what string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty %s", what)
	}
	return s, nil
}

// parseWeightLaw reads weight-law: smoothed (the default) or direct (the
// 2007 master's weight = latest health, kept for comparison).
func parseWeightLaw(v string) (string, error) {
	switch l := strings.ToLower(v); l {
	case WeightLawSmoothed, WeightLawDirect:
		return l, nil
	}
	return "", fmt.Errorf("unknown weight law %q (want %s or %s)", v, WeightLawSmoothed, WeightLawDirect)
}

// parseSlowStart reads slow-start: 0 turns it off; otherwise a time of at
// least one second, since the ramp moves once per keepalive-interval.
func parseSlowStart(v string) (time.Duration, error) {
	if n, err := parseCount(v); err == nil && n == 0 {
		return 0, nil
	}
	return parseTimer(v, time.Second, "the ramp moves once per keepalive-interval, so a shorter one is a jump")
}

// lookupGroup resolves control-group to a gid at load time, so that -t
// refuses a group the system does not have instead of a master that
// silently lets nobody in.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("no group %q on this system", name)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q has a gid that is not a number: %q", name, g.Gid)
	}
	return gid, nil
}
