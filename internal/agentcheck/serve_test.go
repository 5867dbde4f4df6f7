package agentcheck

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/connserve"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// start serves on a loopback port with the given limits and returns its
// address; the server stops with the test.
func start(t *testing.T, answer func() State, log *slog.Logger, deadline time.Duration, maxConns int) string {
	t.Helper()
	return testutil.StartServer(t, func(ctx context.Context, ln net.Listener) {
		serve(ctx, ln, &server{answer: answer, deadline: deadline, loop: connserve.New("agent-check", maxConns, log)})
	}).Addr
}

// ask connects, optionally sends what HAProxy's agent-send would, and
// reads until the agent closes, as HAProxy does.
func ask(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, b)
	}
	return string(b)
}

func TestServeAnswersFromTheCurrentState(t *testing.T) {
	var cur atomic.Pointer[State]
	cur.Store(&State{Health: 70})
	addr := start(t, func() State { return *cur.Load() }, nil, 2*time.Second, 4)
	if got := ask(t, addr, ""); got != "ready 70%\n" {
		t.Errorf("answer %q, want %q", got, "ready 70%\n")
	}
	cur.Store(&State{Health: necp.HealthUnknown, Admin: Drain, Reason: "drained"})
	if got := ask(t, addr, ""); got != "drain #drained\n" {
		t.Errorf("answer %q, want %q", got, "drain #drained\n")
	}
}

// With agent-send, HAProxy writes first; the agent must still deliver its
// line intact rather than reset the connection over unread input.
func TestServeReadsWhatTheClientSends(t *testing.T) {
	addr := start(t, func() State { return State{Health: 33} }, nil, 2*time.Second, 4)
	for i := 0; i < 20; i++ {
		if got := ask(t, addr, strings.Repeat("hello\n", 1000)); got != "ready 33%\n" {
			t.Fatalf("try %d: answer %q, want %q", i, got, "ready 33%\n")
		}
	}
}

// A hostile client that opens connections and never closes them holds at
// most maxConns slots, each for at most the deadline: the next connection
// is closed at once without an answer (and logged, at a bounded rate), and
// once the deadline has passed the agent answers again.
func TestServeBoundsHostileClients(t *testing.T) {
	var logBuf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	const deadline = 300 * time.Millisecond
	addr := start(t, func() State { return State{Health: 50} }, log, deadline, 3)

	var hogs []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hogs = append(hogs, c)
		defer c.Close()
	}
	// Each hog has its answer; reading it proves the agent took the slot.
	for _, c := range hogs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "ready 50%\n" {
			t.Fatalf("hog read %q, %v", buf[:n], err)
		}
	}
	began := time.Now()
	refused := 0
	for i := 0; i < 5; i++ {
		if got := ask(t, addr, ""); got == "" {
			refused++
		}
	}
	if refused == 0 && time.Since(began) < deadline {
		t.Errorf("with every slot held, connections were still answered")
	}
	// Every wait has a deadline: the slots must free within a few
	// deadlines even though the hogs never close.
	until := time.Now().Add(10 * deadline)
	for ask(t, addr, "") != "ready 50%\n" {
		if time.Now().After(until) {
			t.Fatalf("no answer %v after the hogs' deadline", 10*deadline)
		}
		time.Sleep(deadline / 10)
	}
	if n := strings.Count(logBuf.String(), "too many open"); refused > 0 && n != 1 {
		t.Errorf("%d refusals logged %d lines, want 1 (bounded rate):\n%s", refused, n, logBuf.String())
	}
}

func TestListenFailsOnABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(context.Background(), ln.Addr().String(), func() State { return State{} }, nil); err == nil {
		t.Fatal("Listen on a port in use succeeded")
	}
}
