package connserve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// The loop serves at most its maximum at once, closes the rest at accept
// with one log line however many there are, and on its context's end
// closes the listener and the connections in flight.
func TestLoop(t *testing.T) {
	var buf testutil.SyncBuffer
	l := New("test", 2, slog.New(slog.NewTextHandler(&buf, nil)))
	srv := testutil.StartServer(t, func(ctx context.Context, ln net.Listener) {
		// Each handler holds its connection until it is closed under it.
		l.Serve(ctx, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	held := []net.Conn{dial(), dial()}
	waitFor(t, "both slots taken", func() bool { return l.Busy() == 2 })
	for range 5 {
		c := dial()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("a connection beyond the maximum was not closed at once: %v", err)
		}
	}
	if n := strings.Count(buf.String(), "too many open"); n != 1 {
		t.Errorf("%d log lines for 5 refused connections, want 1:\n%s", n, buf.String())
	}
	if !srv.Stop(5 * time.Second) {
		t.Fatal("Serve did not return within 5 s of its context's end")
	}
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("a connection in flight was not closed with the context: %v", err)
		}
	}
	waitFor(t, "the slots freed", func() bool { return l.Busy() == 0 })
	if _, err := net.Dial("tcp", srv.Addr); err == nil {
		t.Error("the listener still accepts after the context's end")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
