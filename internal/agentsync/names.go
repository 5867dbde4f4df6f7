package agentsync

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// Unit names of agent instances: feedbackd-agent@INSTANCE.service, where
// INSTANCE is the file's name escaped as systemd-escape would. The template
// must therefore use %I (the unescaped instance), not %i, to find
// agent.d/%I.conf: for "web-frontend" the unit is
// feedbackd-agent@web\x2dfrontend.service, whose %i is "web\x2dfrontend"
// and whose %I is "web-frontend".
const (
	UnitPrefix  = "feedbackd-agent@"
	UnitSuffix  = ".service"
	UnitPattern = UnitPrefix + "*" + UnitSuffix // for ListUnitsByPatterns

	// ConfSuffix marks the files in agent.d that are agent instances.
	ConfSuffix = ".conf"

	// maxUnitName is systemd's UNIT_NAME_MAX: a longer name is refused by
	// systemd itself, with a less helpful message than ours.
	maxUnitName = 255
)

// validName is what an instance name (the file name without ".conf") may
// look like. It is deliberately narrower than what systemd could escape:
// letters, digits, "_", "." and "-", starting with a letter or digit. That
// keeps unit names readable in systemctl and journalctl ("@" or a space
// would appear as \x40 or \x20) and keeps dot files out.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// UnitFor returns the unit that runs the agent instance name.
func UnitFor(name string) string {
	return UnitPrefix + unit.UnitNameEscape(name) + UnitSuffix
}

// InstanceOf returns the instance name of an agent unit, unescaped, and
// whether unitName is an agent instance at all. It is the inverse of
// UnitFor for every valid name.
func InstanceOf(unitName string) (string, bool) {
	inst, ok := strings.CutPrefix(unitName, UnitPrefix)
	if !ok {
		return "", false
	}
	inst, ok = strings.CutSuffix(inst, UnitSuffix)
	if !ok || inst == "" {
		return "", false
	}
	return unit.UnitNameUnescape(inst), true
}

// classify sorts a directory entry's file name into one of three cases:
//
//   - ignored (skip says why): not meant as an instance at all. Hidden
//     files (.web.conf.swp, .#web.conf) and anything not ending in
//     ".conf": editor backups (web.conf~, #web.conf#), package manager
//     leftovers (web.conf.dpkg-old, .dpkg-dist, .rpmnew, .rpmsave),
//     examples (example.conf.sample) and disabled files (web.conf.off).
//     Renaming a file to one of these is how an operator takes an
//     instance out of service.
//   - refused (err != nil): ends in ".conf", so the operator evidently
//     meant an instance, but the name is not allowed. Refusing says why
//     in the journal instead of silently doing nothing.
//   - an instance: name is the file name without ".conf".
func classify(file string) (name, skip string, err error) {
	if strings.HasPrefix(file, ".") {
		return "", "hidden file", nil
	}
	name, ok := strings.CutSuffix(file, ConfSuffix)
	if !ok {
		return "", "name does not end in " + ConfSuffix, nil
	}
	if !validName.MatchString(name) {
		return name, "", fmt.Errorf("instance name %q not allowed: use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	if u := UnitFor(name); len(u) > maxUnitName {
		return name, "", fmt.Errorf("instance name too long: the unit name would have %d characters, systemd allows %d", len(u), maxUnitName)
	}
	return name, "", nil
}
