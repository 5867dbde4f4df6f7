// Command peers measures feedbackd-master against HAProxy's agent-check at
// the same number of agents, side by side (issue 20).
//
// For each count it alternates, for -reps repetitions: the project's scale
// bench (test/bench/scale: the real master, --without-ipvs, N simulated
// agents on loopback, steady health), optionally the same with a second
// master binary (-baseline, to measure a change in the same run), the worst
// case (every reply a new health and weight-threshold 0, so that every
// KEEPALIVE is a weight write), and Debian's haproxy polling N loopback
// agents with `agent-check agent-inter 2s`, one responder process (this
// program, -responder) answering "75%". HAProxy's stats socket must show
// every server at weight 75 before and after the window, or the run counts
// as failed.
//
// The figures are printed, never judged: on a shared machine only ratios
// measured side by side mean anything. run.sh installs haproxy and raises
// the open-files limit; see docs/benchmarks.md.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lvs-feedbackd/feedbackd/test/bench/internal/procfs"
)

func main() {
	responder := flag.Bool("responder", false, "internal: answer agent checks with 75% (child mode)")
	master := flag.String("master", "bin/feedbackd-master", "master binary")
	baseline := flag.String("baseline", "", "a second master binary measured the same way, alternating (a before/after comparison)")
	scale := flag.String("scale", "bin/scale", "the scale bench binary (go build -o bin/scale ./test/bench/scale)")
	haproxy := flag.String("haproxy", "/usr/sbin/haproxy", "haproxy binary")
	ns := flag.String("n", "1000,5000,20000", "agent counts (lowered to what the open-files limit allows)")
	reps := flag.Int("reps", 3, "repetitions of each pair")
	window := flag.Duration("window", 20*time.Second, "measurement window")
	interval := flag.Duration("interval", 2*time.Second, "keepalive-interval and agent-inter")
	worst := flag.Bool("worst", true, "also measure the master's worst case (-churn, weight-threshold 0)")
	flag.Parse()
	if *responder {
		runResponder(*interval)
		return
	}

	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	fmt.Printf("open files: soft %d, hard %d", lim.Cur, lim.Max)
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
			fmt.Printf("; soft limit raised to %d", lim.Max)
		}
	}
	fmt.Println()
	// Each side needs one descriptor per agent in one process (the
	// master's sessions; the scale bench's children hold at most 5 000
	// each), plus a few dozen of its own.
	maxN := int(lim.Cur) - 100
	var counts []int
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatal("bad -n %q", f)
		}
		if n > maxN {
			fmt.Printf("%d agents need more open files than the hard limit %d allows (it cannot be raised here without CAP_SYS_RESOURCE): measuring %d\n", n, lim.Max, maxN)
			n = maxN
		}
		counts = append(counts, n)
	}
	fmt.Printf("machine: %d CPUs, load average %s; interval %v, window %v, %d repetitions\n",
		numCPU(), loadavg(), *interval, *window, *reps)

	type side struct {
		name string
		run  func(n int) (*figures, error)
	}
	sides := []side{
		{"feedbackd", func(n int) (*figures, error) { return runScale(*scale, *master, n, *interval, *window, false) }},
		{"haproxy", func(n int) (*figures, error) { return runHAProxy(*haproxy, n, *interval, *window) }},
	}
	if *baseline != "" {
		sides = append(sides, side{"baseline", func(n int) (*figures, error) { return runScale(*scale, *baseline, n, *interval, *window, false) }})
	}
	if *worst {
		sides = append(sides, side{"feedbackd-worst", func(n int) (*figures, error) { return runScale(*scale, *master, n, *interval, *window, true) }})
	}

	fmt.Printf("\n%-16s %6s %4s %10s %8s %8s %8s %8s %9s\n", "run", "agents", "rep", "cpu_%core", "rss_MB", "hwm_MB", "polls", "missed", "reads/ka")
	results := map[string]map[int][]*figures{}
	for _, sd := range sides {
		results[sd.name] = map[int][]*figures{}
	}
	for _, n := range counts {
		for rep := 1; rep <= *reps; rep++ {
			order := slices.Clone(sides)
			if rep%2 == 0 {
				slices.Reverse(order)
			}
			for _, sd := range order {
				f, err := sd.run(n)
				if err != nil {
					fmt.Printf("%-16s %6d %4d  error: %v\n", sd.name, n, rep, err)
					continue
				}
				results[sd.name][n] = append(results[sd.name][n], f)
				reads := "n/a"
				if f.readsPerPoll >= 0 {
					reads = fmt.Sprintf("%.2f", f.readsPerPoll)
				}
				fmt.Printf("%-16s %6d %4d %10.1f %8.1f %8.1f %8d %8d %9s\n", sd.name, n, rep, f.cpu, f.rssMB, f.hwmMB, f.polls, f.missed, reads)
			}
		}
	}

	fmt.Printf("\nsummary: median [min–max] over the repetitions\n")
	for _, n := range counts {
		fmt.Printf("\n%d agents\n", n)
		for _, sd := range sides {
			rs := results[sd.name][n]
			if len(rs) == 0 {
				fmt.Printf("  %-16s no successful run\n", sd.name)
				continue
			}
			var missed int64
			for _, r := range rs {
				missed += r.missed
			}
			fmt.Printf("  %-16s cpu %s %% of a core, rss %s MB, peak %s MB, missed %d, reads/poll %s\n", sd.name,
				stat(rs, func(f *figures) float64 { return f.cpu }, "%.1f"),
				stat(rs, func(f *figures) float64 { return f.rssMB }, "%.0f"),
				stat(rs, func(f *figures) float64 { return f.hwmMB }, "%.0f"),
				missed, stat(rs, func(f *figures) float64 { return f.readsPerPoll }, "%.2f"))
		}
		fb, hp := results["feedbackd"][n], results["haproxy"][n]
		ratio := func(label string, a, b []*figures, v func(*figures) float64) {
			var rs []*figures
			for i := range min(len(a), len(b)) {
				if v(b[i]) > 0 {
					rs = append(rs, &figures{cpu: v(a[i]) / v(b[i])})
				}
			}
			if len(rs) > 0 {
				fmt.Printf("  %-40s %s\n", label, stat(rs, func(f *figures) float64 { return f.cpu }, "%.2f"))
			}
		}
		cpu := func(f *figures) float64 { return f.cpu }
		rss := func(f *figures) float64 { return f.rssMB }
		ratio("haproxy CPU / feedbackd CPU (per pair)", hp, fb, cpu)
		ratio("feedbackd RSS / haproxy RSS (per pair)", fb, hp, rss)
		if bl := results["baseline"][n]; len(bl) > 0 {
			ratio("baseline CPU / feedbackd CPU (per pair)", bl, fb, cpu)
			ratio("baseline RSS / feedbackd RSS (per pair)", bl, fb, rss)
		}
		if w := results["feedbackd-worst"][n]; len(w) > 0 {
			ratio("worst-case CPU / steady CPU (per pair)", w, fb, cpu)
		}
	}
}

