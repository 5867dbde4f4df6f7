package necp

import "io"

// Reader reads frames from a stream, typically a TCP connection.
//
// It reads ahead into a small buffer, so that one Read usually brings in a
// whole frame, header and payload, or several: the master polls thousands of
// agents, and every Read is a system call (with only the header in hand, a
// frame took two Reads, and the next header a third that found nothing).
//
// Any error from the underlying reader, a timeout in particular, keeps the
// bytes read so far, and the next call continues from there. The Reader
// itself does not decide which errors are fatal; the caller does.
//
// Two ways to use it: ReadMessage, which reads until a whole frame is in; or
// Fill, one Read, followed by Next until it reports no whole frame, for a
// caller that learns from elsewhere (epoll) when the stream has data and must
// not issue a Read that would only find none.
//
// The master holds one Reader per agent, thousands at once, so the buffer
// starts at readAhead bytes, grows only to the frame being read, and a buffer
// grown past maxRetainedPayload is dropped once it is empty.
type Reader struct {
	r        io.Reader
	buf      []byte // buf[off:end] holds bytes read and not yet decoded
	off, end int
}

// readAhead is the buffer a Reader starts with: a KEEPALIVE_ACK with up to
// 28 health records, or a KEEPALIVE and the start of the next frame.
const readAhead = 128

// NewReader returns a Reader that reads frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// SetSource makes the Reader read from r from now on, keeping what it has
// buffered: a connection whose descriptor moves to another reader of the
// same stream keeps its place in it.
func (r *Reader) SetSource(src io.Reader) { r.r = src }

// Buffered is the number of bytes read but not yet decoded.
func (r *Reader) Buffered() int { return r.end - r.off }

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
	for {
		if ok, err := r.Next(m); ok || err != nil {
			return err
		}
		if err := r.Fill(); err != nil {
			// The bytes that came with the error may complete the
			// frame. The error is not lost: a reader at EOF or past its
			// deadline reports it again on the next Read.
			if ok, err := r.Next(m); ok || err != nil {
				return err
			}
			return r.EOF(err)
		}
	}
}

// EOF turns io.EOF from Fill into io.ErrUnexpectedEOF when part of a frame
// is buffered, once Next has taken every whole frame; other errors pass.
func (r *Reader) EOF(err error) error {
	if err == io.EOF && r.Buffered() > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next decodes the frame at the head of the buffer into m without reading:
// false and no error when no whole frame is buffered. The errors are
// ReadMessage's.
func (r *Reader) Next(m *Message) (bool, error) {
	b := r.buf[r.off:r.end]
	if len(b) < HeaderLen {
		return false, nil
	}
	n, err := frameLen(b[:HeaderLen])
	if err != nil {
		return false, err // nothing is consumed, so this error sticks
	}
	if len(b) < n {
		return false, nil
	}
	r.off += n
	err = m.decode(b[:HeaderLen], b[HeaderLen:n])
	if r.off == r.end {
		r.off, r.end = 0, 0
		if cap(r.buf) > maxRetainedPayload {
			r.buf = nil
		}
	}
	return true, err
}

// Fill makes room for the frame at the head of the buffer and calls Read
// once; it returns Read's error. Its bytes are kept even with an error.
func (r *Reader) Fill() error {
	b, err := r.Space()
	if err != nil {
		return err
	}
	k, err := r.r.Read(b)
	r.end += k
	return err
}

// Space makes room for the frame at the head of the buffer and returns the
// free part, for a caller that reads into it by other means (io_uring:
// the kernel writes there later); Commit then says how much arrived. In
// between, the buffer must not be touched: no Next, Fill or Space.
func (r *Reader) Space() ([]byte, error) {
	need := HeaderLen
	if b := r.buf[r.off:r.end]; len(b) >= HeaderLen {
		n, err := frameLen(b[:HeaderLen])
		if err != nil {
			return nil, err
		}
		need = n
	}
	switch {
	case cap(r.buf) < need:
		buf := make([]byte, max(need, readAhead))
		r.end = copy(buf, r.buf[r.off:r.end])
		r.buf, r.off = buf, 0
	case r.off > 0 && cap(r.buf)-r.off < need:
		r.end = copy(r.buf[:cap(r.buf)], r.buf[r.off:r.end])
		r.off = 0
	}
	r.buf = r.buf[:cap(r.buf)]
	return r.buf[r.end:], nil
}

// Commit adds the n bytes that arrived in what Space returned.
func (r *Reader) Commit(n int) { r.end += n }

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
