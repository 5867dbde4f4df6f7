//go:build linux

package uring

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring on the test's locked thread. A kernel that
// cannot is a failure, not a skip, unless FEEDBACKD_TEST_NO_IO_URING=1 says
// this machine is known to refuse io_uring (the master then polls with
// epoll, which its own tests cover).
func newRing(t *testing.T, cq uint32) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(8, cq)
	if errors.Is(err, ErrUnsupported) && os.Getenv("FEEDBACKD_TEST_NO_IO_URING") == "1" {
		t.Skipf("no io_uring here, as FEEDBACKD_TEST_NO_IO_URING=1 says: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sink keeps test buffers on the heap: the kernel writes into them after
// the call that named them returns, and a stack may move by then.
var sink [][]byte

func heap(n int) []byte {
	b := make([]byte, n)
	sink = append(sink, b)
	return b
}

func heapOf(s string) []byte {
	b := heap(len(s))
	copy(b, s)
	return b
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

type completion struct {
	ud  uint64
	res int32
}

func collect(t *testing.T, r *Ring) []completion {
	t.Helper()
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	var got []completion
	r.Completions(func(ud uint64, res int32) { got = append(got, completion{ud, res}) })
	return got
}

// TestRecvWaitsUnseen: a receive waits in the kernel; what arrives is
// seen only by looking (DEFER_TASKRUN); then a send, and end of stream.
func TestRecvWaitsUnseen(t *testing.T) {
	r := newRing(t, 64)
	a, b := socketpair(t)
	buf := heap(16)
	if err := r.Recv(a, buf, 7); err != nil {
		t.Fatal(err)
	}
	if r.Queued() != 1 {
		t.Fatalf("queued %d, want 1", r.Queued())
	}
	if got := collect(t, r); len(got) != 0 {
		t.Fatalf("completions before any data: %v", got)
	}
	unix.Write(b, []byte("hello"))
	if r.Ready() != 0 {
		t.Fatalf("%d completions posted before the ring was entered", r.Ready())
	}
	got := collect(t, r)
	if len(got) != 1 || got[0] != (completion{7, 5}) || string(buf[:5]) != "hello" {
		t.Fatalf("got %v %q, want one completion {7 5} and hello", got, buf[:5])
	}

	if err := r.Send(a, heapOf("pong"), 9); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r); len(got) != 1 || got[0] != (completion{9, 4}) {
		t.Fatalf("send: got %v, want {9 4}", got)
	}
	if n, _ := unix.Read(b, buf); n != 4 {
		t.Fatalf("peer read %d bytes, want 4", n)
	}
	r.Recv(a, buf, 10)
	collect(t, r)
	unix.Shutdown(b, unix.SHUT_WR)
	if got := collect(t, r); len(got) != 1 || got[0] != (completion{10, 0}) {
		t.Fatalf("end of stream: got %v, want {10 0}", got)
	}
}

// TestCancelFD: a pending receive, cancelled, completes with ECANCELED, and
// the cancel itself completes; after that the buffer is free.
func TestCancelFD(t *testing.T) {
	r := newRing(t, 64)
	a, _ := socketpair(t)
	buf := heap(16)
	r.Recv(a, buf, 1)
	collect(t, r)
	r.CancelFD(a, 2)
	got := collect(t, r)
	want := map[uint64]int32{1: -int32(syscall.ECANCELED), 2: 1} // the cancel's result: requests cancelled
	if len(got) != 2 {
		t.Fatalf("got %v, want the receive and the cancel", got)
	}
	for _, c := range got {
		if want[c.ud] != c.res {
			t.Errorf("completion %d: res %d, want %d", c.ud, c.res, want[c.ud])
		}
	}
}

// TestFullQueueSubmits: queueing more than the submission queue holds
// submits on the way, and nothing is lost.
func TestFullQueueSubmits(t *testing.T) {
	r := newRing(t, 64)
	a, b := socketpair(t)
	const n = 40 // the queue holds 8
	for i := 0; i < n; i++ {
		if err := r.Send(a, heapOf("x"), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	for _, c := range collect(t, r) {
		if c.res != 1 || c.ud != uint64(seen) {
			t.Fatalf("completion %d: %+v", seen, c)
		}
		seen++
	}
	if seen != n {
		t.Fatalf("%d completions, want %d", seen, n)
	}
	buf := heap(64)
	if k, _ := unix.Read(b, buf); k != n {
		t.Fatalf("peer got %d bytes, want %d", k, n)
	}
}

// TestSubmitFinishesEverything: one Submit brings in every answer that
// arrived, however many (newer kernels finish 20 per call).
func TestSubmitFinishesEverything(t *testing.T) {
	r := newRing(t, 256)
	const n = 100
	var peers []int
	buf := heap(8 * n)
	for i := 0; i < n; i++ {
		a, b := socketpair(t)
		peers = append(peers, b)
		if err := r.Recv(a, buf[i*8:i*8+8], uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := collect(t, r); len(got) != 0 {
		t.Fatalf("completions before any data: %v", got)
	}
	for _, b := range peers {
		unix.Write(b, []byte("x"))
	}
	if got := collect(t, r); len(got) != n {
		t.Fatalf("one Submit brought %d completions, want %d", len(got), n)
	}
}

// TestWait: a wait for one completion ends when an answer arrives (from
// another thread), long before its timeout; a wait for more than can
// complete lasts its timeout and then finishes what arrived meanwhile.
func TestWait(t *testing.T) {
	r := newRing(t, 256)
	a, b := socketpair(t)
	buf := heap(8)
	r.Recv(a, buf, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		unix.Write(b, []byte("x"))
	}()
	start := time.Now()
	if err := r.Wait(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if r.Ready() != 1 {
		t.Fatalf("%d completions after the wait, want 1", r.Ready())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the answer did not end the wait: %v", el)
	}
	collect(t, r)

	r.Recv(a, buf, 2)
	unix.Write(b, []byte("y"))
	start = time.Now()
	if err := r.Wait(1<<20, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Fatalf("the wait for the timeout alone ended after %v", el)
	}
	if r.Ready() != 1 {
		t.Fatalf("%d completions after the timeout, want the answer that came meanwhile", r.Ready())
	}
}

// TestReadEventFD: a read on a (blocking) eventfd completes when another
// thread writes it.
func TestReadEventFD(t *testing.T) {
	r := newRing(t, 64)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	b := heap(8)
	r.Read(efd, b, 5)
	if got := collect(t, r); len(got) != 0 {
		t.Fatalf("read completed before the write: %v", got)
	}
	unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	r.Wait(1, 5*time.Second)
	var got []completion
	r.Completions(func(ud uint64, res int32) { got = append(got, completion{ud, res}) })
	if len(got) != 1 || got[0] != (completion{5, 8}) || b[0] != 1 {
		t.Fatalf("got %v %v, want {5 8} and the count 1", got, b)
	}
}
