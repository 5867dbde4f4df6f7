package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Keys of an agent file. A [service] block also takes the keys of its
// monitor, which come from monitor.Lookup so that the monitor package stays
// the one place that knows them.
var (
	agentGlobalKeys = []string{"director", "connection-retries", "master-timeout", "moduledir", "logfile", "loglevel", "secret-file", "metrics-listen", "admin-file"}
	serviceKeys     = []string{"name", "protocol", "port", "forwarding", "monitor", "address", "agent-check-listen"}
)

// agentLayer is one agent file before layering: the values it sets, and
// which globals it set, so that a later file overrides only what it names.
type agentLayer struct {
	agent    *Agent
	set      map[string]bool // globals present in this file, valid or not
	services int             // [service] blocks, valid or not
	warnings warnings
}

// ParseAgent checks data as one agent file named file (used in messages
// only). It checks the file as a layer: neither director nor a [service]
// block is required here, because /etc/feedbackd/agent.conf may hold only
// the director and agent.d/NAME.conf only services (or the other way
// round). LoadAgent checks those requirements on the combined result.
// Unset globals have their defaults. On any problem it returns nil and an
// Errors listing every problem found.
func ParseAgent(file string, data []byte) (*Agent, error) {
	l, errs := parseAgentLayer(file, data)
	errs = append(errs, duplicateServices(l.agent.Services)...)
	if len(errs) > 0 {
		sortErrors(errs, file)
		return nil, errs
	}
	l.agent.Warnings = l.warnings.strings()
	return l.agent, nil
}

// LoadAgent reads one or more agent files and layers them in order: a
// global key set in a later file overrides the earlier value, [service]
// blocks accumulate in file order, and Agent.File is the last path. This is
// how /etc/feedbackd/agent.conf and agent.d/NAME.conf combine for one agent
// instance. The result must name a director and offer at least one service.
// Every problem in every file is reported, sorted by file then line.
func LoadAgent(paths ...string) (*Agent, error) {
	if len(paths) == 0 {
		return nil, errors.New("config: LoadAgent needs at least one file")
	}
	last := paths[len(paths)-1]
	a := defaultAgent(last)
	var errs Errors
	var warns []string
	directorSet, nservices, unread := false, 0, false
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, readError(p, err)...)
			unread = true
			continue
		}
		l, lerrs := parseAgentLayer(p, data)
		errs = append(errs, lerrs...)
		warns = append(warns, l.warnings.strings()...)
		la := l.agent
		if l.set["director"] {
			a.Director, a.Directors = la.Director, la.Directors
			directorSet = true
		}
		if l.set["connection-retries"] {
			a.ConnectionRetries = la.ConnectionRetries
		}
		if l.set["master-timeout"] {
			a.MasterTimeout = la.MasterTimeout
		}
		if l.set["moduledir"] {
			a.ModuleDir = la.ModuleDir
		}
		if l.set["logfile"] {
			a.LogFile = la.LogFile
		}
		if l.set["loglevel"] {
			a.LogLevel = la.LogLevel
		}
		if l.set["secret-file"] {
			a.SecretFile, a.Secret = la.SecretFile, la.Secret
		}
		if l.set["metrics-listen"] {
			a.MetricsListen = la.MetricsListen
		}
		if l.set["admin-file"] {
			a.AdminFile = la.AdminFile
		}
		a.Services = append(a.Services, la.Services...)
		nservices += l.services
	}
	errs = append(errs, duplicateServices(a.Services)...)
	where := "the file"
	if len(paths) > 1 {
		where = "any of the files"
	}
	// An unreadable file may have held the director or the services;
	// saying they are missing would send the operator the wrong way.
	if !directorSet && !unread {
		errs = append(errs, &Error{File: last, Key: "director", Msg: "required key missing: " + where + " must say where the master runs"})
	}
	if nservices == 0 && !unread {
		errs = append(errs, &Error{File: last, Msg: "no [service] block in " + where + ": the agent would have nothing to offer the master"})
	}
	if len(errs) > 0 {
		sortErrors(errs, paths...)
		return nil, errs
	}
	a.Warnings = warns
	return a, nil
}

