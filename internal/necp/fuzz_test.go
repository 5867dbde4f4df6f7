package necp

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// FuzzUnmarshal checks that no input makes the decoder panic, and that
// whatever it accepts survives a round trip. The seed corpus is in
// testdata/fuzz/FuzzUnmarshal: the §9 vectors and some malformed ones.
func FuzzUnmarshal(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
		}
		// Known types keep their size. An unknown type's payload is not
		// kept, since nothing is known about it.
		wantLen := len(b)
		if !m.Type.known() {
			wantLen = HeaderLen
		}
		if len(enc) != wantLen {
			t.Fatalf("% x re-encoded as % x", b, enc)
		}
		var again Message
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("re-encoding % x gave % x, which does not decode: %v", b, enc, err)
		}
		if want := canonical(&m); !equal(&again, &want) {
			t.Fatalf("round trip of % x: %+v, want %+v", b, again, want)
		}
	})
}

// chunkReader hands out data in pieces of random size, sometimes failing
// with a timeout first or along with the data, never twice in a row without
// progress.
type chunkReader struct {
	data     []byte
	rnd      *rand.Rand
	timedOut bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if !r.timedOut && r.rnd.IntN(4) == 0 {
		r.timedOut = true
		return 0, os.ErrDeadlineExceeded
	}
	r.timedOut = false
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data[:min(len(r.data), 1+r.rnd.IntN(16))])
	r.data = r.data[n:]
	switch {
	case r.rnd.IntN(8) == 0:
		r.timedOut = true
		return n, os.ErrDeadlineExceeded
	case len(r.data) == 0 && r.rnd.IntN(2) == 0:
		return n, io.EOF
	}
	return n, nil
}

// FuzzReader feeds a stream through a Reader in random pieces with timeouts
// in between, and checks that it yields what slicing the same stream into
// frames and decoding each one with UnmarshalBinary yields.
func FuzzReader(f *testing.F) {
	f.Add(goldenStream(f), uint64(1))
	f.Add(append(goldenStream(f), 0x01, 0x05, 0x00), uint64(2))
	f.Add(append(unhex(f, golden[4].hex), unhex(f, "01 05 00 10 00 00 00 01  00 02 00 00  06 4b 00 50")...), uint64(3))
	f.Add(unhex(f, "01 02 00 04 00 00 00 01 01 02"), uint64(4))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		r := NewReader(&chunkReader{data: stream, rnd: rand.New(rand.NewPCG(seed, 0))})
		rest := stream
		var got, want Message
		for calls := 0; ; calls++ {
			if calls > 4*len(stream)+10 {
				t.Fatal("no progress")
			}
			err := r.ReadMessage(&got)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}

			// What the stream says should come next. fatal: the Reader
			// cannot go on after this.
			var wantErr error
			fatal := true
			switch {
			case len(rest) == 0:
				wantErr = io.EOF
			case len(rest) < HeaderLen:
				wantErr = io.ErrUnexpectedEOF
			default:
				n := int(binary.BigEndian.Uint16(rest[2:]))
				switch {
				case n < HeaderLen || n > MaxMessageLen:
					wantErr = ErrMalformed
				case n > len(rest):
					wantErr = io.ErrUnexpectedEOF
				default:
					// A bad payload is consumed whole, so the
					// stream stays in step.
					wantErr = want.UnmarshalBinary(rest[:n])
					rest = rest[n:]
					fatal = false
				}
			}

			switch {
			case wantErr == nil:
				if err != nil || !equal(&got, &want) {
					t.Fatalf("ReadMessage = %+v, %v; want %+v", got, err, want)
				}
			case errors.Is(wantErr, ErrMalformed):
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ReadMessage error %v, want %v", err, wantErr)
				}
			case err != wantErr:
				t.Fatalf("ReadMessage error %v, want %v", err, wantErr)
			}
			if wantErr != nil && fatal {
				return
			}
		}
	})
}
