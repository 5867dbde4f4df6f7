package testutil

import (
	"context"
	"net"
	"testing"
	"time"
)

// ServeConns listens on a loopback port until the test ends and hands each
// connection to handle, in the accepting goroutine: a server that starts
// no goroutine per connection unless handle does, so that tests counting
// goroutines count only the client's. It returns the address (host:port).
func ServeConns(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	return ln.Addr().String()
}

// Server is a serve function running on a loopback port with a context of
// its own, as StartServer started it.
type Server struct {
	Addr   string // host:port
	cancel context.CancelFunc
	done   chan struct{}
}

// StartServer listens on a loopback port and runs serve on it, in a
// goroutine, until Stop or the test's end. At the end it stops the server
// and fails the test if serve has not returned within 5 s.
func StartServer(t testing.TB, serve func(ctx context.Context, ln net.Listener)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Addr: ln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		serve(ctx, ln)
	}()
	t.Cleanup(func() {
		if !s.Stop(5 * time.Second) {
			t.Error("the server did not return within 5 s of its context's end")
		}
	})
	return s
}

// Stop ends the server's context and says whether serve returned within
// the given time. Stopping again is harmless.
func (s *Server) Stop(within time.Duration) bool {
	s.cancel()
	select {
	case <-s.done:
		return true
	case <-time.After(within):
		return false
	}
}