func defaultAgent(file string) *Agent {
	return &Agent{
		File:              file,
		ConnectionRetries: DefaultConnectionRetries,
		MasterTimeout:     DefaultMasterTimeout,
		LogLevel:          DefaultLogLevel,
	}
}

// parseAgentLayer checks one agent file on its own.
func parseAgentLayer(file string, data []byte) (*agentLayer, Errors) {
	blocks, errs := scan(file, data)
	el := &errorList{file: file, errs: errs}
	l := &agentLayer{agent: defaultAgent(file), set: map[string]bool{}}
	l.warnings.file = file
	for _, b := range blocks {
		switch {
		case b.line == 0:
			l.globals(el, b)
		case b.bad:
			// Malformed header, already reported.
		case b.name == "service":
			l.services++
			if s, ok := parseService(el, b); ok {
				s.File = file
				l.agent.Services = append(l.agent.Services, s)
			}
		case b.name == "virtual-service":
			el.add(b.line, "", "unknown section [virtual-service] in an agent file ([virtual-service] belongs in master.conf; the agent wants [service])")
		default:
			el.add(b.line, "", "unknown section [%s] (want [service])", b.name)
		}
	}
	return l, el.errs
}

func (l *agentLayer) globals(el *errorList, b block) {
	a := l.agent
	for k := range b.rejected {
		l.set[k] = true
	}
	for _, e := range b.entries {
		var err error
		switch e.key {
		case "director":
			var ws []string
			if a.Directors, ws, err = parseDirectors(e.value); err == nil {
				a.Director = strings.Join(a.Directors, ", ")
			}
			for _, w := range ws {
				l.warnings.add(e.line, e.key, "%s", w)
			}
		case "connection-retries":
			a.ConnectionRetries, err = parseCount(e.value)
		case "metrics-listen":
			a.MetricsListen, err = parseListen(e.value)
		case "admin-file":
			a.AdminFile, err = parseAdminFile(e.value)
		case "master-timeout":
			if a.MasterTimeout, err = parseTimer(e.value, MinMasterTimeout, "it bounds the handshake and must outlast the master's keepalive-interval"); err == nil && a.MasterTimeout <= 2*DefaultKeepaliveInterval {
				// The HOWTO: a master-timeout close to the master's
				// keepalive-interval makes the agent reconnect needlessly.
				l.warnings.add(e.line, e.key, "%v is close to the master's default keepalive-interval of %v; the agent may time out needlessly", a.MasterTimeout, DefaultKeepaliveInterval)
			}
		case "moduledir":
			if a.ModuleDir, err = nonEmpty(e.value, "directory"); err == nil {
				l.warnings.add(e.line, e.key, "ignored: monitors are built in (%s)", strings.Join(monitor.Names(), ", "))
			}
		case "logfile":
			a.LogFile, err = nonEmpty(e.value, "log file path")
		case "loglevel":
			a.LogLevel, err = logging.ParseLevel(e.value)
		case "secret-file":
			var w string
			a.SecretFile = e.value
			if a.Secret, w, err = readSecret(e.value); w != "" {
				l.warnings.add(e.line, e.key, "%s", w)
			}
		default:
			if slices.Contains(serviceKeys, e.key) || anyMonitorKey(e.key) {
				el.add(e.line, e.key, "key belongs in a [service] block, not before the first one")
			} else {
				el.add(e.line, e.key, "unknown key (agent keys: %s)", strings.Join(agentGlobalKeys, ", "))
			}
			continue
		}
		// Present counts as set even when invalid: "director = ::1" is
		// one mistake, not also a missing director.
		l.set[e.key] = true
		if err != nil {
			el.badValue(e, err)
		}
	}
}

