package necptest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// ErrBadAuth is returned by AgentConn.Handshake when the agent's AUTH does
// not prove the master's secret; the connection is closed, as the real
// master closes it.
var ErrBadAuth = errors.New("necptest: the agent's AUTH does not prove the shared secret")

// MasterOptions configure Listen. The zero value asks for no secret and
// waits DefaultTimeout.
type MasterOptions struct {
	// Secret, if set, makes Handshake challenge the agent in INIT_ACK and
	// expect an AUTH that proves it.
	Secret []byte
	// Timeout bounds each wait of Handshake and AckStop, and each write.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// PreExtension makes Handshake answer like a master that predates
	// extended entries (necp-protocol.md §5.5): every record of an
	// extended entry is refused, as an unknown forwarding code is (§5.1).
	PreExtension bool
}

// Master accepts agent connections on a TCP listener and hands them to the
// test. Its methods are safe for concurrent use.
type Master struct {
	ln    net.Listener
	opts  MasterOptions
	conns chan *AgentConn // accepted, not yet taken by Accept

	mu     sync.Mutex
	taken  []*AgentConn // returned by Accept, closed by Close
	closed bool
	quit   chan struct{} // closed by Close: the accept loop must not block
	done   chan struct{} // the accept loop has ended
}

// Listen listens on addr ("host:port"; "" means 127.0.0.1 and a free port)
// and accepts connections in the background until Close.
func Listen(addr string, opts MasterOptions) (*Master, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &Master{ln: ln, opts: opts, conns: make(chan *AgentConn, 64), quit: make(chan struct{}), done: make(chan struct{})}
	go m.acceptLoop()
	return m, nil
}

func (m *Master) acceptLoop() {
	defer close(m.done)
	defer close(m.conns)
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return // Close
		}
		select {
		case m.conns <- NewAgentConn(c, m.opts):
		case <-m.quit:
			c.Close()
			return
		}
	}
}

// Addr returns the address agents dial.
func (m *Master) Addr() string { return m.ln.Addr().String() }

// Accept returns the next agent connection, waiting at most timeout; with
// timeout 0 it returns one only if it is already waiting, which is how a
// test checks that an agent has not opened another connection.
func (m *Master) Accept(timeout time.Duration) (*AgentConn, error) {
	var c *AgentConn
	var ok bool
	select {
	case c, ok = <-m.conns:
	default:
		if timeout <= 0 {
			return nil, fmt.Errorf("necptest: no agent connection waiting: %w", os.ErrDeadlineExceeded)
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case c, ok = <-m.conns:
		case <-t.C:
			return nil, fmt.Errorf("necptest: no agent connected within %v: %w", timeout, os.ErrDeadlineExceeded)
		}
	}
	if !ok {
		return nil, net.ErrClosed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed { // taken from the channel just before Close drained it
		c.Close()
		return nil, net.ErrClosed
	}
	m.taken = append(m.taken, c)
	return c, nil
}

// Close stops listening and closes every connection, accepted or waiting.
func (m *Master) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return net.ErrClosed
	}
	m.closed = true
	m.mu.Unlock()
	close(m.quit)
	err := m.ln.Close()
	<-m.done
	m.mu.Lock()
	taken := m.taken
	m.taken = nil
	m.mu.Unlock()
	for c := range m.conns {
		c.Close()
	}
	for _, c := range taken {
		c.Close()
	}
	return err
}

// AgentConn is the master's end of one agent connection.
//
// Its methods are for one goroutine at a time, except Send, SendRaw,
// State, WaitState and WaitClosed, which are safe at any time, also while
// serving.
type AgentConn struct {
	conn
	secret []byte
	preExt bool

	mu      sync.Mutex
	state   State
	changed notifier
}

// NewAgentConn plays the master on c, a connection made some other way
// than by Listen: net.Pipe, say, whose writes block until the other end
// reads, where loopback TCP would buffer megabytes first.
func NewAgentConn(c net.Conn, opts MasterOptions) *AgentConn {
	return &AgentConn{conn: newConn(c, opts.Timeout), secret: opts.Secret, preExt: opts.PreExtension}
}

// State is what an AgentConn has recorded of its agent.
type State struct {
	// Health is the health list of the latest KEEPALIVE_ACK.
	Health []necp.HealthRecord
	// Acks counts KEEPALIVE_ACKs, Stops the STOPs answered with STOP_ACK.
	Acks, Stops int64
}

// State returns a copy of what the connection has recorded.
func (c *AgentConn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.Health = slices.Clone(s.Health)
	return s
}

// WaitState waits until ok accepts the recorded state, and returns that
// state. Something else must keep the agent talking meanwhile: Serve, or
// another goroutine.
func (c *AgentConn) WaitState(ok func(State) bool, timeout time.Duration) (State, error) {
	var s State
	err := c.changed.waitUntil("the awaited agent state", func() bool { s = c.State(); return ok(s) }, timeout)
	return s, err
}

