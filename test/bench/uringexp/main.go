//go:build linux

// uringexp measures what one ping costs the polling side of n loopback TCP
// connections, each pinged once per interval and answered by a child
// process, in two ways:
//
//   - epoll: a write per ping, and epoll_wait plus a read per answer, as
//     the master's epoll poller does (internal/master/poll_epoll_linux.go);
//   - uring: io_uring (internal/uring, the master's own ring), the pings of
//     a 2 ms tick submitted together and a RECV kept armed on every
//     connection, its completions collected at the next tick
//     (IORING_SETUP_DEFER_TASKRUN: an answer wakes nobody).
//
// Both run the same tick loop. It prints the polling process's CPU and the
// child's, per ping, so that work moved to the peer would show. It was the
// experiment that led to the master's io_uring poller (issue 20,
// docs/benchmarks.md); it stays to measure the two ways apart from the
// protocol:
//
//	go build -o /tmp/uringexp ./test/bench/uringexp
//	ulimit -n 20000; /tmp/uringexp -mode epoll -n 19900; /tmp/uringexp -mode uring -n 19900
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-feedbackd/feedbackd/internal/uring"
)

var (
	n         = flag.Int("n", 5000, "connections")
	interval  = flag.Duration("interval", 2*time.Second, "ping interval per connection")
	window    = flag.Duration("window", 20*time.Second, "measurement window")
	mode      = flag.String("mode", "epoll", "epoll, uring, or one half of uring: uring-send (pings through io_uring, answers as epoll) or epoll-tick (answers collected once per tick)")
	child     = flag.String("child", "", "internal: listen address file")
	tickEvery = flag.Duration("tick", 2*time.Millisecond, "timer tick (the master's timer wheel's)")
)

func main() {
	flag.Parse()
	if *child != "" {
		runChild()
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	lf, _ := ln.(*net.TCPListener).File()
	cmd := exec.Command(os.Args[0], "-child", "x")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	childPID = cmd.Process.Pid
	ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	fds := make([]int, *n)
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			panic(err)
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetNonblock(fd, true)
		fds[i] = fd
	}
	time.Sleep(2 * time.Second)
	runtime.LockOSThread()
	switch *mode {
	case "epoll":
		runEpoll(fds, false, false)
	case "epoll-tick":
		runEpoll(fds, false, true)
	case "uring-send":
		runEpoll(fds, true, false)
	case "uring":
		runUring(fds)
	}
	cmd.Process.Kill()
}

func cpu() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var childPID int

// procCPU is a process's user+system time from /proc/PID/stat, in ticks of 10 ms.
func procCPU(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

var child0 int64

func mark() { child0 = procCPU(childPID) }

func report(start time.Time, c0 time.Duration, pings, replies int64) {
	el := time.Since(start)
	c := cpu() - c0
	ch := time.Duration(procCPU(childPID)-child0) * 10 * time.Millisecond
	fmt.Printf("%s n=%d: cpu %.1f %% of a core, %d pings, %d replies, %.2f µs per ping; the child %.2f µs per ping\n",
		*mode, *n, 100*c.Seconds()/el.Seconds(), pings, replies, float64(c.Microseconds())/float64(pings),
		float64(ch.Microseconds())/float64(pings))
}

// dueRange returns the connections to ping at tick k: each connection once
// per interval, spread evenly.
func dueRange(k int) (int, int) {
	ticks := int(*interval / *tickEvery)
	per := (*n + ticks - 1) / ticks
	k %= ticks
	lo := k * per
	hi := min(lo+per, *n)
	return min(lo, *n), hi
}

// runEpoll answers with epoll and a read per answer. With sendRing the
// pings go through io_uring, a tick's together; with atTick the answers are
// collected once per tick (epoll_wait without waiting), so that none wakes
// the loop: the two halves of what the uring mode changes, measured apart.
func runEpoll(fds []int, sendRing, atTick bool) {
	ep, _ := unix.EpollCreate1(0)
	for i, fd := range fds {
		unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)})
	}
	var r *uring.Ring
	if sendRing {
		r = newRing()
	}
	evs := make([]unix.EpollEvent, 256)
	buf := make([]byte, 128)
	ping := []byte("KEEPALIV")
	measure(func(i int) {
		if r != nil {
			r.Send(fds[i], ping, 0)
		} else {
			unix.Write(fds[i], ping)
		}
	}, func(next time.Time) (replies int64) {
		if r != nil {
			r.Submit()
			r.Completions(func(uint64, int32) {}) // send results unread
		}
		if atTick {
			time.Sleep(time.Until(next))
		}
		for {
			wait := int((time.Until(next) + time.Millisecond - 1) / time.Millisecond)
			if wait < 0 || atTick {
				wait = 0
			}
			m, _ := unix.EpollWait(ep, evs, wait)
			for _, e := range evs[:max(m, 0)] {
				if r, _ := unix.Read(fds[e.Fd], buf); r > 0 {
					replies++
				}
			}
			if atTick && m < len(evs) || !time.Now().Before(next) {
				return replies
			}
		}
	})
}

// measure runs the window's ticks: at each, ping for the connections due,
// then tick until the next one's time (it returns the answers it took),
// and reports.
func measure(ping func(i int), tick func(next time.Time) (replies int64)) {
	var pings, replies int64
	mark()
	start, c0 := time.Now(), cpu()
	next := start
	for k := 0; time.Since(start) < *window; k++ {
		lo, hi := dueRange(k)
		for i := lo; i < hi; i++ {
			ping(i)
			pings++
		}
		next = next.Add(*tickEvery)
		replies += tick(next)
	}
	report(start, c0, pings, replies)
}

// ---- io_uring (internal/uring, the master's own) ----

func newRing() *uring.Ring {
	r, err := uring.New(4096, 16384)
	if err != nil {
		panic(err)
	}
	return r
}

func runUring(fds []int) {
	r := newRing()
	bufs := make([]byte, len(fds)*64)
	ping := []byte("KEEPALIV")
	const sendTag = 1 << 62
	arm := func(i int) {
		if err := r.Recv(fds[i], bufs[i*64:i*64+64], uint64(i)); err != nil {
			panic(err)
		}
	}
	for i := range fds {
		arm(i)
	}
	r.Submit()
	measure(func(i int) { r.Send(fds[i], ping, sendTag|uint64(i)) }, func(next time.Time) (replies int64) {
		r.Submit() // submit the sends, run deferred completions
		r.Completions(func(ud uint64, res int32) {
			if ud&sendTag == 0 {
				if res > 0 {
					replies++
				}
				arm(int(ud))
			}
		})
		time.Sleep(time.Until(next))
		return replies
	})
	runtime.KeepAlive(bufs)
}

// ---- the child: answers every ping ----

func runChild() {
	ln, err := net.FileListener(os.NewFile(3, "ln"))
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			buf := make([]byte, 64)
			for {
				m, err := c.Read(buf)
				if err != nil {
					return
				}
				c.Write([]byte("REPORT75")[:min(m, 8)])
			}
		}()
	}
}
