package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// session is one agent connection. Until its first START_ACK its own
// goroutine is the only reader and the only writer of the connection, and
// runs the handshake deadline through read deadlines; then, on Linux, the
// poller takes it over (poller_linux.go): one goroutine reads and times
// every active session, so an idle session costs no goroutine stack and no
// runtime timer. The protocol is the same code either way (handle,
// onTimer); only the I/O differs.
type session struct {
	m    *Master
	id   sessionID
	conn net.Conn
	peer netip.AddrPort
	rd   *necp.Reader
	msg  necp.Message // last message read
	out  necp.Message // message being written
	wbuf []byte

	handshake time.Time // deadline for INIT, AUTH and START
	// challenge is the nonce sent in INIT_ACK when the master requires
	// the shared secret; the AUTH that follows must answer it.
	challenge necp.Auth

	state  int // sWaitInit, sWaitStart, sActive
	ka     keepalive
	joined bool
	// authed is the secret this session proved with AUTH (nil: none). The
	// owner compares it with the secret in force at START and at every
	// reload, so a secret added or changed by a reload reaches sessions
	// that are already connected.
	authed []byte
	// kicked is set, with the reason, when the owner closes the session
	// because the access policy no longer admits it.
	kicked atomic.Pointer[string]
	// starts bounds how often the agent may START: each START can turn
	// into IPVS writes (a changed forwarding method is one per
	// destination), and one session must not set the kernel's write rate.
	starts bucket
	// strays counts messages only a master sends, or AUTH nobody asked
	// for: a few are a confused agent, many are a peer writing the log.
	strays int
	// lastHealth is the last health list forwarded to the owner. An
	// unchanged report is not forwarded: in steady state a KEEPALIVE then
	// costs a write and a read here and nothing in the owner (the table
	// keeps each session's latest health itself).
	lastHealth []necp.HealthRecord
	sentHealth bool

	// Under the poller (all but kmu used by its goroutine only).
	kmu    sync.Mutex // guards fd, pollr, pstate and conn against kick
	pollr  *poller    // nil while on its own goroutine
	pstate int        // pNone, pQueued, pRegistered, pEnded
	fd     int        // the socket, once the poller has it; -1 before
	hidx   int        // position in its timer wheel bucket; -1: not in the wheel
	htick  int64      // the wheel tick of that bucket
	due    time.Time  // when the poller must next look at it
	pend   []byte     // output the socket could not take yet
	wdue   time.Time  // pend must be gone by then
	// With io_uring (poll_uring_linux.go): the session's slot, whether a
	// receive and a send are in the kernel, and the bytes that send reads.
	slot             int32
	recving, sending bool
	flight           []byte
	// parked: waiting for the owner (an event it could not take yet, or
	// the answer to a START); nothing is read or timed meanwhile.
	parked bool
	// unpark is set, before a post, by whoever ends the wait.
	unpark     atomic.Bool
	startWait  bool          // parked for the answer to START startSeq
	startSeq   uint32        //
	startReply []necp.Status // the answer, set before unpark
}

// logAt logs one line about this agent, within the per-address budget
// (peerLogs): every line here is one a peer can cause. The logger with the
// agent's address is built on demand: a per-session slog.Logger would cost
// a handler clone for each of 20 000 sessions, and sessions rarely log.
func (s *session) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.m.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := s.m.peerLogs.allow(s.peer.Addr(), time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_lines", suppressed)
	}
	s.m.log.With("agent", s.peer.String()).Log(ctx, level, msg, args...)
}

func (s *session) warn(msg string, args ...any) { s.logAt(slog.LevelWarn, msg, args...) }

// refuse logs a refusal at WARN with its REASON= and counts it.
func (s *session) refuse(msg, reason string, args ...any) {
	s.m.obs.Refused(reason)
	s.logAt(slog.LevelWarn, msg, append(args, "reason", reason)...)
}
func (s *session) info(msg string, args ...any)  { s.logAt(slog.LevelInfo, msg, args...) }
func (s *session) debug(msg string, args ...any) { s.logAt(slog.LevelDebug, msg, args...) }

// kick closes the connection for the owner; the read that fails next ends
// the session with this reason (under the poller: the poller ends it).
func (s *session) kick(reason string) {
	s.kicked.CompareAndSwap(nil, &reason)
	s.kmu.Lock()
	p, c := s.pollr, s.conn
	s.kmu.Unlock()
	if (p == nil || !p.post(s)) && c != nil {
		c.Close()
	}
}

