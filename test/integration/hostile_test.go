package integration

// Hostile and broken agents, and access control: each test shows that the
// misbehaving connection is refused or closed, that it leaves nothing in
// IPVS, that the master says so in its log, and that well-behaved agents
// next to it carry on.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

const testSecret = "s3cret-shared-by-director-and-realservers"

// webDR is tcp/80 with direct routing, as a real agent would START it.
var webDR = necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}

// initAck does INIT and checks that the master answers it without a
// challenge.
func initAck(t *testing.T, r *necptest.Agent) {
	t.Helper()
	if _, err := r.Init(); err != nil {
		t.Fatal(err)
	}
}

func send(t *testing.T, r *necptest.Agent, m necp.Message) {
	t.Helper()
	if err := r.Send(m); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, r *necptest.Agent) necp.Message {
	t.Helper()
	m, err := r.Recv(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m
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
	closedByMaster(t, out, 5*time.Second)
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

	// A scripted agent with a wrong secret is closed at its AUTH (sent
	// with the START right behind it, as the real agent does).
	wrong := necptest.DialAgent(t, c.addr, necptest.AgentOptions{Local: netip.MustParseAddr("127.0.0.21"),
		Secret: []byte("not the secret, but long enough")})
	ch, err := wrong.Init()
	if err != nil || ch.Auth.Method != necp.AuthHMACSHA256 {
		t.Fatalf("INIT_ACK without a challenge: %+v, %v", ch, err)
	}
	if _, err := wrong.Start(webDR); err == nil {
		t.Fatal("START after a wrong AUTH answered")
	}
	closedByMaster(t, wrong, 5*time.Second)
	c.waitLog("it does not know the shared secret", 5*time.Second)

	// A scripted agent that ignores the challenge and sends START.
	skip := dialRaw(t, c, "127.0.0.22")
	if _, err := skip.Init(); !errors.Is(err, necptest.ErrNoSecret) {
		t.Fatalf("INIT_ACK without a challenge: %v", err)
	}
	if _, err := skip.Start(webDR); err == nil {
		t.Fatal("START without AUTH answered")
	}
	closedByMaster(t, skip, 5*time.Second)
	c.waitLog("START without AUTH", 5*time.Second)

	// A replayed answer (right secret, another connection's nonce) fails.
	replay := dialRaw(t, c, "127.0.0.23")
	send(t, replay, necp.Message{Type: necp.TypeInit, Seq: 1})
	recv(t, replay)
	send(t, replay, necp.Message{Type: necp.TypeAuth, Seq: 2, Auth: necp.Answer([]byte(testSecret), ch.Auth)})
	closedByMaster(t, replay, 5*time.Second)

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
	// Measured from before the dial, which precedes the accept the
	// deadline counts from, so that a slow test goroutine on a loaded
	// machine cannot make a correct close look early.
	dialed := time.Now()
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
			r.SendRaw([]byte{b})
		}
	}()
	closedByMaster(t, r, 5*time.Second)
	took := time.Since(dialed)
	if took < cfg.HandshakeTimeout {
		t.Fatalf("closed %v after the dial, before the handshake timeout", took)
	}
	c.waitLog("did not complete the handshake in time", 5*time.Second)
	t.Logf("one byte every 100 ms: closed after %v (handshake-timeout %v)", took, cfg.HandshakeTimeout)
}

