package master

import (
	"net/netip"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Events flow one way, from the session goroutines (and Reload) to the
// owner goroutine, which alone changes the table. The simulation test
// (sim_test.go) feeds the owner these same events on a virtual clock.

type event interface{ isEvent() }

type joinEvent struct {
	sid  sessionID
	peer netip.AddrPort
	// auth is the shared secret this session proved with AUTH, nil when
	// it proved none. The owner checks it against the configuration in
	// force when the START arrives and at every reload, so a secret added
	// or changed by a reload reaches sessions that started before it.
	auth  []byte
	recs  []necp.ServiceRecord
	reply chan []necp.Status
	// kick closes the session's connection; the owner calls it for a
	// session the current access policy no longer admits. It must be
	// safe to call from the owner goroutine, more than once.
	kick func(reason string)
}
type healthEvent struct {
	sid  sessionID
	recs []necp.HealthRecord
}
type stopEvent struct {
	sid  sessionID
	recs []necp.ServiceRecord
}
type goneEvent struct {
	sid    sessionID
	reason string
}
type reloadEvent struct {
	cfg  *config.Master
	done chan error
}

func (joinEvent) isEvent()   {}
func (healthEvent) isEvent() {}
func (stopEvent) isEvent()   {}
func (goneEvent) isEvent()   {}
func (reloadEvent) isEvent() {}
