package testutil

import (
	"net"
	"testing"
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
