package master

import (
	"log/slog"
	"net/netip"
	"time"
)

// refusals rate-limits the log lines about connections refused at accept
// (address not allowed, too many sessions). Every refusal is a WARN an
// operator wants to see, but a scanner or a flood must not turn the
// journal into a copy of itself. The limit is per reason and source
// address, so the line names the host that is refused over and over, not
// whichever host came next: one line per refusalEvery for each, carrying
// how many were refused since the previous line.
type refusals struct {
	last       map[refusalKey]time.Time
	suppressed map[refusalKey]int
}

type refusalKey struct {
	reason string
	addr   netip.Addr
}

const (
	refusalEvery = 10 * time.Second
	// refusalKeys bounds the maps under a scan from many addresses; past
	// it, the oldest quiet keys are forgotten.
	refusalKeys = 4096
)

func (r *refusals) note(log *slog.Logger, obs Observer, peer netip.AddrPort, reason string, now time.Time) {
	obs.Refused(reason) // counted even when the line is not logged
	if r.last == nil {
		r.last, r.suppressed = map[refusalKey]time.Time{}, map[refusalKey]int{}
	}
	k := refusalKey{reason, peer.Addr()}
	if t, ok := r.last[k]; ok && now.Sub(t) < refusalEvery {
		r.suppressed[k]++
		return
	}
	if len(r.last) >= refusalKeys {
		for k2, t := range r.last {
			if now.Sub(t) >= refusalEvery && r.suppressed[k2] == 0 {
				delete(r.last, k2)
				delete(r.suppressed, k2)
			}
		}
		if len(r.last) >= refusalKeys {
			clear(r.last)
			clear(r.suppressed)
		}
	}
	r.last[k] = now
	args := []any{"agent", peer.String(), "reason", reason}
	if n := r.suppressed[k]; n > 0 {
		args = append(args, "also_refused", n)
		r.suppressed[k] = 0
	}
	log.Warn("agent connection refused", args...)
}
