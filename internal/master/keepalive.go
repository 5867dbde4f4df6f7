package master

import "time"

// keepalive is the per-connection polling timer of §7 of the protocol
// specification, as plain data so that it is tested without sockets:
//
//   - at most one KEEPALIVE is outstanding;
//   - the next one is due keepalive-interval after the previous one was
//     answered (the first is due at once, right after START_ACK);
//   - an unanswered one is resent with the SAME sequence number after
//     keepalive-timeout, so a late ACK to any transmission satisfies it;
//   - after the original and `retries` resends all went unanswered, i.e.
//     (1 + retries) × timeout, the agent is dead.
type keepalive struct {
	interval, timeout time.Duration
	retries           int

	seq         uint32    // sequence number of the current (or last) KEEPALIVE
	outstanding bool      // a KEEPALIVE awaits its ACK
	sentAt      time.Time // last transmission of the outstanding KEEPALIVE
	sends       int       // transmissions of the outstanding KEEPALIVE
	next        time.Time // when the next KEEPALIVE is due (not outstanding)
}

// kaAction is what the session must do when its timer fires.
type kaAction int

const (
	kaNone kaAction = iota
	kaSend          // send KEEPALIVE with seq (first transmission or resend)
	kaDead          // give up: quiesce and close
)

func newKeepalive(interval, timeout time.Duration, retries int, now time.Time) keepalive {
	return keepalive{interval: interval, timeout: timeout, retries: retries, next: now}
}

// deadline is when onTimer must next be called.
func (k *keepalive) deadline() time.Time {
	if k.outstanding {
		return k.sentAt.Add(k.timeout)
	}
	return k.next
}

// onTimer advances the state at time now and says what to send.
func (k *keepalive) onTimer(now time.Time) (kaAction, uint32) {
	if now.Before(k.deadline()) {
		return kaNone, 0
	}
	if !k.outstanding {
		k.seq++
		k.outstanding = true
		k.sends = 1
		k.sentAt = now
		return kaSend, k.seq
	}
	if k.sends > k.retries {
		return kaDead, k.seq
	}
	k.sends++
	k.sentAt = now
	return kaSend, k.seq
}

// onAck records a KEEPALIVE_ACK; it reports whether seq answered the
// outstanding KEEPALIVE (an unmatched ACK is skipped by the caller).
func (k *keepalive) onAck(seq uint32, now time.Time) bool {
	if !k.outstanding || seq != k.seq {
		return false
	}
	k.outstanding = false
	k.next = now.Add(k.interval)
	return true
}
