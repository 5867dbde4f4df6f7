package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// session is one agent connection. Its goroutine is the only reader and
// the only writer of the connection, and it runs the keepalive timer itself
// through read deadlines, so a session costs one goroutine and no timers:
// 20 000 of them must fit in 200 MB.
type session struct {
	m    *Master
	id   sessionID
	conn net.Conn
	peer netip.AddrPort
	log  *slog.Logger
	rd   *necp.Reader
	msg  necp.Message
	wbuf []byte

	state  int // sWaitInit, sWaitStart, sActive
	ka     keepalive
	joined bool
}

const (
	sWaitInit = iota
	sWaitStart
	sActive
)

func (m *Master) newSession(c net.Conn) *session {
	var peer netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		peer = ap
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	return &session{
		m:    m,
		id:   sessionID(m.nextID.Add(1)),
		conn: c,
		peer: peer,
		log:  m.log.With("agent", peer.String()),
		rd:   necp.NewReader(c),
	}
}

// send queues an event for the owner, giving up when the master stops.
func (s *session) send(ctx context.Context, ev event) bool {
	select {
	case s.m.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *session) run(ctx context.Context) {
	defer s.conn.Close()
	cfg := s.m.cfg.Load()
	now := time.Now()
	// Before START the only timer is the handshake deadline: an agent that
	// connects and says nothing is dropped after keepalive-timeout.
	handshake := now.Add(cfg.KeepaliveTimeout)
	s.log.Debug("agent connected")
	reason := "connection closed"
	defer func() {
		if s.joined {
			s.send(ctx, goneEvent{sid: s.id, reason: reason})
		}
	}()
	for {
		deadline := handshake
		if s.state == sActive {
			deadline = s.ka.deadline()
		}
		if err := s.conn.SetReadDeadline(deadline); err != nil {
			reason = "connection error: " + err.Error()
			return
		}
		err := s.rd.ReadMessage(&s.msg)
		now := time.Now()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if s.state != sActive {
					s.log.Warn("agent did not complete the handshake in time; closing", "timeout", cfg.KeepaliveTimeout)
					return
				}
				act, seq := s.ka.onTimer(now)
				switch act {
				case kaSend:
					if s.ka.sends > 1 {
						s.log.Info("keepalive unanswered; resending", "seq", seq, "attempt", s.ka.sends)
					}
					if !s.write(necp.Message{Type: necp.TypeKeepalive, Seq: seq}) {
						reason = "write failed"
						return
					}
				case kaDead:
					reason = "keepalives unanswered"
					s.log.Warn("agent declared dead: keepalives unanswered",
						"timeout", s.ka.timeout, "retries", s.ka.retries)
					return
				}
				continue
			}
			switch {
			case errors.Is(err, io.EOF):
				reason = "agent closed the connection"
				s.log.Info(reason)
			case errors.Is(err, necp.ErrMalformed):
				reason = "protocol error"
				s.log.Warn("malformed message from agent; closing its connection", "err", err)
			case ctx.Err() != nil:
				reason = "master stopping"
			default:
				reason = "connection lost"
				s.log.Info("connection lost", "err", err)
			}
			return
		}
		if !s.handle(ctx, now) {
			if reason == "connection closed" {
				reason = "protocol error"
			}
			return
		}
	}
}

// handle acts on one message; false closes the connection.
func (s *session) handle(ctx context.Context, now time.Time) bool {
	m := &s.msg
	if m.Version != necp.Version {
		s.log.Debug("agent speaks another protocol version; parsing anyway", "version", m.Version)
	}
	if s.log.Enabled(ctx, logging.LevelVDebug) {
		// Guarded: the arguments would be boxed on every message even
		// when the level is off, and this runs 10 000 times a second.
		s.log.Log(ctx, logging.LevelVDebug, "received", "type", m.Type.String(), "seq", m.Seq)
	}
	switch m.Type {
	case necp.TypeInit:
		if s.state != sWaitInit {
			s.log.Warn("INIT in the middle of a session; closing")
			return false
		}
		s.state = sWaitStart
		return s.write(necp.Message{Type: necp.TypeInitAck, Seq: m.Seq})
	case necp.TypeStart:
		if s.state == sWaitInit {
			s.log.Warn("START before INIT; closing")
			return false
		}
		reply := make(chan []necp.Status, 1)
		recs := append([]necp.ServiceRecord(nil), m.Services...)
		if !s.send(ctx, joinEvent{sid: s.id, peer: s.peer, recs: recs, reply: reply}) {
			return false
		}
		var st []necp.Status
		select {
		case st = <-reply:
		case <-ctx.Done():
			return false
		}
		s.joined = true
		if !s.write(necp.Message{Type: necp.TypeStartAck, Seq: m.Seq, Statuses: st}) {
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
	case necp.TypeKeepaliveAck:
		if s.state != sActive {
			s.log.Warn("KEEPALIVE_ACK before START; closing")
			return false
		}
		if !s.ka.onAck(m.Seq, now) {
			s.log.Debug("KEEPALIVE_ACK matches no outstanding KEEPALIVE; skipped", "seq", m.Seq)
			return true
		}
		recs := append([]necp.HealthRecord(nil), m.Health...)
		return s.send(ctx, healthEvent{sid: s.id, recs: recs})
	case necp.TypeStop:
		if s.state != sActive {
			s.log.Warn("STOP before START; closing")
			return false
		}
		recs := append([]necp.ServiceRecord(nil), m.Services...)
		if !s.send(ctx, stopEvent{sid: s.id, recs: recs}) {
			return false
		}
		return s.write(necp.Message{Type: necp.TypeStopAck, Seq: m.Seq})
	case necp.TypeNoop:
		return true
	case necp.TypeInitAck, necp.TypeKeepalive, necp.TypeStartAck, necp.TypeStopAck:
		s.log.Warn("agent sent a master's message; skipped", "type", m.Type.String())
		return true
	default:
		s.log.Debug("unknown message type; skipped", "type", m.Type.String())
		return true
	}
}

// write sends one message. A peer that stops reading can only block us
// once the socket buffer is full; the deadline bounds even that.
func (s *session) write(msg necp.Message) bool {
	var err error
	s.wbuf, err = msg.AppendBinary(s.wbuf[:0])
	if err == nil {
		s.conn.SetWriteDeadline(time.Now().Add(s.m.cfg.Load().KeepaliveTimeout))
		_, err = s.conn.Write(s.wbuf)
	}
	if err != nil {
		s.log.Info("write to agent failed", "type", msg.Type.String(), "err", err)
		return false
	}
	return true
}
