package integration

// Hostile and broken agents, and access control: each test shows that the
// misbehaving connection is refused or closed, that it leaves nothing in
// IPVS, that the master says so in its log, and that well-behaved agents
// next to it carry on.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

const testSecret = "s3cret-shared-by-director-and-realservers"

// closedByMaster waits until the master closes r's connection, skipping
// anything it sends first, and fails if that takes longer than within.
func closedByMaster(t *testing.T, conn net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(within))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return time.Since(start)
		}
		t.Fatalf("connection not closed by the master within %v: %v", within, err)
	}
}

func (c *cluster) waitLog(what string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor("master log line "+what, timeout, func() bool { return strings.Contains(c.logs.String(), what) })
}

func (c *cluster) noDestination(rs string) {
	c.t.Helper()
	if w, ok := c.weights()[rs]; ok {
		c.t.Fatalf("%s reached IPVS (weight %d):\n%s", rs, w, c.table())
	}
}

func TestAllowRefusesOtherNetworks(t *testing.T) {
	cfg := masterConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.10/31")}
	c := startCluster(t, cfg)

	out := dialRaw(t, c, "127.0.0.12")
	closedByMaster(t, out.conn, 5*time.Second)
	c.waitLog(`msg="agent connection refused" agent=127.0.0.12:`, 5*time.Second)
	if !strings.Contains(c.logs.String(), `reason="address not in allow"`) {
		t.Fatalf("refusal without its reason:\n%s", c.logs.String())
	}
	c.noDestination("127.0.0.12")

	joinedAgent(t, c, "127.0.0.11", 70)
}

// writeSecret puts the test secret in a 0600 file for an agent.
func writeSecret(t *testing.T, secret string) string {
	p := filepath.Join(t.TempDir(), "necp.secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSharedSecret(t *testing.T) {
	cfg := masterConfig()
	cfg.Secret = []byte(testSecret)
	c := startCluster(t, cfg)

	// A real agent with the secret joins.
	good := startAgent(t, c, "good", "monitor = constant.so\nvalue = 64", "secret-file = "+writeSecret(t, testSecret))
	c.waitWeight("127.0.0.1", 64, 10*time.Second)

	// A real agent without it is refused, and both sides say why.
	plain := startAgent(t, c, "plain", "monitor = constant.so\nvalue = 11", "")
	waitOutput(t, plain, "the master requires a shared secret", 10*time.Second)
	c.waitLog("it closed the connection instead of proving the shared secret", 5*time.Second)

	// A raw agent with a wrong secret is closed at its AUTH.
	wrong := dialRaw(t, c, "127.0.0.21")
	wrong.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	ch := wrong.recv()
	if ch.Type != necp.TypeInitAck || ch.Auth.Method != necp.AuthHMACSHA256 {
		t.Fatalf("INIT_ACK without a challenge: %+v", ch)
	}
	wrong.send(necp.Message{Type: necp.TypeAuth, Seq: 2, Auth: necp.Answer([]byte("not the secret, but long enough"), ch.Auth)})
	wrong.send(necp.Message{Type: necp.TypeStart, Seq: 3, Services: []necp.ServiceRecord{{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}}})
	closedByMaster(t, wrong.conn, 5*time.Second)
	c.waitLog("it does not know the shared secret", 5*time.Second)

	// A raw agent that ignores the challenge and sends START.
	skip := dialRaw(t, c, "127.0.0.22")
	skip.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	skip.recv()
	skip.send(necp.Message{Type: necp.TypeStart, Seq: 2, Services: []necp.ServiceRecord{{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}}})
	closedByMaster(t, skip.conn, 5*time.Second)
	c.waitLog("START without AUTH", 5*time.Second)

	// A replayed answer (right secret, another connection's nonce) fails.
	replay := dialRaw(t, c, "127.0.0.23")
	replay.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	replay.recv()
	replay.send(necp.Message{Type: necp.TypeAuth, Seq: 2, Auth: necp.Answer([]byte(testSecret), ch.Auth)})
	closedByMaster(t, replay.conn, 5*time.Second)

	for _, rs := range []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"} {
		c.noDestination(rs)
	}
	if w := c.weights()["127.0.0.1"]; w != 64 {
		t.Fatalf("the authenticated agent's weight is %d after the refusals", w)
	}
	_ = good
}

