package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func TestHandshake(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	states := make(chan string, 8)
	opts.OnState = func(connected bool, summary string) {
		if connected {
			states <- summary
		}
	}
	cfg := testConfig(fm.addr(),
		constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75),
		constService("dns", necp.ProtoUDP, 53, necp.ForwardDR, 40),
		constService("smtp", necp.ProtoTCP, 25, necp.ForwardTUN, 10),
	)
	startAgent(t, cfg, opts, nil)

	mc := fm.accept(2 * time.Second)
	init, start := mc.handshake([]necp.Status{necp.StatusAccepted, necp.StatusNoMatch, necp.StatusRefused})

	if init.Seq != 1 || init.Version != necp.Version {
		t.Errorf("INIT seq %d version %d, want seq 1 version %d", init.Seq, init.Version, necp.Version)
	}
	if start.Seq != 2 {
		t.Errorf("START seq = %d, want 2 (the agent's second request)", start.Seq)
	}
	want := []necp.ServiceRecord{
		{Protocol: necp.ProtoTCP, Forwarding: necp.ForwardNAT, Port: 80},
		{Protocol: necp.ProtoUDP, Forwarding: necp.ForwardDR, Port: 53},
		{Protocol: necp.ProtoTCP, Forwarding: necp.ForwardTUN, Port: 25},
	}
	if !slices.Equal(start.Services, want) {
		t.Errorf("START services\n got %+v\nwant %+v", start.Services, want)
	}
	for _, s := range start.Services {
		if s.Address != (netip.Addr{}) {
			t.Errorf("START record %+v carries an address; want 0 (use the peer)", s)
		}
	}

	select {
	case s := <-states:
		if !strings.Contains(s, "1 of 3 services accepted") || !strings.Contains(s, fm.addr()) {
			t.Errorf("OnState summary %q lacks the director or the accepted count", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnState(true, ...) not called after START_ACK")
	}
	// The statuses are logged once OnState has run (both happen after
	// START_ACK, logs first).
	for _, want := range [][]string{
		{"level=INFO", "service accepted by master", "service=http"},
		{"level=WARN", "no virtual service", "service=dns"},
		{"level=WARN", "master refused service", "service=smtp"},
	} {
		if _, ok := logs.logLine(want...); !ok {
			t.Errorf("no log line with %q in:\n%s", want, logs)
		}
	}
}

func TestKeepaliveAckEchoesSeqAndReportsEveryService(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	var acks atomic.Int64
	opts.OnKeepalive = func() { acks.Add(1) }
	cfg := testConfig(fm.addr(),
		constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75),
		constService("dns", necp.ProtoUDP, 53, necp.ForwardDR, 40),
	)
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)

	seq := uint32(1000)
	ack := mc.keepaliveUntil(&seq, allKnown)
	want := []necp.HealthRecord{
		{Protocol: necp.ProtoTCP, Health: 75, Port: 80},
		{Protocol: necp.ProtoUDP, Health: 40, Port: 53},
	}
	if !slices.Equal(ack.Health, want) {
		t.Errorf("KEEPALIVE_ACK health\n got %+v\nwant %+v", ack.Health, want)
	}

	// The echo must be the master's number, whatever it is.
	for _, s := range []uint32{0xdeadbeef, 7, 7} {
		if got := mc.keepalive(s, time.Second); !slices.Equal(got.Health, want) {
			t.Errorf("KEEPALIVE_ACK for seq %#x health %+v, want %+v", s, got.Health, want)
		}
	}
	// OnKeepalive runs after the write, so the last one may still be on its
	// way; all earlier ones have certainly happened.
	if n, min := acks.Load(), int64(seq-1000+2); n < min {
		t.Errorf("OnKeepalive called %d times, want at least %d", n, min)
	}
	if _, ok := logs.logLine("level=VDEBUG", "answered KEEPALIVE", "http=75 dns=40"); !ok {
		t.Errorf("no VDEBUG line for the answered KEEPALIVE in:\n%s", logs)
	}
	if l, ok := logs.logLine("answered KEEPALIVE", "level=DEBUG"); ok {
		t.Errorf("per-KEEPALIVE line logged above VDEBUG: %s", l)
	}
}

