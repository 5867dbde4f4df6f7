package master

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// poller runs every session that has completed its handshake on one
// goroutine, with one wheel of keepalive timers. Its sockets are read and
// written through io_uring (poll_uring_linux.go) where the kernel allows
// it, else through epoll (poll_epoll_linux.go); the rest, here, is the
// same for both.
//
// Why: with a goroutine per session parked in a read with a deadline,
// 20 000 agents cost 20 000 stacks (4 KB each), a runtime timer per
// connection reset at every read, and for every KEEPALIVE a wake-up of the
// session's goroutine, which then made three reads (header, payload, and
// one that found nothing and parked it again), each wake-up a thread
// switch. Here the frames that arrived are handled at once, and the timers
// that are due are run in the same pass: with epoll a KEEPALIVE costs one
// write and one read, and the epoll_wait is shared by all that arrive
// together; with io_uring a pass's sends and receives cost one system call
// between them.
//
// The handshake (INIT, AUTH, START) stays on the session's own goroutine:
// it is short, and START waits for the owner. A session moves here after its
// first START_ACK (adopt) and never goes back; its behaviour is the same
// code either way (session.handle, session.onTimer), only the I/O differs.
// Everything a session does here runs on this goroutine, so a session's
// fields need no lock; other goroutines reach it only through post (the
// owner's kick).
type poller struct {
	m   *Master
	wg  *sync.WaitGroup // Run's: one count per live session
	ep  int             // epoll
	epf *os.File        // ep, in the runtime's poller (see wait)
	rc  syscall.RawConn // epf's
	ev  int             // eventfd: post wakes the loop
	// done is closed when run has returned and every session is ended.
	done chan struct{}

	mu      sync.Mutex
	queue   []*session // adopted, kicked or unparked, for the loop to act on
	stopped bool
	// outbox holds the events the owner could not take at once, in
	// order; forward hands them over.
	outbox   []outItem
	outReady chan struct{}

	io     pollIO                 // how sockets are read and written: epoll or io_uring
	using  atomic.Pointer[string] // io's name, once run has chosen it
	want   string                 // Options.Poller: "", "epoll" or "io_uring"
	timers *timerWheel            // every registered, unparked session at session.due
	evs    []unix.EpollEvent
}

// pollIO is how the poller reads and writes its sessions' sockets; the
// protocol, the timers, parking and the owner's queue are the poller's,
// the same for both. Every method runs on the poller's goroutine.
type pollIO interface {
	name() string
	// add starts serving s's socket (s.fd).
	add(s *session) error
	// arm is called when what s waits for may have changed: parked or
	// not, output pending or not. After a session's buffered frames are
	// handled, the poller calls it too: io_uring reads into the buffer,
	// so it may only read again once they are.
	arm(s *session) error
	// write sends s.wbuf, or queues it behind output still pending.
	write(s *session) error
	// writing: output is waiting for the socket.
	writing(s *session) bool
	// poll waits for something to do, until deadline at most (zero:
	// none), and acts on it: what other goroutines posted (drain), input,
	// finished writes.
	poll(ctx context.Context, deadline time.Time)
	// release gives s's socket back once s has ended.
	release(s *session)
	// sessions are the registered sessions, for stop.
	sessions() []*session
	close()
}

// session.pstate
const (
	pNone       = iota // on its own goroutine
	pQueued            // adopted, not yet registered
	pRegistered        // read and timed by the poller
	pEnded
)

func newPoller(m *Master, wg *sync.WaitGroup) (*poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Blocking: io_uring waits in the kernel for a read of a blocking
	// eventfd, but answers EAGAIN at once for a non-blocking one. The
	// epoll loop reads it only when epoll says it is readable.
	ev, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ev)}); err != nil {
		unix.Close(ep)
		unix.Close(ev)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so that os.NewFile puts it in the runtime's poller.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		unix.Close(ev)
		return nil, os.NewSyscallError("fcntl", err)
	}
	epf := os.NewFile(uintptr(ep), "epoll")
	rc, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		unix.Close(ev)
		return nil, err
	}
	return &poller{m: m, wg: wg, ep: ep, epf: epf, rc: rc, ev: ev, done: make(chan struct{}), evs: make([]unix.EpollEvent, 256),
		outReady: make(chan struct{}, 1), timers: newTimerWheel(time.Now()), want: m.opts.Poller}, nil
}

