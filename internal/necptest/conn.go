package necptest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// DefaultTimeout bounds each wait of the handshake methods, Stop, Answer
// and Keepalive when the options give no Timeout: generous, because a
// loaded CI machine is slow, and a working peer answers in microseconds.
const DefaultTimeout = 5 * time.Second

// ErrServing is returned by a reading method while a Serve loop reads the
// connection: Pause it first.
var ErrServing = errors.New("necptest: the connection is serving; Pause it before reading")

// conn is one NECP connection, either end. The test's goroutine reads it
// step by step, or a loop started by serve reads it in the background,
// never both (ErrServing). Writes from both are serialised by wmu.
type conn struct {
	c       net.Conn
	rd      *necp.Reader
	timeout time.Duration

	wmu  sync.Mutex
	wbuf []byte // encoding buffer, reused under wmu

	mu   sync.Mutex
	loop *loop // the running loop, nil when none
}

// loop is one background reader, from serve to Pause or the connection's end.
type loop struct {
	done     chan struct{}
	err      error // why it ended; valid once done is closed
	stopping atomic.Bool
}

func newConn(c net.Conn, timeout time.Duration) conn {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return conn{c: c, rd: necp.NewReader(c), timeout: timeout}
}

// Conn returns the underlying connection, for what this package does not
// cover (socket options, addresses). Reading from it directly bypasses the
// frame reader and desynchronises it.
func (c *conn) Conn() net.Conn { return c.c }

// Send writes m as one frame within the connection's timeout. It is safe
// to call at any time, also while serving.
func (c *conn) Send(m necp.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := m.AppendBinary(c.wbuf[:0])
	if err != nil {
		return err
	}
	c.wbuf = b
	return c.writeLocked(b, true)
}

// SendRaw writes b as it is, in one Write, within the connection's
// timeout: for frames that break the rules on purpose, or a frame's bytes
// a few at a time. It is safe to call at any time.
func (c *conn) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b, true)
}

// writeLocked writes b; wmu is held. A loop's writes pass deadline false:
// they need none, because Pause and Close interrupt them, and setting one
// per KEEPALIVE would cost the scale benchmark's thousands of agents for
// nothing.
func (c *conn) writeLocked(b []byte, deadline bool) error {
	if deadline {
		c.c.SetWriteDeadline(time.Now().Add(c.timeout))
		defer c.c.SetWriteDeadline(time.Time{})
	}
	_, err := c.c.Write(b)
	return err
}

// sendLoop encodes m into buf and writes it without a deadline; for loops,
// whose buffers are their own, so that a busy loop does not allocate.
func (c *conn) sendLoop(m *necp.Message, buf *[]byte) error {
	b, err := m.AppendBinary((*buf)[:0])
	if err != nil {
		return err
	}
	*buf = b
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b, false)
}

// Recv returns the next message, whatever its type, waiting at most
// timeout. A timeout loses nothing: a frame half received is completed by
// the next read.
func (c *conn) Recv(timeout time.Duration) (necp.Message, error) {
	var m necp.Message
	if err := c.checkIdle(); err != nil {
		return m, err
	}
	c.c.SetReadDeadline(time.Now().Add(timeout))
	err := c.rd.ReadMessage(&m)
	return m, err
}

// Expect returns the next message, and an error if it is not of type t.
func (c *conn) Expect(t necp.Type, timeout time.Duration) (necp.Message, error) {
	m, err := c.Recv(timeout)
	if err == nil && m.Type != t {
		err = fmt.Errorf("necptest: got %v seq %d, want %v", m.Type, m.Seq, t)
	}
	return m, err
}

// Await reads until a message of type t arrives, dropping any other, all
// within timeout.
func (c *conn) Await(t necp.Type, timeout time.Duration) (necp.Message, error) {
	return c.await(func(m *necp.Message) bool { return m.Type == t }, timeout)
}

// awaitSeq is Await for the answer to a request: type t and sequence seq.
func (c *conn) awaitSeq(t necp.Type, seq uint32) (necp.Message, error) {
	m, err := c.await(func(m *necp.Message) bool { return m.Type == t && m.Seq == seq }, c.timeout)
	if err != nil {
		err = fmt.Errorf("waiting for %v seq %d: %w", t, seq, err)
	}
	return m, err
}