// closeConn closes the connection, unless the poller has taken it over
// (and dropped conn: it closes the descriptor itself).
func (s *session) closeConn() {
	s.kmu.Lock()
	c := s.conn
	s.kmu.Unlock()
	if c != nil {
		c.Close()
	}
}

const (
	// startBurst STARTs at once, then one per startEvery: an agent sends
	// one START per connection, so only a misbehaving one meets the limit.
	startBurst = 8
	startEvery = time.Second
	// maxStrays: stray messages tolerated before the connection is closed.
	maxStrays = 8
)

const (
	sWaitInit  = iota
	sWaitAuth  // INIT answered with a challenge; AUTH must come before START
	sWaitStart // INIT answered (and AUTH verified, if required)
	sActive
)

// peerOf returns the agent's address as seen on the connection, with an
// IPv4 agent on a dual-stack socket shown as plain IPv4.
func peerOf(c net.Conn) netip.AddrPort {
	var peer netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		peer = ap
	}
	return netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
}

func (m *Master) newSession(c net.Conn, peer netip.AddrPort) *session {
	return &session{
		m:    m,
		id:   sessionID(m.nextID.Add(1)),
		conn: c,
		peer: peer,
		rd:   necp.NewReader(c),
		fd:   -1,
		hidx: -1,
	}
}

