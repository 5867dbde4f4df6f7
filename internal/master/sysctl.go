package master

import (
	"io/fs"
	"strings"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
)

// The IPVS sysctls that decide what quiescing and removing a realserver
// mean to the clients. The master does not set them (a kernel setting is
// the operator's to make, and the packaged advice file says what to set:
// feedbackd-master(8), SYSCTLS); it reads them at start-up and on every
// reload and warns once per master lifetime about each one that works
// against what it does.

// SysctlAdviceFile is where the packaged advice is installed.
const SysctlAdviceFile = "/usr/share/doc/lvs-feedbackd-master/examples/ipvs-sysctl.conf"

// sysctlAdvice is one sysctl the master wants otherwise.
type sysctlAdvice struct {
	name string // dotted, as sysctl(8) spells it
	want string
	why  string
}

// ipvsSysctlAdvice decides, from the virtual services configured and the
// values read (read returns false when a sysctl cannot be read: no ip_vs
// module, or no /proc/sys), which sysctls to warn about. It is pure.
func ipvsSysctlAdvice(vss []config.VirtualService, read func(name string) (string, bool)) []sysctlAdvice {
	var out []sysctlAdvice
	if v, ok := read("net.ipv4.vs.expire_nodest_conn"); ok && v == "0" {
		out = append(out, sysctlAdvice{"net.ipv4.vs.expire_nodest_conn", "1",
			"packets of connections to a realserver the master has deleted are dropped until the connection times out (minutes for TCP, 5 minutes for UDP), instead of the connection ending at once"})
	}
	persistent := false
	for i := range vss {
		if vss[i].PersistenceTimeout > 0 {
			persistent = true
		}
	}
	if v, ok := read("net.ipv4.vs.expire_quiescent_template"); persistent && ok && v == "0" {
		out = append(out, sysctlAdvice{"net.ipv4.vs.expire_quiescent_template", "1",
			"a persistent virtual service keeps sending a client's new connections to its realserver after the master quiesced it (weight 0), for as long as the client's persistence template lives"})
	}
	return out
}

// readSysctl reads a sysctl by its dotted name from fsys, the root of
// /proc/sys; false when it cannot.
func readSysctl(fsys fs.FS, name string) (string, bool) {
	data, err := fs.ReadFile(fsys, strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

// checkSysctls warns, once per sysctl per master lifetime, about those
// ipvsSysctlAdvice finds, with the fix.
func (o *owner) checkSysctls() {
	fsys := o.m.opts.Sysctls
	if fsys == nil {
		return
	}
	read := func(name string) (string, bool) { return readSysctl(fsys, name) }
	for _, a := range ipvsSysctlAdvice(o.t.cfg.VirtualServices, read) {
		if o.sysctlNoted[a.name] {
			continue
		}
		o.sysctlNoted[a.name] = true
		o.m.log.Warn("IPVS sysctl works against quiescing",
			"sysctl", a.name, "value", "0", "want", a.want, "why", a.why,
			"fix", "sysctl -w "+a.name+"="+a.want+", and to keep it across reboots: cp "+SysctlAdviceFile+" /etc/sysctl.d/")
	}
}