// pickIO chooses how to poll, on the loop's goroutine (an io_uring ring
// belongs to the thread that makes it): io_uring unless told epoll, epoll
// when the kernel refuses io_uring. One line says which and why
// (POLLER=, CHOSEN_BY= default, FEEDBACKD_POLLER or fallback, with the
// kernel's refusal as ERROR=); io_uring asked for and refused is a warning
// too.
func (p *poller) pickIO() {
	chosenBy := "default"
	if p.want != PollerAuto {
		chosenBy = "FEEDBACKD_POLLER"
	}
	var refused error
	if p.want != PollerEpoll {
		u, err := newURingIO(p)
		if err == nil {
			// The ring reads the eventfd itself; left in the epoll
			// set, every post would also wake the runtime's poller.
			unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, p.ev, nil)
			p.io = u
		} else {
			if p.want == PollerIOURing {
				p.m.log.Warn("io_uring asked for but not usable; polling with epoll", "err", err)
			}
			chosenBy, refused = "fallback", err
		}
	}
	if p.io == nil {
		p.io = &epollIO{p: p}
	}
	n := p.io.name()
	p.using.Store(&n)
	if refused != nil {
		p.m.log.Info("agent sessions polled", "poller", n, "chosen_by", chosenBy, "err", refused)
		return
	}
	p.m.log.Info("agent sessions polled", "poller", n, "chosen_by", chosenBy)
}

type outItem struct {
	s      *session
	ev     event
	unpark bool // the session waits for this event to be taken
}

// send gives ev to the owner without blocking the loop: if the owner's
// queue is full, ev goes to the outbox and s is parked until forward has
// handed it over, as its own goroutine would have waited in session.send.
// A parked session's later events (its end) queue behind it.
func (p *poller) send(s *session, ev event) {
	if !s.parked {
		select {
		case p.m.events <- ev:
			return
		default:
		}
	}
	unpark := false
	if s.pstate == pRegistered && !s.parked {
		unpark = true
		p.park(s)
	}
	p.enqueue(outItem{s: s, ev: ev, unpark: unpark})
}

func (p *poller) enqueue(it outItem) {
	p.mu.Lock()
	p.outbox = append(p.outbox, it)
	p.mu.Unlock()
	select {
	case p.outReady <- struct{}{}:
	default:
	}
}

// start sends a START's join event and parks s until the owner answers;
// then the loop calls session.started.
func (p *poller) start(ctx context.Context, s *session, ev joinEvent, reply <-chan []necp.Status, seq uint32) {
	if s.pstate != pRegistered {
		return
	}
	select {
	case p.m.events <- ev:
	default:
		p.enqueue(outItem{s: s, ev: ev})
	}
	p.park(s)
	s.startWait, s.startSeq = true, seq
	go func() {
		select {
		case st := <-reply:
			// One status per wire record: extended entries (§5.5)
			// get theirs.
			s.startReply = necp.AckStatuses(ev.recs, st)
			s.unpark.Store(true)
			p.post(s)
		case <-ctx.Done():
		}
	}()
}

// forward hands the outbox to the owner, in order, blocking as long as
// the owner's queue is full, and unparks each session whose wait is over.
func (p *poller) forward(ctx context.Context) {
	for {
		select {
		case <-p.outReady:
		case <-ctx.Done():
			return
		}
		for {
			p.mu.Lock()
			if len(p.outbox) == 0 {
				p.outbox = nil
				p.mu.Unlock()
				break
			}
			it := p.outbox[0]
			p.outbox[0] = outItem{}
			p.outbox = p.outbox[1:]
			p.mu.Unlock()
			select {
			case p.m.events <- it.ev:
			case <-ctx.Done():
				return
			}
			if it.unpark {
				it.s.unpark.Store(true)
				p.post(it.s)
			}
		}
	}
}

