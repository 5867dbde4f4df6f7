package master

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// desiredService turns every block option into the kernel's settings.
func TestDesiredService(t *testing.T) {
	base := config.VirtualService{Name: "web", Address: vip1, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100}
	with := func(f func(*config.VirtualService)) config.VirtualService { vs := base; f(&vs); return vs }
	tests := []struct {
		name string
		vs   config.VirtualService
		want ipvs.Service
	}{
		{"plain", base, ipvs.Service{ServiceKey: svc(vip1, necp.ProtoTCP, 80), Scheduler: "wrr", Netmask: 0xffffffff}},
		{"persistent /24", with(func(v *config.VirtualService) { v.PersistenceTimeout, v.PersistenceNetmask = 600, 24 }),
			ipvs.Service{ServiceKey: svc(vip1, necp.ProtoTCP, 80), Scheduler: "wrr", Flags: ipvs.FlagPersistent, Timeout: 600, Netmask: 0xffffff00}},
		{"persistent default mask", with(func(v *config.VirtualService) { v.PersistenceTimeout = 300 }),
			ipvs.Service{ServiceKey: svc(vip1, necp.ProtoTCP, 80), Scheduler: "wrr", Flags: ipvs.FlagPersistent, Timeout: 300, Netmask: 0xffffffff}},
		{"fwmark sh flags", with(func(v *config.VirtualService) {
			v.Address, v.Port, v.FWMark, v.AgentPort, v.Scheduler, v.SchedulerFlags = netipZero, 0, 7, 80, "sh", "sh-port,sh-fallback"
		}), ipvs.Service{ServiceKey: ipvs.FWMarkKey(7, netipZero), Scheduler: "sh", Flags: ipvs.FlagSched1 | ipvs.FlagSched2, Netmask: 0xffffffff}},
		{"mh flags", with(func(v *config.VirtualService) { v.Scheduler, v.SchedulerFlags = "mh", "mh-port" }),
			ipvs.Service{ServiceKey: svc(vip1, necp.ProtoTCP, 80), Scheduler: "mh", Flags: ipvs.FlagSched2, Netmask: 0xffffffff}},
		{"one-packet", with(func(v *config.VirtualService) { v.Protocol, v.Port, v.OnePacket = necp.ProtoUDP, 53, true }),
			ipvs.Service{ServiceKey: svc(vip1, necp.ProtoUDP, 53), Scheduler: "wrr", Flags: ipvs.FlagOnePacket, Netmask: 0xffffffff}},
	}
	for _, tt := range tests {
		got, err := desiredService(&tt.vs)
		if err != nil || got != tt.want {
			t.Errorf("%s: desiredService = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	// Every scheduler flag the configuration accepts has a kernel flag.
	for _, name := range []string{"sh-fallback", "sh-port", "mh-fallback", "mh-port"} {
		vs := with(func(v *config.VirtualService) { v.Scheduler, v.SchedulerFlags = name[:2], name })
		if s, err := desiredService(&vs); err != nil || s.Flags == 0 {
			t.Errorf("scheduler flag %s: %+v, %v", name, s, err)
		}
		m, err := config.ParseMaster("m.conf", []byte("[virtual-service]\nname = x\naddress = 192.0.2.1\nprotocol = tcp\nport = 80\nscheduler = "+name[:2]+"\nscheduler-flags = "+name+"\n"))
		if err != nil || m.VirtualServices[0].SchedulerFlags != name {
			t.Errorf("config does not accept %s: %v", name, err)
		}
	}
	bad := with(func(v *config.VirtualService) { v.SchedulerFlags = "sh-port" }) // wrr
	if _, err := desiredService(&bad); err == nil {
		t.Error("sh-port with wrr accepted")
	}
}

var netipZero netip.Addr

// planServices: create what is absent, update what is ours, leave the
// rest, and adopt only on the upgrade path with equal settings.
func TestPlanServices(t *testing.T) {
	vss := []config.VirtualService{
		{Name: "a", Address: vip1, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", PersistenceTimeout: 600},
	}
	want, _ := desiredService(&vss[0])
	key := want.ServiceKey
	other := want
	other.Flags, other.Timeout = ipvs.FlagHashed, 0 // not persistent
	same := want
	same.Flags |= ipvs.FlagHashed // as the kernel reports it
	tests := []struct {
		name      string
		kernel    map[ipvs.ServiceKey]ipvs.Service
		recorded  map[ipvs.ServiceKey]bool
		adoptable map[ipvs.ServiceKey]bool
		action    svcAction
		adopt     bool
	}{
		{"absent", nil, nil, nil, svcCreate, false},
		{"absent though recorded", nil, map[ipvs.ServiceKey]bool{key: true}, nil, svcCreate, false},
		{"ours, as configured", map[ipvs.ServiceKey]ipvs.Service{key: same}, map[ipvs.ServiceKey]bool{key: true}, nil, svcKeep, false},
		{"ours, changed", map[ipvs.ServiceKey]ipvs.Service{key: other}, map[ipvs.ServiceKey]bool{key: true}, nil, svcUpdate, false},
		{"foreign, same", map[ipvs.ServiceKey]ipvs.Service{key: same}, nil, nil, svcForeign, false},
		{"foreign, other", map[ipvs.ServiceKey]ipvs.Service{key: other}, nil, nil, svcForeign, false},
		{"upgrade, same", map[ipvs.ServiceKey]ipvs.Service{key: same}, nil, map[ipvs.ServiceKey]bool{key: true}, svcKeep, true},
		{"upgrade, other", map[ipvs.ServiceKey]ipvs.Service{key: other}, nil, map[ipvs.ServiceKey]bool{key: true}, svcForeign, false},
	}
	for _, tt := range tests {
		plans, err := planServices(vss, tt.kernel, tt.recorded, tt.adoptable)
		if err != nil || len(plans) != 1 {
			t.Fatalf("%s: %v, %v", tt.name, plans, err)
		}
		if p := plans[0]; p.action != tt.action || p.adopt != tt.adopt || p.want != want {
			t.Errorf("%s: action %v adopt %v, want %v %v", tt.name, p.action, p.adopt, tt.action, tt.adopt)
		}
	}
}

// Timeout and netmask of a service that is not persistent mean nothing
// and must not make it look different (ipvsadm sends its own defaults).
func TestSameSettingsIgnoresUnusedTimeout(t *testing.T) {
	a := ipvs.Service{Scheduler: "wrr", Flags: ipvs.FlagHashed, Timeout: 0, Netmask: 0xffffffff}
	b := ipvs.Service{Scheduler: "wrr", Timeout: 300, Netmask: 0}
	if !sameSettings(a, b) {
		t.Error("non-persistent services with other unused timeout/netmask differ")
	}
	a.Flags |= ipvs.FlagPersistent
	b.Flags |= ipvs.FlagPersistent
	if sameSettings(a, b) {
		t.Error("persistent services with other timeouts are the same")
	}
}

// ipvsSysctlAdvice, read through a fake /proc/sys.
func TestIPVSSysctlAdvice(t *testing.T) {
	persistent := []config.VirtualService{{Name: "a", PersistenceTimeout: 60}}
	plain := []config.VirtualService{{Name: "a"}}
	root := func(nodest, quiescent string) fstest.MapFS {
		fs := fstest.MapFS{}
		if nodest != "" {
			fs["net/ipv4/vs/expire_nodest_conn"] = &fstest.MapFile{Data: []byte(nodest + "\n")}
		}
		if quiescent != "" {
			fs["net/ipv4/vs/expire_quiescent_template"] = &fstest.MapFile{Data: []byte(quiescent + "\n")}
		}
		return fs
	}
	tests := []struct {
		name string
		vss  []config.VirtualService
		fs   fstest.MapFS
		want []string
	}{
		{"defaults, persistent", persistent, root("0", "0"), []string{"net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template"}},
		{"defaults, not persistent", plain, root("0", "0"), []string{"net.ipv4.vs.expire_nodest_conn"}},
		{"fixed", persistent, root("1", "1"), nil},
		{"no ip_vs loaded", persistent, root("", ""), nil},
		{"only quiescent wrong", persistent, root("1", "0"), []string{"net.ipv4.vs.expire_quiescent_template"}},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range ipvsSysctlAdvice(tt.vss, func(n string) (string, bool) { return readSysctl(tt.fs, n) }) {
			got = append(got, a.name)
			if a.want != "1" || a.why == "" {
				t.Errorf("%s: advice %+v", tt.name, a)
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: advice %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The packaged advice file sets every sysctl the master can warn about to
// the value the warning asks for, and is installed where the warning says.
func TestSysctlAdviceFileShipped(t *testing.T) {
	data, err := os.ReadFile("../../packaging/examples/ipvs-sysctl.conf")
	if err != nil {
		t.Fatal(err)
	}
	all := []config.VirtualService{{PersistenceTimeout: 1}}
	for _, a := range ipvsSysctlAdvice(all, func(string) (string, bool) { return "0", true }) {
		if !strings.Contains(string(data), "\n"+a.name+" = "+a.want+"\n") {
			t.Errorf("packaging/examples/ipvs-sysctl.conf does not set %s = %s", a.name, a.want)
		}
	}
	nfpm, err := os.ReadFile("../../nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(nfpm), "dst: "+SysctlAdviceFile+"\n") {
		t.Errorf("nfpm.yaml does not install the advice at %s", SysctlAdviceFile)
	}
}
