package necptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// ErrNoSecret is returned by Agent.Init when the master challenges and the
// agent has no secret; the INIT_ACK is returned with it, so a test can go
// on regardless (and see the master refuse the START).
var ErrNoSecret = errors.New("necptest: the master asks for the shared secret and the agent has none")

// AgentOptions configure Dial. The zero value dials from the address the
// kernel picks, has no secret, and waits DefaultTimeout.
type AgentOptions struct {
	// Local is the source address. Every address of 127.0.0.0/8 is
	// loopback on Linux, so agents dialling from 127.0.0.x are distinct
	// realservers to a master.
	Local netip.Addr
	// Secret answers the master's challenge in Init; nil means none.
	Secret []byte
	// Timeout bounds the dial and each wait of Init, Start, Stop and
	// Answer, and each write. Zero means DefaultTimeout.
	Timeout time.Duration
	// OnKeepalive, if set, is called for every KEEPALIVE the agent answers
	// or, silent, drops, with its sequence number, before the
	// KEEPALIVE_ACK is built: it may set the health that answer carries,
	// and it may block to hold the answer back (Pause and Close wait for
	// it). While serving it runs on the loop's goroutine.
	OnKeepalive func(seq uint32)
}

// Agent is the agent's end of one NECP connection.
//
// Its methods are for one goroutine at a time, except SetHealth,
// SetSilent, Send, SendRaw, Answered, Keepalives, WaitAnswered and
// WaitClosed, which are safe at any time, also while serving.
type Agent struct {
	conn
	opts AgentOptions
	seq  uint32 // the last sequence number used for a request

	mu       sync.Mutex
	services []necp.ServiceRecord // STARTed, in order: the KEEPALIVE_ACK reports each

	health     atomic.Uint32 // reported for every service
	silent     atomic.Bool
	keepalives atomic.Int64 // KEEPALIVEs handled (answered or dropped)
	answered   atomic.Int64
	changed    notifier // after each answer
}

// Dial connects to a master at addr ("host:port") over TCP. The agent
// reports health 100 until SetHealth says otherwise.
func Dial(addr string, opts AgentOptions) (*Agent, error) {
	d := net.Dialer{Timeout: opts.Timeout}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if opts.Local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: opts.Local.AsSlice()}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewAgent(c, opts), nil
}

// NewAgent plays an agent on c, a connection made some other way than by
// Dial (opts.Local is not used): net.Pipe, say, whose writes block until
// the other end reads.
func NewAgent(c net.Conn, opts AgentOptions) *Agent {
	a := &Agent{conn: newConn(c, opts.Timeout), opts: opts}
	a.health.Store(uint32(necp.HealthMax))
	return a
}

func (a *Agent) nextSeq() uint32 {
	a.seq++
	return a.seq
}

// Init sends INIT and waits for its INIT_ACK, which it returns. If the
// INIT_ACK carries a challenge, Init answers it with AUTH from
// AgentOptions.Secret, or returns ErrNoSecret without one. As with the
// real agent, the master's verdict on the AUTH comes later: it closes the
// connection instead of answering the START.
func (a *Agent) Init() (necp.Message, error) {
	seq := a.nextSeq()
	if err := a.Send(necp.Message{Type: necp.TypeInit, Seq: seq}); err != nil {
		return necp.Message{}, err
	}
	ack, err := a.awaitSeq(necp.TypeInitAck, seq)
	switch {
	case err != nil || ack.Auth.Method == 0:
		return ack, err
	case a.opts.Secret == nil:
		return ack, ErrNoSecret
	case ack.Auth.Method != necp.AuthHMACSHA256:
		return ack, fmt.Errorf("necptest: INIT_ACK asks for authentication method %d", ack.Auth.Method)
	}
	return ack, a.Send(necp.Message{Type: necp.TypeAuth, Seq: a.nextSeq(), Auth: necp.Answer(a.opts.Secret, ack.Auth)})
}

// Start sends START with svcs and returns the statuses of its START_ACK,
// one per service.
// From then on the agent's KEEPALIVE_ACKs report svcs, in this order,
// whatever the statuses say (as the real agent does).
func (a *Agent) Start(svcs ...necp.ServiceRecord) ([]necp.Status, error) {
	seq := a.nextSeq()
	if err := a.Send(necp.Message{Type: necp.TypeStart, Seq: seq, Services: svcs}); err != nil {
		return nil, err
	}
	ack, err := a.awaitSeq(necp.TypeStartAck, seq)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.services = slices.Clone(svcs)
	a.mu.Unlock()
	// One status per entry: a master that predates extended entries
	// (necp-protocol.md §5.5) refuses each IPv6 claim.
	st, _ := necp.EntryStatuses(svcs, ack.Statuses)
	return st, nil
}

