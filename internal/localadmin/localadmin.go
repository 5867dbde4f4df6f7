// Package localadmin reads the agent's admin file: the operator's way to
// drain a service, or the whole realserver, or put it in maintenance, from
// the realserver itself (feedbackd-agent.conf(5), admin-file).
//
// The file is plain text, one setting per line:
//
//	# SERVICE  STATE        (STATE: ready, drain or maint)
//	web        drain
//	*          maint        (every service of every agent reading the file)
//
// It is state, not a command: what the file says holds until the file
// changes, so it survives agent restarts and reboots, and several agent
// instances may share one file. This package is the pure part: parsing,
// and which state a service is in.
package localadmin

import (
	"fmt"
	"strings"
)

// State is a service's administrative state. The order matters: a larger
// state is the more restrictive one.
type State int

const (
	Ready State = iota // in service: the health is reported as measured
	Drain              // no new connections; open ones go on
	Maint              // out of service
)

func (s State) String() string {
	switch s {
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return "ready"
}

// All is the service name that stands for every service.
const All = "*"

// File is a parsed admin file: the state each named service, and All, is
// set to. A service the file does not name is Ready.
type File map[string]State

// Parse reads an admin file. name is for messages only. A line that does
// not parse makes the whole file an error naming file:line, so that a
// typo never half-applies: the caller keeps the state it had.
func Parse(name string, data []byte) (File, error) {
	f := File{}
	for i, line := range strings.Split(string(data), "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		w := strings.Fields(line)
		if len(w) == 0 {
			continue
		}
		if len(w) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"SERVICE STATE\" (STATE ready, drain or maint), got %q", name, i+1, strings.TrimSpace(line))
		}
		var st State
		switch strings.ToLower(w[1]) {
		case "ready":
			st = Ready
		case "drain":
			st = Drain
		case "maint":
			st = Maint
		default:
			return nil, fmt.Errorf("%s:%d: %s: unknown state %q (want ready, drain or maint)", name, i+1, w[0], w[1])
		}
		if prev, dup := f[w[0]]; dup && prev != st {
			return nil, fmt.Errorf("%s:%d: %s is set twice, to %s and to %s", name, i+1, w[0], prev, st)
		}
		f[w[0]] = st
	}
	return f, nil
}

// Of is the state of service: the more restrictive of its own line and
// the line for All. An operator who put the whole realserver in
// maintenance does not get one service back by an old "web ready" line.
func (f File) Of(service string) State {
	return max(f[service], f[All])
}
