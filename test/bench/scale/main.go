// Command scale measures feedbackd-master under many agent sessions.
//
// It starts the real master binary with --without-ipvs on loopback, then N
// simulated agent sessions (INIT, START, and a KEEPALIVE_ACK for every
// KEEPALIVE), each from its own 127.x.y.z address so that each is a
// separate realserver. Once every session is polled, it measures the
// master's CPU share (utime+stime from /proc/PID/stat over a window), its
// RSS (VmRSS, VmHWM) and counts missed keepalives: a KEEPALIVE received
// twice with the same sequence number is a resend, i.e. the master's
// keepalive-timeout expired for that session; a session the master closes
// counts too.
//
// The simulated sessions run in child processes of this program (-sim),
// at most -per-child each, because every session costs one descriptor on
// each side and a process's descriptor limit is a hard ceiling.
//
//	go run ./test/bench/scale -master bin/feedbackd-master -n 1000,5000,20000
//	go run ./test/bench/scale -master bin/feedbackd-master -n 5000 -churn
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
	"github.com/lvs-feedbackd/feedbackd/test/bench/internal/procfs"
)

func main() {
	sim := flag.Bool("sim", false, "internal: run simulated sessions (child mode)")
	addr := flag.String("addr", "", "internal: master address (child mode)")
	first := flag.Int("first", 0, "internal: index of the first session (child mode)")
	count := flag.Int("count", 0, "internal: number of sessions (child mode)")
	masterBin := flag.String("master", "bin/feedbackd-master", "master binary")
	ns := flag.String("n", "1000,5000,20000", "session counts to measure")
	interval := flag.Duration("interval", 2*time.Second, "keepalive-interval given to the master")
	window := flag.Duration("window", 20*time.Second, "measurement window once all sessions are polled")
	perChild := flag.Int("per-child", 5000, "simulated sessions per child process")
	keepLog := flag.String("log", "", "copy the master's log (stderr) to this file after each run")
	churn := flag.Bool("churn", false, "every reply changes the health (every KEEPALIVE is a report the owner acts on)")
	threshold := flag.Int("weight-threshold", -1, "weight-threshold given to the master (-1: its default; 0 with -churn: every KEEPALIVE is an IPVS write)")
	flag.Parse()
	if *sim {
		runSim(*addr, *first, *count, *churn)
		return
	}
	fmt.Printf("machine: %d CPUs; fd limit %s; keepalive-interval %v; window %v\n",
		numCPU(), fdLimit(), *interval, *window)
	fmt.Printf("%8s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n",
		"sessions", "join_s", "cpu_%core", "rss_MB", "hwm_MB", "keepalive", "missed", "closed", "reads/ka", "writes/ka")
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fatal("bad -n: %v", err)
		}
		r, err := measure(*masterBin, n, *interval, *window, *perChild, *keepLog, *churn, *threshold)
		if err != nil {
			fmt.Printf("%8d  error: %v\n", n, err)
			continue
		}
		fmt.Printf("%8d %10.1f %10.1f %10.1f %10.1f %10d %10d %10d %10.2f %10.2f\n",
			n, r.join.Seconds(), r.cpu, r.rssMB, r.hwmMB, r.keepalives, r.missed, r.closed,
			float64(r.reads)/float64(max(r.keepalives, 1)), float64(r.writes)/float64(max(r.keepalives, 1)))
	}
}

type result struct {
	join                       time.Duration
	cpu, rssMB, hwmMB          float64
	keepalives, missed, closed int64
	reads, writes              int64 // the master's read and write system calls in the window
}

type simStats struct {
	Keepalives int64 `json:"keepalives"`
	Resends    int64 `json:"resends"`
	Closed     int64 `json:"closed"`
}