// send queues an event for the owner, giving up when the master stops.
//
// Under the poller it never blocks (one goroutine serves every session):
// an event the owner cannot take now waits in the poller's outbox, and the
// session is parked meanwhile, its reads and timers suspended, exactly as
// its goroutine would be blocked here.
func (s *session) send(ctx context.Context, ev event) bool {
	if s.pollr != nil {
		s.pollr.send(s, ev)
		return true
	}
	select {
	case s.m.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// run serves the session until it ends, or until the poller takes it over
// (true): then the poller ends it.
func (s *session) run(ctx context.Context) (adopted bool) {
	s.begin(ctx)
	reason := s.loop(ctx)
	if reason == "" {
		return true
	}
	s.end(ctx, reason)
	return false
}

func (s *session) begin(ctx context.Context) {
	// Before START the only timer is the handshake deadline, counted from
	// the accept and not per read: an agent that says nothing, or one byte
	// a minute, is dropped after handshake-timeout all the same.
	s.handshake = time.Now().Add(s.m.cfg.Load().HandshakeTimeout)
	if s.m.log.Enabled(ctx, slog.LevelDebug) {
		s.debug("agent connected")
	}
}

func (s *session) end(ctx context.Context, reason string) {
	s.closeConn()
	if s.joined {
		s.send(ctx, goneEvent{sid: s.id, reason: reason})
	}
}

// loop reads and acts until the session ends, and says why it ended; ""
// when the poller has taken the session over.
//
// run and loop are kept small on purpose: their frames are what every idle
// session holds on its stack while parked in the read, below the net and
// runtime frames. A goroutine starts with a 2 KB stack and keeps it as long
// as its deepest call stays under about 1.1 KB; past that it doubles to
// 4 KB for good (20 000 sessions: 40 MB more). The work is done in handle
// and onReadError, which return before the next read.
func (s *session) loop(ctx context.Context) string {
	for {
		deadline := s.handshake
		if s.state == sActive {
			deadline = s.ka.deadline()
		}
		if err := s.conn.SetReadDeadline(deadline); err != nil {
			return "connection error: " + err.Error()
		}
		if err := s.rd.ReadMessage(&s.msg); err != nil {
			if reason := s.onReadError(ctx, err); reason != "" {
				return reason
			}
			continue
		}
		if !s.handle(ctx, time.Now()) {
			return "protocol error"
		}
		if s.state == sActive && s.m.poll != nil && s.m.poll.adopt(s) {
			return ""
		}
	}
}

// onReadError handles a read that returned err: a deadline runs the
// keepalive timer; anything else ends the session with a reason.
func (s *session) onReadError(ctx context.Context, err error) (reason string) {
	if r := s.kicked.Load(); r != nil {
		return "closed by the master: " + *r // the owner has logged it
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case errors.Is(err, io.EOF) && s.state == sWaitAuth:
			// What an agent without the secret does on seeing the
			// challenge: worth a WARN here too, since the agent's own log
			// is on another machine.
			s.refuse("agent refused: it closed the connection instead of proving the shared secret (secret-file)", "not authenticated")
			return "not authenticated"
		case errors.Is(err, io.EOF):
			s.info("agent closed the connection")
			return "agent closed the connection"
		case errors.Is(err, necp.ErrMalformed):
			s.refuse("malformed message from agent; closing its connection", "protocol error", "err", err)
			return "protocol error"
		case ctx.Err() != nil:
			return "master stopping"
		}
		s.info("connection lost", "err", err)
		return "connection lost"
	}
	if s.state != sActive {
		s.refuse("agent did not complete the handshake in time; closing", "handshake timed out", "timeout", s.m.cfg.Load().HandshakeTimeout)
		return "handshake timed out"
	}
	return s.onTimer(time.Now())
}

// onTimer runs the keepalive timer at now: sends or resends a KEEPALIVE,
// or gives up on the agent (a reason).
func (s *session) onTimer(now time.Time) (reason string) {
	switch act, seq := s.ka.onTimer(now); act {
	case kaSend:
		if s.ka.sends > 1 {
			s.m.obs.KeepaliveMissed()
			s.info("keepalive unanswered; resending", "seq", seq, "attempt", s.ka.sends)
		}
		if !s.write(necp.TypeKeepalive, seq, nil) {
			return "write failed"
		}
	case kaDead:
		s.m.obs.KeepaliveMissed()
		s.warn("agent declared dead: keepalives unanswered",
			"timeout", s.ka.timeout, "retries", s.ka.retries)
		return "keepalives unanswered"
	}
	return ""
}

// handle acts on one message; false closes the connection. Each message
// type has its own method below; this only dispatches.
func (s *session) handle(ctx context.Context, now time.Time) bool {
	m := &s.msg
	if m.Version != necp.Version {
		s.debug("agent speaks another protocol version; parsing anyway", "version", m.Version)
	}
	if s.m.log.Enabled(ctx, logging.LevelVDebug) {
		// Guarded: the arguments would be boxed on every message even
		// when the level is off, and this runs 10 000 times a second.
		s.logAt(logging.LevelVDebug, "received", "type", m.Type.String(), "seq", m.Seq)
	}
	switch m.Type {
	case necp.TypeInit:
		return s.onInit(m)
	case necp.TypeAuth:
		return s.onAuth(m)
	case necp.TypeStart:
		return s.onStart(ctx, m, now)
	case necp.TypeKeepaliveAck:
		return s.onKeepaliveAck(ctx, m, now)
	case necp.TypeStop:
		return s.onStop(ctx, m)
	case necp.TypeNoop:
		return true
	case necp.TypeInitAck, necp.TypeKeepalive, necp.TypeStartAck, necp.TypeStopAck:
		s.warn("agent sent a master's message; skipped", "type", m.Type.String())
		return s.stray()
	default:
		// Skipped for forward compatibility (necp-protocol.md §4); the
		// line is DEBUG and within the peer's log budget.
		s.debug("unknown message type; skipped", "type", m.Type.String())
		return true
	}
}

func (s *session) onInit(m *necp.Message) bool {
	if s.state != sWaitInit {
		s.refuse("INIT in the middle of a session; closing", "protocol error")
		return false
	}
	if secret := s.m.cfg.Load().Secret; secret != nil {
		s.challenge = necp.NewChallenge()
		s.state = sWaitAuth
		return s.writeAuth(necp.TypeInitAck, m.Seq, s.challenge)
	}
	s.state = sWaitStart
	return s.write(necp.TypeInitAck, m.Seq, nil)
}

func (s *session) onAuth(m *necp.Message) bool {
	if s.state != sWaitAuth {
		s.debug("AUTH not asked for; skipped")
		return s.stray()
	}
	secret := s.m.cfg.Load().Secret
	if !necp.Verify(secret, s.challenge, m.Auth) {
		s.refuse("agent refused: it does not know the shared secret (secret-file)", "authentication failed")
		return false
	}
	s.debug("agent authenticated")
	s.authed = secret
	s.state = sWaitStart
	return true
}

// onStart hands the services to the owner and answers with what it
// decided; the owner answers only once the destinations are recorded and
// in IPVS.
func (s *session) onStart(ctx context.Context, m *necp.Message, now time.Time) bool {
	switch s.state {
	case sWaitInit:
		s.refuse("START before INIT; closing", "protocol error")
		return false
	case sWaitAuth:
		s.refuse("agent refused: START without AUTH, and this master requires the shared secret (secret-file)", "not authenticated")
		return false
	}
	if !s.starts.take(now, startBurst, startEvery) {
		s.refuse("agent closed: it sends START faster than a working agent does", "START flood",
			"limit_per_second", float64(time.Second)/float64(startEvery))
		return false
	}
	reply := make(chan []necp.Status, 1)
	recs := append([]necp.ServiceRecord(nil), m.Services...)
	ev := joinEvent{sid: s.id, peer: s.peer, auth: s.authed, recs: recs, reply: reply, kick: s.kick}
	if s.pollr != nil {
		// The poller parks the session until the owner answers, then
		// calls started.
		s.pollr.start(ctx, s, ev, reply, m.Seq)
		return true
	}
	if !s.send(ctx, ev) {
		return false
	}
	var st []necp.Status
	select {
	case st = <-reply:
	case <-ctx.Done():
		return false
	}
	// One status per wire record: extended entries (§5.5) get theirs.
	return s.started(m.Seq, necp.AckStatuses(recs, st), now)
}

// started answers a START with st, one status per wire record.
func (s *session) started(seq uint32, st []necp.Status, now time.Time) bool {
	s.joined = true
	// A START may add destinations: the next report goes to the owner
	// even if it is unchanged.
	s.sentHealth = false
	if !s.write(necp.TypeStartAck, seq, st) {
		return false
	}
	if s.state != sActive {
		// First KEEPALIVE right after START_ACK, so the first real
		// weight arrives without waiting a whole interval.
		cfg := s.m.cfg.Load()
		s.ka = newKeepalive(cfg.KeepaliveInterval, cfg.KeepaliveTimeout, cfg.KeepaliveRetries, now)
		s.state = sActive
	}
	return true
}

// onKeepaliveAck forwards a report to the owner, unless it repeats the
// last one: in steady state a KEEPALIVE then costs the owner nothing.
func (s *session) onKeepaliveAck(ctx context.Context, m *necp.Message, now time.Time) bool {
	if s.state != sActive {
		s.refuse("KEEPALIVE_ACK before START; closing", "protocol error")
		return false
	}
	// Timers come from the current configuration at every answered
	// KEEPALIVE, so a reload's keepalive-* settings reach sessions that
	// started before it.
	cfg := s.m.cfg.Load()
	s.ka.interval, s.ka.timeout, s.ka.retries = cfg.KeepaliveInterval, cfg.KeepaliveTimeout, cfg.KeepaliveRetries
	sentAt := s.ka.sentAt
	if !s.ka.onAck(m.Seq, now) {
		s.debug("KEEPALIVE_ACK matches no outstanding KEEPALIVE; skipped", "seq", m.Seq)
		return true
	}
	s.m.obs.KeepaliveAnswered(now.Sub(sentAt))
	if s.sentHealth && slices.Equal(s.lastHealth, m.Health) {
		return true
	}
	s.lastHealth = append(s.lastHealth[:0], m.Health...)
	s.sentHealth = true
	recs := append([]necp.HealthRecord(nil), m.Health...)
	return s.send(ctx, healthEvent{sid: s.id, recs: recs})
}

func (s *session) onStop(ctx context.Context, m *necp.Message) bool {
	if s.state != sActive {
		s.refuse("STOP before START; closing", "protocol error")
		return false
	}
	recs := append([]necp.ServiceRecord(nil), m.Services...)
	if !s.send(ctx, stopEvent{sid: s.id, recs: recs}) {
		return false
	}
	return s.write(necp.TypeStopAck, m.Seq, nil)
}

// stray counts a message that has no place in this session; past
// maxStrays the connection is closed.
func (s *session) stray() bool {
	s.strays++
	if s.strays > maxStrays {
		s.refuse("agent closed: too many messages that have no place in the protocol", "protocol error")
		return false
	}
	return true
}

// writeAuth sends an INIT_ACK carrying a challenge.
func (s *session) writeAuth(typ necp.Type, seq uint32, a necp.Auth) bool {
	s.out = necp.Message{Type: typ, Seq: seq, Auth: a}
	return s.flush()
}

// write sends one message. A peer that stops reading can only block us
// once the socket buffer is full; the deadline bounds even that. The
// message is built in a field of the session, so sending allocates nothing.
func (s *session) write(typ necp.Type, seq uint32, st []necp.Status) bool {
	s.out = necp.Message{Type: typ, Seq: seq, Statuses: st}
	return s.flush()
}

// flush encodes and sends s.out.
func (s *session) flush() bool {
	typ := s.out.Type
	var err error
	s.wbuf, err = s.out.AppendBinary(s.wbuf[:0])
	switch {
	case err != nil:
	case s.pollr != nil:
		err = s.pollr.write(s)
	default:
		s.conn.SetWriteDeadline(time.Now().Add(s.m.cfg.Load().KeepaliveTimeout))
		_, err = s.conn.Write(s.wbuf)
	}
	if err != nil {
		s.info("write to agent failed", "type", typ.String(), "err", err)
		return false
	}
	return true
}