// A monitor that takes seconds must not delay the reply: the reply comes
// from the sampler's cache and the slow service is reported as unknown.
func TestKeepaliveNotDelayedBySlowMonitor(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	slow := config.Service{
		Name: "slow", Protocol: necp.ProtoTCP, Port: 8080, Forwarding: necp.ForwardDR, Monitor: "exec",
		Params: map[string]string{"command": "sleep 5; echo 50", "interval": "50ms"},
	}
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardDR, 75), slow)
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)

	seq := uint32(0)
	// keepalive() fails the test if any single reply takes over a second.
	ack := mc.keepaliveUntil(&seq, func(m necp.Message) bool { return m.Health[0].Health == 75 })
	for i := 0; i < 5; i++ {
		seq++
		begin := time.Now()
		ack = mc.keepalive(seq, time.Second)
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("reply took %s", d)
		}
	}
	want := []necp.HealthRecord{
		{Protocol: necp.ProtoTCP, Health: 75, Port: 80},
		{Protocol: necp.ProtoTCP, Health: necp.HealthUnknown, Port: 8080},
	}
	if !slices.Equal(ack.Health, want) {
		t.Errorf("health %+v, want %+v", ack.Health, want)
	}
}

func TestMasterSilenceReconnects(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	lost := make(chan string, 8)
	opts.OnState = func(connected bool, summary string) {
		if !connected {
			lost <- summary
		}
	}
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.MasterTimeout = 300 * time.Millisecond
	startAgent(t, cfg, opts, nil)

	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	silentSince := time.Now() // no earlier than the agent received START_ACK
	mc.expectClosed(3 * time.Second)
	if d := time.Since(silentSince); d < cfg.MasterTimeout {
		t.Errorf("agent gave up after %s of silence, before master-timeout %s", d, cfg.MasterTimeout)
	}
	// Master-timeout plus BackoffMin, with generous slack for slow CI.
	mc2 := fm.accept(cfg.MasterTimeout + opts.BackoffMin + 2*time.Second)
	init, _ := mc2.handshake(nil)
	if init.Seq != 1 {
		t.Errorf("INIT on the new connection has seq %d, want 1 (numbering is per connection)", init.Seq)
	}

	if _, ok := logs.logLine("level=WARN", `msg="Master timed out, attempting reconnection"`, "director="+fm.addr()); !ok {
		t.Errorf("no WARN \"Master timed out, attempting reconnection\" in:\n%s", logs)
	}
	select {
	case s := <-lost:
		if !strings.Contains(s, "timed out") {
			t.Errorf("OnState(false) summary %q does not say the master timed out", s)
		}
	default:
		t.Error("OnState(false, ...) not called when the master was lost")
	}
}

// Every received message renews master-timeout, so a master that keeps
// polling keeps the connection, however long the session lasts.
func TestKeepalivesKeepConnectionAlive(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	// A master-timeout of a second, polled every quarter of it: a loaded
	// machine (CI's two cores shared with a build) can hold this goroutine
	// for a few hundred milliseconds, which a tighter timeout turned into
	// a false failure.
	cfg.MasterTimeout = time.Second
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)

	// The session outlives three master-timeouts.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(3 * cfg.MasterTimeout)
	for seq := uint32(1); time.Now().Before(end); seq++ {
		<-tick.C
		mc.keepalive(seq, time.Second)
	}
	fm.noConnection()
	if l, ok := logs.logLine("Master timed out"); ok {
		t.Errorf("agent timed out although the master was polling: %s", l)
	}
}

func TestMalformedFrameReconnects(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	mc.keepalive(1, time.Second)

	mc.writeRaw([]byte{0x01, 0x02, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01}) // length 7 < 8 (§9)
	mc.expectClosed(2 * time.Second)
	mc2 := fm.accept(2 * time.Second)
	mc2.handshake(nil)
	mc2.keepalive(1, time.Second)
	if _, ok := logs.logLine("level=WARN", "malformed message from master", "length 7"); !ok {
		t.Errorf("no WARN about the malformed message in:\n%s", logs)
	}
}

