package master

import (
	"log/slog"
	"net/netip"
	"time"
)

// refusals rate-limits the log lines about connections refused at accept
// (address not allowed, too many sessions). Every refusal is a WARN an
// operator wants to see, but a scanner or a flood must not turn the
// journal into a copy of itself: per reason, one line per refusalEvery,
// carrying how many were refused since the previous line.
type refusals struct {
	last       map[string]time.Time
	suppressed map[string]int
}

const refusalEvery = 10 * time.Second

func (r *refusals) note(log *slog.Logger, peer netip.AddrPort, reason string, now time.Time) {
	if r.last == nil {
		r.last, r.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := r.last[reason]; ok && now.Sub(t) < refusalEvery {
		r.suppressed[reason]++
		return
	}
	r.last[reason] = now
	args := []any{"agent", peer.String(), "reason", reason}
	if n := r.suppressed[reason]; n > 0 {
		args = append(args, "also_refused", n)
		r.suppressed[reason] = 0
	}
	log.Warn("agent connection refused", args...)
}
