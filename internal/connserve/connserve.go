// Package connserve is the accept loop of the agent's two small TCP
// servers, the HAProxy agent-check answer (internal/agentcheck) and the
// /metrics endpoint (internal/promtext): each connection in a goroutine of
// its own, a bounded number at once, and the log lines a flood or a
// broken client causes bounded too.
//
// Why bounded: both listen where whoever reaches the port can connect.
// Without a ceiling, idle connections would hold sockets, goroutines and
// buffers without end; with it, the agent holds at most a known number,
// each for as long as its server's deadline allows, and closes the rest at
// accept.
package connserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
)

// logEvery bounds the log lines of one Loop.
const logEvery = 10 * time.Second

// Loop accepts and hands out connections. Make it with New.
type Loop struct {
	name  string
	slots chan struct{} // one per connection being served
	note  *ratelog.Logger
}

// New returns a Loop for the server called name in its log lines
// ("agent-check", "metrics"), serving at most max connections at once.
// A nil log logs nothing.
func New(name string, max int, log *slog.Logger) *Loop {
	return &Loop{name: name, slots: make(chan struct{}, max), note: ratelog.New(log, logEvery, "suppressed")}
}

// Serve accepts on ln until ctx is done, then closes ln and every
// connection still open. Each connection goes to handle in a goroutine of
// its own and is closed when handle returns; one beyond the most allowed
// is closed at accept. Serve returns once ln is closed.
func (l *Loop) Serve(ctx context.Context, ln net.Listener, handle func(net.Conn)) {
	// AfterFunc, not a goroutine waiting for ctx: an idle agent keeps
	// one goroutine fewer.
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little
			// instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.Note(l.name+" accept failed", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case l.slots <- struct{}{}:
			go func() {
				defer func() { <-l.slots }()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				defer c.Close()
				handle(c)
			}()
		default:
			c.Close()
			l.Note(l.name+" connection refused: too many open", "max_conns", cap(l.slots), "peer", c.RemoteAddr().String())
		}
	}
}

// Busy is how many connections are being served now.
func (l *Loop) Busy() int { return len(l.slots) }

// Note logs msg at Warn, at most one line per logEvery, saying how many it
// held back: a hostile or broken client cannot fill the journal.
func (l *Loop) Note(msg string, args ...any) { l.note.Warn(msg, args...) }
