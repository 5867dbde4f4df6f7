package master

import (
	"context"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-feedbackd/feedbackd/internal/uring"
)

// uringIO polls the sessions' sockets with io_uring. Every registered,
// unparked session has a receive waiting in the kernel, into its own
// reader's buffer; a write is a send request, one per session in the
// kernel at a time, later writes queued behind it in s.pend. What a pass
// queues goes to the kernel in the one system call that also waits for
// the next pass (poll).
//
// Why (docs/benchmarks.md, "io_uring"): with epoll, a KEEPALIVE costs the
// master a write, a wake-up and a read. Here the ring is set up with
// DEFER_TASKRUN: an answer that arrives while the loop waits for a timer
// less than a wheel tick away wakes nobody, and is collected with the
// others when the timer is due. At 20 000 agents the keepalive timers
// make a pass every 2 ms, and the steady state costs about one system
// call per pass (0.13 per KEEPALIVE, measured). With few agents the timers
// are far apart, and the first answer wakes the loop, as epoll would.
//
// A request's buffer must stay put until its completion is read, so a
// session that ends with requests in the kernel keeps its slot (and with
// it its buffers and its descriptor) until they complete: release shuts
// the socket down and cancels them, and the descriptor is closed only then.
// Posts from other goroutines arrive through a read of the poller's
// eventfd, kept in the kernel too.
type uringIO struct {
	p     *poller
	ring  *uring.Ring
	slots []uslot // by session.slot
	free  []int32
	busy  int // slots in use: by a session, or by requests of one that ended
	// posting: a read of the poller's eventfd is in the kernel, into
	// postBuf; its completion is what other goroutines' posts wake.
	posting bool
	postBuf [8]byte
	closing bool
	// failed's budget: the time of the last line, and the lines not
	// logged since.
	failedAt time.Time
	quiet    int
}

// failed logs an error of the ring itself, at most one line every 10 s,
// with how many were not logged: one that comes back every pass must not
// flood the journal. (None is expected of a ring that set up.)
func (u *uringIO) failed(msg string, err error) {
	now := time.Now()
	if now.Sub(u.failedAt) < 10*time.Second {
		u.quiet++
		return
	}
	u.p.m.log.Error(msg, "err", err, "suppressed_lines", u.quiet)
	u.failedAt, u.quiet = now, 0
}

type uslot struct {
	s  *session
	fd int
}

// The user data of a request: its slot and what it is.
const (
	udRecv = iota
	udSend
	udCancel
	udPost  // the read of the poller's eventfd
	udKinds = 4
)

func udOf(slot int32, kind uint64) uint64 { return uint64(slot)*udKinds + kind }

// Ring sizes: submissions go in as often as the queue fills, so it can be
// small; completions beyond the queue wait in the kernel (NODROP).
const (
	uringSQ = 256
	uringCQ = 4096
)

// newRing is uring.New; a test makes it fail, as a kernel that refuses
// io_uring does.
var newRing = uring.New

// newURingIO sets up the ring for the calling goroutine, which it locks to
// its thread for good (until close): the ring accepts calls from that
// thread only.
func newURingIO(p *poller) (*uringIO, error) {
	runtime.LockOSThread()
	r, err := newRing(uringSQ, uringCQ)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return &uringIO{p: p, ring: r}, nil
}

func (u *uringIO) name() string { return PollerIOURing }

func (u *uringIO) add(s *session) error {
	var i int32
	if n := len(u.free); n > 0 {
		i = u.free[n-1]
		u.free = u.free[:n-1]
	} else {
		i = int32(len(u.slots))
		u.slots = append(u.slots, uslot{})
	}
	u.slots[i] = uslot{s: s, fd: s.fd}
	s.slot = i
	u.busy++
	return nil
}

// arm puts a receive in the kernel for s, unless one is there, or s is
// parked (its reader's buffer then holds what came, and waits).
func (u *uringIO) arm(s *session) error {
	if s.parked || s.recving || s.pstate != pRegistered {
		return nil
	}
	b, err := s.rd.Space()
	if err != nil {
		return err
	}
	if err := u.ring.Recv(s.fd, b, udOf(s.slot, udRecv)); err != nil {
		return err
	}
	s.recving = true
	return nil
}

func (u *uringIO) writing(s *session) bool { return s.sending }

// write hands s.wbuf to the kernel, or queues it behind the send there.
// The buffer changes hands (s.flight) rather than being copied: s.wbuf is
// rebuilt for the next frame while the kernel may still read this one.
func (u *uringIO) write(s *session) error {
	if s.sending {
		s.pend = append(s.pend, s.wbuf...)
		return nil
	}
	s.flight, s.wbuf = s.wbuf, s.flight[:0]
	s.wdue = time.Now().Add(u.p.m.cfg.Load().KeepaliveTimeout)
	return u.send(s)
}

func (u *uringIO) send(s *session) error {
	if err := u.ring.Send(s.fd, s.flight, udOf(s.slot, udSend)); err != nil {
		return err
	}
	s.sending = true
	return nil
}

