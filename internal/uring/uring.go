//go:build linux

// Package uring is the least of io_uring that the master's poller needs: a
// ring owned by one thread, SEND, RECV and cancel requests, and completions
// read in place.
//
// Why the master wants it (docs/benchmarks.md, "io_uring"): with epoll,
// every KEEPALIVE costs the master a write, a wake-up and a read; here the
// writes of a timer tick go to the kernel in one system call, every agent
// has a receive waiting in the kernel, and the answers are collected at
// the next tick, again in one call, without waking anyone when they arrive.
//
// The ring is set up with SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1): the
// kernel finishes a request's work only when its thread enters the ring, so
// an answer arriving costs no wake-up. Two prices: every call on a Ring
// must come from the thread that made it (runtime.LockOSThread); and
// nothing tells that thread that work is waiting (neither the ring's
// descriptor nor a registered eventfd signals deferred work; measured on
// Linux 6.18), so it must look, at a bounded interval.
//
// What the kernel reads or writes through a request (a SEND's bytes, a
// RECV's buffer) must stay where it is and reachable until the request's
// completion has been read: Go's collector does not know the kernel holds
// it, and a goroutine's stack moves when it grows, so the memory must be on
// the heap (a field of a heap object, or a slice that escapes). The caller
// keeps that promise; this package only passes addresses.
package uring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's ABI (include/uapi/linux/io_uring.h), what of it is used.
const (
	opAsyncCancel = 14
	opRead        = 22
	opSend        = 26
	opRecv        = 27

	setupCQSize       = 1 << 3
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featNoDrop = 1 << 1

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	cancelFD  = 1 << 1
	cancelAll = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is a submission queue entry (64 bytes).
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	opFlags  uint32
	userData uint64
	bufIndex uint16
	pers     uint16
	spliceFD int32
	pad      [2]uint64
}

// cqe is a completion queue entry (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring instance. It is not safe for concurrent use, and
// only the thread that called New may use it.
type Ring struct {
	fd                     int
	entries                uint32
	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   []cqe
	queued                 uint32 // entries written since the last submit
	arg                    getEventsArg
	ts                     unix.Timespec
	maps                   [][]byte
}

// ErrUnsupported wraps every reason the kernel gives for not setting up a
// ring as asked (too old for DEFER_TASKRUN, io_uring disabled by
// kernel.io_uring_disabled or a seccomp filter, no NODROP): the caller
// falls back to epoll.
var ErrUnsupported = errors.New("io_uring not usable")

// New sets up a ring with sq submission entries and cq completion entries
// (powers of two), for the calling thread only.
func New(sq, cq uint32) (*Ring, error) {
	p := params{flags: setupSingleIssuer | setupDeferTaskrun | setupCQSize, cqEntries: cq}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sq), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, os.NewSyscallError("io_uring_setup", errno))
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	if p.features&featNoDrop == 0 {
		r.Close()
		return nil, fmt.Errorf("%w: the kernel may drop completions (no IORING_FEAT_NODROP)", ErrUnsupported)
	}
	mmap := func(off int64, size uint32) ([]byte, error) {
		b, err := unix.Mmap(r.fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, os.NewSyscallError("mmap", err)
		}
		r.maps = append(r.maps, b)
		return b, nil
	}
	sqRing, err := mmap(offSQRing, p.sqOff.array+p.sqEntries*4)
	if err != nil {
		r.Close()
		return nil, err
	}
	cqRing, err := mmap(offCQRing, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	if err != nil {
		r.Close()
		return nil, err
	}
	sqes, err := mmap(offSQEs, p.sqEntries*uint32(unsafe.Sizeof(sqe{})))
	if err != nil {
		r.Close()
		return nil, err
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(sqRing, p.sqOff.head), u32(sqRing, p.sqOff.tail), u32(sqRing, p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(sqRing, p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqes[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(cqRing, p.cqOff.head), u32(cqRing, p.cqOff.tail), u32(cqRing, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cqRing[p.cqOff.cqes])), p.cqEntries)
	return r, nil
}

// Close releases the ring. Requests still in the kernel are cancelled
// by it, but their buffers must outlive them: close only once every
// completion has been read.
func (r *Ring) Close() error {
	for _, b := range r.maps {
		unix.Munmap(b)
	}
	r.maps = nil
	return os.NewSyscallError("close", unix.Close(r.fd))
}

// next returns a cleared submission entry, submitting what is queued when
// the queue is full.
func (r *Ring) next() (*sqe, error) {
	tail := *r.sqTail // only this thread writes it
	for tail-atomic.LoadUint32(r.sqHead) >= r.entries {
		if err := r.Submit(); err != nil {
			return nil, err
		}
	}
	i := tail & *r.sqMask
	r.sqArray[i] = i
	e := &r.sqes[i]
	*e = sqe{}
	return e, nil
}

// push publishes the entry next returned.
func (r *Ring) push() {
	atomic.StoreUint32(r.sqTail, *r.sqTail+1)
	r.queued++
}

// Read queues a read into b from fd (an eventfd, say), tagged ud. fd must
// be blocking: the kernel answers EAGAIN at once for a non-blocking one
// rather than waiting for data.
func (r *Ring) Read(fd int, b []byte, ud uint64) error {
	return r.rw(opRead, fd, b, ud, 0)
}

// Recv queues a receive into b on fd, tagged ud. b must stay put until its
// completion is read.
func (r *Ring) Recv(fd int, b []byte, ud uint64) error {
	return r.rw(opRecv, fd, b, ud, 0)
}

// Send queues a send of b on fd, tagged ud. b must stay put until its
// completion is read. The kernel may send less than b (a short count).
func (r *Ring) Send(fd int, b []byte, ud uint64) error {
	// A send on a reset connection must not raise SIGPIPE.
	return r.rw(opSend, fd, b, ud, unix.MSG_NOSIGNAL)
}

func (r *Ring) rw(op uint8, fd int, b []byte, ud uint64, flags uint32) error {
	if len(b) == 0 {
		return errors.New("uring: empty buffer")
	}
	e, err := r.next()
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.userData = op, int32(fd), ud
	e.addr, e.len = uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b))
	e.opFlags = flags
	r.push()
	return nil
}

