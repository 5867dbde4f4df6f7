package agent

import (
	"context"
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
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

// fakeMaster is just enough of feedbackd-master to drive an agent: a
// necptest.Master whose connections the test plays message by message.
// The methods below fail the test where necptest returns an error.
type fakeMaster struct {
	t testing.TB
	m *necptest.Master
}

func newFakeMaster(t testing.TB) *fakeMaster {
	t.Helper()
	// Timeout bounds the handshake's reads and every write.
	return &fakeMaster{t: t, m: necptest.StartMaster(t, necptest.MasterOptions{Timeout: 2 * time.Second})}
}

func (fm *fakeMaster) addr() string { return fm.m.Addr() }

// accept returns the agent's next connection, failing the test if none
// arrives within timeout.
func (fm *fakeMaster) accept(timeout time.Duration) *masterConn {
	fm.t.Helper()
	c, err := fm.m.Accept(timeout)
	if err != nil {
		fm.t.Fatalf("agent did not connect: %v", err)
	}
	return &masterConn{t: fm.t, ac: c, c: c.Conn(), r: necp.NewReader(c.Conn())}
}

// noConnection fails the test if the agent has opened another connection.
func (fm *fakeMaster) noConnection() {
	fm.t.Helper()
	if c, err := fm.m.Accept(0); err == nil {
		c.Close()
		fm.t.Fatal("agent opened an unexpected new connection")
	}
}

// masterConn is the master's end of one agent connection.
type masterConn struct {
	t  testing.TB
	ac *necptest.AgentConn // nil in one built by hand: see conn
	// c and r are the raw connection and a frame reader of its own, for
	// BenchmarkKeepaliveRoundTrip's allocation-free loop. Between whole
	// frames r is in step with ac's reader, which reads nothing ahead.
	c net.Conn
	r *necp.Reader
}

// conn returns the necptest end of the connection, made on first use for
// a masterConn built by hand around one end of a net.Pipe.
func (mc *masterConn) conn() *necptest.AgentConn {
	if mc.ac == nil {
		mc.ac = necptest.NewAgentConn(mc.c, necptest.MasterOptions{Timeout: 2 * time.Second})
	}
	return mc.ac
}

func (mc *masterConn) tryRead(timeout time.Duration) (necp.Message, error) {
	return mc.conn().Recv(timeout)
}

func (mc *masterConn) expect(typ necp.Type, timeout time.Duration) necp.Message {
	mc.t.Helper()
	m, err := mc.conn().Expect(typ, timeout)
	if err != nil {
		mc.t.Fatalf("master: %v", err)
	}
	return m
}

func (mc *masterConn) write(m necp.Message) {
	mc.t.Helper()
	if err := mc.conn().Send(m); err != nil {
		mc.t.Fatalf("master: writing %v: %v", m.Type, err)
	}
}

func (mc *masterConn) writeRaw(b []byte) {
	mc.t.Helper()
	if err := mc.conn().SendRaw(b); err != nil {
		mc.t.Fatalf("master: writing: %v", err)
	}
}

// handshake plays the master's side of INIT and START, answering every
// service with the given statuses (all accepted when nil).
func (mc *masterConn) handshake(statuses []necp.Status) (init, start necp.Message) {
	mc.t.Helper()
	init, start, err := mc.conn().Handshake(statuses)
	if err != nil {
		mc.t.Fatalf("master: handshake: %v", err)
	}
	return init, start
}

// keepalive sends one KEEPALIVE and returns the agent's answer, failing the
// test if it does not arrive within timeout or does not echo seq.
func (mc *masterConn) keepalive(seq uint32, timeout time.Duration) necp.Message {
	mc.t.Helper()
	ack, err := mc.conn().Keepalive(seq, timeout)
	if err != nil {
		mc.t.Fatalf("master: %v", err)
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
	if err := mc.conn().WaitClosed(timeout); err != nil {
		mc.t.Fatalf("agent did not close the connection: %v", err)
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