// poll submits what the last pass queued and waits in the same call.
//
// When the next timer is due within a wheel tick, the loop wakes for it
// alone: whatever arrives meanwhile waits in the kernel and is collected
// then, all at once (with 20 000 agents, that is every pass). Otherwise the
// first completion wakes it, an agent's frame or a post, as epoll would.
func (u *uringIO) poll(ctx context.Context, deadline time.Time) {
	p := u.p
	if !u.posting && !u.closing {
		if err := u.ring.Read(p.ev, u.postBuf[:], udOf(0, udPost)); err != nil {
			u.failed("io_uring read of the eventfd failed", err)
		} else {
			u.posting = true
		}
	}
	now := time.Now()
	var err error
	switch wait := deadline.Sub(now); {
	case deadline.IsZero():
		err = u.ring.Wait(1, time.Hour)
	case wait <= 0:
		err = u.ring.Submit()
	case wait <= wheelTick:
		err = u.ring.Wait(1<<30, wait)
	default:
		err = u.ring.Wait(1, wait)
	}
	if err != nil {
		// Not expected with a valid ring; do not spin on it.
		u.failed("io_uring_enter failed", err)
		time.Sleep(10 * time.Millisecond)
	}
	now = time.Now()
	u.ring.Completions(func(ud uint64, res int32) { u.complete(ctx, ud, res, now) })
}

func (u *uringIO) complete(ctx context.Context, ud uint64, res int32, now time.Time) {
	kind := ud % udKinds
	switch kind {
	case udCancel:
		return // its requests complete on their own
	case udPost:
		u.posting = false
		if !u.closing {
			u.p.drain(ctx)
		}
		return
	}
	i := int32(ud / udKinds)
	s := u.slots[i].s
	if kind == udRecv {
		s.recving = false
	} else {
		s.sending = false
	}
	if s.pstate == pEnded {
		u.settle(i)
		return
	}
	errno := syscall.Errno(-res)
	if kind == udSend {
		u.sent(ctx, s, res, errno)
		return
	}
	var err error
	switch {
	case res > 0:
		s.rd.Commit(int(res))
	case res == 0:
		err = io.EOF
	case errno == unix.EAGAIN || errno == unix.EINTR:
	default:
		err = os.NewSyscallError("recv", errno)
	}
	if s.parked {
		// Nothing is handled, or read, until unpark; an error comes
		// again from the next receive.
		return
	}
	u.p.frames(ctx, s, err, now)
	u.p.rearm(ctx, s)
}

// sent follows a send's completion: the rest of a short one, then what
// queued behind it.
func (u *uringIO) sent(ctx context.Context, s *session, res int32, errno syscall.Errno) {
	var err error
	switch {
	case res < 0 && (errno == unix.EAGAIN || errno == unix.EINTR):
		err = u.send(s)
	case res < 0:
		err = os.NewSyscallError("send", errno)
	case int(res) < len(s.flight):
		s.flight = s.flight[res:]
		err = u.send(s)
	case len(s.pend) > 0:
		s.flight, s.pend = s.pend, s.flight[:0]
		err = u.send(s)
	default:
		s.flight = s.flight[:0]
	}
	if err != nil {
		s.info("write to agent failed", "err", err)
		u.p.end(ctx, s, "write failed")
	}
}

// settle frees an ended session's slot, and closes its descriptor, once
// the kernel has given back all its requests.
func (u *uringIO) settle(i int32) {
	sl := &u.slots[i]
	if sl.s.recving || sl.s.sending {
		return
	}
	unix.Close(sl.fd)
	*sl = uslot{}
	u.free = append(u.free, i)
	u.busy--
}

func (u *uringIO) release(s *session) {
	s.pend = nil
	if !s.recving && !s.sending {
		u.settle(s.slot)
		return
	}
	// The agent sees the end now, and the requests complete; the
	// descriptor is closed when they have (settle).
	unix.Shutdown(s.fd, unix.SHUT_RDWR)
	if err := u.ring.CancelFD(s.fd, udOf(s.slot, udCancel)); err != nil {
		u.failed("io_uring cancel failed", err)
	}
}

func (u *uringIO) sessions() []*session {
	var l []*session
	for _, sl := range u.slots {
		if sl.s != nil && sl.s.pstate == pRegistered {
			l = append(l, sl.s)
		}
	}
	return l
}

// close waits, briefly, for the kernel to give back every request, then
// releases the ring. Requests still out after that keep their buffers
// (the slots stay referenced) rather than risk the kernel writing into
// memory the collector has reused.
func (u *uringIO) close() {
	u.closing = true
	if u.posting {
		u.p.wakeup() // completes the eventfd's read
	}
	deadline := time.Now().Add(2 * time.Second)
	for (u.busy > 0 || u.posting) && time.Now().Before(deadline) {
		u.poll(context.Background(), time.Now().Add(time.Millisecond))
	}
	if u.busy > 0 || u.posting {
		u.p.m.log.Error("io_uring requests still out at stop; their buffers are kept", "slots", u.busy)
		stranded = append(stranded, u)
	}
	u.ring.Close()
	runtime.UnlockOSThread()
}

// stranded keeps what close could not wait for.
var stranded []*uringIO
