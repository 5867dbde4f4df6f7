package sd

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

// notifySocket listens where NOTIFY_SOCKET points, as systemd would.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notify message: %v", err)
	}
	return string(b[:n])
}

func TestMessages(t *testing.T) {
	c := notifySocket(t)
	n := New(logging.Discard())
	n.Ready("1 agent")
	if got := recv(t, c); got != "READY=1\nSTATUS=1 agent" {
		t.Fatalf("ready: %q", got)
	}
	n.Reloading()
	got := recv(t, c)
	if !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || !strings.Contains(got, "STATUS=reloading") || strings.Contains(got, "\n\n") {
		t.Fatalf("reloading: %q", got)
	}
	n.Stopping()
	if got := recv(t, c); !strings.HasPrefix(got, "STOPPING=1") {
		t.Fatalf("stopping: %q", got)
	}
}

func TestStatusDeduplicatedAndRateLimited(t *testing.T) {
	c := notifySocket(t)
	n := New(logging.Discard())
	n.Status("a", 0)
	n.Status("a", 0) // unchanged: not sent
	n.Status("b", time.Hour)
	n.Status("c", 0)
	if got := recv(t, c); got != "STATUS=a" {
		t.Fatalf("first status %q", got)
	}
	if got := recv(t, c); got != "STATUS=c" {
		t.Fatalf("second status %q, want STATUS=c (a repeated and b rate-limited)", got)
	}
}

func TestWatchdogCadence(t *testing.T) {
	c := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "2000000")
	n := New(logging.Discard())
	if n.WatchdogInterval() != 2*time.Second {
		t.Fatalf("interval %v", n.WatchdogInterval())
	}
	t0 := time.Unix(1000, 0)
	pings := 0
	// The loop reports progress every 100 ms for 10 s: pings every 1 s.
	for i := 0; i <= 100; i++ {
		n.Alive(t0.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	b := make([]byte, 64)
	for {
		k, err := c.Read(b)
		if err != nil {
			break
		}
		if string(b[:k]) != "WATCHDOG=1" {
			t.Fatalf("unexpected %q", b[:k])
		}
		pings++
	}
	if pings != 11 { // at 0, 1, 2, ..., 10 s
		t.Fatalf("%d pings over 10 s at WatchdogSec=2s, want 11 (every half interval)", pings)
	}
}

func TestWatchdogOffAndForeignPID(t *testing.T) {
	notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", "1")
	if n := New(logging.Discard()); n.WatchdogInterval() != 0 {
		t.Fatal("watchdog meant for another PID must be off")
	}
	t.Setenv("WATCHDOG_USEC", "")
	if n := New(logging.Discard()); n.WatchdogInterval() != 0 {
		t.Fatal("watchdog without WATCHDOG_USEC must be off")
	}
}

// Outside systemd nothing is sent and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New(logging.Discard())
	n.Ready("x")
	n.Status("y", 0)
	n.Alive(time.Now())
	n.Stopping()
}

// TestStatusOrder: a status computed before a reload (sent by the work
// loop) and the READY after the reload race; whatever the interleaving,
// the last status systemd receives must be the last one recorded, or the
// stale one stays on screen (an equal status is never sent again). The
// loop's send is held up inside the socket write; the reload's READY must
// not overtake it.
func TestStatusOrder(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	entered, release := make(chan struct{}), make(chan struct{})
	n := &Notifier{log: logging.Discard(), send: func(state string) (bool, error) {
		if strings.Contains(state, "stale") {
			close(entered)
			<-release
		}
		mu.Lock()
		sent = append(sent, state)
		mu.Unlock()
		return true, nil
	}}
	loopDone := make(chan struct{})
	go func() { n.Status("3 agents; last reload failed (stale)", 0); close(loopDone) }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop's status was never sent")
	}
	readyDone := make(chan struct{})
	go func() { n.Ready("3 agents"); close(readyDone) }()
	// With the bug, READY goes out now, before the stale status; give it
	// the chance, then let the stale send finish.
	select {
	case <-readyDone:
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-loopDone
	<-readyDone
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 || !strings.HasPrefix(sent[1], "READY=1\nSTATUS=3 agents") {
		t.Fatalf("sent %q: the stale status overtook the READY that followed it", sent)
	}
	if n.lastStatus != "3 agents" {
		t.Fatalf("lastStatus %q", n.lastStatus)
	}
}
