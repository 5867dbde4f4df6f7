package master

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// epollIO polls the sessions' sockets with epoll (the poller's own epoll
// descriptor, level triggered): a socket with data gets one read, and a
// write goes out at once; what the socket cannot take waits in s.pend for
// EPOLLOUT. It is the fallback where io_uring is refused (Linux before
// 6.1, kernel.io_uring_disabled, a seccomp filter), and FEEDBACKD_POLLER=epoll
// chooses it.
type epollIO struct {
	p    *poller
	byFD []*session // registered sessions by descriptor
}

func (e *epollIO) name() string { return PollerEpoll }

const pollIn = unix.EPOLLIN | unix.EPOLLRDHUP

func (e *epollIO) add(s *session) error {
	if err := unix.EpollCtl(e.p.ep, unix.EPOLL_CTL_ADD, s.fd, &unix.EpollEvent{Events: pollIn, Fd: int32(s.fd)}); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	for s.fd >= len(e.byFD) {
		e.byFD = append(e.byFD, nil)
	}
	e.byFD[s.fd] = s
	return nil
}

// arm sets what epoll watches for s: input unless it is parked, output
// while some is pending.
func (e *epollIO) arm(s *session) error {
	var events uint32
	if !s.parked {
		events = pollIn
	}
	if len(s.pend) > 0 {
		events |= unix.EPOLLOUT
	}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(e.p.ep, unix.EPOLL_CTL_MOD, s.fd, &unix.EpollEvent{Events: events, Fd: int32(s.fd)}))
}

func (e *epollIO) writing(s *session) bool { return len(s.pend) > 0 }

func (e *epollIO) close() {}

// poll waits on the poller's epoll descriptor, which holds the eventfd and
// every registered socket, and acts on what is ready.
func (e *epollIO) poll(ctx context.Context, deadline time.Time) {
	p := e.p
	n, err := p.wait(deadline)
	if err != nil && err != unix.EINTR {
		// Not expected with valid arguments; do not spin on it.
		p.m.log.Error("epoll_wait failed", "err", err)
		time.Sleep(10 * time.Millisecond)
	}
	now := time.Now()
	for _, ev := range p.evs[:max(n, 0)] {
		if int(ev.Fd) == p.ev {
			var b [8]byte
			unix.Read(p.ev, b[:])
			p.drain(ctx)
			continue
		}
		e.ready(ctx, ev.Fd, ev.Events, now)
	}
}

// wait fills p.evs with what is ready, waiting until deadline at most
// (zero: no deadline).
//
// It never blocks in epoll_wait. A goroutine blocked in a system call makes
// the runtime hand its P to another thread after 10 ms and its monitor
// thread poll every 20 µs for a while after: at 5 000 agents, ten thousand
// nanosleeps a second for a loop that wakes twenty times. Instead the epoll
// descriptor sits in the runtime's own poller (it is readable while
// something in it is ready), the loop parks like any goroutine waiting for
// a socket, and its one deadline is the earliest keepalive timer.
func (p *poller) wait(deadline time.Time) (int, error) {
	if !deadline.IsZero() && !deadline.After(time.Now()) {
		// Due already: whatever is ready now, without waiting.
		n, err := unix.EpollWait(p.ep, p.evs, 0)
		return max(n, 0), err
	}
	p.epf.SetReadDeadline(deadline)
	n := 0
	var werr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), p.evs, 0)
		return n > 0 || werr != nil // EINTR too: run tries again
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return max(n, 0), werr
}

// ready handles epoll's report for s: one read, then every whole frame.
func (e *epollIO) ready(ctx context.Context, fd int32, events uint32, now time.Time) {
	if int(fd) >= len(e.byFD) || e.byFD[fd] == nil {
		return
	}
	s, p := e.byFD[fd], e.p
	if events&unix.EPOLLOUT != 0 && len(s.pend) > 0 {
		if err := e.flushPending(s); err != nil {
			s.info("write to agent failed", "err", err)
			p.end(ctx, s, "write failed")
			return
		}
	}
	if s.parked {
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		p.schedule(s)
		return
	}
	err := s.rd.Fill()
	if err == unix.EAGAIN || err == unix.EINTR {
		err = nil
	}
	p.frames(ctx, s, err, now)
}

// write sends s.wbuf on the session's socket without blocking. What the
// socket cannot take now waits in s.pend for EPOLLOUT, for at most
// keepalive-timeout, as a blocking write would under its deadline.
func (e *epollIO) write(s *session) error {
	if len(s.pend) > 0 {
		s.pend = append(s.pend, s.wbuf...)
		return nil
	}
	k, err := writeFD(s.fd, s.wbuf)
	if err != nil {
		return err
	}
	if k == len(s.wbuf) {
		return nil
	}
	s.pend = append(s.pend[:0], s.wbuf[k:]...)
	s.wdue = time.Now().Add(e.p.m.cfg.Load().KeepaliveTimeout)
	return e.arm(s)
}

func (e *epollIO) flushPending(s *session) error {
	k, err := writeFD(s.fd, s.pend)
	if err != nil {
		return err
	}
	s.pend = s.pend[:copy(s.pend, s.pend[k:])]
	if len(s.pend) == 0 {
		s.pend = nil
		return e.arm(s)
	}
	return nil
}

// writeFD writes what the socket takes now; EAGAIN is 0 bytes, not an
// error.
func writeFD(fd int, b []byte) (int, error) {
	for {
		k, err := unix.Write(fd, b)
		switch err {
		case nil:
			return k, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, os.NewSyscallError("write", err)
	}
}

func (e *epollIO) release(s *session) {
	if s.fd < len(e.byFD) && e.byFD[s.fd] == s {
		e.byFD[s.fd] = nil
	}
	unix.Close(s.fd) // also takes it out of the epoll set
	s.pend = nil
}

func (e *epollIO) sessions() []*session {
	var l []*session
	for _, s := range e.byFD {
		if s != nil {
			l = append(l, s)
		}
	}
	return l
}

// fdReader reads a non-blocking socket for necp.Reader: EAGAIN is returned
// as the error, and 0 bytes as io.EOF.
type fdReader int

func (f fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(f), b)
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
