package necp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"unsafe"
)

// goldenStream returns every §9 vector back to back, as on one connection.
func goldenStream(t testing.TB) []byte {
	var b []byte
	for _, g := range golden {
		b = append(b, unhex(t, g.hex)...)
	}
	return b
}

// timeoutReader hands out data in pieces of one byte and, before every
// piece, fails once with a timeout, the way a net.Conn with a short read
// deadline behaves on a slow peer. With dataWithTimeout the timeout comes
// together with the byte instead (n = 1, err = timeout), which io.Reader
// also allows.
type timeoutReader struct {
	data            []byte
	timedOut        bool
	dataWithTimeout bool
	timeouts        int
}

func (r *timeoutReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.dataWithTimeout {
		r.timeouts++
		n := copy(p, r.data[:1])
		r.data = r.data[n:]
		return n, os.ErrDeadlineExceeded
	}
	if !r.timedOut {
		r.timedOut = true
		r.timeouts++
		return 0, os.ErrDeadlineExceeded
	}
	r.timedOut = false
	n := copy(p, r.data[:1])
	r.data = r.data[n:]
	return n, nil
}

func TestReaderGoldenStream(t *testing.T) {
	r := NewReader(bytes.NewReader(goldenStream(t)))
	var m Message
	for _, g := range golden {
		if err := r.ReadMessage(&m); err != nil || !equal(&m, &g.msg) {
			t.Fatalf("%s: got %+v, %v", g.name, m, err)
		}
	}
	for range 2 {
		if err := r.ReadMessage(&m); err != io.EOF {
			t.Fatalf("at the end: %v, want io.EOF", err)
		}
	}
}

func TestReaderResumesAfterTimeout(t *testing.T) {
	for _, withData := range []bool{false, true} {
		src := &timeoutReader{data: goldenStream(t), dataWithTimeout: withData}
		r := NewReader(src)
		var m Message
		next := 0
		for calls := 0; ; calls++ {
			if calls > 10000 {
				t.Fatal("no progress")
			}
			err := r.ReadMessage(&m)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("withData=%v: message %d: %v", withData, next, err)
			}
			if next == len(golden) {
				t.Fatalf("withData=%v: extra message %+v", withData, m)
			}
			if g := golden[next]; !equal(&m, &g.msg) {
				t.Fatalf("withData=%v: %s: got %+v", withData, g.name, m)
			}
			next++
		}
		if next != len(golden) {
			t.Fatalf("withData=%v: read %d messages, want %d", withData, next, len(golden))
		}
		if src.timeouts < len(goldenStream(t))/2 {
			t.Fatalf("withData=%v: only %d timeouts; the test is not testing", withData, src.timeouts)
		}
	}
}

// TestReaderTimeoutLeavesMessage checks that a Message is not written
// before its frame is complete, so a caller may keep using the last one.
func TestReaderTimeoutLeavesMessage(t *testing.T) {
	src := &timeoutReader{data: unhex(t, golden[5].hex)} // KEEPALIVE_ACK
	r := NewReader(src)
	m := golden[0].msg
	for {
		err := r.ReadMessage(&m)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		if !equal(&m, &golden[0].msg) {
			t.Fatalf("with %d bytes to come the message became %+v", len(src.data), m)
		}
	}
	if !equal(&m, &golden[5].msg) {
		t.Fatalf("got %+v", m)
	}
}

// failAfter returns data, then fails the test if it is read any further.
type failAfter struct {
	t    *testing.T
	data []byte
}

