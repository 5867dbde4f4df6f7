// Package sdnotify runs the real feedbackd-master binary the way systemd
// would, on a host whose PID 1 is not systemd: socket activation through
// systemd-socket-activate (from the systemd package), and the service
// protocol through a unixgram socket standing in for NOTIFY_SOCKET. It checks
// what feedbackd-master.service relies on: the master starts only on the
// first connection and uses the passed socket; READY=1 with a STATUS line;
// WATCHDOG=1 at half of WATCHDOG_USEC; RELOADING=1 + MONOTONIC_USEC and
// READY=1 around SIGHUP, a broken file keeping the old configuration with
// file:line in the status; STOPPING=1 on SIGTERM.
//
// The real-systemd proof of the units is the QEMU/nspawn tier's job.
package sdnotify

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

const goodConf = `loglevel = INFO
keepalive-interval = 0.2
keepalive-timeout = 1
keepalive-retries = 1
removal-interval = 1

[virtual-service]
name = web
address = 192.0.2.1
protocol = tcp
port = 80
scheduler = wrr
`

type notes struct {
	t    *testing.T
	conn *net.UnixConn
	seen []string
}

// next returns the next datagram, or "" when none came before the deadline.
func (n *notes) next(within time.Duration) string {
	n.conn.SetReadDeadline(time.Now().Add(within))
	b := make([]byte, 4096)
	k, err := n.conn.Read(b)
	if err != nil {
		return ""
	}
	s := string(b[:k])
	n.seen = append(n.seen, s)
	return s
}

// expect waits for a datagram starting with prefix, skipping WATCHDOG=1 and
// STATUS= updates, which may come at any time.
func (n *notes) expect(prefix string, within time.Duration) string {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m := n.next(time.Until(deadline))
		if strings.HasPrefix(m, prefix) {
			return m
		}
	}
	n.t.Fatalf("no %q within %v; got %q", prefix, within, n.seen)
	return ""
}

func TestSocketActivationAndNotify(t *testing.T) {
	for _, tool := range []string{"systemd-socket-activate"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the systemd package (apt-get install systemd)", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "feedbackd-master")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/feedbackd-master").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "master.conf")
	os.WriteFile(conf, []byte(goodConf), 0o644)

	sockPath := filepath.Join(dir, "notify.sock")
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	n := &notes{t: t, conn: ns}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	logs := &testutil.SyncBuffer{}
	cmd := exec.Command("systemd-socket-activate", "-l", addr,
		"-E", "NOTIFY_SOCKET="+sockPath, "-E", "WATCHDOG_USEC=1000000",
		bin, "--without-ipvs", "-c", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("master output:\n%s\nnotifications: %q", logs.String(), n.seen)
		}
	}()

	// Not started before the first connection: nothing is notified.
	waitListening(t, addr)
	if m := n.next(300 * time.Millisecond); m != "" {
		t.Fatalf("notification %q before any connection: the master started without being activated", m)
	}

	// The first agent connection starts it, on the passed socket.
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	necp.WriteMessage(c, &necp.Message{Type: necp.TypeInit, Seq: 1})
	rd := necp.NewReader(c)
	var msg necp.Message
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := rd.ReadMessage(&msg); err != nil || msg.Type != necp.TypeInitAck {
		t.Fatalf("no INIT_ACK from the activated master: %v %v", err, msg.Type)
	}
	ready := n.expect("READY=1", 10*time.Second)
	if !strings.Contains(ready, "STATUS=") {
		t.Fatalf("READY without STATUS: %q", ready)
	}

	// The watchdog is fed at half of WATCHDOG_USEC (1 s): count pings over
	// two seconds.
	pings, start := 0, time.Now()
	for time.Since(start) < 2*time.Second {
		if m := n.next(time.Until(start.Add(2 * time.Second))); m == "WATCHDOG=1" {
			pings++
		}
	}
	if pings < 3 || pings > 6 {
		t.Fatalf("%d WATCHDOG=1 in 2 s with WatchdogSec=1s, want about 4", pings)
	}

	// A broken file on SIGHUP: RELOADING, then READY again with the old
	// configuration still running, and the error's file:line in STATUS.
	os.WriteFile(conf, []byte(strings.Replace(goodConf, "scheduler = wrr", "scheduler = fastest", 1)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	rl := n.expect("RELOADING=1", 5*time.Second)
	if !strings.Contains(rl, "MONOTONIC_USEC=") {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", rl)
	}
	ready = n.expect("READY=1", 5*time.Second)
	if want := conf + ":12: scheduler"; !strings.Contains(ready, want) {
		t.Fatalf("status after a broken reload %q does not name %s", ready, want)
	}
	// The log line is written before READY=1 is sent, but it reaches
	// this test through the stderr pipe, which READY=1 can overtake.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "reload failed; keeping the running configuration"); {
		if time.Now().After(deadline) {
			t.Fatal("broken reload not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A good file with one more virtual service: reloaded.
	os.WriteFile(conf, []byte(goodConf+"\n[virtual-service]\nname = dns\naddress = 192.0.2.1\nprotocol = udp\nport = 53\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	n.expect("RELOADING=1", 5*time.Second)
	ready = n.expect("READY=1", 5*time.Second)
	if strings.Contains(ready, "reload failed") {
		t.Fatalf("status still reports the failed reload: %q", ready)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "UDP  192.0.2.1:53") {
		if time.Now().After(deadline) {
			t.Fatal("the reloaded virtual service never appeared in the in-memory table")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// SIGTERM: STOPPING=1, and a clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	n.expect("STOPPING=1", 5*time.Second)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("master exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("master did not exit after SIGTERM")
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	// systemd-socket-activate binds before it prints; poll with a probe that
	// does not connect (a connection would activate the master): try to bind
	// the same address, which fails once it is taken.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return
		}
		l.Close()
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate never listened on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
