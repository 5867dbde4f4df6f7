package necp

import "io"

// Reader reads frames from a stream, typically a TCP connection.
//
// It is built for a master that runs each connection's keepalive timers in
// the goroutine that reads it, by setting read deadlines. Any error from the
// underlying reader, a timeout in particular, keeps the part of a frame read
// so far, and the next ReadMessage continues that frame. The Reader itself
// does not decide which errors are fatal; the caller does.
//
// The master holds one Reader per agent, thousands at once, so a Reader has
// no read-ahead buffer: only the header and a payload buffer sized to the
// frames it has actually received. The price is up to two Read calls per
// frame, one for the header and one for the payload.
type Reader struct {
	r       io.Reader
	n       int // bytes of the current frame read so far, header included
	hdr     [HeaderLen]byte
	payload []byte
}

// NewReader returns a Reader that reads frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// ReadMessage reads the next frame into m, reusing m's slices (see
// UnmarshalBinary).
//
// It returns io.EOF if the stream ends between frames and
// io.ErrUnexpectedEOF if it ends inside one. A length outside the limits of
// §4 is reported as ErrMalformed as soon as the header is in, without reading
// the payload; the stream can no longer be framed after that, so the same
// error is returned on every later call. A payload that does not agree with
// its count is also ErrMalformed, but the frame has been consumed. m is only
// written when a whole, well-formed frame has been read.
func (r *Reader) ReadMessage(m *Message) error {
	if err := r.fill(r.hdr[:], 0); err != nil {
		return err
	}
	n, err := frameLen(r.hdr[:])
	if err != nil {
		return err // r.n stays at HeaderLen, so this error sticks
	}
	// Sizing again on a resumed call is harmless: same length, and slicing
	// within capacity keeps the bytes already read.
	need := n - HeaderLen
	if cap(r.payload) < need {
		r.payload = make([]byte, need)
	}
	r.payload = r.payload[:need]
	if err := r.fill(r.payload, HeaderLen); err != nil {
		return err
	}

	r.n = 0
	err = m.decode(r.hdr[:], r.payload)
	if cap(r.payload) > maxRetainedPayload {
		r.payload = nil
	}
	return err
}

// fill reads until buf, which holds the frame's bytes from offset off on, is
// full. Progress is recorded in r.n as it happens, which is what lets a call
// that failed be resumed.
func (r *Reader) fill(buf []byte, off int) error {
	for r.n-off < len(buf) {
		k, err := r.r.Read(buf[r.n-off:])
		r.n += k
		if err != nil {
			if r.n-off == len(buf) {
				// The bytes are complete. The error is not lost: a
				// reader at EOF or past its deadline reports it again
				// on the next Read.
				return nil
			}
			if err == io.EOF && r.n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// WriteMessage encodes m and writes it with a single Write call. On a
// net.Conn a single Write is atomic with respect to other writers, so
// goroutines sharing a connection cannot interleave their frames.
func WriteMessage(w io.Writer, m *Message) error {
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
