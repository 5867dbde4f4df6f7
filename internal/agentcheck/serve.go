package agentcheck

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/connserve"
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

// Serve answers on ln until ctx is done, then closes ln and the
// connections still open. It returns once ln is closed.
func Serve(ctx context.Context, ln net.Listener, answer func() State, log *slog.Logger) {
	serve(ctx, ln, &server{answer: answer, deadline: Deadline, loop: connserve.New("agent-check", MaxConns, log)})
}

func serve(ctx context.Context, ln net.Listener, s *server) {
	s.loop.Serve(ctx, ln, s.serve)
}

type server struct {
	answer   func() State
	deadline time.Duration
	loop     *connserve.Loop
}

// serve answers one connection. The line is written first, then the
// agent half-closes and reads what the client sent until it closes too:
// closing a socket with unread input makes the kernel send a reset, which
// can destroy the answer before HAProxy reads it when agent-send is set.
func (s *server) serve(c net.Conn) {
	if err := c.SetDeadline(time.Now().Add(s.deadline)); err != nil {
		return
	}
	if _, err := io.WriteString(c, Reply(s.answer())); err != nil {
		s.loop.Note("agent-check answer not written", "peer", c.RemoteAddr().String(), "err", err)
		return
	}
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, maxDiscard))
}