// A secret on the agent side only is harmless: a master that does not ask
// gets a plain agent.
func TestAgentSecretWithPlainMaster(t *testing.T) {
	c := startCluster(t, masterConfig())
	startAgent(t, c, "a", "monitor = constant.so\nvalue = 33", "secret-file = "+writeSecret(t, testSecret))
	c.waitWeight("127.0.0.1", 33, 10*time.Second)
}

// TestHandshakeTimeoutSlowloris: a connection that sends one byte at a
// time, never completing a frame, is closed handshake-timeout after the
// accept, however often it sends.
func TestHandshakeTimeoutSlowloris(t *testing.T) {
	cfg := masterConfig()
	cfg.HandshakeTimeout = 500 * time.Millisecond
	c := startCluster(t, cfg)
	r := dialRaw(t, c, "127.0.0.30")
	init, _ := (&necp.Message{Type: necp.TypeInit, Seq: 1}).MarshalBinary()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range init[:len(init)-1] {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r.conn.Write([]byte{b})
		}
	}()
	took := closedByMaster(t, r.conn, 5*time.Second)
	if took < cfg.HandshakeTimeout-50*time.Millisecond {
		t.Fatalf("closed after %v, before the handshake timeout", took)
	}
	c.waitLog("did not complete the handshake in time", 5*time.Second)
	t.Logf("one byte every 100 ms: closed after %v (handshake-timeout %v)", took, cfg.HandshakeTimeout)
}

func TestMaxSessions(t *testing.T) {
	cfg := masterConfig()
	cfg.MaxSessions = 3
	cfg.HandshakeTimeout = time.Second
	c := startCluster(t, cfg)
	var idle []*rawAgent
	for i := range 3 {
		idle = append(idle, dialRaw(t, c, fmt.Sprintf("127.0.0.%d", 40+i)))
	}
	// Accepts are asynchronous: the fourth may race the third's accept,
	// so wait until the master holds three.
	c.waitFor("three sessions", 5*time.Second, func() bool { return c.m.Sessions() == 3 })
	extra := dialRaw(t, c, "127.0.0.44")
	closedByMaster(t, extra.conn, 5*time.Second)
	c.waitLog(`reason="max-sessions reached"`, 5*time.Second)
	// The idle ones time out; then there is room again.
	for _, r := range idle {
		closedByMaster(t, r.conn, 5*time.Second)
	}
	c.waitFor("no sessions", 5*time.Second, func() bool { return c.m.Sessions() == 0 })
	joinedAgent(t, c, "127.0.0.45", 50)
}

// TestMaxSessionsPerAddress: one host opening connections in a loop gets
// max-sessions-per-address of them, the refusal log names that host (not
// the next one to connect), and an agent from another address still joins.
func TestMaxSessionsPerAddress(t *testing.T) {
	cfg := masterConfig()
	cfg.MaxSessions = 10
	cfg.MaxSessionsPerAddress = 3
	c := startCluster(t, cfg)
	for range 3 {
		dialRaw(t, c, "127.0.0.46") // held open until the test ends
	}
	c.waitFor("three sessions", 5*time.Second, func() bool { return c.m.Sessions() == 3 })
	for range 20 {
		extra := dialRaw(t, c, "127.0.0.46")
		closedByMaster(t, extra.conn, 5*time.Second)
	}
	c.waitLog(`agent=127.0.0.46:`, 5*time.Second)
	c.waitLog(`reason="max-sessions-per-address reached"`, 5*time.Second)
	joinedAgent(t, c, "127.0.0.47", 50)
	if n := strings.Count(c.logs.String(), `reason="max-sessions-per-address reached"`); n != 1 {
		t.Fatalf("%d refusal lines for 20 refusals within 10 s, want 1 (rate-limited per address)", n)
	}
}

// TestStrayMessagesClosed: a peer that writes a stream of master-only
// frames after INIT is closed after a few, and writes a bounded number of
// log lines, not one per frame.
func TestStrayMessagesClosed(t *testing.T) {
	c := startCluster(t, masterConfig())
	good := joinedAgent(t, c, "127.0.0.48", 40)
	r := dialRaw(t, c, "127.0.0.49")
	r.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	r.recv()
	frame, _ := (&necp.Message{Type: necp.TypeKeepalive, Seq: 7}).MarshalBinary()
	var burst []byte
	for range 10000 {
		burst = append(burst, frame...)
	}
	r.conn.Write(burst) // may fail part-way once the master closes: fine
	closedByMaster(t, r.conn, 5*time.Second)
	c.waitLog(`agent closed: too many messages`, 5*time.Second)
	if n := strings.Count(c.logs.String(), "agent=127.0.0.49:"); n > 30 {
		t.Fatalf("%d log lines about one peer's 10 000 stray frames", n)
	}
	good.answer(41)
	c.waitWeight("127.0.0.48", 41, 5*time.Second)
}

func TestOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	c := startCluster(t, masterConfig())
	good := joinedAgent(t, c, "127.0.0.50", 44)
	bad := dialRaw(t, c, "127.0.0.51")
	// A header announcing 65 535 bytes: refused from the header alone,
	// before anything is allocated for the payload.
	bad.conn.Write([]byte{1, byte(necp.TypeInit), 0xff, 0xff, 0, 0, 0, 1})
	closedByMaster(t, bad.conn, 5*time.Second)
	c.waitLog("above maximum 4096", 5*time.Second)
	good.answer(45)
	c.waitWeight("127.0.0.50", 45, 5*time.Second)
}

// TestStartFlood: one agent STARTs the largest lists a frame can carry,
// again and again. Its session stays bounded by max-services, the extra
// services are refused in the START_ACK, the START rate is bounded (the
// burst of 8 is answered, the next START at once closes the connection),
// and the master goes on polling the agent next to it.
func TestStartFlood(t *testing.T) {
	c := startCluster(t, masterConfig())
	good := joinedAgent(t, c, "127.0.0.60", 30)

	f := dialRaw(t, c, "127.0.0.61")
	f.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	f.recv()
	svcs := make([]necp.ServiceRecord, necp.MaxServices)
	for round := range 8 {
		for i := range svcs {
			svcs[i] = necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: uint16(1000 + round*necp.MaxServices + i), Forwarding: necp.ForwardDR}
		}
		svcs[0].Port = 80 // one real service among them
		seq := uint32(2 + round)
		f.send(necp.Message{Type: necp.TypeStart, Seq: seq, Services: svcs})
		var ack necp.Message
		for ack = f.recv(); ack.Type != necp.TypeStartAck; ack = f.recv() {
		}
		refused := 0
		for _, s := range ack.Statuses {
			if s == necp.StatusRefused {
				refused++
			}
		}
		if len(ack.Statuses) != necp.MaxServices || ack.Statuses[0] != necp.StatusAccepted {
			t.Fatalf("round %d: START_ACK %d statuses, first %v", round, len(ack.Statuses), ack.Statuses[0])
		}
		// Round 0 fills the 64 slots; every later round only repeats port
		// 80 and is refused everything else.
		if want := necp.MaxServices - (64 - 1) - 1; round == 0 && refused != want ||
			round > 0 && refused != necp.MaxServices-1 {
			t.Fatalf("round %d: %d services refused", round, refused)
		}
	}
	c.waitLog(`reason="max-services reached"`, 5*time.Second)
	f.send(necp.Message{Type: necp.TypeStart, Seq: 99, Services: svcs[:1]})
	closedByMaster(t, f.conn, 5*time.Second)
	c.waitLog(`reason="START flood"`, 5*time.Second)
	good.answer(31)
	c.waitWeight("127.0.0.60", 31, 5*time.Second)
	if n := len(c.weights()); n != 2 {
		t.Fatalf("%d destinations, want the two agents' tcp/80:\n%s", n, c.table())
	}
}

// TestAddressClaimRefused: an agent naming another host's address as its
// realserver is refused; nothing for either address reaches IPVS.
func TestAddressClaimRefused(t *testing.T) {
	c := startCluster(t, masterConfig())
	r := dialRaw(t, c, "127.0.0.70")
	r.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	r.recv()
	r.send(necp.Message{Type: necp.TypeStart, Seq: 2, Services: []necp.ServiceRecord{
		{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR, Address: netip.MustParseAddr("127.0.0.71")}}})
	ack := r.recv()
	if ack.Type != necp.TypeStartAck || ack.Statuses[0] != necp.StatusRefused {
		t.Fatalf("claim answered %+v, want refused", ack)
	}
	c.waitLog("the agent claims another realserver address", 5*time.Second)
	c.noDestination("127.0.0.71")
	c.noDestination("127.0.0.70")
}

