package necp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
)

// NewChallenge returns the Auth payload of an INIT_ACK that asks the agent
// to prove the shared secret: a fresh random nonce for each connection, so
// that a MAC seen on the wire is worth nothing on any other connection.
func NewChallenge() Auth {
	a := Auth{Method: AuthHMACSHA256}
	rand.Read(a.Data[:]) // never fails (crypto/rand's contract since Go 1.24)
	return a
}

// Answer returns the AUTH payload proving secret for challenge c.
func Answer(secret []byte, c Auth) Auth {
	return Auth{Method: AuthHMACSHA256, Data: mac(secret, c.Data)}
}

// Verify reports whether answer proves secret for challenge c, in
// constant time.
func Verify(secret []byte, c, answer Auth) bool {
	if c.Method != AuthHMACSHA256 || answer.Method != AuthHMACSHA256 {
		return false
	}
	want := mac(secret, c.Data)
	return hmac.Equal(want[:], answer.Data[:])
}

func mac(secret []byte, nonce [AuthDataLen]byte) (out [AuthDataLen]byte) {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(AuthContext))
	h.Write(nonce[:])
	copy(out[:], h.Sum(nil))
	return out
}
