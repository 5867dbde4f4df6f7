// Command agentlat measures feedbackd-agent's KEEPALIVE reply latency and
// memory while one of its monitors is slow.
//
// It plays the master: listens on loopback, starts the agent binary with two
// services (a constant monitor, and an exec monitor whose command takes
// -slow to answer), completes the handshake, then sends -n KEEPALIVEs one at
// a time and times each KEEPALIVE_ACK. Because the agent answers from
// cached health, the slow monitor must not show in the latency. It reports
// p50/p99/max latency and the agent's RSS (idle, i.e. between samples, and
// peak), read from /proc.
//
//	go run ./test/bench/agentlat -agent bin/feedbackd-agent
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/test/bench/internal/procfs"
)

func main() {
	agentBin := flag.String("agent", "bin/feedbackd-agent", "agent binary")
	n := flag.Int("n", 5000, "KEEPALIVEs to time")
	gap := flag.Duration("gap", 2*time.Millisecond, "pause between KEEPALIVEs")
	slow := flag.Duration("slow", 5*time.Second, "how long the exec monitor's command takes")
	flag.Parse()
	if err := run(*agentBin, *n, *gap, *slow); err != nil {
		fmt.Fprintln(os.Stderr, "agentlat:", err)
		os.Exit(1)
	}
}

func run(agentBin string, n int, gap, slow time.Duration) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	dir, err := os.MkdirTemp("", "agentlat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "agent.conf")
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
`, ln.Addr(), slow.Seconds(), slow.Seconds()+2)), 0o644)
	cmd := exec.Command(agentBin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("agent did not connect: %w", err)
	}
	defer conn.Close()
	rd := necp.NewReader(conn)
	var m necp.Message
	recv := func(want necp.Type) error {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if err := rd.ReadMessage(&m); err != nil {
				return err
			}
			if m.Type == want {
				return nil
			}
		}
	}
	send := func(msg necp.Message) error { return necp.WriteMessage(conn, &msg) }
	if err := recv(necp.TypeInit); err != nil {
		return err
	}
	send(necp.Message{Type: necp.TypeInitAck, Seq: m.Seq})
	if err := recv(necp.TypeStart); err != nil {
		return err
	}
	send(necp.Message{Type: necp.TypeStartAck, Seq: m.Seq, Statuses: make([]necp.Status, len(m.Services))})

	// Let the slow sample get under way: the first one starts at once.
	time.Sleep(500 * time.Millisecond)
	lat := make([]time.Duration, 0, n)
	slowUnknown := 0
	start := time.Now()
	for i := 1; i <= n; i++ {
		t0 := time.Now()
		if err := send(necp.Message{Type: necp.TypeKeepalive, Seq: uint32(i)}); err != nil {
			return err
		}
		if err := recv(necp.TypeKeepaliveAck); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		if m.Seq != uint32(i) {
			return fmt.Errorf("ACK seq %d for KEEPALIVE %d", m.Seq, i)
		}
		for _, h := range m.Health {
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
	fmt.Printf("agent RSS %.1f MB, peak %.1f MB\n", float64(rss)/1024, float64(hwm)/1024)
	return nil
}
