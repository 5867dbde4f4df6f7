// Command agentlat measures feedbackd-agent's KEEPALIVE reply latency and
// memory while one of its monitors is slow.
//
// It plays the master with internal/necptest: listens on loopback, starts
// the agent binary with two services (a constant monitor, and an exec
// monitor whose command takes -slow to answer), completes the handshake,
// then sends -n KEEPALIVEs one at a time and times each KEEPALIVE_ACK.
// Because the agent answers from cached health, the slow monitor must not
// show in the latency. It reports p50/p99/max latency and the agent's RSS
// (idle, i.e. between samples, and peak), read from /proc.
//
//	go run ./test/bench/agentlat -agent bin/feedbackd-agent
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
	"github.com/lvs-feedbackd/feedbackd/internal/reaper"
	"github.com/lvs-feedbackd/feedbackd/test/bench/internal/procfs"
)

func main() {
	agentBin := flag.String("agent", "bin/feedbackd-agent", "agent binary")
	n := flag.Int("n", 5000, "KEEPALIVEs to time")
	gap := flag.Duration("gap", 2*time.Millisecond, "pause between KEEPALIVEs")
	slow := flag.Duration("slow", 5*time.Second, "how long the exec monitor's command takes")
	all := flag.Bool("all-monitors", false, "also a cpuload and a perl service: the four monitors of 2007")
	every := flag.Duration("sample", 0, "also print the agent's memory this often during the run (0: only at the end)")
	over := flag.Duration("over", 0, "also count the replies slower than this, by second of the run: do they come with the agent's unmapping every 30 s, or at random? (0: no)")
	flag.Parse()
	if err := run(*agentBin, *n, *gap, *slow, *all, *every, *over); err != nil {
		fmt.Fprintln(os.Stderr, "agentlat:", err)
		os.Exit(1)
	}
}

func run(agentBin string, n int, gap, slow time.Duration, all bool, every, over time.Duration) error {
	fm, err := necptest.Listen("", necptest.MasterOptions{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer fm.Close()
	dir, err := os.MkdirTemp("", "agentlat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "agent.conf")
	more := ""
	if all {
		script := filepath.Join(dir, "health.pl")
		os.WriteFile(script, []byte("sub get_health { return 60; }\n1;\n"), 0o644)
		more = fmt.Sprintf(`
[service]
name = cpu
protocol = tcp
port = 443
forwarding = DR
monitor = cpuload

[service]
name = perl
protocol = udp
port = 53
forwarding = DR
monitor = perl
file = %s
`, script)
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(`director = %s
master-timeout = 30
loglevel = WARN

[service]
name = fast
protocol = tcp
port = 80
forwarding = DR
monitor = constant
value = 50

[service]
name = slow
protocol = tcp
port = 25
forwarding = DR
monitor = exec
command = sleep %g; echo 70
timeout = %g
interval = 1
`, fm.Addr(), slow.Seconds(), slow.Seconds()+2)+more), 0o644)
	cmd := exec.Command(agentBin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	conn, err := fm.Accept(10 * time.Second)
	if err != nil {
		return fmt.Errorf("agent did not connect: %w", err)
	}
	if _, _, err := conn.Handshake(nil); err != nil {
		return err
	}

	// Let the slow sample get under way: the first one starts at once.
	time.Sleep(500 * time.Millisecond)
	lat := make([]time.Duration, 0, n)
	slowAt := map[int]int{} // second of the run -> replies slower than over
	slowUnknown := 0
	start := time.Now()
	next := start.Add(every)
	for i := 1; i <= n; i++ {
		if every > 0 && time.Now().After(next) {
			fmt.Printf("%6.0fs %s\n", time.Since(start).Seconds(), memory(cmd.Process.Pid))
			next = next.Add(every)
		}
		t0 := time.Now()
		ack, err := conn.Keepalive(uint32(i), 10*time.Second)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		if over > 0 && lat[len(lat)-1] > over {
			slowAt[int(t0.Sub(start).Seconds())]++
		}
		for _, h := range ack.Health {
			if h.Port == 25 && h.Health == necp.HealthUnknown {
				slowUnknown++
			}
		}
		time.Sleep(gap)
	}
	elapsed := time.Since(start)
	rss, hwm := procfs.MemKB(cmd.Process.Pid)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("agent reply latency over %d KEEPALIVEs in %v, exec monitor taking %v per sample:\n", n, elapsed.Round(time.Millisecond), slow)
	fmt.Printf("  p50 %v  p99 %v  max %v\n", q(0.50), q(0.99), lat[len(lat)-1])
	fmt.Printf("  slow service reported unknown in %d of %d replies (no sample finished yet)\n", slowUnknown, n)
	if over > 0 {
		secs := make([]int, 0, len(slowAt))
		total := 0
		for s, c := range slowAt {
			secs = append(secs, s)
			total += c
		}
		sort.Ints(secs)
		fmt.Printf("  %d replies slower than %v; by second of the run:", total, over)
		for _, s := range secs {
			fmt.Printf(" %ds:%d", s, slowAt[s])
		}
		fmt.Println()
	}
	fmt.Printf("agent RSS %.1f MB, peak %.1f MB, CPU %.2f s\n", float64(rss)/1024, float64(hwm)/1024,
		float64(procfs.CPUTicks(cmd.Process.Pid))/100)
	fmt.Printf("  %s\n", memory(cmd.Process.Pid))
	return nil
}

// memory says what the agent's RSS is made of: anonymous memory (heap,
// stacks, the runtime's own), which is the agent's alone, and the
// executable's pages, which the page cache holds and every process running
// the same file shares.
func memory(pid int) string {
	r := procfs.Rollup(pid)
	mb := func(k string) float64 { return float64(r[k]) / 1024 }
	line := fmt.Sprintf("RSS %.2f MB: anonymous %.2f MB, executable's pages %.2f MB; PSS %.2f MB, %d threads",
		mb("Rss"), mb("Anonymous"), mb("Rss")-mb("Anonymous"), mb("Pss"), r["Threads"])
	// The monitors' processes (reapers, the perl interpreter, a running
	// exec command) are the agent's cost too: PSS shares the executable's
	// pages out among them rather than counting them once per process.
	kids := reaper.Descendants("/proc", pid)
	pss, anon := r["Pss"], r["Anonymous"]
	for _, k := range kids {
		kr := procfs.Rollup(k)
		pss, anon = pss+kr["Pss"], anon+kr["Anonymous"]
	}
	return line + fmt.Sprintf("; with its %d monitor processes: PSS %.2f MB, anonymous %.2f MB",
		len(kids), float64(pss)/1024, float64(anon)/1024)
}
