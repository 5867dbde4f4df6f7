package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// fakeMaster is just enough of feedbackd-master to drive an agent: it
// accepts connections and hands them to the test, which plays the master's
// side message by message with the real codec.
type fakeMaster struct {
	t     testing.TB
	ln    net.Listener
	conns chan net.Conn
}

func newFakeMaster(t testing.TB) *fakeMaster {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fm := &fakeMaster{t: t, ln: ln, conns: make(chan net.Conn, 64)}
	go func() {
		defer close(fm.conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fm.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range fm.conns {
			c.Close()
		}
	})
	return fm
}

func (fm *fakeMaster) addr() string { return fm.ln.Addr().String() }

// accept returns the agent's next connection, failing the test if none
// arrives within timeout.
func (fm *fakeMaster) accept(timeout time.Duration) *masterConn {
	fm.t.Helper()
	select {
	case c, ok := <-fm.conns:
		if !ok {
			fm.t.Fatal("listener closed")
		}
		fm.t.Cleanup(func() { c.Close() })
		return &masterConn{t: fm.t, c: c, r: necp.NewReader(c)}
	case <-time.After(timeout):
		fm.t.Fatalf("agent did not connect within %s", timeout)
	}
	return nil
}

// noConnection fails the test if the agent has opened another connection.
func (fm *fakeMaster) noConnection() {
	fm.t.Helper()
	select {
	case c := <-fm.conns:
		c.Close()
		fm.t.Fatal("agent opened an unexpected new connection")
	default:
	}
}

// masterConn is the master's end of one agent connection.
type masterConn struct {
	t testing.TB
	c net.Conn
	r *necp.Reader
}

func (mc *masterConn) tryRead(timeout time.Duration) (necp.Message, error) {
	var m necp.Message
	mc.c.SetReadDeadline(time.Now().Add(timeout))
	err := mc.r.ReadMessage(&m)
	return m, err
}

func (mc *masterConn) read(timeout time.Duration) necp.Message {
	mc.t.Helper()
	m, err := mc.tryRead(timeout)
	if err != nil {
		mc.t.Fatalf("master: reading from agent: %v", err)
	}
	return m
}

func (mc *masterConn) expect(typ necp.Type, timeout time.Duration) necp.Message {
	mc.t.Helper()
	m := mc.read(timeout)
	if m.Type != typ {
		mc.t.Fatalf("master: got %v seq %d, want %v", m.Type, m.Seq, typ)
	}
	return m
}

func (mc *masterConn) write(m necp.Message) {
	mc.t.Helper()
	mc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if err := necp.WriteMessage(mc.c, &m); err != nil {
		mc.t.Fatalf("master: writing %v: %v", m.Type, err)
	}
}

func (mc *masterConn) writeRaw(b []byte) {
	mc.t.Helper()
	mc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := mc.c.Write(b); err != nil {
		mc.t.Fatalf("master: writing: %v", err)
	}
}

// handshake plays the master's side of INIT and START, answering every
// service with the given statuses (all accepted when nil).
func (mc *masterConn) handshake(statuses []necp.Status) (init, start necp.Message) {
	mc.t.Helper()
	init = mc.expect(necp.TypeInit, 2*time.Second)
	mc.write(necp.Message{Type: necp.TypeInitAck, Seq: init.Seq})
	start = mc.expect(necp.TypeStart, 2*time.Second)
	if statuses == nil {
		statuses = make([]necp.Status, len(start.Services))
	}
	mc.write(necp.Message{Type: necp.TypeStartAck, Seq: start.Seq, Statuses: statuses})
	return init, start
}

// keepalive sends one KEEPALIVE and returns the agent's answer, failing the
// test if it does not arrive within timeout or does not echo seq.
func (mc *masterConn) keepalive(seq uint32, timeout time.Duration) necp.Message {
	mc.t.Helper()
	mc.write(necp.Message{Type: necp.TypeKeepalive, Seq: seq})
	ack := mc.expect(necp.TypeKeepaliveAck, timeout)
	if ack.Seq != seq {
		mc.t.Fatalf("KEEPALIVE_ACK seq = %d, want %d (echo of the KEEPALIVE)", ack.Seq, seq)
	}
	return ack
}

// keepaliveUntil polls with KEEPALIVEs until ok accepts an answer. The
// samplers start with Run, so the first answers may still say "unknown";
// polling is how a real master would see the values arrive.
func (mc *masterConn) keepaliveUntil(seq *uint32, ok func(necp.Message) bool) necp.Message {
	mc.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		*seq++
		ack := mc.keepalive(*seq, time.Second)
		if ok(ack) {
			return ack
		}
		if time.Now().After(deadline) {
			mc.t.Fatalf("no acceptable KEEPALIVE_ACK within 5s; last %+v", ack.Health)
		}
		time.Sleep(2 * time.Millisecond) // pacing, not synchronisation
	}
}

func allKnown(ack necp.Message) bool {
	for _, h := range ack.Health {
		if h.Health == necp.HealthUnknown {
			return false
		}
	}
	return len(ack.Health) > 0
}

// expectClosed waits for the agent to close the connection.
func (mc *masterConn) expectClosed(timeout time.Duration) {
	mc.t.Helper()
	for {
		m, err := mc.tryRead(timeout)
		if err == nil {
			continue // e.g. a late KEEPALIVE_ACK
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		mc.t.Fatalf("agent did not close the connection within %s: %v (last %v)", timeout, err, m.Type)
	}
}

// logLine returns the first log line containing all of parts.
// syncBuffer collects log output written from the agent's goroutines.
type syncBuffer struct{ testutil.SyncBuffer }

func (s *syncBuffer) logLine(parts ...string) (string, bool) {
	for _, l := range strings.Split(s.String(), "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return l, true
		}
	}
	return "", false
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return logging.New(logging.Options{Level: logging.LevelVDebug, Writer: buf}), buf
}

func constService(name string, proto uint8, port uint16, fwd necp.Forwarding, value int) config.Service {
	return config.Service{
		Name: name, Protocol: proto, Port: port, Forwarding: fwd, Monitor: "constant",
		Params: map[string]string{"value": strconv.Itoa(value), "interval": "20ms"},
	}
}

func testConfig(director string, svcs ...config.Service) *config.Agent {
	return &config.Agent{Director: director, MasterTimeout: 5 * time.Second, Services: svcs}
}

// testOptions are fast back-off and stop bounds with a captured log.
func testOptions() (Options, *syncBuffer) {
	log, buf := testLogger()
	return Options{
		Logger:      log,
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
		StopTimeout: 500 * time.Millisecond,
	}, buf
}

type runningAgent struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs an agent until the test ends. The cleanup cancels it and
// insists that Run returns.
func startAgent(t testing.TB, cfg *config.Agent, opts Options, hook func(*Agent)) *runningAgent {
	t.Helper()
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if hook != nil {
		hook(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ra.done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancellation")
		}
	})
	return ra
}

// wait returns Run's result, failing the test if it takes longer than timeout.
func (ra *runningAgent) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-ra.done:
		ra.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
	}
	return nil
}