// NOOP, unknown types, master-bound types and stale ACKs are skipped
// without dropping the connection or answering them (§3).
func TestSkipsMessagesItDoesNotHandle(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)

	mc.writeRaw([]byte{0x01, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x09}) // NOOP (§9)
	mc.writeRaw([]byte{0x01, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0a}) // type 42
	mc.write(necp.Message{Type: necp.TypeInit, Seq: 11})                // wrong direction
	mc.write(necp.Message{Type: necp.TypeStopAck, Seq: 99})             // answers nothing
	mc.write(necp.Message{Version: 2, Type: necp.TypeNoop, Seq: 12})    // other version
	// The next thing the agent sends must be this ACK: nothing above was
	// answered, and the connection is still up.
	mc.keepalive(13, time.Second)

	for _, want := range [][]string{
		{"level=DEBUG", "NOOP from master skipped"},
		{"level=DEBUG", "unknown type skipped", "Type(42)"},
		{"level=WARN", "wrong direction", "type=INIT"},
		{"level=DEBUG", "no outstanding request", "type=STOP_ACK", "seq=99"},
		{"level=WARN", "different NECP version", "version=2"},
	} {
		if _, ok := logs.logLine(want...); !ok {
			t.Errorf("no log line with %q in:\n%s", want, logs)
		}
	}
}

// ctx cancellation sends STOP (count 0) at once, even though master-timeout
// is long, and Run returns only after STOP_ACK.
func TestStopOnCancel(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	opts.StopTimeout = 5 * time.Second // long: Run must return because of the ACK
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.MasterTimeout = 10 * time.Second
	ra := startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	mc.keepalive(1, time.Second) // the agent is in its serve loop

	ra.cancel()
	stop := mc.expect(necp.TypeStop, time.Second)
	if stop.Seq != 3 || len(stop.Services) != 0 {
		t.Errorf("STOP seq %d with %d services, want seq 3 (after INIT 1, START 2) and count 0 (all)", stop.Seq, len(stop.Services))
	}
	// An ACK with another sequence number answers nothing (§3).
	mc.write(necp.Message{Type: necp.TypeStopAck, Seq: stop.Seq + 1})
	select {
	case err := <-ra.done:
		ra.done <- err // for the cleanup
		t.Fatalf("Run returned (%v) before the STOP_ACK for seq %d", err, stop.Seq)
	case <-time.After(100 * time.Millisecond):
	}
	mc.write(necp.Message{Type: necp.TypeStopAck, Seq: stop.Seq})
	if err := ra.wait(t, time.Second); err != nil {
		t.Errorf("Run = %v, want nil after a clean stop", err)
	}
	mc.expectClosed(time.Second)
}

// A master that stops reading blocks the agent's KEEPALIVE_ACK write once the
// socket buffers are full; cancellation must still end Run promptly rather
// than after master-timeout. net.Pipe stands in for TCP because its writes
// block until the other end reads, which real loopback sockets only do
// after megabytes of backlog.
func TestCancelUnblocksWrite(t *testing.T) {
	agentEnd, masterEnd := net.Pipe()
	t.Cleanup(func() { masterEnd.Close() })
	opts, _ := testOptions()
	opts.StopTimeout = 200 * time.Millisecond
	opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return agentEnd, nil }
	cfg := testConfig("192.0.2.1", constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.MasterTimeout = 30 * time.Second
	cfg.ConnectionRetries = 1 // a second dial would reuse the closed pipe
	ra := startAgent(t, cfg, opts, nil)
	mc := &masterConn{t: t, c: masterEnd, r: necp.NewReader(masterEnd)}
	mc.handshake(nil)
	mc.keepalive(1, time.Second)

	mc.write(necp.Message{Type: necp.TypeKeepalive, Seq: 2})
	// Take one byte of the answer: the agent is now provably inside Write,
	// blocked on the other fifteen.
	masterEnd.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := masterEnd.Read(make([]byte, 1)); err != nil {
		t.Fatalf("reading the first byte of the KEEPALIVE_ACK: %v", err)
	}

	begin := time.Now()
	ra.cancel()
	if err := ra.wait(t, 3*time.Second); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if d := time.Since(begin); d > opts.StopTimeout+time.Second {
		t.Errorf("Run returned %s after cancel, want about StopTimeout %s", d, opts.StopTimeout)
	}
}

