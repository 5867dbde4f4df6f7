package necp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// The §5.4 example: secret "0123456789abcdef0123456789abcdef", nonce the
// bytes 0x00..0x1f. The MAC is pinned so that a change of AuthContext or
// of the construction cannot go unnoticed: agents and masters of different
// versions must agree on it.
func TestAuthVector(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	var c Auth
	c.Method = AuthHMACSHA256
	for i := range c.Data {
		c.Data[i] = byte(i)
	}
	a := Answer(secret, c)
	const authVector = "99bd0133a870ea0423dc5d190818b5bcfcea222c415b58bc9ec4a47345f047f3" // also computed with Python's hmac module
	got := hex.EncodeToString(a.Data[:])
	if got != authVector {
		t.Fatalf("MAC %s, want %s", got, authVector)
	}

	if !Verify(secret, c, a) {
		t.Fatal("Verify refuses its own answer")
	}
	bad := a
	bad.Data[31] ^= 1
	if Verify(secret, c, bad) || Verify([]byte("another secret, 32 bytes long!!"), c, a) {
		t.Fatal("Verify accepts a wrong MAC or a wrong secret")
	}
	if Verify(secret, Auth{}, a) || Verify(secret, c, Auth{Data: a.Data}) {
		t.Fatal("Verify accepts a missing method")
	}
	// Frames: INIT_ACK with the challenge, then AUTH with the answer.
	initAck, err := (&Message{Type: TypeInitAck, Seq: 1, Auth: c}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	wantHead := []byte{1, 3, 0, 44, 0, 0, 0, 1, 0, 1, 0, 0}
	if !bytes.Equal(initAck[:12], wantHead) || !bytes.Equal(initAck[12:], c.Data[:]) {
		t.Fatalf("INIT_ACK frame % x", initAck)
	}
	var m Message
	if err := m.UnmarshalBinary(initAck); err != nil || m.Auth != c {
		t.Fatalf("INIT_ACK round trip: %v %+v", err, m.Auth)
	}
	auth, err := (&Message{Type: TypeAuth, Seq: 2, Auth: a}).MarshalBinary()
	if err != nil || len(auth) != 44 || auth[1] != 64 {
		t.Fatalf("AUTH frame % x, %v", auth, err)
	}
	if err := m.UnmarshalBinary(auth); err != nil || m.Auth != a || m.Type != TypeAuth {
		t.Fatalf("AUTH round trip: %v %+v", err, m)
	}
	// A plain INIT_ACK still decodes, with no challenge.
	if err := m.UnmarshalBinary([]byte{1, 3, 0, 8, 0, 0, 0, 1}); err != nil || m.Auth.Method != 0 {
		t.Fatalf("plain INIT_ACK: %v %+v", err, m.Auth)
	}
}

func TestAuthMalformed(t *testing.T) {
	for name, frame := range map[string][]byte{
		"AUTH without payload":      {1, 64, 0, 8, 0, 0, 0, 1},
		"INIT_ACK with 4 bytes":     {1, 3, 0, 12, 0, 0, 0, 1, 0, 1, 0, 0},
		"AUTH with method 0":        append([]byte{1, 64, 0, 44, 0, 0, 0, 1, 0, 0, 0, 0}, make([]byte, 32)...),
		"INIT_ACK with method 0":    append([]byte{1, 3, 0, 44, 0, 0, 0, 1, 0, 0, 0, 0}, make([]byte, 32)...),
		"AUTH with a short MAC":     append([]byte{1, 64, 0, 40, 0, 0, 0, 1, 0, 1, 0, 0}, make([]byte, 28)...),
		"INIT_ACK with extra bytes": append([]byte{1, 3, 0, 48, 0, 0, 0, 1, 0, 1, 0, 0}, make([]byte, 36)...),
	} {
		var m Message
		if err := m.UnmarshalBinary(frame); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (&Message{Type: TypeAuth}).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("encoding AUTH without a method: %v", err)
	}
	// Two challenges are never equal.
	if a, b := NewChallenge(), NewChallenge(); a == b {
		t.Error("two challenges with the same nonce")
	}
}
