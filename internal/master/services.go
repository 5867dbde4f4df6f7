package master

import (
	"fmt"
	"strings"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// Virtual services: what the master creates, what it updates, and what it
// leaves alone.
//
// The rule is the one for destinations: the master only changes what it
// created. IPVS keeps no note of who created a service, so the master
// records the services it creates (ServiceStore, beside the state file),
// before it creates them. A configured service that exists and is
// recorded is updated in place to match its block (scheduler, flags,
// persistence: the kernel's SET_SERVICE keeps destinations and
// connections). One that exists and is not recorded was made by someone
// else (ipvsadm, keepalived, an earlier master whose record was lost): it
// is left exactly as it is, and the master says so once, not at every
// start and reload (see svcNotes).

// desiredService is the IPVS service a [virtual-service] block asks for,
// as the kernel will report it back (NormalizeService), FlagHashed apart.
func desiredService(vs *config.VirtualService) (ipvs.Service, error) {
	s := ipvs.Service{ServiceKey: vsKey(vs), Scheduler: vs.Scheduler}
	if vs.PersistenceTimeout > 0 {
		s.Flags |= ipvs.FlagPersistent
		s.Timeout = vs.PersistenceTimeout
		if n := vs.PersistenceNetmask; n > 0 {
			if s.Address.Is4() {
				s.Netmask = ^uint32(0) << (32 - n)
			} else {
				s.Netmask = uint32(n)
			}
		}
	}
	if vs.OnePacket {
		s.Flags |= ipvs.FlagOnePacket
	}
	if vs.SchedulerFlags != "" {
		for _, name := range strings.Split(vs.SchedulerFlags, ",") {
			f, sched, ok := ipvs.SchedFlag(name)
			if !ok || sched != vs.Scheduler {
				// config refuses both; a Master built in code might not.
				return ipvs.Service{}, fmt.Errorf("virtual service %s: scheduler flag %q is not one of scheduler %s", vs.Name, name, vs.Scheduler)
			}
			s.Flags |= f
		}
	}
	return ipvs.NormalizeService(s)
}

// sameSettings says whether the kernel's service have already is what
// want asks for. Timeout and netmask count only under persistence: the
// kernel keeps whatever the creator sent there (ipvsadm sends its own
// defaults) and uses neither without it.
func sameSettings(have, want ipvs.Service) bool {
	hf, wf := have.Flags&^ipvs.FlagHashed, want.Flags&^ipvs.FlagHashed
	if have.Scheduler != want.Scheduler || hf != wf {
		return false
	}
	return wf&ipvs.FlagPersistent == 0 || have.Timeout == want.Timeout && have.Netmask == want.Netmask
}

// svcAction is what the master does about one configured service.
type svcAction int

const (
	svcKeep    svcAction = iota // ours, and as configured
	svcCreate                   // absent: record, then create
	svcUpdate                   // ours, settings differ: update in place
	svcForeign                  // not ours: left alone, said once
)

func (a svcAction) String() string {
	return [...]string{"keep", "create", "update", "foreign"}[a]
}

// svcPlan is the decision for one [virtual-service] block.
type svcPlan struct {
	vs     *config.VirtualService
	want   ipvs.Service
	have   ipvs.Service // valid when the service exists
	action svcAction
	adopt  bool // not recorded, but taken as ours (see planServices)
}

// planServices decides, for every configured virtual service, what to do
// about it, from the kernel's services and the recorded ones. It is pure.
//
// adoptable lists services that may be taken as the master's although not
// recorded, provided the kernel's settings are exactly the configured
// ones: the upgrade from a master that did not record its services (0.6
// and earlier), whose services carry destinations it recorded. Taking one
// changes nothing in the kernel; it only lets later edits of the block
// apply. The caller passes nil once a record exists.
func planServices(vss []config.VirtualService, kernel map[ipvs.ServiceKey]ipvs.Service,
	recorded, adoptable map[ipvs.ServiceKey]bool) ([]svcPlan, error) {
	plans := make([]svcPlan, 0, len(vss))
	for i := range vss {
		vs := &vss[i]
		want, err := desiredService(vs)
		if err != nil {
			return nil, fmt.Errorf("virtual service %s: %w", vs.Name, err)
		}
		p := svcPlan{vs: vs, want: want}
		have, exists := kernel[want.ServiceKey]
		p.have = have
		switch {
		case !exists:
			p.action = svcCreate
		case recorded[want.ServiceKey]:
			p.action = svcKeep
			if !sameSettings(have, want) {
				p.action = svcUpdate
			}
		case adoptable[want.ServiceKey] && sameSettings(have, want):
			p.action, p.adopt = svcKeep, true
		default:
			p.action = svcForeign
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// svcNotes remembers what the master last said about each service it
// leaves alone, so that it is said once per master lifetime, and again
// only when there is something new to say (the block or the kernel's
// service changed): a reload that changes nothing logs nothing.
type svcNotes map[ipvs.ServiceKey]string

// first reports whether note is new for key, and remembers it.
func (n svcNotes) first(key ipvs.ServiceKey, note string) bool {
	if n[key] == note {
		return false
	}
	n[key] = note
	return true
}
