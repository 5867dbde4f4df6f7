package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/localadmin"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// session is one TCP connection to the master. All reads and writes happen
// on the goroutine that calls connect and serve, so writes never interleave;
// the only other goroutine that touches the connection is the cancellation
// watcher, and it only moves the read deadline.
type session struct {
	a        *Agent
	director string // host:port of this session's master
	conn     net.Conn
	r        *necp.Reader
	log      *slog.Logger
	seq      uint32       // the last sequence number this side used for a request
	in       necp.Message // reused for every received message
	ack      necp.Message // the KEEPALIVE_ACK, built once, refilled per KEEPALIVE
	buf      []byte       // ack's encoding, reused
	release  func()       // stops the cancellation watcher; idempotent

	versionWarned bool
	answered      int // KEEPALIVEs answered: the session really worked
}

// connect dials the master and performs INIT and START. A returned error
// means the attempt failed (it counts against connection-retries) or ctx
// was cancelled.
func (a *Agent) connect(ctx context.Context, director string) (*session, error) {
	conn, err := a.opts.Dial(ctx, director)
	if err != nil {
		return nil, err
	}
	s := &session{
		a:        a,
		director: director,
		conn:     conn,
		r:        necp.NewReader(conn),
		log:      a.log.With("director", director),
		release:  interruptOnCancel(ctx, conn),
	}
	s.ack = necp.Message{Type: necp.TypeKeepaliveAck, Health: make([]necp.HealthRecord, len(a.services))}
	for i, svc := range a.services {
		s.ack.Health[i] = necp.HealthRecord{Protocol: svc.cfg.Protocol, Port: svc.cfg.Port, Health: necp.HealthUnknown}
	}
	if err := s.handshake(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// interruptOnCancel makes a blocked read or write on conn return as soon as
// ctx is cancelled, by moving its deadlines into the past. Writes matter too:
// a master that stops reading leaves a KEEPALIVE_ACK blocked for up to
// master-timeout once the socket buffer is full, and shutdown must not wait
// that long. The returned release function stops this for good: once it
// returns, the watcher will not touch the deadlines again, so the shutdown
// path can set its own (StopTimeout) without the watcher overwriting them a
// moment later.
//
// Whoever sets a deadline on conn checks ctx afterwards: a cancellation
// before the check is seen by the check, one after it moves the deadline
// after ours, so none is lost.
func interruptOnCancel(ctx context.Context, conn net.Conn) (release func()) {
	var mu sync.Mutex
	released := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !released {
			conn.SetDeadline(time.Unix(1, 0))
		}
	})
	return func() {
		stop()
		mu.Lock()
		released = true
		mu.Unlock()
	}
}

func (s *session) close() {
	s.release()
	s.conn.Close()
}

func (s *session) nextSeq() uint32 {
	s.seq++
	return s.seq
}

