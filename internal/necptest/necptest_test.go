package necptest_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

var (
	web = necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}
	dns = necp.ServiceRecord{Protocol: necp.ProtoUDP, Port: 53, Forwarding: necp.ForwardNAT}
)

// pair connects an Agent to a Master of this package and returns both ends.
func pair(t *testing.T, mo necptest.MasterOptions, ao necptest.AgentOptions) (*necptest.Agent, *necptest.AgentConn) {
	t.Helper()
	m := necptest.StartMaster(t, mo)
	a := necptest.DialAgent(t, m.Addr(), ao)
	c, err := m.Accept(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// joined is pair after a successful handshake for svcs.
func joined(t *testing.T, ao necptest.AgentOptions, svcs ...necp.ServiceRecord) (*necptest.Agent, *necptest.AgentConn) {
	t.Helper()
	a, c := pair(t, necptest.MasterOptions{}, ao)
	done := async(func() error { return a.Join(svcs...) })
	if _, _, err := c.Handshake(nil); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, done); err != nil {
		t.Fatal(err)
	}
	return a, c
}

// async runs f in a goroutine; the channel gets its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no result within 10 s")
		return nil
	}
}

func TestHandshakeStatusesAndStepByStepKeepalives(t *testing.T) {
	a, c := pair(t, necptest.MasterOptions{}, necptest.AgentOptions{})
	var st []necp.Status
	done := async(func() (err error) {
		if _, err = a.Init(); err != nil {
			return err
		}
		st, err = a.Start(web, dns)
		return err
	})
	init, start, err := c.Handshake([]necp.Status{necp.StatusAccepted, necp.StatusNoMatch})
	if err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, done); err != nil {
		t.Fatal(err)
	}
	if init.Seq != 1 || start.Seq != 2 || !slices.Equal(start.Services, []necp.ServiceRecord{web, dns}) {
		t.Fatalf("INIT seq %d, START seq %d %v", init.Seq, start.Seq, start.Services)
	}
	if !slices.Equal(st, []necp.Status{necp.StatusAccepted, necp.StatusNoMatch}) {
		t.Fatalf("Start returned %v", st)
	}

	// One goroutine can drive both ends: the KEEPALIVE waits in the
	// socket until Answer reads it.
	if err := c.Send(necp.Message{Type: necp.TypeKeepalive, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	if err := a.Answer(42); err != nil {
		t.Fatal(err)
	}
	ack, err := c.Expect(necp.TypeKeepaliveAck, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 42}, {Protocol: necp.ProtoUDP, Port: 53, Health: 42}}
	if ack.Seq != 7 || !slices.Equal(ack.Health, want) {
		t.Fatalf("KEEPALIVE_ACK %+v", ack)
	}
	if a.Answered() != 1 || a.Keepalives() != 1 {
		t.Fatalf("answered %d of %d", a.Answered(), a.Keepalives())
	}

	// Keepalive wants the echo of its sequence number.
	if err := c.SendRaw(mustMarshal(t, necp.Message{Type: necp.TypeKeepaliveAck, Seq: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expect(necp.TypeKeepaliveAck, time.Second); err != nil {
		t.Fatalf("raw frame: %v", err)
	}
	go a.Answer(50)
	if _, err := c.Keepalive(8, time.Second); err != nil {
		t.Fatal(err)
	}
	if s := c.State(); s.Acks != 1 || s.Health[0].Health != 50 {
		t.Fatalf("recorded %+v", s)
	}
}

func mustMarshal(t *testing.T, m necp.Message) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJoinRefusedService(t *testing.T) {
	a, c := pair(t, necptest.MasterOptions{}, necptest.AgentOptions{})
	done := async(func() error { return a.Join(web) })
	if _, _, err := c.Handshake([]necp.Status{necp.StatusRefused}); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, done); err == nil {
		t.Fatal("Join accepted a refused service")
	}
}

// Both ends serving: the master's ticker, the agent's answers, health set
// at any time, silence, and resuming.
func TestServeBothEnds(t *testing.T) {
	var hooked atomic.Int64
	a, c := joined(t, necptest.AgentOptions{OnKeepalive: func(uint32) { hooked.Add(1) }}, web)
	agentDone, masterDone := a.Serve(), c.Serve(5*time.Millisecond)
	if err := <-a.Serve(); !errors.Is(err, necptest.ErrServing) {
		t.Fatalf("second Serve: %v", err)
	}
	if _, err := a.Recv(time.Millisecond); !errors.Is(err, necptest.ErrServing) {
		t.Fatalf("Recv while serving: %v", err)
	}

	a.SetHealth(33)
	health := func(h uint8) func(necptest.State) bool {
		return func(s necptest.State) bool { return len(s.Health) == 1 && s.Health[0].Health == h }
	}
	if _, err := c.WaitState(health(33), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	a.SetHealth(necp.HealthUnknown)
	if _, err := c.WaitState(health(necp.HealthUnknown), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	a.SetSilent(true)
	// Once the agent has handled two KEEPALIVEs since, the second was
	// dropped, and every answer it did send has been written.
	k := a.Keepalives()
	waitFor(t, "two more KEEPALIVEs", func() bool { return a.Keepalives() >= k+2 })
	acks := a.Answered()
	if _, err := c.WaitState(func(s necptest.State) bool { return s.Acks == acks }, 5*time.Second); err != nil {
		t.Fatalf("the master did not record the %d answers: %v", acks, err)
	}
	k = a.Keepalives()
	waitFor(t, "five more KEEPALIVEs", func() bool { return a.Keepalives() >= k+5 })
	if n := c.State().Acks; n != acks || a.Answered() != acks {
		t.Fatalf("a silent agent answered %d KEEPALIVEs (%d recorded)", a.Answered()-acks, n-acks)
	}
	a.SetSilent(false)
	if _, err := c.WaitState(func(s necptest.State) bool { return s.Acks > acks }, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if hooked.Load() != a.Keepalives() {
		t.Fatalf("hook called %d times for %d KEEPALIVEs", hooked.Load(), a.Keepalives())
	}

	// STOP from a paused agent; the serving master answers it.
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := <-agentDone; err != nil {
		t.Fatalf("agent loop ended with %v after Pause", err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := c.State(); s.Stops != 1 {
		t.Fatalf("master recorded %d STOPs", s.Stops)
	}
	// The stopped service is gone from the answers.
	a.Serve()
	if _, err := c.WaitState(func(s necptest.State) bool { return len(s.Health) == 0 }, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// The agent closes: the master's loop ends with the close.
	a.Close()
	if err := recvErr(t, masterDone); !necptest.PeerClosed(err) {
		t.Fatalf("master loop ended with %v, want the agent's close", err)
	}
	if err := c.WaitClosed(time.Second); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Pause cuts the loop in the middle of a frame; reading step by step
// completes it.
func TestPauseKeepsPartFrame(t *testing.T) {
	a, c := pair(t, necptest.MasterOptions{}, necptest.AgentOptions{})
	loop := a.Serve()
	ka := mustMarshal(t, necp.Message{Type: necp.TypeKeepalive, Seq: 9})
	if err := c.SendRaw(ka[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the loop read the first bytes (not needed for the test to pass)
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := <-loop; err != nil {
		t.Fatal(err)
	}
	if err := c.SendRaw(ka[5:]); err != nil {
		t.Fatal(err)
	}
	m, err := a.Expect(necp.TypeKeepalive, time.Second)
	if err != nil || m.Seq != 9 {
		t.Fatalf("after Pause: %+v, %v", m, err)
	}
	// Deadlines: the loop's interruption is gone, and a timeout says so.
	if _, err := a.Recv(10 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv on a quiet connection: %v", err)
	}
	if err := a.Send(necp.Message{Type: necp.TypeNoop, Seq: 1}); err != nil {
		t.Fatalf("Send after Pause: %v", err)
	}
}

func TestSharedSecret(t *testing.T) {
	secret := []byte("the secret")
	for _, tc := range []struct {
		name   string
		secret []byte
		want   error // from the master's Handshake
	}{
		{"right", secret, nil},
		{"wrong", []byte("another"), necptest.ErrBadAuth},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c := pair(t, necptest.MasterOptions{Secret: secret}, necptest.AgentOptions{Secret: tc.secret})
			var initErr error
			done := async(func() error {
				var ack necp.Message
				ack, initErr = a.Init()
				if ack.Auth.Method != necp.AuthHMACSHA256 {
					t.Errorf("INIT_ACK without a challenge: %+v", ack)
				}
				_, err := a.Start(web)
				return err
			})
			_, _, err := c.Handshake(nil)
			if err != nil {
				c.Close() // as the real master does
			}
			startErr := recvErr(t, done)
			switch tc.name {
			case "right":
				if err != nil || initErr != nil || startErr != nil {
					t.Fatalf("handshake %v, Init %v, Start %v", err, initErr, startErr)
				}
			case "wrong":
				if !errors.Is(err, necptest.ErrBadAuth) || initErr != nil || startErr == nil {
					t.Fatalf("handshake %v, Init %v, Start %v", err, initErr, startErr)
				}
				if err := a.WaitClosed(time.Second); err != nil {
					t.Fatal(err)
				}
			case "none":
				// The agent skips AUTH; the master wanted it and got START.
				if !errors.Is(initErr, necptest.ErrNoSecret) || err == nil || errors.Is(err, necptest.ErrBadAuth) {
					t.Fatalf("handshake %v, Init %v", err, initErr)
				}
				if startErr == nil {
					t.Fatal("Start succeeded without AUTH")
				}
			}
		})
	}
}

func TestLocalAddressAndAccept(t *testing.T) {
	m := necptest.StartMaster(t, necptest.MasterOptions{})
	if _, err := m.Accept(0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Accept(0) with nobody waiting: %v", err)
	}
	local := netip.MustParseAddr("127.0.0.9")
	a := necptest.DialAgent(t, m.Addr(), necptest.AgentOptions{Local: local})
	c, err := m.Accept(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Conn().RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != local {
		t.Fatalf("agent dialled from %v, want %v", got, local)
	}
	// Closing the master closes its connections.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitClosed(time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Accept(time.Millisecond); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestWaitClosedTimesOut(t *testing.T) {
	a, c := pair(t, necptest.MasterOptions{}, necptest.AgentOptions{})
	if err := a.WaitClosed(20 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open connection: %v", err)
	}
	c.Serve(0)
	if err := c.WaitClosed(20 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open connection, serving: %v", err)
	}
	a.Close()
	if err := c.WaitClosed(time.Second); err != nil {
		t.Fatal(err)
	}
}

// A hook that blocks holds the answer back: how a test makes a fleet of
// agents report at the same moment.
func TestOnKeepaliveHoldsTheAnswer(t *testing.T) {
	release := make(chan struct{})
	var seqs []uint32
	a, c := joined(t, necptest.AgentOptions{OnKeepalive: func(seq uint32) {
		seqs = append(seqs, seq)
		<-release
	}}, web)
	a.Serve()
	if err := c.Send(necp.Message{Type: necp.TypeKeepalive, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(50 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answer before the hook returned: %v", err)
	}
	a.SetHealth(12) // set while held: the answer carries it
	close(release)
	if ack, err := c.Expect(necp.TypeKeepaliveAck, time.Second); err != nil || ack.Seq != 3 || ack.Health[0].Health != 12 {
		t.Fatalf("%+v, %v", ack, err)
	}
	if err := a.WaitAnswered(1, time.Second); err != nil {
		t.Fatal(err)
	}
	a.Pause()
	if !slices.Equal(seqs, []uint32{3}) {
		t.Fatalf("hook saw %v", seqs)
	}
}

// Over net.Pipe a write blocks until the other end reads: Pause must
// still end a loop stuck in one.
func TestPipeAndPauseOnABlockedWrite(t *testing.T) {
	agentEnd, masterEnd := net.Pipe()
	a := necptest.NewAgent(agentEnd, necptest.AgentOptions{})
	c := necptest.NewAgentConn(masterEnd, necptest.MasterOptions{})
	t.Cleanup(func() { a.Close(); c.Close() })
	done := async(func() error { return a.Join(web) })
	if _, _, err := c.Handshake(nil); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, done); err != nil {
		t.Fatal(err)
	}
	loop := a.Serve()
	a.SetHealth(77)
	if ack, err := c.Keepalive(1, time.Second); err != nil || ack.Health[0].Health != 77 {
		t.Fatalf("%+v, %v", ack, err)
	}
	// The master sends a KEEPALIVE and stops reading: the answer blocks.
	if err := c.Send(necp.Message{Type: necp.TypeKeepalive, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	paused := async(a.Pause)
	if err := recvErr(t, paused); err != nil {
		t.Fatal(err)
	}
	if err := <-loop; err != nil {
		t.Fatalf("loop ended with %v", err)
	}
	if n := a.Answered(); n != 1 {
		t.Fatalf("%d answers, want the first only", n)
	}
}