func TestStopTimeoutWithoutAck(t *testing.T) {
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	opts.StopTimeout = 300 * time.Millisecond
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	ra := startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	mc.keepalive(1, time.Second)

	begin := time.Now()
	ra.cancel()
	mc.expect(necp.TypeStop, time.Second)
	// A KEEPALIVE while stopping is not answered and does not end the wait.
	mc.write(necp.Message{Type: necp.TypeKeepalive, Seq: 2})
	if err := ra.wait(t, opts.StopTimeout+2*time.Second); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if d := time.Since(begin); d < opts.StopTimeout {
		t.Errorf("Run returned %s after cancel, before StopTimeout %s", d, opts.StopTimeout)
	}
	if _, ok := logs.logLine("level=WARN", "no STOP_ACK"); !ok {
		t.Errorf("no WARN about the missing STOP_ACK in:\n%s", logs)
	}
}

// An INIT_ACK that echoes another sequence number does not complete INIT.
func TestHandshakeIgnoresStaleAck(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	init := mc.expect(necp.TypeInit, time.Second)
	mc.write(necp.Message{Type: necp.TypeInitAck, Seq: init.Seq + 41})
	if m, err := mc.tryRead(100 * time.Millisecond); err == nil {
		t.Fatalf("agent sent %v after an INIT_ACK for the wrong seq", m.Type)
	}
	mc.write(necp.Message{Type: necp.TypeInitAck, Seq: init.Seq})
	mc.expect(necp.TypeStart, time.Second)
}

// Cancelling during the handshake returns at once, without STOP (nothing
// was registered) and without waiting for master-timeout.
func TestCancelDuringHandshake(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.MasterTimeout = 10 * time.Second
	ra := startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.expect(necp.TypeInit, time.Second)
	ra.cancel()
	if err := ra.wait(t, 2*time.Second); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	mc.expectClosed(time.Second)
}

// A master that accepts but never answers INIT costs one master-timeout and
// counts as a failed attempt.
func TestHandshakeBoundedByMasterTimeout(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.MasterTimeout = 300 * time.Millisecond
	cfg.ConnectionRetries = 1
	begin := time.Now()
	ra := startAgent(t, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.expect(necp.TypeInit, time.Second)
	err := ra.wait(t, 3*time.Second)
	if err == nil || !strings.Contains(err.Error(), "INIT_ACK") {
		t.Errorf("Run = %v, want an error about the missing INIT_ACK", err)
	}
	if d := time.Since(begin); d < cfg.MasterTimeout {
		t.Errorf("gave up after %s, before master-timeout %s", d, cfg.MasterTimeout)
	}
}

func TestConnectionRetriesAgainstClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every connect is refused

	opts, logs := testOptions()
	var attempts atomic.Int32
	d := net.Dialer{Timeout: time.Second}
	opts.Dial = func(ctx context.Context, a string) (net.Conn, error) {
		attempts.Add(1)
		return d.DialContext(ctx, "tcp4", a)
	}
	cfg := testConfig(addr, constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.ConnectionRetries = 2
	ra := startAgent(t, cfg, opts, nil)
	err = ra.wait(t, 5*time.Second)
	if err == nil {
		t.Fatal("Run = nil, want an error after 2 failed attempts")
	}
	if !strings.Contains(err.Error(), "2 failed connection attempts") || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not give the count and the director", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("%d connection attempts, want 2", n)
	}
	if _, ok := logs.logLine("level=WARN", "connection to master failed", "attempt=2"); !ok {
		t.Errorf("no WARN for the second failed attempt in:\n%s", logs)
	}
}