// handshake sends INIT and START and waits for their ACKs, all within one
// master-timeout: a master that accepts but never answers must not hold the
// agent forever.
func (s *session) handshake(ctx context.Context) error {
	timeout := s.a.masterTimeout
	s.conn.SetDeadline(time.Now().Add(timeout))
	if err := ctx.Err(); err != nil { // after the deadline: see interruptOnCancel
		return err
	}

	seq := s.nextSeq()
	if err := necp.WriteMessage(s.conn, &necp.Message{Type: necp.TypeInit, Seq: seq}); err != nil {
		return fmt.Errorf("sending INIT: %w", err)
	}
	initAck, err := s.await(ctx, necp.TypeInitAck, seq, timeout)
	if err != nil {
		return fmt.Errorf("waiting for INIT_ACK: %w", err)
	}
	if err := s.authenticate(initAck.Auth); err != nil {
		return err
	}

	start := necp.Message{Type: necp.TypeStart, Seq: s.nextSeq(), Services: make([]necp.ServiceRecord, len(s.a.services))}
	for i, svc := range s.a.services {
		// The zero Address asks the master to use this connection's peer
		// address, which is right for every realserver that reaches the
		// director from the address it serves on.
		start.Services[i] = necp.ServiceRecord{Protocol: svc.cfg.Protocol, Forwarding: svc.cfg.Forwarding, Port: svc.cfg.Port, Address: svc.cfg.Address}
	}
	if err := necp.WriteMessage(s.conn, &start); err != nil {
		return fmt.Errorf("sending START: %w", err)
	}
	ack, err := s.await(ctx, necp.TypeStartAck, start.Seq, timeout)
	if err != nil {
		return fmt.Errorf("waiting for START_ACK: %w", err)
	}

	st, unsupported := necp.EntryStatuses(start.Services, ack.Statuses)
	if unsupported {
		// An older master answers each record of an extended entry as a
		// bad forwarding code (necp-protocol.md §5.5): say what that
		// means, once per connection; logStatuses names the services.
		s.log.Error("the master does not support IPv6 address claims (NECP START extension, necp-protocol.md §5.5): " +
			"it refused every service whose address = is IPv6; upgrade feedbackd-master, or remove address = from those services")
	}
	accepted := s.logStatuses(st, len(ack.Statuses) != necp.WireRecords(start.Services))
	local := hostOf(s.conn.LocalAddr())
	s.log.Info("registered with master", "realserver", local, "services", len(s.a.services), "accepted", accepted)
	s.a.state(s.director, true, fmt.Sprintf("connected to director %s as %s; %d of %d services accepted",
		s.director, local, accepted, len(s.a.services)))
	return nil
}

// errNoSecret and errUnknownAuth are failed connection attempts like any
// other (back-off, connection-retries): the operator fixes the
// configuration and the next attempt succeeds.
var (
	errNoSecret    = errors.New("the master requires a shared secret: set secret-file in the agent's configuration")
	errUnknownAuth = errors.New("the master asks for an authentication method this agent does not know")
)

// authenticate answers the challenge of an INIT_ACK with AUTH (§5.4). The
// AUTH is sent right before START without waiting: the master answers a
// wrong one by closing the connection, which the START's wait reports.
func (s *session) authenticate(c necp.Auth) error {
	switch {
	case c.Method == 0:
		if s.a.secret != nil {
			// Not an error: the secret proves the agent to a master that
			// wants proof; it is not a check on the master.
			s.log.Debug("master did not ask for the shared secret")
		}
		return nil
	case c.Method != necp.AuthHMACSHA256:
		return fmt.Errorf("%w (method %d)", errUnknownAuth, c.Method)
	case s.a.secret == nil:
		return errNoSecret
	}
	m := necp.Message{Type: necp.TypeAuth, Seq: s.nextSeq(), Auth: necp.Answer(s.a.secret, c)}
	if err := necp.WriteMessage(s.conn, &m); err != nil {
		return fmt.Errorf("sending AUTH: %w", err)
	}
	return nil
}

// logStatuses reports the master's answer for every service and returns how
// many were accepted. A count that disagrees with the START is the master's
// bug; the services it did answer for are still reported, the others are
// logged as unanswered, and the session carries on, because reconnecting
// would get the same answer.
func (s *session) logStatuses(st []necp.Status, miscounted bool) (accepted int) {
	if miscounted || len(st) != len(s.a.services) {
		s.log.Warn("START_ACK answers a different number of services than were sent",
			"sent", len(s.a.services), "answered", len(st))
	}
	for i, svc := range s.a.services {
		attrs := []any{"director", s.director, "protocol", necp.ProtocolName(svc.cfg.Protocol), "port", svc.cfg.Port}
		if i >= len(st) {
			svc.log.Warn("master did not answer for service", attrs...)
			continue
		}
		switch st[i] {
		case necp.StatusAccepted:
			accepted++
			svc.log.Info("service accepted by master", attrs...)
		case necp.StatusNoMatch:
			svc.log.Warn("master has no virtual service for this service; ignored by the director", attrs...)
		case necp.StatusRefused:
			svc.log.Warn("master refused service", attrs...)
		default:
			svc.log.Warn("master answered with an unknown status", append(attrs, "status", int(st[i]))...)
		}
	}
	return accepted
}

