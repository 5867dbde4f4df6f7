package agentcheck

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Limits of one listener; feedbackd-agent.conf(5) documents them.
const (
	// Deadline bounds everything one connection may take, answer and
	// close included. The answer itself is written at accept, from the
	// cached sample, so a client that does not read cannot slow it: the
	// line fits in any socket buffer. What the deadline bounds is a client
	// that keeps the connection open.
	Deadline = 2 * time.Second
	// MaxConns is the most connections served at once; more are closed at
	// accept without an answer. One HAProxy holds one connection per
	// server for a few milliseconds, so 64 leaves room for many load
	// balancers while a flood cannot make the agent hold more than
	// MaxConns sockets for more than Deadline each.
	MaxConns = 64
	// maxDiscard is how much a client may send (HAProxy's agent-send)
	// before the agent stops reading it.
	maxDiscard = 4096
	// logEvery bounds the log lines refused and failed connections cause.
	logEvery = 10 * time.Second
)

// Listen opens addr (host:port) and serves it until ctx is done: each
// connection gets answer()'s state as one Reply line. answer must not
// block; the agent's reads one atomic value per call. Failing to listen is
// an error for the caller to stop on: an operator who configured the
// agent-check would otherwise find out only from HAProxy's logs.
func Listen(ctx context.Context, addr string, answer func() State, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go Serve(ctx, ln, answer, log)
	return ln.Addr(), nil
}

// Serve answers on ln until ctx is done, then closes ln. It returns once
// ln is closed; connections still open finish within Deadline.
func Serve(ctx context.Context, ln net.Listener, answer func() State, log *slog.Logger) {
	serve(ctx, ln, &server{answer: answer, log: log, deadline: Deadline, slots: make(chan struct{}, MaxConns)})
}

func serve(ctx context.Context, ln net.Listener, s *server) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little, as
			// net/http does, instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.note("agent-check accept failed", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case s.slots <- struct{}{}:
			go func() {
				defer func() { <-s.slots }()
				s.serve(c)
			}()
		default:
			c.Close()
			s.note("agent-check connection refused: too many open", "max_conns", cap(s.slots), "peer", c.RemoteAddr().String())
		}
	}
}

type server struct {
	answer   func() State
	log      *slog.Logger
	deadline time.Duration
	slots    chan struct{} // one per connection being served

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

// serve answers one connection. The line is written first, then the
// agent half-closes and reads what the client sent until it closes too:
// closing a socket with unread input makes the kernel send a reset, which
// can destroy the answer before HAProxy reads it when agent-send is set.
func (s *server) serve(c net.Conn) {
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(s.deadline)); err != nil {
		return
	}
	if _, err := io.WriteString(c, Reply(s.answer())); err != nil {
		s.note("agent-check answer not written", "peer", c.RemoteAddr().String(), "err", err)
		return
	}
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, maxDiscard))
}

// note logs at most one line per logEvery, saying how many it held back,
// so that a hostile or broken client cannot fill the journal.
func (s *server) note(msg string, args ...any) {
	if s.log == nil {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.lastLog) < logEvery {
		s.suppressed++
		s.mu.Unlock()
		return
	}
	held := s.suppressed
	s.lastLog, s.suppressed = now, 0
	s.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	s.log.Warn(msg, args...)
}