// Join is Init and Start, and an error unless every service is accepted.
func (a *Agent) Join(svcs ...necp.ServiceRecord) error {
	if _, err := a.Init(); err != nil {
		return err
	}
	st, err := a.Start(svcs...)
	if err != nil {
		return err
	}
	if len(st) != len(svcs) || slices.ContainsFunc(st, func(s necp.Status) bool { return s != necp.StatusAccepted }) {
		return fmt.Errorf("necptest: START of %d services answered %v, want all accepted", len(svcs), st)
	}
	return nil
}

// Stop sends STOP for svcs (none: every service, §5.1) and waits for its
// STOP_ACK. The stopped services leave the KEEPALIVE_ACKs.
func (a *Agent) Stop(svcs ...necp.ServiceRecord) error {
	seq := a.nextSeq()
	if err := a.Send(necp.Message{Type: necp.TypeStop, Seq: seq, Services: svcs}); err != nil {
		return err
	}
	if _, err := a.awaitSeq(necp.TypeStopAck, seq); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(svcs) == 0 {
		a.services = nil
	}
	a.services = slices.DeleteFunc(a.services, func(s necp.ServiceRecord) bool {
		// §5.1: forwarding is not compared in STOP.
		return slices.ContainsFunc(svcs, func(x necp.ServiceRecord) bool {
			return x.Protocol == s.Protocol && x.Port == s.Port && x.Address == s.Address
		})
	})
	return nil
}

// SetHealth sets the health reported for every service from the next
// answer on.
func (a *Agent) SetHealth(h uint8) { a.health.Store(uint32(h)) }

// SetSilent makes the agent stop answering KEEPALIVEs (true) or answer
// them again (false); while serving, the silent agent still reads and
// drops them, so the connection stays open and drained, as with a hung
// monitor loop. (An agent that is not serving and not read is silent
// anyway.)
func (a *Agent) SetSilent(silent bool) { a.silent.Store(silent) }

// Keepalives returns how many KEEPALIVEs the agent has answered or dropped.
func (a *Agent) Keepalives() int64 { return a.keepalives.Load() }

// Answered returns how many KEEPALIVEs the agent has answered.
func (a *Agent) Answered() int64 { return a.answered.Load() }

// WaitAnswered waits until the agent has answered at least n KEEPALIVEs
// in all.
func (a *Agent) WaitAnswered(n int64, timeout time.Duration) error {
	return a.changed.waitUntil(fmt.Sprintf("KEEPALIVE_ACK number %d", n), func() bool { return a.answered.Load() >= n }, timeout)
}

// Answer reads until the next KEEPALIVE, dropping anything else, and
// answers it with health h for every service; the SetHealth value stays
// as it is. A silent agent drops the KEEPALIVE instead.
func (a *Agent) Answer(h uint8) error {
	m, err := a.Await(necp.TypeKeepalive, a.timeout)
	if err != nil {
		return fmt.Errorf("waiting for KEEPALIVE: %w", err)
	}
	ack := a.newAck()
	return a.keepalive(m.Seq, &ack, func() uint8 { return h }, func(m *necp.Message) error { return a.Send(*m) })
}

// newAck returns a KEEPALIVE_ACK with one record per STARTed service.
func (a *Agent) newAck() necp.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	ack := necp.Message{Type: necp.TypeKeepaliveAck, Health: make([]necp.HealthRecord, len(a.services))}
	for i, s := range a.services {
		ack.Health[i] = necp.HealthRecord{Protocol: s.Protocol, Port: s.Port}
	}
	return ack
}

// keepalive handles the KEEPALIVE seq: the hook, then, unless silent, the
// answer with health() in ack, written by write.
func (a *Agent) keepalive(seq uint32, ack *necp.Message, health func() uint8, write func(*necp.Message) error) error {
	a.keepalives.Add(1)
	if a.opts.OnKeepalive != nil {
		a.opts.OnKeepalive(seq)
	}
	if a.silent.Load() {
		return nil
	}
	h := health()
	for i := range ack.Health {
		ack.Health[i].Health = h
	}
	ack.Seq = seq
	if err := write(ack); err != nil {
		return err
	}
	a.answered.Add(1)
	a.changed.notify()
	return nil
}

// Serve answers every KEEPALIVE with the current health (SetHealth) in a
// goroutine of its own, and drops every other message, until Pause or
// Close, or until the connection fails. The channel receives why it ended
// (nil after Pause; io.EOF when the master closed the connection) and is
// then closed. It receives ErrServing at once if the agent already serves.
func (a *Agent) Serve() <-chan error {
	return a.serve(func() error {
		var m necp.Message
		var buf []byte
		ack := a.newAck()
		health := func() uint8 { return uint8(a.health.Load()) }
		write := func(m *necp.Message) error { return a.sendLoop(m, &buf) }
		for {
			if err := a.rd.ReadMessage(&m); err != nil {
				return err
			}
			if m.Type != necp.TypeKeepalive {
				continue
			}
			if err := a.keepalive(m.Seq, &ack, health, write); err != nil {
				return err
			}
		}
	})
}