// await reads until the ACK of type want with sequence seq arrives, skipping
// anything else as the protocol's receiving rules say. The caller has set the
// read deadline; timeout is only used in the error message.
func (s *session) await(ctx context.Context, want necp.Type, seq uint32, timeout time.Duration) (*necp.Message, error) {
	for {
		if err := s.r.ReadMessage(&s.in); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if isTimeout(err) {
				return nil, fmt.Errorf("no answer from master within %s", timeout)
			}
			return nil, err
		}
		s.checkVersion()
		if s.in.Type == want && s.in.Seq == seq {
			return &s.in, nil
		}
		s.skip(&s.in)
	}
}

// serve answers KEEPALIVEs until the connection is lost or ctx is cancelled,
// then closes the connection. On cancellation it first sends STOP. It returns
// a short reason for the loss, for OnState.
func (s *session) serve(ctx context.Context) string {
	defer s.close()
	timeout := s.a.masterTimeout
	for {
		// The deadline is renewed before every read, so it runs from the
		// last message received: "no data from the master for
		// master-timeout" (HOWTO), whatever the message was. ctx is
		// checked after it (see interruptOnCancel).
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		if ctx.Err() != nil {
			s.stop()
			return "stopping"
		}
		err := s.r.ReadMessage(&s.in)
		if err != nil {
			if ctx.Err() != nil {
				s.stop()
				return "stopping"
			}
			return s.lost(err)
		}
		s.checkVersion()
		if s.in.Type != necp.TypeKeepalive {
			s.skip(&s.in)
			continue
		}
		if err := s.answer(ctx, s.in.Seq); err != nil {
			if ctx.Err() != nil {
				// Cancelled while writing. If no byte went out, STOP
				// is clean; if part of the ACK did, the master sees a
				// torn frame and drops the connection, which quiesces
				// this realserver just as STOP would.
				s.stop()
				return "stopping"
			}
			s.log.Warn("cannot answer KEEPALIVE, reconnecting", "err", err)
			return "write failed: " + err.Error()
		}
	}
}

// lost logs why the connection ended and returns a short reason.
func (s *session) lost(err error) string {
	switch {
	case isTimeout(err):
		// The HOWTO quotes this exact line; operators grep for it.
		s.log.Warn("Master timed out, attempting reconnection", "master_timeout", s.a.masterTimeout)
		return "master timed out"
	case errors.Is(err, necp.ErrMalformed):
		s.log.Warn("malformed message from master, reconnecting", "err", err)
		return "malformed message"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.log.Warn("master closed the connection, reconnecting")
		return "master closed the connection"
	default:
		s.log.Warn("connection to master failed, reconnecting", "err", err)
		return err.Error()
	}
}

// answer writes the KEEPALIVE_ACK for seq from the samplers' cached values.
// Sampler.Health only reads a cached value, so the reply never waits for a
// measurement.
func (s *session) answer(ctx context.Context, seq uint32) error {
	now := time.Now()
	for i, svc := range s.a.services {
		s.ack.Health[i].Health = svc.sampler.Health(now)
		// Local drain and maint are health 0 on the wire: every master,
		// old ones included, sets weight 0 at once and keeps the
		// realserver, whose open connections go on (necp-protocol.md §6).
		if svc.adminState() != localadmin.Ready {
			s.ack.Health[i].Health = 0
		}
	}
	s.ack.Seq = seq
	// A master that stops reading would otherwise block the write forever
	// once the socket buffer is full.
	s.conn.SetWriteDeadline(now.Add(s.a.masterTimeout))
	if err := ctx.Err(); err != nil { // after the deadline: see interruptOnCancel
		return err
	}
	// Encoded into a buffer kept for the session: the reply path is then
	// allocation-free, and still one Write per frame.
	b, err := s.ack.AppendBinary(s.buf[:0])
	if err != nil {
		return err
	}
	s.buf = b
	if _, err := s.conn.Write(b); err != nil {
		return err
	}
	s.answered++
	// One line per KEEPALIVE per agent: VDEBUG only, and built only when
	// enabled, so that a director with 20 000 agents is not flooded and a
	// quiet agent does not pay for formatting.
	if s.log.Enabled(context.Background(), logging.LevelVDebug) {
		s.log.Log(context.Background(), logging.LevelVDebug, "answered KEEPALIVE", "seq", seq, "health", s.healthSummary())
	}
	if s.a.opts.OnKeepalive != nil {
		s.a.opts.OnKeepalive()
	}
	return nil
}