func (c *conn) await(ok func(*necp.Message) bool, timeout time.Duration) (necp.Message, error) {
	var m necp.Message
	if err := c.checkIdle(); err != nil {
		return m, err
	}
	c.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		if err := c.rd.ReadMessage(&m); err != nil {
			return necp.Message{}, err
		}
		if ok(&m) {
			return m, nil
		}
	}
}

// WaitClosed waits at most timeout for the peer to close the connection,
// dropping whatever it sends first; it works while serving too. It returns
// nil for a close (end of stream or reset), the timeout, or whatever else
// ended the connection: a malformed frame, or Close on this side.
func (c *conn) WaitClosed(timeout time.Duration) error {
	c.mu.Lock()
	l := c.loop
	c.mu.Unlock()
	var err error
	if l != nil {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-l.done:
			err = l.err
		case <-t.C:
			return fmt.Errorf("necptest: connection still open after %v: %w", timeout, os.ErrDeadlineExceeded)
		}
	} else {
		c.c.SetReadDeadline(time.Now().Add(timeout))
		var m necp.Message
		for err == nil {
			err = c.rd.ReadMessage(&m)
		}
	}
	if PeerClosed(err) {
		return nil
	}
	if err == nil {
		err = errors.New("the loop was paused") // cannot happen unless Pause raced this call
	}
	return fmt.Errorf("necptest: connection not closed by the peer: %w", err)
}

// PeerClosed reports whether err, from a read, means that the peer closed
// the connection: the stream ended, between frames or inside one, or was
// reset.
func PeerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func (c *conn) checkIdle() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loop != nil {
		return ErrServing
	}
	return nil
}

// serve runs body in a goroutine of its own until it returns. The channel
// receives the error it ended with, nil if Pause ended it, and is closed.
func (c *conn) serve(body func() error) <-chan error {
	out := make(chan error, 1)
	c.mu.Lock()
	if c.loop != nil {
		c.mu.Unlock()
		out <- ErrServing
		close(out)
		return out
	}
	l := &loop{done: make(chan struct{})}
	c.loop = l
	c.mu.Unlock()
	c.c.SetReadDeadline(time.Time{}) // a step-by-step read's deadline must not end the loop
	go func() {
		err := body()
		if l.stopping.Load() {
			err = nil // the error is Pause's doing
		}
		l.err = err
		close(l.done)
		out <- err
		close(out)
	}()
	return out
}

// Pause stops the Serve loop, if one runs, and returns once it has: a
// blocked read or write is interrupted by moving the deadlines into the
// past. It returns the error the loop had already ended with, if any
// (io.EOF when the peer closed), otherwise nil. A Send running at the same
// moment may fail with a timeout. Pause waits for a loop's hook (such as
// AgentOptions.OnKeepalive) to return.
func (c *conn) Pause() error {
	c.mu.Lock()
	l := c.loop
	c.mu.Unlock()
	if l == nil {
		return nil
	}
	l.stopping.Store(true)
	c.c.SetDeadline(time.Unix(1, 0))
	<-l.done
	c.c.SetDeadline(time.Time{})
	c.mu.Lock()
	c.loop = nil
	c.mu.Unlock()
	return l.err
}

// Close closes the connection, and waits for a Serve loop to notice (and
// for its hook to return, if it is in one).
func (c *conn) Close() error {
	err := c.c.Close()
	c.mu.Lock()
	l := c.loop
	c.mu.Unlock()
	if l != nil {
		<-l.done
	}
	return err
}

// notifier wakes the goroutines waiting for a change. It allocates only
// when someone waits, so that loops that change state on every message
// stay cheap when nobody watches.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// waitUntil calls cond now and after every notify until it holds, for at
// most timeout.
func (n *notifier) waitUntil(what string, cond func() bool, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		ch := n.wait() // before cond: a change after cond closes ch
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("necptest: %s not within %v: %w", what, timeout, os.ErrDeadlineExceeded)
		}
	}
}
