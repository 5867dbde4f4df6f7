package agent

import (
	"math/rand/v2"
	"time"
)

// backoff produces the waits between connection attempts: lo, doubling up
// to hi, back to lo after reset (docs/necp-protocol.md §8: "1 s doubling to
// 30 s, reset after a successful START_ACK").
type backoff struct {
	lo, hi time.Duration
	cur    time.Duration // the next un-jittered wait; 0 = lo
}

// next returns the wait before the next attempt and doubles the one after.
// Each wait is shortened by up to a fifth at random: when a director
// restarts, its thousands of agents lose it at the same instant, and
// identical schedules would bring them all back at the same instant too.
// Shortening rather than lengthening keeps hi a true upper bound.
func (b *backoff) next() time.Duration {
	if b.cur <= 0 {
		b.cur = b.lo
	}
	d := b.cur
	b.cur = min(2*b.cur, b.hi)
	if spread := d / 5; spread > 0 {
		d -= rand.N(spread)
	}
	return d
}

func (b *backoff) reset() { b.cur = 0 }