func (s *session) healthSummary() string {
	var b strings.Builder
	for i, svc := range s.a.services {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(svc.cfg.Name)
		b.WriteByte('=')
		if h := s.ack.Health[i].Health; h == necp.HealthUnknown {
			b.WriteString("unknown")
		} else {
			b.WriteString(strconv.Itoa(int(h)))
		}
	}
	return b.String()
}

// stop sends STOP for all services and waits at most StopTimeout for its
// ACK, so that the master quiesces this realserver at once instead of after
// its keepalive retries run out.
func (s *session) stop() {
	s.release()
	wait := s.a.opts.StopTimeout
	s.conn.SetDeadline(time.Now().Add(wait))
	seq := s.nextSeq()
	// No Services: count 0 means "every service of this agent" (§5.1).
	if err := necp.WriteMessage(s.conn, &necp.Message{Type: necp.TypeStop, Seq: seq}); err != nil {
		s.log.Warn("cannot send STOP to master", "err", err)
		return
	}
	s.log.Info("sent STOP to master, waiting for STOP_ACK", "seq", seq)
	// ctx is already cancelled; a fresh one lets await tell the StopTimeout
	// deadline apart from cancellation.
	if _, err := s.await(context.Background(), necp.TypeStopAck, seq, wait); err != nil {
		s.log.Warn("no STOP_ACK from master, closing anyway", "err", err)
		return
	}
	s.log.Info("master acknowledged STOP")
}

// skip applies the receiving rules of docs/necp-protocol.md §3 to a message
// that is not the one being waited for.
func (s *session) skip(m *necp.Message) {
	switch m.Type {
	case necp.TypeNoop:
		s.log.Debug("NOOP from master skipped", "seq", m.Seq)
	case necp.TypeInitAck, necp.TypeStartAck, necp.TypeStopAck:
		s.log.Debug("ACK matching no outstanding request skipped", "type", m.Type.String(), "seq", m.Seq)
	case necp.TypeKeepalive:
		// Only reached during the handshake or while waiting for STOP_ACK:
		// there is no registered service list to report on.
		s.log.Debug("KEEPALIVE outside an established session skipped", "seq", m.Seq)
	case necp.TypeInit, necp.TypeStart, necp.TypeStop, necp.TypeKeepaliveAck:
		s.log.Warn("master-bound message received in the wrong direction, skipped", "type", m.Type.String(), "seq", m.Seq)
	default:
		s.log.Debug("message of unknown type skipped", "type", m.Type.String(), "seq", m.Seq)
	}
}

// checkVersion warns once per connection about a foreign protocol version;
// the message is still used if it parsed (§4).
func (s *session) checkVersion() {
	if s.in.Version != necp.Version && !s.versionWarned {
		s.versionWarned = true
		s.log.Warn("master speaks a different NECP version; carrying on", "version", s.in.Version, "want", necp.Version)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hostOf returns the IP of a TCP address: the realserver address the master
// will register when START carries address 0.
func hostOf(addr net.Addr) string {
	if addr == nil {
		return "?"
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if h, _, err := net.SplitHostPort(addr.String()); err == nil {
		return h
	}
	return addr.String()
}