// park suspends s's reads and timers. (With io_uring a read already in the
// kernel still completes; its bytes wait in the buffer.)
func (p *poller) park(s *session) {
	s.parked = true
	if s.hidx >= 0 {
		p.timers.remove(s)
	}
	// A failure shows at the next read: a parked session is not read
	// (epoll: ready skips it), and io_uring's arm does nothing here.
	p.io.arm(s)
}

// unpark resumes s: the answer to its START if that is what it waited
// for, then the frames it has buffered, and its timer.
func (p *poller) unpark(ctx context.Context, s *session) {
	s.parked = false
	if s.startWait {
		s.startWait = false
		st := s.startReply
		s.startReply = nil
		if !s.started(s.startSeq, st, time.Now()) {
			p.end(ctx, s, "protocol error")
			return
		}
	}
	p.frames(ctx, s, nil, time.Now())
	p.rearm(ctx, s)
}

// rearm reads again for s once its buffered frames are handled, unless
// they ended or parked it.
func (p *poller) rearm(ctx context.Context, s *session) {
	if s.pstate == pRegistered && !s.parked {
		p.arm(ctx, s)
	}
}

// arm tells the backend what s now waits for; a failure ends s.
func (p *poller) arm(ctx context.Context, s *session) {
	if err := p.io.arm(s); err != nil {
		s.info("connection lost", "err", err)
		p.end(ctx, s, "connection lost")
	}
}