func (r *failAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Errorf("read past the header")
		return 0, io.ErrNoProgress
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReaderBadLengthBeforePayload(t *testing.T) {
	for _, h := range []string{
		"01 02 00 07 00 00 00 01", // §9: below 8
		"01 05 10 01 00 00 00 01", // §9: above the cap
		"01 05 ff ff 00 00 00 01",
		"01 05 00 00 00 00 00 01",
	} {
		r := NewReader(&failAfter{t: t, data: unhex(t, h)})
		var m Message
		// The stream cannot be framed any more: the error sticks.
		for range 3 {
			if err := r.ReadMessage(&m); !errors.Is(err, ErrMalformed) {
				t.Errorf("% s: %v, want ErrMalformed", h, err)
			}
		}
		if cap(r.buf) > readAhead {
			t.Errorf("% s: grew the buffer to %d bytes for a bad frame", h, cap(r.buf))
		}
	}
}

func TestReaderBadPayloadConsumesFrame(t *testing.T) {
	stream := append(unhex(t, "01 05 00 10 00 00 00 01  00 02 00 00  06 4b 00 50"), unhex(t, golden[4].hex)...)
	r := NewReader(bytes.NewReader(stream))
	var m Message
	if err := r.ReadMessage(&m); !errors.Is(err, ErrMalformed) {
		t.Fatalf("count mismatch: %v, want ErrMalformed", err)
	}
	if err := r.ReadMessage(&m); err != nil || !equal(&m, &golden[4].msg) {
		t.Fatalf("next frame: %+v, %v", m, err)
	}
}

func TestReaderEOF(t *testing.T) {
	frame := unhex(t, golden[5].hex)
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"after one byte", frame[:1], io.ErrUnexpectedEOF},
		{"inside the header", frame[:3], io.ErrUnexpectedEOF},
		{"after the header", frame[:8], io.ErrUnexpectedEOF},
		{"inside the payload", frame[:13], io.ErrUnexpectedEOF},
	} {
		var m Message
		r := NewReader(bytes.NewReader(tt.data))
		if err := r.ReadMessage(&m); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		// Pieces interleaved with timeouts must end the same way.
		r = NewReader(&timeoutReader{data: tt.data})
		var err error
		for err = r.ReadMessage(&m); errors.Is(err, os.ErrDeadlineExceeded); err = r.ReadMessage(&m) {
		}
		if err != tt.want {
			t.Errorf("%s, read in pieces: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// eofWithData returns its data and io.EOF in the same call, as io.Reader
// allows.
type eofWithData struct{ data []byte }

func (r *eofWithData) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func TestReaderDataWithEOF(t *testing.T) {
	for _, g := range []int{0, 5} { // header only, header and payload
		r := NewReader(&eofWithData{data: unhex(t, golden[g].hex)})
		var m Message
		if err := r.ReadMessage(&m); err != nil || !equal(&m, &golden[g].msg) {
			t.Fatalf("%s: %+v, %v", golden[g].name, m, err)
		}
		if err := r.ReadMessage(&m); err != io.EOF {
			t.Fatalf("%s, then: %v, want io.EOF", golden[g].name, err)
		}
	}
}

// The master keeps one Reader per agent; these pin down its footprint.
func TestReaderMemory(t *testing.T) {
	if n := unsafe.Sizeof(Reader{}); n > 64 {
		t.Errorf("Reader is %d bytes, want at most 64", n)
	}

	big := Message{Type: TypeKeepaliveAck, Health: make([]HealthRecord, 1021)}
	bigFrame, err := big.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	stream := append(unhex(t, golden[5].hex), bigFrame...) // 16 bytes, then 4096
	stream = append(stream, unhex(t, golden[5].hex)...)
	r := NewReader(bytes.NewReader(stream))
	var m Message

	if err := r.ReadMessage(&m); err != nil {
		t.Fatal(err)
	}
	if cap(r.buf) != readAhead {
		t.Errorf("after a 16-byte frame the buffer holds %d bytes, want %d", cap(r.buf), readAhead)
	}
	if err := r.ReadMessage(&m); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadMessage(&m); err != nil || !equal(&m, &golden[5].msg) {
		t.Fatalf("after a big frame: %+v, %v", m, err)
	}
	if cap(r.buf) > maxRetainedPayload {
		t.Errorf("after a %d-byte frame, once empty, the Reader keeps %d bytes", len(bigFrame), cap(r.buf))
	}
}

// countReader counts its Read calls.
type countReader struct {
	data  []byte
	reads int
}

func (r *countReader) Read(p []byte) (int, error) {
	r.reads++
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// One Read brings in a whole small frame, or several: the master's cost at
// many agents is mostly system calls.
func TestReaderOneReadPerFrame(t *testing.T) {
	frame := unhex(t, golden[5].hex)
	cr := &countReader{data: frame}
	r := NewReader(cr)
	var m Message
	if err := r.ReadMessage(&m); err != nil || cr.reads != 1 {
		t.Fatalf("one %d-byte frame: %v after %d reads, want 1", len(frame), err, cr.reads)
	}
	cr = &countReader{data: bytes.Repeat(frame, 4)}
	r = NewReader(cr)
	for range 4 {
		if err := r.ReadMessage(&m); err != nil {
			t.Fatal(err)
		}
	}
	if cr.reads != 1 {
		t.Errorf("four frames in one segment: %d reads, want 1", cr.reads)
	}
	// Fill and Next: frames are decoded without another Read.
	cr = &countReader{data: bytes.Repeat(frame, 3)}
	r = NewReader(cr)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if ok, err := r.Next(&m); !ok || err != nil || !equal(&m, &golden[5].msg) {
			t.Fatalf("Next %d: %v, %v", i, ok, err)
		}
	}
	if ok, err := r.Next(&m); ok || err != nil || cr.reads != 1 {
		t.Fatalf("Next on an empty buffer: %v, %v, %d reads", ok, err, cr.reads)
	}
}

// loopReader returns frame over and over, without allocating.
type loopReader struct {
	frame []byte
	off   int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.frame[r.off:])
	r.off = (r.off + n) % len(r.frame)
	return n, nil
}

func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters distort allocation counts")
	}
	r := NewReader(&loopReader{frame: unhex(t, golden[10].hex)})
	var m Message
	if n := testing.AllocsPerRun(100, func() {
		if err := r.ReadMessage(&m); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadMessage: %v allocations per message", n)
	}

	buf := make([]byte, 0, 64)
	for _, g := range golden {
		if n := testing.AllocsPerRun(100, func() {
			var err error
			if buf, err = g.msg.AppendBinary(buf[:0]); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("AppendBinary %s: %v allocations", g.name, n)
		}
	}
}