func measure(masterBin string, n int, interval, window time.Duration, perChild int, keepLog string, churn bool, threshold int) (*result, error) {
	dir, err := os.MkdirTemp("", "feedbackd-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if keepLog != "" {
		defer func() {
			if b, err := os.ReadFile(filepath.Join(dir, "master.log")); err == nil {
				os.WriteFile(keepLog, b, 0o644)
			}
		}()
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "master.conf")
	extra := ""
	if threshold >= 0 {
		extra = fmt.Sprintf("weight-threshold = %d\n", threshold)
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(`%sloglevel = WARN
keepalive-interval = %g
keepalive-timeout = 10
keepalive-retries = 3
removal-interval = 30
listen = %s

[virtual-service]
name = web
address = 192.0.2.1
protocol = tcp
port = 80
scheduler = wrr
`, extra, interval.Seconds(), addr)), 0o644)
	mlog, _ := os.Create(filepath.Join(dir, "master.log"))
	defer mlog.Close()
	master := exec.Command(masterBin, "--without-ipvs", "-c", conf)
	master.Stderr = mlog
	if err := master.Start(); err != nil {
		return nil, err
	}
	defer func() { master.Process.Signal(syscall.SIGTERM); master.Wait() }()
	if err := waitListening(addr, 10*time.Second); err != nil {
		return nil, err
	}

	self, _ := os.Executable()
	var children []child
	start := time.Now()
	for first := 0; first < n; first += perChild {
		c := exec.Command(self, "-sim", "-addr", addr, "-first", strconv.Itoa(first), "-count", strconv.Itoa(min(perChild, n-first)),
			"-churn="+strconv.FormatBool(churn))
		in, _ := c.StdinPipe()
		out, _ := c.StdoutPipe()
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			return nil, err
		}
		children = append(children, child{c, in, bufio.NewScanner(out)})
	}
	defer func() {
		for _, c := range children {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	}()
	// Each child says "polled" once every one of its sessions has had its
	// first KEEPALIVE.
	for _, c := range children {
		if !c.out.Scan() || c.out.Text() != "polled" {
			return nil, fmt.Errorf("child failed: %q (master log %s)", c.out.Text(), mlog.Name())
		}
	}
	join := time.Since(start)
	// One interval to settle into steady state, then the window.
	time.Sleep(interval)
	// The children count KEEPALIVEs from their start; the window's are
	// the difference between two snapshots.
	before, err := snapshot(children)
	if err != nil {
		return nil, err
	}
	r0, w0 := procfs.Syscalls(master.Process.Pid)
	cpu0, t0 := procfs.CPUTicks(master.Process.Pid), time.Now()
	time.Sleep(window)
	cpu1, t1 := procfs.CPUTicks(master.Process.Pid), time.Now()
	r1, w1 := procfs.Syscalls(master.Process.Pid)
	rss, hwm := procfs.MemKB(master.Process.Pid)

	total, err := snapshot(children)
	if err != nil {
		return nil, err
	}
	for _, c := range children {
		c.stdin.Close()
	}
	const clkTck = 100 // USER_HZ on Linux
	cpu := float64(cpu1-cpu0) / clkTck / t1.Sub(t0).Seconds() * 100
	return &result{join: join, cpu: cpu, rssMB: float64(rss) / 1024, hwmMB: float64(hwm) / 1024,
		keepalives: total.Keepalives - before.Keepalives, missed: total.Resends, closed: total.Closed,
		reads: r1 - r0, writes: w1 - w0}, nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// snapshot asks every child for its counts so far and adds them up.
func snapshot(children []child) (simStats, error) {
	var total simStats
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "stats\n"); err != nil {
			return total, err
		}
	}
	for _, c := range children {
		if !c.out.Scan() {
			return total, fmt.Errorf("child gave no stats")
		}
		var s simStats
		if err := json.Unmarshal(c.out.Bytes(), &s); err != nil {
			return total, err
		}
		total.Keepalives += s.Keepalives
		total.Resends += s.Resends
		total.Closed += s.Closed
	}
	return total, nil
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("master not listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func fdLimit() string {
	var r syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	return fmt.Sprintf("%d/%d", r.Cur, r.Max)
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	os.Exit(1)
}

// ---- child: simulated agents ----

// sourceIP gives session i its own loopback address (127.1.0.1 upwards),
// so that each session is a distinct realserver and has its own port space.
func sourceIP(i int) net.IP {
	return net.IPv4(127, byte(1+i/(250*256)), byte(i/250%256), byte(1+i%250))
}

func runSim(addr string, first, count int, churn bool) {
	var stats simStats
	var polled sync.WaitGroup
	polled.Add(count)
	sem := make(chan struct{}, 128) // bounded concurrent dials: the accept backlog is finite
	for i := first; i < first+count; i++ {
		sem <- struct{}{}
		go session(addr, i, uint8(20+i%80), churn, sync.OnceFunc(polled.Done), sem, &stats)
	}
	polled.Wait()
	fmt.Println("polled")
	// Report the counts so far for every line on stdin, until the parent
	// closes it.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		out, _ := json.Marshal(simStats{
			Keepalives: atomic.LoadInt64(&stats.Keepalives),
			Resends:    atomic.LoadInt64(&stats.Resends),
			Closed:     atomic.LoadInt64(&stats.Closed),
		})
		fmt.Println(string(out))
	}
}

// dialRetry dials as session i's agent, retrying: a burst of dials can
// overrun the accept backlog.
func dialRetry(addr string, src net.IP, opts necptest.AgentOptions) (*necptest.Agent, error) {
	opts.Local, _ = netip.AddrFromSlice(src.To4())
	// Generous: it bounds the handshake's waits too, and a master joining
	// 20 000 sessions at once may be slow to answer one of them.
	opts.Timeout = 30 * time.Second
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		var a *necptest.Agent
		if a, err = necptest.Dial(addr, opts); err == nil {
			return a, nil
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return nil, err
}

// session runs session i until its connection ends: INIT, START (whatever
// its status), then a KEEPALIVE_ACK for every KEEPALIVE, counted in st.
// polled is called at its first KEEPALIVE, or when it fails.
func session(addr string, i int, health uint8, churn bool, polled func(), sem <-chan struct{}, st *simStats) {
	defer polled() // idempotent: for a session that ends before its first KEEPALIVE
	var a *necptest.Agent
	lastSeq := uint32(0)
	a, err := dialRetry(addr, sourceIP(i), necptest.AgentOptions{
		// Runs on the agent's loop, before each answer.
		OnKeepalive: func(seq uint32) {
			atomic.AddInt64(&st.Keepalives, 1)
			if seq == lastSeq {
				atomic.AddInt64(&st.Resends, 1)
			}
			lastSeq = seq
			if churn {
				a.SetHealth(health + uint8(seq%2)) // a new weight every time
			}
			polled()
		},
	})
	<-sem
	if err != nil {
		fmt.Fprintf(os.Stderr, "session %d: %v\n", i, err)
		atomic.AddInt64(&st.Closed, 1)
		return
	}
	defer a.Close()
	a.SetHealth(health)
	if _, err := a.Init(); err != nil {
		atomic.AddInt64(&st.Closed, 1)
		return
	}
	if _, err := a.Start(necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}); err != nil {
		atomic.AddInt64(&st.Closed, 1)
		return
	}
	<-a.Serve() // until the connection ends
	atomic.AddInt64(&st.Closed, 1)
}