// The back-off schedule, observed through the agent's sleep hook with the
// production defaults (1 s doubling to 30 s): it resets after a successful
// START_ACK, and connection-retries counts consecutive failures only.
func TestBackoffScheduleAndReset(t *testing.T) {
	fm := newFakeMaster(t)
	log, _ := testLogger()

	tests := []struct {
		name     string
		retries  int
		script   []bool // per attempt: true = reaches the master; attempts beyond fail
		want     []time.Duration
		attempts int
	}{
		{
			name:    "reset after START_ACK",
			retries: 4,
			script:  []bool{false, false, false, true},
			// 3 failures, a session that answers a KEEPALIVE (then an
			// immediate redial, no wait), then 4 consecutive failures end Run.
			want:     []time.Duration{1, 2, 4, 1, 2, 4},
			attempts: 8,
		},
		{
			name:     "capped at 30s",
			retries:  9,
			want:     []time.Duration{1, 2, 4, 8, 16, 30, 30, 30},
			attempts: 9,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var delays []time.Duration
			attempt := 0
			opts := Options{Logger: log, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				mu.Lock()
				attempt++
				n := attempt
				mu.Unlock()
				if n <= len(tc.script) && tc.script[n-1] {
					var d net.Dialer
					return d.DialContext(ctx, "tcp4", fm.addr())
				}
				return nil, fmt.Errorf("scripted failure %d", n)
			}}
			cfg := testConfig("192.0.2.1", constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
			cfg.ConnectionRetries = tc.retries
			ra := startAgent(t, cfg, opts, func(a *Agent) {
				a.sleep = func(ctx context.Context, d time.Duration) bool {
					mu.Lock()
					delays = append(delays, d)
					mu.Unlock()
					return ctx.Err() == nil
				}
			})
			for _, ok := range tc.script {
				if ok {
					mc := fm.accept(5 * time.Second)
					mc.handshake(nil)
					mc.keepalive(1, time.Second) // registered: START_ACK processed
					mc.c.Close()
				}
			}
			if err := ra.wait(t, 5*time.Second); err == nil {
				t.Fatal("Run = nil, want the connection-retries error")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(delays) != len(tc.want) {
				t.Fatalf("waits %v, want %d of them (×1s): %v", delays, len(tc.want), tc.want)
			}
			for i, d := range delays {
				hi := tc.want[i] * time.Second
				if d > hi || d < hi*4/5 {
					t.Errorf("wait %d = %s, want within [%s, %s]", i+1, d, hi*4/5, hi)
				}
			}
			if attempt != tc.attempts {
				t.Errorf("%d attempts, want %d", attempt, tc.attempts)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{lo: 100 * time.Millisecond, hi: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		hi := w * time.Millisecond
		if d := b.next(); d > hi || d < hi*4/5 {
			t.Errorf("step %d: %s, want within [%s, %s]", i, d, hi*4/5, hi)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond || d < 80*time.Millisecond {
		t.Errorf("after reset: %s, want about 100ms", d)
	}
	// Jitter must actually spread agents out.
	seen := map[time.Duration]bool{}
	for range 50 {
		b.reset()
		seen[b.next()] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 first waits all equal %v: no jitter", seen)
	}
}

func TestNewErrors(t *testing.T) {
	ok := constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75)
	tests := []struct {
		name string
		cfg  *config.Agent
		want []string
	}{
		{"nil config", nil, []string{"no configuration"}},
		{"no director", &config.Agent{Services: []config.Service{ok}}, []string{"no director"}},
		{"no services", &config.Agent{Director: "192.0.2.1:3262"}, []string{"no [service]"}},
		{"unknown monitor", testConfig("192.0.2.1", ok, config.Service{
			Name: "mail", Protocol: necp.ProtoTCP, Port: 25, Forwarding: necp.ForwardDR,
			Monitor: "nosuch.so", File: "/etc/feedbackd/agent.conf", Line: 12,
		}), []string{`service "mail"`, "agent.conf:12", "nosuch"}},
		{"constant without value", testConfig("192.0.2.1", config.Service{
			Name: "web", Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR, Monitor: "constant",
		}), []string{`service "web"`}},
		{"same protocol and port twice", testConfig("192.0.2.1", ok,
			constService("www", necp.ProtoTCP, 80, necp.ForwardDR, 10),
		), []string{`service "www"`, "tcp/80", `"http"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg, Options{})
			if err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDirectorAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":      "192.0.2.1:3262",
		"192.0.2.1:4000": "192.0.2.1:4000",
		"director":       "director:3262",
		"::1":            "[::1]:3262",
	} {
		if got := directorAddr(in); got != want {
			t.Errorf("directorAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunOnlyOnce(t *testing.T) {
	a, err := New(testConfig("192.0.2.1", constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run on a cancelled context = %v, want nil", err)
	}
	if err := a.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestMeasureOnce(t *testing.T) {
	cfg := testConfig("192.0.2.1",
		constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75),
		config.Service{
			Name: "mail", Protocol: necp.ProtoTCP, Port: 25, Forwarding: necp.ForwardDR, Monitor: "exec",
			Params: map[string]string{"command": "echo broken; exit 3"},
		},
		config.Service{
			Name: "dns", Protocol: necp.ProtoUDP, Port: 53, Forwarding: necp.ForwardTUN, Monitor: "exec",
			Params: map[string]string{"command": "echo 42"},
		},
	)
	var out strings.Builder
	err := MeasureOnce(context.Background(), cfg, Options{}, &out)
	if err == nil || !strings.Contains(err.Error(), `service "mail"`) || strings.Contains(err.Error(), "http") {
		t.Errorf("MeasureOnce error = %v, want one naming only service \"mail\"", err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"SERVICE", "PROTOCOL/PORT", "MONITOR", "HEALTH"},
		{"http", "tcp/80", "NAT", "constant", " 75"},
		{"mail", "tcp/25", "DR", "exec", "unknown: "},
		{"dns", "udp/53", "TUN", "exec", " 42"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("row %d %q lacks %q", i, lines[i], w)
			}
		}
	}

	// All monitors working: no error.
	out.Reset()
	cfg.Services = []config.Service{cfg.Services[0], cfg.Services[2]}
	if err := MeasureOnce(context.Background(), cfg, Options{}, &out); err != nil {
		t.Errorf("MeasureOnce = %v, want nil:\n%s", err, out.String())
	}
}

func TestIsTimeout(t *testing.T) {
	if isTimeout(errors.New("x")) {
		t.Error("plain error counted as timeout")
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	c1.SetReadDeadline(time.Now())
	_, err := c1.Read(make([]byte, 1))
	if !isTimeout(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("deadline error %v not counted as timeout", err)
	}
}

// After a session that worked (it answered a KEEPALIVE), the agent redials
// at once (the HOWTO's "immediately ... reconnect"): a restarted master
// gives its agents only (1 + retries) × timeout before it quiesces them.
func TestImmediateReconnectAfterEstablishedSession(t *testing.T) {
	fm := newFakeMaster(t)
	log, _ := testLogger()
	var mu sync.Mutex
	var delays []time.Duration
	attempt := 0
	opts := Options{Logger: log, BackoffMin: 100 * time.Millisecond, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		attempt++
		n := attempt
		mu.Unlock()
		if n == 1 {
			var d net.Dialer
			return d.DialContext(ctx, "tcp4", fm.addr())
		}
		return nil, fmt.Errorf("scripted failure %d", n)
	}}
	cfg := testConfig("192.0.2.1", constService("http", necp.ProtoTCP, 80, necp.ForwardNAT, 75))
	cfg.ConnectionRetries = 1
	ra := startAgent(t, cfg, opts, func(a *Agent) {
		a.sleep = func(ctx context.Context, d time.Duration) bool {
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
			return ctx.Err() == nil
		}
	})
	mc := fm.accept(5 * time.Second)
	mc.handshake(nil)
	mc.keepalive(1, time.Second)
	mc.c.Close()
	if err := ra.wait(t, 5*time.Second); err == nil {
		t.Fatal("Run = nil, want the connection-retries error from the scripted failure")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delays) != 0 {
		t.Fatalf("agent waited %v before redialling after an established session; want no wait", delays)
	}
	if attempt != 2 {
		t.Fatalf("%d attempts, want 2 (the session, then one immediate redial)", attempt)
	}
}