// adopt moves an active session from its goroutine to the poller; false
// leaves it where it is (not a socket, or the master is stopping). On true
// the calling goroutine must not touch s again.
func (p *poller) adopt(s *session) bool {
	sc, ok := s.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	var derr error
	if err := rc.Control(func(c uintptr) {
		fd, derr = unix.FcntlInt(c, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return false
	}
	// The duplicate shares the socket, and its O_NONBLOCK, with conn.
	// Everything the loop reads is set before post publishes s.
	s.rd.SetSource(fdReader(fd))
	s.kmu.Lock()
	s.fd, s.pollr, s.pstate = fd, p, pQueued
	s.kmu.Unlock()
	if !p.post(s) {
		s.kmu.Lock()
		s.fd, s.pollr, s.pstate = -1, nil, pNone
		s.kmu.Unlock()
		s.rd.SetSource(s.conn)
		unix.Close(fd)
		return false
	}
	// Takes conn out of the runtime's poller; the socket stays open
	// through fd. A kick that closed conn before this is in s.kicked,
	// which the poller checks when it registers s. Dropping conn lets its
	// descriptor and both addresses go: about 400 bytes a session, 8 MB at
	// 20 000 agents, that nothing reads once fd serves.
	s.kmu.Lock()
	c := s.conn
	s.conn = nil
	s.kmu.Unlock()
	c.Close()
	return true
}

// post hands s to the loop (to register it, or because it was kicked);
// false once the poller has stopped.
func (p *poller) post(s *session) bool {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	wake := len(p.queue) == 0
	p.queue = append(p.queue, s)
	p.mu.Unlock()
	if wake {
		p.wakeup()
	}
	return true
}

func (p *poller) wakeup() {
	var one = [8]byte{1}
	unix.Write(p.ev, one[:]) // blocks only at a count of 2^64-2
}

func (p *poller) run(ctx context.Context) {
	defer close(p.done)
	p.pickIO()
	stop := context.AfterFunc(ctx, p.wakeup)
	defer stop()
	for {
		var deadline time.Time
		if t, ok := p.timers.next(); ok {
			deadline = t
		}
		p.io.poll(ctx, deadline)
		if ctx.Err() != nil {
			p.stop(ctx)
			return
		}
		p.expire(ctx, time.Now())
	}
}

// drain acts on what other goroutines posted (the caller has read the
// eventfd).
func (p *poller) drain(ctx context.Context) {
	p.mu.Lock()
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for i, s := range q {
		q[i] = nil
		if s.pstate == pQueued {
			p.register(ctx, s)
		}
		if r := s.kicked.Load(); r != nil && s.pstate == pRegistered {
			p.end(ctx, s, "closed by the master: "+*r) // the owner has logged it
		}
		if s.pstate == pRegistered && s.parked && s.unpark.Swap(false) {
			p.unpark(ctx, s)
		}
	}
}

func (p *poller) register(ctx context.Context, s *session) {
	s.pstate = pRegistered
	s.hidx = -1
	if err := p.io.add(s); err != nil {
		s.info("connection lost", "err", err)
		p.end(ctx, s, "connection lost")
		return
	}
	p.schedule(s)
	// Frames read ahead on the goroutine are handled now: the backend
	// only reports what is still in the socket.
	if s.rd.Buffered() > 0 {
		p.frames(ctx, s, nil, time.Now())
	}
	p.rearm(ctx, s)
}

// frames handles the whole frames buffered for s, then readErr, the
// error of the read that brought them.
func (p *poller) frames(ctx context.Context, s *session, readErr error, now time.Time) {
	for {
		ok, err := s.rd.Next(&s.msg)
		if err != nil {
			p.end(ctx, s, s.onReadError(ctx, err))
			return
		}
		if !ok {
			break
		}
		if !s.handle(ctx, now) {
			p.end(ctx, s, "protocol error")
			return
		}
		if s.pstate != pRegistered || s.parked {
			return // the frames left wait in the buffer
		}
	}
	if readErr != nil {
		p.end(ctx, s, s.onReadError(ctx, s.rd.EOF(readErr)))
		return
	}
	p.schedule(s)
}

// expire runs the timers that are due.
func (p *poller) expire(ctx context.Context, now time.Time) {
	p.timers.expire(now, func(s *session) {
		if p.io.writing(s) && !s.wdue.After(now) {
			s.info("write to agent failed", "err", os.ErrDeadlineExceeded)
			p.end(ctx, s, "write failed")
			return
		}
		if reason := s.onTimer(now); reason != "" {
			p.end(ctx, s, reason)
			return
		}
		p.schedule(s)
	})
}

// schedule puts s in the timer wheel at its next deadline.
func (p *poller) schedule(s *session) {
	if s.parked {
		return
	}
	due := s.ka.deadline()
	if p.io.writing(s) && s.wdue.Before(due) {
		due = s.wdue
	}
	if s.hidx >= 0 {
		if s.due.Equal(due) {
			return
		}
		p.timers.remove(s)
	}
	s.due = due
	p.timers.add(s)
}

// write sends s.wbuf on the session's socket, through the backend.
func (p *poller) write(s *session) error { return p.io.write(s) }

// end closes s and does what a session's goroutine does when it ends.
func (p *poller) end(ctx context.Context, s *session, reason string) {
	if s.pstate != pRegistered {
		return
	}
	if s.hidx >= 0 {
		p.timers.remove(s)
	}
	p.io.release(s) // closes s.fd, now or once the kernel is done with it
	s.kmu.Lock()
	s.fd, s.pstate = -1, pEnded
	s.kmu.Unlock()
	s.end(ctx, reason)
	p.m.release(s)
	p.wg.Done()
}

// stop ends every session when the master stops; nothing posted later is
// taken.
func (p *poller) stop(ctx context.Context) {
	p.mu.Lock()
	p.stopped = true
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, s := range q {
		if s.pstate == pQueued {
			// Never registered: end needs it registered, with the
			// backend too (which then closes it); a failure to add
			// does not matter now.
			s.pstate = pRegistered
			s.hidx = -1
			p.io.add(s)
		}
	}
	for _, s := range q {
		p.end(ctx, s, "master stopping")
	}
	for _, s := range p.io.sessions() {
		p.end(ctx, s, "master stopping")
	}
	p.io.close()
	p.epf.Close()
	unix.Close(p.ev)
	p.mu.Lock()
	p.outbox = nil // the owner has stopped; nothing more is handed over
	p.mu.Unlock()
}
