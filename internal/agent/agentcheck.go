package agent

import (
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agentcheck"
	"github.com/lvs-feedbackd/feedbackd/internal/localadmin"
)

// AgentCheck returns what HAProxy's agent-check is answered from for the
// service named name (agent-check-listen), or nil if there is no such
// service. It reads the same cached sample as the KEEPALIVE_ACKs, with the
// same staleness rule, so HAProxy and every director see one health; it
// never waits for a monitor.
func (a *Agent) AgentCheck(name string) func() agentcheck.State {
	for _, s := range a.services {
		if s.cfg.Name != name {
			continue
		}
		return func() agentcheck.State {
			h, why := s.sampler.Reading(time.Now())
			if why != "" {
				why = "health unknown: " + why
			}
			st := agentcheck.State{Health: h, Admin: agentcheck.Ready, Reason: why}
			switch s.adminState() {
			case localadmin.Drain:
				st.Admin, st.Reason = agentcheck.Drain, "drained by the admin file on the realserver"
			case localadmin.Maint:
				st.Admin, st.Reason = agentcheck.Maint, "maintenance set by the admin file on the realserver"
			}
			return st
		}
	}
	return nil
}