func (c *AgentConn) record(m *necp.Message) {
	c.mu.Lock()
	switch m.Type {
	case necp.TypeKeepaliveAck:
		c.state.Acks++
		c.state.Health = append(c.state.Health[:0], m.Health...)
	case necp.TypeStop:
		c.state.Stops++
	}
	c.mu.Unlock()
	c.changed.notify()
}

// Handshake plays the master's side of INIT, AUTH (when MasterOptions has
// a secret) and START, and returns the agent's INIT and START. The
// START_ACK carries statuses, one per service entry (the continuation
// records of an extended entry are answered as §5.5 says, or refused
// under MasterOptions.PreExtension); nil means every service accepted.
// Each message must come next, in order.
func (c *AgentConn) Handshake(statuses []necp.Status) (init, start necp.Message, err error) {
	if init, err = c.Expect(necp.TypeInit, c.timeout); err != nil {
		return init, start, err
	}
	ack := necp.Message{Type: necp.TypeInitAck, Seq: init.Seq}
	if c.secret != nil {
		ack.Auth = necp.NewChallenge()
	}
	if err = c.Send(ack); err != nil {
		return init, start, err
	}
	if c.secret != nil {
		auth, err := c.Expect(necp.TypeAuth, c.timeout)
		if err != nil {
			return init, start, err
		}
		if !necp.Verify(c.secret, ack.Auth, auth.Auth) {
			c.Close()
			return init, start, ErrBadAuth
		}
	}
	if start, err = c.Expect(necp.TypeStart, c.timeout); err != nil {
		return init, start, err
	}
	if statuses == nil {
		statuses = make([]necp.Status, len(start.Services)) // StatusAccepted is 0
	}
	wire := slices.Clone(necp.AckStatuses(start.Services, statuses))
	if c.preExt {
		for i, st := range wire {
			if st == necp.StatusContinued {
				wire[i], wire[i-1] = necp.StatusRefused, necp.StatusRefused
			}
		}
	}
	return init, start, c.Send(necp.Message{Type: necp.TypeStartAck, Seq: start.Seq, Statuses: wire})
}

// Keepalive sends KEEPALIVE seq and returns the agent's answer, which must
// be the next message, must echo seq and arrive within timeout. Its health
// is recorded.
func (c *AgentConn) Keepalive(seq uint32, timeout time.Duration) (necp.Message, error) {
	if err := c.Send(necp.Message{Type: necp.TypeKeepalive, Seq: seq}); err != nil {
		return necp.Message{}, err
	}
	ack, err := c.Expect(necp.TypeKeepaliveAck, timeout)
	if err != nil {
		return ack, err
	}
	c.record(&ack)
	if ack.Seq != seq {
		return ack, fmt.Errorf("necptest: KEEPALIVE_ACK seq %d, want %d (the KEEPALIVE's)", ack.Seq, seq)
	}
	return ack, nil
}

// AckStop expects a STOP as the next message, answers it with STOP_ACK
// and returns it.
func (c *AgentConn) AckStop() (necp.Message, error) {
	stop, err := c.Expect(necp.TypeStop, c.timeout)
	if err != nil {
		return stop, err
	}
	c.record(&stop)
	return stop, c.Send(necp.Message{Type: necp.TypeStopAck, Seq: stop.Seq})
}

// Serve plays an established master in goroutines of its own until Pause
// or Close, or until the connection fails: a KEEPALIVE every interval
// (none if interval is 0: then the test sends them), the health of every
// KEEPALIVE_ACK recorded, every STOP answered with STOP_ACK, anything else
// dropped. The channel receives why it ended (nil after Pause; io.EOF
// when the agent closed the connection) and is then closed. It receives
// ErrServing at once if the connection already serves.
func (c *AgentConn) Serve(interval time.Duration) <-chan error {
	return c.serve(func() error {
		quit := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(quit)
		if interval > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(interval)
				defer t.Stop()
				m := necp.Message{Type: necp.TypeKeepalive}
				var buf []byte
				for {
					select {
					case <-quit:
						return
					case <-t.C:
					}
					m.Seq++
					if c.sendLoop(&m, &buf) != nil {
						return // the reader sees the failure too
					}
				}
			}()
		}
		var m necp.Message
		var buf []byte
		for {
			if err := c.rd.ReadMessage(&m); err != nil {
				return err
			}
			switch m.Type {
			case necp.TypeKeepaliveAck:
				c.record(&m)
			case necp.TypeStop:
				c.record(&m)
				if err := c.sendLoop(&necp.Message{Type: necp.TypeStopAck, Seq: m.Seq}, &buf); err != nil {
					return err
				}
			}
		}
	})
}