// anyMonitorKey reports whether some built-in monitor accepts key.
func anyMonitorKey(key string) bool {
	for _, n := range monitor.Names() {
		if k, ok := monitor.Lookup(n); ok && specFor(k, key) != nil {
			return true
		}
	}
	return false
}

func specFor(k monitor.Kind, key string) *monitor.KeySpec {
	for i := range k.Keys {
		if k.Keys[i].Name == key {
			return &k.Keys[i]
		}
	}
	return nil
}

// parseService checks one [service] block. ok is false when the block has
// errors (all of them reported).
func parseService(el *errorList, b block) (s Service, ok bool) {
	before := len(el.errs)
	s = Service{Line: b.line, Params: map[string]string{}}
	keys := map[string]entry{}
	for _, e := range b.entries {
		keys[e.key] = e
	}
	required := func(k string) (entry, bool) {
		e, ok := keys[k]
		if !ok && !b.rejected[k] {
			el.add(b.line, k, "required key missing from [service]")
		}
		return e, ok
	}
	var err error

	// The monitor first: it decides which other keys are allowed.
	var kind monitor.Kind
	haveKind := false
	var monitorLine int
	if e, ok := required("monitor"); ok {
		// One kind, or several combined ("cpuload, http").
		if kind, err = monitor.Parse(e.value); err == nil {
			s.Monitor, haveKind, monitorLine = kind.Name, true, e.line
		} else {
			el.add(e.line, e.key, "%v", err)
		}
	}

	for _, e := range b.entries {
		if slices.Contains(serviceKeys, e.key) {
			continue
		}
		switch {
		case haveKind && specFor(kind, e.key) != nil:
			spec := specFor(kind, e.key)
			if err := spec.Check(e.value); err != nil {
				el.badValue(e, err)
			} else {
				s.Params[e.key] = e.value
			}
		case slices.Contains(agentGlobalKeys, e.key):
			el.add(e.line, e.key, "global key inside [service]: put it before the first section")
		case haveKind:
			el.add(e.line, e.key, "key not valid for monitor %s (%s)", kind.Name, acceptedKeys(kind))
		case anyMonitorKey(e.key):
			// The monitor is missing or unknown, already reported; this
			// key is right for some monitor, so blaming it would be noise.
		default:
			el.add(e.line, e.key, "unknown key in [service] (want %s and the monitor's own keys)", strings.Join(serviceKeys, ", "))
		}
	}
	if haveKind {
		for _, spec := range kind.Keys {
			if _, ok := keys[spec.Name]; spec.Required && !ok && !b.rejected[spec.Name] {
				el.add(b.line, spec.Name, "required by monitor %s: %s", kind.Name, spec.Help)
			}
		}
		// How the keys go together (an http response-time under its
		// timeout), once each is valid on its own.
		if len(el.errs) == before {
			if key, err := kind.CheckKeys(s.Params); err != nil {
				line := monitorLine
				if e, ok := keys[key]; ok {
					line = e.line
				}
				el.add(line, key, "%v", err)
			}
		}
	}

	if e, ok := required("name"); ok {
		if s.Name, err = nonEmpty(e.value, "name"); err != nil {
			el.badValue(e, err)
		}
	}
	proto := ""
	if e, ok := required("protocol"); ok {
		if s.Protocol, err = parseProtocol(e.value); err != nil {
			el.badValue(e, err)
		} else {
			proto = necp.ProtocolName(s.Protocol)
		}
	}
	if e, ok := required("port"); ok {
		if s.Port, err = ParsePort(e.value, proto); err != nil {
			el.badValue(e, err)
		}
	}
	if e, ok := required("forwarding"); ok {
		if s.Forwarding, err = parseForwarding(e.value); err != nil {
			el.badValue(e, err)
		}
	}
	// Optional: the realserver address to register, when it is not the
	// address the agent's connection comes from (a multi-homed realserver,
	// or an agent behind NAT). Carried in the START record (§5.1).
	if e, ok := keys["address"]; ok {
		if s.Address, err = parseVIP(e.value); err != nil {
			el.badValue(e, err)
		}
	}
	// Optional: answer HAProxy's agent-check for this service on
	// HOST:PORT. One listener per service, because HAProxy's agent-check
	// names no service: the port HAProxy dials (agent-port) is what says
	// which service it asks about.
	if e, ok := keys["agent-check-listen"]; ok {
		if s.AgentCheckListen, err = parseAgentCheckListen(e.value); err != nil {
			el.badValue(e, err)
		}
	}
	return s, len(el.errs) == before
}

