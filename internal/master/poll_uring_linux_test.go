package master

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/uring"
)

// uringAlone is a uringIO on the test's goroutine (locked to its thread,
// as the ring wants), with a poller around it that has only an eventfd.
func uringAlone(t *testing.T) *uringIO {
	t.Helper()
	m, err := New(testConfig(), Options{IPVS: ipvs.NewMemory(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	p := &poller{m: m, ev: ev, timers: newTimerWheel(time.Now())}
	u, err := newURingIO(p)
	if errors.Is(err, uring.ErrUnsupported) && os.Getenv("FEEDBACKD_TEST_NO_IO_URING") == "1" {
		unix.Close(ev)
		t.Skipf("no io_uring here, as FEEDBACKD_TEST_NO_IO_URING=1 says: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.close(); unix.Close(ev) })
	return u
}

// Writes to an agent that reads slowly: the socket takes part of a send,
// or none, and the rest of the session's frames queue behind it. What the
// agent reads must be every frame, whole and in order. (The epoll way has
// the same duty through s.pend; this drives the io_uring way's short sends
// and hand-overs directly, with a socket buffer small enough to fill.)
func TestURingWritesInOrderUnderBackpressure(t *testing.T) {
	u := uringAlone(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	s := &session{m: u.p.m, fd: fds[0], pstate: pRegistered, hidx: -1, rd: necp.NewReader(nil)}
	if err := u.add(s); err != nil {
		t.Fatal(err)
	}

	// The agent: reads in small, slow bites until it has all.
	var want bytes.Buffer
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 400; i++ {
		frame := bytes.Repeat([]byte{byte(i)}, 20+rng.Intn(300))
		want.Write(frame)
	}
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 512)
		for b.Len() < want.Len() {
			n, err := peer.Read(buf[:1+rng.Intn(len(buf)-1)])
			b.Write(buf[:n])
			if err != nil {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		got <- b.Bytes()
	}()

	ctx := context.Background()
	rest := want.Bytes()
	short := 0
	for i := 0; len(rest) > 0; i++ {
		n := 20
		for n < len(rest) && rest[n] == rest[0] {
			n++
		}
		s.wbuf = append(s.wbuf[:0], rest[:n]...)
		rest = rest[n:]
		if err := u.write(s); err != nil {
			t.Fatal(err)
		}
		if len(s.pend) > 0 {
			short++
		}
		if i%7 == 0 {
			u.poll(ctx, time.Now().Add(time.Millisecond))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.sending {
		if time.Now().After(deadline) {
			t.Fatal("sends not done within 10 s")
		}
		u.poll(ctx, time.Now().Add(time.Millisecond))
	}
	if s.pstate != pRegistered {
		t.Fatalf("the session ended (%d)", s.pstate)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("the agent read %d bytes, not the %d written in order", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not read everything within 10 s")
	}
	if short == 0 {
		t.Fatal("no write ever queued behind another: the test did not test backpressure")
	}
	// The session ends with nothing in flight but its receive: the
	// descriptor is closed once the kernel gives that back.
	u.arm(s)
	s.pstate = pEnded
	u.release(s)
	for u.busy > 0 && time.Now().Before(deadline) {
		u.poll(ctx, time.Now().Add(time.Millisecond))
	}
	if u.busy != 0 {
		t.Fatalf("slot still busy after release")
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err == nil {
		t.Fatal("descriptor still open after its requests came back")
	}
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the agent's read after the end: %v, want EOF", err)
	}
}

// An error of the ring that comes back every pass is logged once, not
// every pass.
func TestURingErrorsLoggedAtABoundedRate(t *testing.T) {
	u := uringAlone(t)
	logs := &syncBuffer{}
	u.p.m.log = slog.New(slog.NewTextHandler(logs, nil))
	for range 100 {
		u.failed("io_uring_enter failed", errors.New("boom"))
	}
	if n := strings.Count(logs.String(), "io_uring_enter failed"); n != 1 {
		t.Fatalf("%d lines for 100 errors within 10 s, want 1:\n%s", n, logs)
	}
	if u.quiet != 99 {
		t.Fatalf("%d errors counted as not logged, want 99", u.quiet)
	}
}
