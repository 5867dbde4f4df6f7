package master

import "time"

// timerWheel holds the poller's keepalive timers: each registered session
// at its next deadline (session.due), in a bucket per wheelTick.
//
// Why not a heap: nearly every timer that fires is set again one interval
// ahead, the farthest point of the heap, so each one cost a walk down the
// whole heap, a cache miss per level over 20 000 sessions: the largest item
// of the master's own code in a profile at 20 000 agents. A bucket costs
// an append and a swap.
//
// Deadlines beyond the wheel's span go into its last bucket and are put
// back when it comes up; deadlines already past go into the current one.
type timerWheel struct {
	base  time.Time // tick 0; times are measured from it (monotonic)
	cur   int64     // the first tick not yet run to the end
	n     int       // sessions in the wheel
	slots [wheelSlots][]*session
	spare []*session // a bucket's storage, reused while one is run
}

const (
	// wheelTick is how late a timer may run: the loop wakes at the end of
	// a tick and runs every timer due in it together rather than one each
	// (at 20 000 agents and a 2 s interval, 10 000 fall due every second).
	// A KEEPALIVE is sent at most this much late, against a
	// keepalive-timeout of seconds.
	wheelTick  = 2 * time.Millisecond
	wheelSlots = 4096 // 8 s: a keepalive-interval and -timeout of seconds fit
)

func newTimerWheel(now time.Time) *timerWheel {
	return &timerWheel{base: now}
}

func (w *timerWheel) tick(t time.Time) int64 {
	return int64(t.Sub(w.base) / wheelTick)
}

// add puts s in the bucket of s.due; s must not be in the wheel.
func (w *timerWheel) add(s *session) {
	t := max(w.tick(s.due), w.cur)
	t = min(t, w.cur+wheelSlots-1)
	b := &w.slots[t%wheelSlots]
	s.htick, s.hidx = t, len(*b)
	*b = append(*b, s)
	w.n++
}

// remove takes s out; s must be in the wheel (s.hidx >= 0).
func (w *timerWheel) remove(s *session) {
	b := &w.slots[s.htick%wheelSlots]
	last := len(*b) - 1
	if s.hidx != last {
		moved := (*b)[last]
		(*b)[s.hidx], moved.hidx = moved, s.hidx
	}
	(*b)[last] = nil
	*b = (*b)[:last]
	s.hidx = -1
	w.n--
}

// next says when the loop must look at the wheel again: the end of the
// first tick with a session in it (false: none).
func (w *timerWheel) next() (time.Time, bool) {
	if w.n == 0 {
		return time.Time{}, false
	}
	for t := w.cur; t < w.cur+wheelSlots; t++ {
		if len(w.slots[t%wheelSlots]) > 0 {
			return w.base.Add(time.Duration(t+1) * wheelTick), true
		}
	}
	return time.Time{}, false // not reached: n counts what the slots hold
}

// expire calls fire, in tick order, for every session whose deadline is
// not after now, taking it out of the wheel first (fire may add it back,
// or end it). A session still in a run bucket but not due (its deadline
// was beyond the span, or later in the current tick) is put back.
func (w *timerWheel) expire(now time.Time, fire func(*session)) {
	end := w.tick(now)
	if w.n == 0 || end < w.cur {
		w.cur = max(w.cur, end)
		return
	}
	// After a long idle spell every bucket is run once, not every tick.
	first := max(w.cur, end-wheelSlots+1)
	w.cur = end
	for t := first; t <= end; t++ {
		b := &w.slots[t%wheelSlots]
		if len(*b) == 0 {
			continue
		}
		// Run the bucket from the spare's storage: what fire and the
		// put-backs add to this same bucket waits for the next pass.
		run := *b
		*b, w.spare = w.spare[:0], nil
		w.n -= len(run)
		for i, s := range run {
			run[i] = nil
			s.hidx = -1
			if s.due.After(now) {
				w.add(s)
				continue
			}
			fire(s)
		}
		w.spare = run[:0]
	}
}