// figures are one run's measurements of the polling process.
type figures struct {
	cpu, rssMB, hwmMB float64
	polls, missed     int64
	readsPerPoll      float64 // -1: not measured
}

func stat(rs []*figures, v func(*figures) float64, format string) string {
	var xs []float64
	for _, r := range rs {
		if x := v(r); x >= 0 {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return "n/a"
	}
	slices.Sort(xs)
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", med, xs[0], xs[len(xs)-1])
}

// runScale runs the scale bench once and reads its result line.
func runScale(scale, master string, n int, interval, window time.Duration, worst bool) (*figures, error) {
	args := []string{"-master", master, "-n", strconv.Itoa(n), "-interval", interval.String(), "-window", window.String()}
	if worst {
		args = append(args, "-churn", "-weight-threshold", "0")
	}
	out, err := exec.Command(scale, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", scale, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	// sessions join_s cpu rss hwm keepalive missed closed reads/ka writes/ka
	if len(f) != 10 {
		return nil, fmt.Errorf("scale: %q", lines[len(lines)-1])
	}
	num := func(i int) float64 { x, _ := strconv.ParseFloat(f[i], 64); return x }
	if num(7) > 0 {
		return nil, fmt.Errorf("the master closed %v sessions", num(7))
	}
	return &figures{cpu: num(2), rssMB: num(3), hwmMB: num(4), polls: int64(num(5)), missed: int64(num(6)), readsPerPoll: num(8)}, nil
}

// agentIP is agent i's loopback address, as the scale bench numbers them.
func agentIP(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/(250*256), i/250%256, 1+i%250)
}

func runHAProxy(bin string, n int, interval, window time.Duration) (*figures, error) {
	dir, err := os.MkdirTemp("", "feedbackd-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	self, _ := os.Executable()
	resp := exec.Command(self, "-responder", "-interval", interval.String())
	in, _ := resp.StdinPipe()
	outp, _ := resp.StdoutPipe()
	resp.Stderr = os.Stderr
	if err := resp.Start(); err != nil {
		return nil, err
	}
	defer func() { in.Close(); resp.Process.Kill(); resp.Wait() }()
	out := bufio.NewScanner(outp)
	if !out.Scan() {
		return nil, fmt.Errorf("responder did not start")
	}
	port := strings.TrimPrefix(out.Text(), "port ")

	sock := filepath.Join(dir, "stats.sock")
	// HAProxy sizes its descriptor need as two per server (a health
	// check and an agent check may run at once) and, by default
	// (strict-limits), exits when the limit is below that. Only agent
	// checks run here, each for a few milliseconds, so the process's own
	// limit is plenty: no strict-limits, and HAProxy's ALERT about it
	// (19 900 servers, hard limit 20 000) is harmless. No traffic flows:
	// maxconn 100.
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    stats socket %s mode 600 level admin
    ulimit-n %d
    maxconn 100
    no strict-limits
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 5s
backend agents
`, sock, nofile())
	ms := interval.Milliseconds()
	for i := range n {
		fmt.Fprintf(&cfg, "    server s%d %s:80 weight 100 agent-check agent-port %s agent-inter %dms\n", i, agentIP(i), port, ms)
	}
	conf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	hlog, _ := os.Create(filepath.Join(dir, "haproxy.log"))
	defer hlog.Close()
	hp := exec.Command(bin, "-db", "-f", conf)
	hp.Stdout, hp.Stderr = hlog, hlog
	if err := hp.Start(); err != nil {
		return nil, err
	}
	defer func() { hp.Process.Signal(syscall.SIGTERM); hp.Wait() }()

	// Every server at 75 % of its weight: each agent has been polled.
	deadline := time.Now().Add(60*time.Second + time.Duration(n)*time.Millisecond)
	for {
		ok, err := weightsApplied(sock, n)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(hlog.Name())
			return nil, fmt.Errorf("haproxy: weights not applied in time (%v); log: %.500s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(interval)
	pid := hp.Process.Pid
	c0, err := responderStats(in, out)
	if err != nil {
		return nil, err
	}
	cpu0, t0 := procfs.CPUTicks(pid), time.Now()
	time.Sleep(window)
	cpu1, t1 := procfs.CPUTicks(pid), time.Now()
	rss, hwm := procfs.MemKB(pid)
	c1, err := responderStats(in, out)
	if err != nil {
		return nil, err
	}
	if ok, err := weightsApplied(sock, n); !ok {
		return nil, fmt.Errorf("haproxy: after the window not every weight is 75: %v", err)
	}
	const clkTck = 100
	return &figures{
		cpu:          float64(cpu1-cpu0) / clkTck / t1.Sub(t0).Seconds() * 100,
		rssMB:        float64(rss) / 1024,
		hwmMB:        float64(hwm) / 1024,
		polls:        c1.Checks - c0.Checks,
		missed:       c1.Late - c0.Late,
		readsPerPoll: -1, // haproxy reads sockets with recv, which /proc/PID/io does not count
	}, nil
}

// weightsApplied asks HAProxy's stats socket whether all n servers have
// weight 75 (srv_uweight of "show servers state").
func weightsApplied(sock string, n int) (bool, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "show servers state agents\n"); err != nil {
		return false, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	at75, seen := 0, 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || strings.HasPrefix(f[0], "#") {
			continue
		}
		seen++
		if f[7] == "75" {
			at75++
		}
	}
	if at75 != n {
		return false, fmt.Errorf("%d of %d servers at weight 75 (%d listed)", at75, n, seen)
	}
	return true, nil
}

type respStats struct {
	Checks int64 `json:"checks"`
	Late   int64 `json:"late"`
}

func responderStats(in io.Writer, out *bufio.Scanner) (respStats, error) {
	var s respStats
	if _, err := io.WriteString(in, "stats\n"); err != nil {
		return s, err
	}
	if !out.Scan() {
		return s, fmt.Errorf("responder gave no stats")
	}
	return s, json.Unmarshal(out.Bytes(), &s)
}

// runResponder answers every connection with "75%\n" and closes it, the
// agent of HAProxy's agent-check. It counts the checks and, per agent
// address, the checks that came more than two intervals after the one
// before (a poll skipped: HAProxy's counterpart of a missed KEEPALIVE).
func runResponder(interval time.Duration) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		fatal("responder: %v", err)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	var mu sync.Mutex
	last := map[string]time.Time{}
	var st respStats
	answer := []byte("75%\n")
	for range 2 {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write(answer)
				c.Close()
				now := time.Now()
				addr := c.LocalAddr().(*net.TCPAddr).IP.String()
				mu.Lock()
				st.Checks++
				if t, ok := last[addr]; ok && now.Sub(t) > 2*interval {
					st.Late++
				}
				last[addr] = now
				mu.Unlock()
			}
		}()
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		mu.Lock()
		b, _ := json.Marshal(st)
		mu.Unlock()
		fmt.Println(string(b))
	}
}

func nofile() uint64 {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	os.Exit(1)
}