func TestMaxSessions(t *testing.T) {
	cfg := masterConfig()
	cfg.MaxSessions = 3
	cfg.HandshakeTimeout = time.Second
	c := startCluster(t, cfg)
	var idle []*necptest.Agent
	for i := range 3 {
		idle = append(idle, dialRaw(t, c, fmt.Sprintf("127.0.0.%d", 40+i)))
	}
	// Accepts are asynchronous: the fourth may race the third's accept,
	// so wait until the master holds three.
	c.waitFor("three sessions", 5*time.Second, func() bool { return c.m.Sessions() == 3 })
	extra := dialRaw(t, c, "127.0.0.44")
	closedByMaster(t, extra, 5*time.Second)
	c.waitLog(`reason="max-sessions reached"`, 5*time.Second)
	// The idle ones time out; then there is room again.
	for _, r := range idle {
		closedByMaster(t, r, 5*time.Second)
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
		closedByMaster(t, extra, 5*time.Second)
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
	initAck(t, r)
	frame, _ := (&necp.Message{Type: necp.TypeKeepalive, Seq: 7}).MarshalBinary()
	var burst []byte
	for range 10000 {
		burst = append(burst, frame...)
	}
	r.SendRaw(burst) // may fail part-way once the master closes: fine
	closedByMaster(t, r, 5*time.Second)
	c.waitLog(`agent closed: too many messages`, 5*time.Second)
	if n := strings.Count(c.logs.String(), "agent=127.0.0.49:"); n > 30 {
		t.Fatalf("%d log lines about one peer's 10 000 stray frames", n)
	}
	answer(t, good, 41)
	c.waitWeight("127.0.0.48", 41, 5*time.Second)
}

func TestOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	c := startCluster(t, masterConfig())
	good := joinedAgent(t, c, "127.0.0.50", 44)
	bad := dialRaw(t, c, "127.0.0.51")
	// A header announcing 65 535 bytes: refused from the header alone,
	// before anything is allocated for the payload.
	if err := bad.SendRaw([]byte{1, byte(necp.TypeInit), 0xff, 0xff, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	closedByMaster(t, bad, 5*time.Second)
	c.waitLog("above maximum 4096", 5*time.Second)
	answer(t, good, 45)
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
	initAck(t, f)
	svcs := make([]necp.ServiceRecord, necp.MaxServices)
	for round := range 8 {
		for i := range svcs {
			svcs[i] = necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: uint16(1000 + round*necp.MaxServices + i), Forwarding: necp.ForwardDR}
		}
		svcs[0].Port = 80 // one real service among them
		statuses, err := f.Start(svcs...)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		refused := 0
		for _, s := range statuses {
			if s == necp.StatusRefused {
				refused++
			}
		}
		if len(statuses) != necp.MaxServices || statuses[0] != necp.StatusAccepted {
			t.Fatalf("round %d: START_ACK %d statuses, first %v", round, len(statuses), statuses[0])
		}
		// Round 0 fills the 64 slots; every later round only repeats port
		// 80 and is refused everything else.
		if want := necp.MaxServices - (64 - 1) - 1; round == 0 && refused != want ||
			round > 0 && refused != necp.MaxServices-1 {
			t.Fatalf("round %d: %d services refused", round, refused)
		}
	}
	c.waitLog(`reason="max-services reached"`, 5*time.Second)
	send(t, f, necp.Message{Type: necp.TypeStart, Seq: 99, Services: svcs[:1]})
	closedByMaster(t, f, 5*time.Second)
	c.waitLog(`reason="START flood"`, 5*time.Second)
	answer(t, good, 31)
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
	initAck(t, r)
	claim := webDR
	claim.Address = netip.MustParseAddr("127.0.0.71")
	statuses, err := r.Start(claim)
	if err != nil || len(statuses) != 1 || statuses[0] != necp.StatusRefused {
		t.Fatalf("claim answered %v, %v; want refused", statuses, err)
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
	// What is checked is starvation, not scheduling latency: a timeout of
	// 20 intervals is missed only if the idle flood really stalls the
	// polling, while a loaded CI machine can delay one KEEPALIVE by a few
	// hundred milliseconds (356 ms seen at load 15). The largest gap is
	// printed as a figure.
	cfg.KeepaliveTimeout = 20 * cfg.KeepaliveInterval
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
	}
	results := make([]result, agents)
	served := make([]*necptest.Agent, agents)
	done := make([]<-chan error, agents)
	for i := range agents {
		res := &results[i]
		var last time.Time
		r := necptest.DialAgent(t, c.addr, necptest.AgentOptions{
			Local: netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}),
			// Called by the agent's loop for every KEEPALIVE, before
			// it answers.
			OnKeepalive: func(uint32) {
				now := time.Now()
				if res.polls.Load() > 0 {
					res.maxGap = max(res.maxGap, now.Sub(last))
				}
				last = now
				res.polls.Add(1)
			},
		})
		join(t, r)
		r.SetHealth(50)
		served[i], done[i] = r, r.Serve()
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
	for i, r := range served {
		r.Pause()
		// nil when Pause ended the loop, else why it had ended before.
		if err := <-done[i]; err != nil {
			t.Errorf("agent %d: %v", i, err)
		}
	}

	worst := time.Duration(0)
	for i := range results {
		worst = max(worst, results[i].maxGap)
	}
	// A KEEPALIVE counts as missed after keepalive-timeout.
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
	if m, err := r.Init(); m.Auth.Method != necp.AuthHMACSHA256 {
		t.Fatalf("after the refused reload INIT_ACK has no challenge: %+v, %v", m, err)
	}
}