// CancelFD queues the cancellation of every request on fd, tagged ud.
// Each cancelled request still completes (with -ECANCELED), so its buffer
// is free only once that completion has been read.
func (r *Ring) CancelFD(fd int, ud uint64) error {
	e, err := r.next()
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.userData = opAsyncCancel, int32(fd), ud
	e.opFlags = cancelFD | cancelAll
	r.push()
	return nil
}

// Queued is the number of requests queued and not yet submitted.
func (r *Ring) Queued() int { return int(r.queued) }

// Submit hands the queued requests to the kernel and lets it finish the
// work of those that are done, so that their completions can be read; it
// never waits.
//
// A call that waits for nothing finishes at most localWorkBatch deferred
// requests on newer kernels (IO_LOCAL_TW_DEFAULT_MAX; measured on 6.18:
// 100 answers took five calls), so Submit calls again while a call posted
// that many, and the completion queue has room for more.
func (r *Ring) Submit() error {
	for {
		before := atomic.LoadUint32(r.cqTail)
		if err := r.enter(0, nil); err != nil {
			return err
		}
		posted := atomic.LoadUint32(r.cqTail) - before
		if posted < localWorkBatch || r.Ready()+localWorkBatch > len(r.cqes) {
			return nil
		}
	}
}

// Wait submits what is queued, then waits until least completions are
// posted or timeout has passed (not an error), and finishes the work of
// every request that is done.
//
// A least larger than can ever complete waits for the timeout alone: then
// nothing that arrives wakes the thread, and the kernel finishes all of it
// when the time is up, in the same call.
func (r *Ring) Wait(least uint32, timeout time.Duration) error {
	// In the Ring, not on the stack: the kernel gets the timeout's
	// address inside arg, where a moved stack would not update it.
	r.ts = unix.NsecToTimespec(max(int64(timeout), 0))
	r.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	if err := r.enter(least, &r.arg); err != nil {
		return err
	}
	if least <= localWorkBatch {
		// Woken by the first completions, with the rest perhaps not
		// finished yet.
		return r.Submit()
	}
	return nil
}

// getEventsArg is struct io_uring_getevents_arg (IORING_ENTER_EXT_ARG).
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

const localWorkBatch = 20

// enter submits what is queued and, with arg, waits as it says; a timeout
// or a signal ends the wait without an error.
func (r *Ring) enter(least uint32, arg *getEventsArg) error {
	flags, argp, argsz := uintptr(enterGetEvents), uintptr(0), uintptr(0)
	if arg != nil {
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(arg)), unsafe.Sizeof(*arg)
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.queued), uintptr(least), flags, argp, argsz)
		switch errno {
		case 0:
			// Fewer may be taken than queued (the kernel short of
			// memory for a moment): the rest go with the next call.
			r.queued -= min(uint32(n), r.queued)
			return nil
		case syscall.EINTR:
			if arg != nil {
				return nil // a wait cut short: the caller looks, and waits again
			}
			continue
		case syscall.ETIME:
			return nil // the wait's timeout; nothing was submitted
		case syscall.EBUSY, syscall.EAGAIN:
			// Completions the kernel holds back (the completion queue
			// is full): the caller reads them, then submits again.
			return nil
		}
		return os.NewSyscallError("io_uring_enter", errno)
	}
}

// Completions calls f for every completion posted, in order, and frees
// their entries. f may queue new requests.
func (r *Ring) Completions(f func(ud uint64, res int32)) int {
	n := 0
	for {
		head, tail := *r.cqHead, atomic.LoadUint32(r.cqTail)
		if head == tail {
			return n
		}
		for ; head != tail; head++ {
			c := r.cqes[head&*r.cqMask]
			// Freed before f runs: f's own requests may need the room.
			atomic.StoreUint32(r.cqHead, head+1)
			f(c.userData, c.res)
			n++
		}
	}
}

// Ready is the number of completions posted and not yet read.
func (r *Ring) Ready() int {
	return int(atomic.LoadUint32(r.cqTail) - *r.cqHead)
}
