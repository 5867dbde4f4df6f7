package master

import (
	"testing"
	"time"
)

func TestWeight(t *testing.T) {
	for _, tc := range []struct {
		health uint8
		max    int
		want   int
		ok     bool
	}{
		{0, 100, 0, true},
		{1, 100, 1, true},
		{75, 100, 75, true},
		{100, 100, 100, true},
		{150, 100, 100, true}, // 101..254 clamp to 100
		{254, 100, 100, true},
		{255, 100, 0, false}, // unknown: leave the weight alone
		{50, 10, 5, true},
		{55, 10, 6, true}, // round half up: 5.5 → 6
		{54, 10, 5, true},
		{1, 10, 0, true}, // 0.1 rounds to 0
		{100, 65535, 65535, true},
		{33, 3, 1, true},
		{50, 0, 0, true},
	} {
		got, ok := Weight(tc.health, tc.max)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Weight(%d, %d) = %d, %v; want %d, %v", tc.health, tc.max, got, ok, tc.want, tc.ok)
		}
	}
}

// The weight depends only on the latest report: replaying any history of
// reports and then one value gives the same weight as that value alone.
func TestWeightHasNoMemory(t *testing.T) {
	for last := 0; last <= 100; last++ {
		want, _ := Weight(uint8(last), 100)
		w := 0
		for _, h := range []uint8{255, 0, 100, 255, 37, 255} {
			if v, ok := Weight(h, 100); ok {
				w = v
			}
		}
		if v, ok := Weight(uint8(last), 100); ok {
			w = v
		}
		if w != want {
			t.Fatalf("after history, weight for %d = %d, want %d", last, w, want)
		}
	}
}

func TestKeepaliveSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	k := newKeepalive(2*time.Second, 10*time.Second, 3, t0)

	// The first KEEPALIVE is due at once.
	if d := k.deadline(); !d.Equal(t0) {
		t.Fatalf("first deadline %v, want %v", d, t0)
	}
	act, seq := k.onTimer(t0)
	if act != kaSend || seq != 1 {
		t.Fatalf("first timer: %v seq %d", act, seq)
	}
	// Early wake-ups do nothing.
	if act, _ := k.onTimer(at(5)); act != kaNone {
		t.Fatalf("early timer acted: %v", act)
	}
	// A wrong ACK is not accepted; the right one is.
	if k.onAck(7, at(0.1)) {
		t.Fatal("unmatched ack accepted")
	}
	if !k.onAck(1, at(0.1)) {
		t.Fatal("matching ack refused")
	}
	if k.onAck(1, at(0.2)) {
		t.Fatal("duplicate ack accepted")
	}
	// Next one interval after the answer.
	if d := k.deadline(); !d.Equal(at(2.1)) {
		t.Fatalf("deadline after ack %v, want %v", d, at(2.1))
	}
	act, seq = k.onTimer(at(2.1))
	if act != kaSend || seq != 2 {
		t.Fatalf("second keepalive: %v seq %d", act, seq)
	}
	// Unanswered: resent with the same seq every timeout, retries times.
	now := at(2.1)
	for i := 1; i <= 3; i++ {
		now = now.Add(10 * time.Second)
		if !k.deadline().Equal(now) {
			t.Fatalf("resend %d deadline %v, want %v", i, k.deadline(), now)
		}
		act, seq = k.onTimer(now)
		if act != kaSend || seq != 2 {
			t.Fatalf("resend %d: %v seq %d", i, act, seq)
		}
	}
	// (1 + retries) × timeout after the first transmission: dead.
	now = now.Add(10 * time.Second)
	if want := at(2.1).Add(40 * time.Second); !now.Equal(want) {
		t.Fatalf("test arithmetic: %v vs %v", now, want)
	}
	if act, _ := k.onTimer(now); act != kaDead {
		t.Fatalf("after all retries: %v, want dead", act)
	}
}

func TestKeepaliveLateAckToResend(t *testing.T) {
	t0 := time.Unix(0, 0)
	k := newKeepalive(time.Second, time.Second, 1, t0)
	k.onTimer(t0)                  // send seq 1
	k.onTimer(t0.Add(time.Second)) // resend seq 1
	if !k.onAck(1, t0.Add(1500*time.Millisecond)) {
		t.Fatal("late ack to a resend must satisfy the keepalive")
	}
	if act, seq := k.onTimer(t0.Add(2500 * time.Millisecond)); act != kaSend || seq != 2 {
		t.Fatalf("after late ack: %v %d", act, seq)
	}
}

func TestKeepaliveZeroRetries(t *testing.T) {
	t0 := time.Unix(0, 0)
	k := newKeepalive(time.Second, time.Second, 0, t0)
	k.onTimer(t0)
	if act, _ := k.onTimer(t0.Add(time.Second)); act != kaDead {
		t.Fatalf("retries=0: first timeout must be fatal, got %v", act)
	}
}