// TestIdleFloodDoesNotStarveAgents: 5 000 connections that never complete
// the handshake (half silent, half sending one byte and stopping) sit on
// the master while 100 agents keep answering KEEPALIVEs. Not one of those
// agents may miss a keepalive: the master polls each at its interval and
// none is declared dead.
func TestIdleFloodDoesNotStarveAgents(t *testing.T) {
	const idle, agents = 5000, 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Both ends of every connection are in this process.
	if need := uint64(2*(idle+agents) + 200); lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE is %d; this test needs %d (raise it with ulimit -n)", lim.Cur, need)
	}
	cfg := masterConfig()
	cfg.HandshakeTimeout = time.Minute        // the flood stays for the whole test
	cfg.MaxSessionsPerAddress = idle + agents // all of them come from 127.0.0.1
	c := startCluster(t, cfg)

	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for i := range idle {
		cn, err := net.Dial("tcp4", c.addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		if i%2 == 1 {
			cn.Write([]byte{necp.Version}) // one byte of a header, then nothing
		}
		conns = append(conns, cn)
	}
	c.waitFor("5 000 idle sessions", 30*time.Second, func() bool { return c.m.Sessions() >= idle })

	// 100 agents, each answering every KEEPALIVE at once and recording
	// the largest gap between two KEEPALIVEs.
	type result struct {
		polls  atomic.Int64
		maxGap time.Duration
		err    error
	}
	results := make([]result, agents)
	var wg sync.WaitGroup
	var stopping atomic.Bool
	for i := range agents {
		r := dialRaw(t, c, fmt.Sprintf("127.0.1.%d", i+1))
		r.join()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m necp.Message
			last := time.Now()
			for !stopping.Load() {
				r.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				if err := r.rd.ReadMessage(&m); err != nil {
					if !stopping.Load() {
						results[i].err = err
					}
					return
				}
				if m.Type != necp.TypeKeepalive {
					continue
				}
				now := time.Now()
				if results[i].polls.Load() > 0 {
					results[i].maxGap = max(results[i].maxGap, now.Sub(last))
				}
				last = now
				results[i].polls.Add(1)
				ack := necp.Message{Type: necp.TypeKeepaliveAck, Seq: m.Seq, Health: []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: 80, Health: 50}}}
				if err := necp.WriteMessage(r.conn, &ack); err != nil {
					results[i].err = err
					return
				}
			}
		}()
	}
	c.waitFor("100 agents at weight 50", 30*time.Second, func() bool {
		n := 0
		for _, w := range c.weights() {
			if w == 50 {
				n++
			}
		}
		return n == agents
	})
	// Observe 30 polls of every agent (3 s at a 100 ms interval).
	c.waitFor("30 KEEPALIVEs to every agent", 60*time.Second, func() bool {
		for i := range results {
			if results[i].polls.Load() < 30 {
				return false
			}
		}
		return true
	})
	stopping.Store(true)
	wg.Wait()

	worst := time.Duration(0)
	for i := range results {
		r := &results[i]
		if r.err != nil {
			t.Errorf("agent %d: %v", i, r.err)
		}
		worst = max(worst, r.maxGap)
	}
	// A KEEPALIVE counts as missed after keepalive-timeout (300 ms).
	if worst >= cfg.KeepaliveTimeout {
		t.Errorf("largest gap between KEEPALIVEs %v: a keepalive was missed (timeout %v)", worst, cfg.KeepaliveTimeout)
	}
	for _, bad := range []string{"keepalive unanswered", "declared dead"} {
		if strings.Contains(c.logs.String(), bad) {
			t.Errorf("master log has %q", bad)
		}
	}
	t.Logf("%d idle connections + %d agents: largest gap between KEEPALIVEs %v (interval %v)", idle, agents, worst, cfg.KeepaliveInterval)
}

// A reload whose secret-file names a credential that cannot be read must
// not switch authentication off: it is refused and the old configuration
// (here: with the secret) stays.
func TestReloadWithUnreadableSecretIsRefused(t *testing.T) {
	cfg := masterConfig()
	cfg.Secret = []byte(testSecret)
	c := startCluster(t, cfg)
	next := masterConfig()
	next.SecretFile = "necp-secret" // as if $CREDENTIALS_DIRECTORY were unset
	if err := c.m.Reload(t.Context(), next); err == nil || !strings.Contains(err.Error(), "secret-file") {
		t.Fatalf("reload without the secret: %v", err)
	}
	r := dialRaw(t, c, "127.0.0.80")
	r.send(necp.Message{Type: necp.TypeInit, Seq: 1})
	if m := r.recv(); m.Auth.Method != necp.AuthHMACSHA256 {
		t.Fatalf("after the refused reload INIT_ACK has no challenge: %+v", m)
	}
}