// parseAdminFile reads admin-file: an absolute path, since the agent
// reads it for as long as it runs, whatever its working directory. The
// file (and its directory) may be absent: every service is then ready.
func parseAdminFile(v string) (string, error) {
	if !filepath.IsAbs(v) {
		return "", fmt.Errorf("%q is not an absolute path", v)
	}
	return filepath.Clean(v), nil
}

// parseAgentCheckListen reads agent-check-listen: HOST:PORT or :PORT. The
// port has no default: it must be the one HAProxy's agent-port names.
func parseAgentCheckListen(v string) (string, error) {
	// The port is required (there is no agent-check default), and a bare
	// IPv6 address has colons but no port: ask for one by its syntax.
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return "", fmt.Errorf("%q has no port (want HOST:PORT, [IPv6]:PORT or :PORT, the port of HAProxy's agent-port)", v)
	}
	return services().Listen(v, 0)
}

func acceptedKeys(k monitor.Kind) string {
	if len(k.Keys) == 0 {
		return "it takes no keys"
	}
	n := make([]string, len(k.Keys))
	for i, s := range k.Keys {
		n[i] = s.Name
	}
	return "it takes " + strings.Join(n, ", ")
}

// listenOverlap reports whether a listener on host would clash with the
// one on first (host:port, same port): the same host, or either on every
// address.
func listenOverlap(first, host string) bool {
	h, _, _ := strings.Cut(first, ":")
	wild := func(x string) bool { return x == "" || x == "0.0.0.0" }
	return h == host || wild(h) || wild(host)
}

// duplicateServices reports a second [service] for a protocol and port:
// the master matches agent services to virtual services on exactly that
// pair, so two blocks would be one realserver entry with two monitors.
// Layered files are checked together, so the message names the file.
func duplicateServices(svcs []Service) Errors {
	type key struct {
		proto uint8
		port  uint16
	}
	seen := map[key]Service{}
	listens := map[string]Service{} // agent-check-listen port → first service
	var errs Errors
	for _, s := range svcs {
		if s.AgentCheckListen != "" {
			host, port, _ := strings.Cut(s.AgentCheckListen, ":")
			if first, dup := listens[port]; dup && listenOverlap(first.AgentCheckListen, host) {
				errs = append(errs, &Error{File: s.File, Line: s.Line, Key: "agent-check-listen",
					Msg: fmt.Sprintf("%s is already the agent-check-listen of [service] %s at %s:%d; each service needs a port of its own", s.AgentCheckListen, first.Name, first.File, first.Line)})
			} else if !dup {
				listens[port] = s
			}
		}
		k := key{s.Protocol, s.Port}
		first, dup := seen[k]
		if !dup {
			seen[k] = s
			continue
		}
		where := fmt.Sprintf("line %d", first.Line)
		if first.File != s.File {
			where = fmt.Sprintf("%s:%d", first.File, first.Line)
		}
		errs = append(errs, &Error{File: s.File, Line: s.Line,
			Msg: fmt.Sprintf("[service] %s/%d is already offered by the [service] at %s", necp.ProtocolName(s.Protocol), s.Port, where)})
	}
	return errs
}
