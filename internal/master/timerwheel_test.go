package master

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// wheelRun plays n seeded random operations on a timerWheel against a plain
// map of deadlines and returns the first broken invariant, with the
// operation's index:
//   - expire fires exactly the sessions in the wheel whose deadline is not
//     after now, each once, and takes each out before firing it;
//   - what is not fired stays in, and can be removed;
//   - next never says later than the end of the earliest deadline's tick
//     (the loop must not oversleep a timer), and says nothing only when
//     the wheel is empty.
func wheelRun(seed uint64, n int) (int, error) {
	r := rand.New(rand.NewPCG(seed, 0))
	now := time.Now()
	w := newTimerWheel(now)
	in := map[*session]bool{}
	var all []*session
	pick := func() *session {
		for s := range in {
			return s
		}
		return nil
	}
	deadline := func() time.Time {
		switch r.IntN(10) {
		case 0: // already past
			return now.Add(-time.Duration(r.IntN(50)) * time.Millisecond)
		case 1: // beyond the wheel's span
			return now.Add(time.Duration(9+r.IntN(20)) * time.Second)
		default: // a keepalive's interval or timeout
			return now.Add(time.Duration(r.Int64N(int64(5 * time.Second))))
		}
	}
	for i := range n {
		switch op := r.IntN(10); {
		case op < 4: // a new session, or one out of the wheel, goes in
			var s *session
			if len(all) > 0 && r.IntN(2) == 0 {
				if c := all[r.IntN(len(all))]; !in[c] {
					s = c
				}
			}
			if s == nil {
				s = &session{hidx: -1}
				all = append(all, s)
			}
			s.due = deadline()
			w.add(s)
			in[s] = true
		case op < 5: // one is taken out (parked, ended)
			if s := pick(); s != nil {
				w.remove(s)
				delete(in, s)
				if s.hidx != -1 {
					return i, fmt.Errorf("removed session has hidx %d", s.hidx)
				}
			}
		case op < 6: // one is moved (a KEEPALIVE_ACK read)
			if s := pick(); s != nil {
				w.remove(s)
				s.due = deadline()
				w.add(s)
			}
		default: // time passes, and the timers run
			if next, ok := w.next(); ok != (len(in) > 0) {
				return i, fmt.Errorf("next says %v with %d sessions in", ok, len(in))
			} else if ok {
				earliest := time.Time{}
				for s := range in {
					if earliest.IsZero() || s.due.Before(earliest) {
						earliest = s.due
					}
				}
				if earliest.Before(now) {
					earliest = now
				}
				if limit := earliest.Add(wheelTick); next.After(limit) {
					return i, fmt.Errorf("next %v after the earliest deadline's tick ends (%v)", next.Sub(now), limit.Sub(now))
				}
			}
			now = now.Add(time.Duration(r.Int64N(int64(3 * time.Second))))
			fired := map[*session]bool{}
			var broken error
			w.expire(now, func(s *session) {
				switch {
				case !in[s]:
					broken = fmt.Errorf("fired a session that is not in")
				case fired[s]:
					broken = fmt.Errorf("fired a session twice")
				case s.due.After(now):
					broken = fmt.Errorf("fired %v early", s.due.Sub(now))
				case s.hidx != -1:
					broken = fmt.Errorf("fired a session still in a bucket")
				}
				fired[s] = true
				delete(in, s)
				if r.IntN(3) > 0 { // most are set again, as a KEEPALIVE sent
					s.due = now.Add(time.Duration(1+r.IntN(4000)) * time.Millisecond)
					w.add(s)
					in[s] = true
				}
			})
			if broken != nil {
				return i, broken
			}
			for s := range in {
				if !fired[s] && !s.due.After(now) {
					return i, fmt.Errorf("a session due %v ago was not fired", now.Sub(s.due))
				}
			}
		}
		if w.n != len(in) {
			return i, fmt.Errorf("wheel holds %d, want %d", w.n, len(in))
		}
		for _, s := range all {
			if (s.hidx >= 0) != in[s] {
				return i, fmt.Errorf("session hidx %d, in the wheel: %v", s.hidx, in[s])
			}
			if in[s] && w.slots[s.htick%wheelSlots][s.hidx] != s {
				return i, fmt.Errorf("session not where its hidx says")
			}
		}
	}
	return n, nil
}

func TestTimerWheelAgainstAModel(t *testing.T) {
	const ops = 3000
	for seed := range uint64(200) {
		at, err := wheelRun(seed, ops)
		if err == nil {
			continue
		}
		// Shrink: the shortest prefix of the same sequence that fails.
		for n := 1; n <= at+1; n++ {
			if _, e := wheelRun(seed, n); e != nil {
				t.Fatalf("seed %d fails after %d operations: %v (reproduce: wheelRun(%d, %d))", seed, n, e, seed, n)
			}
		}
		t.Fatalf("seed %d: %v at operation %d", seed, err, at)
	}
}

// After a long idle spell the wheel runs each bucket once, not each tick.
func TestTimerWheelLongIdle(t *testing.T) {
	now := time.Now()
	w := newTimerWheel(now)
	s := &session{hidx: -1, due: now.Add(time.Hour)}
	w.add(s)
	fired := 0
	w.expire(now.Add(30*time.Minute), func(*session) { fired++ })
	if fired != 0 || w.n != 1 {
		t.Fatalf("fired %d, %d in", fired, w.n)
	}
	w.expire(now.Add(time.Hour+time.Millisecond), func(*session) { fired++ })
	if fired != 1 || w.n != 0 {
		t.Fatalf("fired %d, %d in", fired, w.n)
	}
}
