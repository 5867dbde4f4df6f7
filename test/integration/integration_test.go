// Package integration runs feedbackd-master and feedbackd-agent together
// over real TCP on loopback: the master in-process with the in-memory IPVS
// (so its table can be read directly), the agents as real processes built
// from ./cmd/feedbackd-agent (so kill -9 is a real kill), and a scripted
// NECP agent (internal/necptest) for agents that misbehave on purpose.
//
// Every wait is a poll against a deadline; a failure prints the table.
package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "feedbackd-it-")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "feedbackd-agent")
	out, err := exec.Command("go", "build", "-o", agentBin, "../../cmd/feedbackd-agent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var vip = netip.MustParseAddr("192.0.2.1")

// Timers are short so the suite runs in seconds; the semantics are the
// same as with the HOWTO's defaults.
func masterConfig() *config.Master {
	return &config.Master{
		File:              "test",
		LogLevel:          logging.LevelDebug,
		KeepaliveInterval: 100 * time.Millisecond,
		KeepaliveTimeout:  300 * time.Millisecond,
		KeepaliveRetries:  2,
		RemovalInterval:   500 * time.Millisecond,
		VirtualServices: []config.VirtualService{
			{Name: "web", Address: vip, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
		},
	}
}

var webKey = ipvs.ServiceKey{Protocol: 6, Address: vip, Port: 80}

type cluster struct {
	t      *testing.T
	kv     *ipvs.Memory
	store  *master.MemoryStore
	addr   string
	cancel context.CancelFunc
	done   chan error
	m      *master.Master
	logs   *testutil.SyncBuffer
	obs    master.Observer // nil: none (control_test.go sets the metrics)
}

func startCluster(t *testing.T, cfg *config.Master) *cluster {
	c := &cluster{t: t, kv: ipvs.NewMemory(nil), store: &master.MemoryStore{}, logs: &testutil.SyncBuffer{}}
	c.start(cfg, "127.0.0.1:0")
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) start(cfg *config.Master, addr string) {
	c.t.Helper()
	network := "tcp4"
	if strings.HasPrefix(addr, "[") {
		network = "tcp6"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	log := logging.New(logging.Options{Level: logging.LevelDebug, Writer: c.logs})
	ready := make(chan struct{})
	c.m, err = master.New(cfg, master.Options{Logger: log, IPVS: c.kv, Store: c.store, Observer: c.obs, OnReady: func() { close(ready) }})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- c.m.Run(ctx, ln) }()
	select {
	case <-ready:
	case err := <-c.done:
		c.t.Fatalf("master exited before ready: %v", err)
	case <-time.After(10 * time.Second):
		c.t.Fatal("master not ready")
	}
}

func (c *cluster) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			c.t.Errorf("master Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		c.t.Error("master did not stop")
	}
	c.cancel = nil
	if c.t.Failed() {
		c.t.Logf("master log:\n%s", c.logs.String())
	}
}

// weights maps realserver address → weight under the web service.
func (c *cluster) weights() map[string]int {
	ds, _ := c.kv.Destinations(webKey)
	w := map[string]int{}
	for _, d := range ds {
		w[d.Address.String()] = d.Weight
	}
	return w
}

func (c *cluster) table() string {
	s, _ := ipvs.Dump(c.kv)
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for deadline := start.Add(timeout); ; {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for: %s\ntable:\n%s", timeout, what, c.table())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (c *cluster) waitWeight(rs string, want int, timeout time.Duration) time.Duration {
	c.t.Helper()
	return c.waitFor(fmt.Sprintf("weight of %s = %d", rs, want), timeout, func() bool {
		w, ok := c.weights()[rs]
		return ok && w == want
	})
}

// agent is a real feedbackd-agent process.
type agent struct {
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
}

// startAgent runs the agent binary with one [service] for tcp/80. The
// realserver address is the loopback address it binds to, so several
// agents are several realservers.
func startAgent(t *testing.T, c *cluster, name, monitorLines string, globals ...string) *agent {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, name+".conf")
	body := fmt.Sprintf(`director = %s
master-timeout = 2
loglevel = DEBUG
%s

[service]
name = web
protocol = tcp
port = 80
forwarding = DR
%s
`, c.addr, strings.Join(globals, "\n"), monitorLines)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agent{out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(agentBin, "-d", "-c", conf)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("agent %s output:\n%s", name, a.out.String())
		}
	})
	return a
}

// waitOutput waits until the agent has printed want.
func waitOutput(t *testing.T, a *agent, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(a.out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not print %q within %v:\n%s", want, timeout, a.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func constant(v int) string { return fmt.Sprintf("monitor = constant.so\nvalue = %d", v) }

// All agents connect from 127.0.0.1, so one realserver per test unless the
// service record names another address; tests that need several use the
// raw client below.

func TestJoinHealthChangeAndSTOP(t *testing.T) {
	c := startCluster(t, masterConfig())
	dir := t.TempDir()
	healthFile := filepath.Join(dir, "health")
	os.WriteFile(healthFile, []byte("30\n"), 0o644)
	a := startAgent(t, c, "rs", fmt.Sprintf("monitor = exec.so\ncommand = cat %s\ninterval = 0.05", healthFile))

	// Join: the realserver appears, with DR forwarding, and its weight follows health.
	c.waitWeight("127.0.0.1", 30, 10*time.Second)
	ds, _ := c.kv.Destinations(webKey)
	if ds[0].Forwarding != ipvs.ForwardRoute {
		t.Fatalf("forwarding %v, want Route (DR)", ds[0].Forwarding)
	}

	// Health change: the weight follows within sampling interval + one
	// keepalive interval (a generous deadline; the figure is measured in
	// docs/benchmarks.md).
	os.WriteFile(healthFile, []byte("80\n"), 0o644)
	took := c.waitWeight("127.0.0.1", 80, 5*time.Second)
	t.Logf("health change reached the table in %v", took)

	// SIGTERM: the agent sends STOP, the master quiesces at once...
	stopped := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	c.waitWeight("127.0.0.1", 0, 5*time.Second)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("agent exit code %d after SIGTERM", code)
	}
	// ...and removes it after removal-interval, connections being 0.
	c.waitFor("realserver removed", 5*time.Second, func() bool { return len(c.weights()) == 0 })
	// Measured from the SIGTERM, which comes before the quiesce, so that a
	// late look at the table (a loaded machine) cannot make a correct
	// removal look early: it must be at least removal-interval after it.
	if took := time.Since(stopped); took < 500*time.Millisecond {
		t.Fatalf("removed %v after the agent's SIGTERM, before removal-interval (500ms)", took)
	}
	if !strings.Contains(c.logs.String(), "agent sent STOP") {
		t.Fatal("master log does not record the STOP")
	}
}

func TestKill9QuiescesAtOnce(t *testing.T) {
	cfg := masterConfig()
	// Long keepalive timers: a quiesce within the deadline below can only
	// come from the closed connection, not from missed keepalives.
	cfg.KeepaliveTimeout, cfg.KeepaliveRetries = 10*time.Second, 3
	c := startCluster(t, cfg)
	a := startAgent(t, c, "rs", constant(64))
	c.waitWeight("127.0.0.1", 64, 10*time.Second)

	start := time.Now()
	a.cmd.Process.Kill()
	took := c.waitWeight("127.0.0.1", 0, 2*time.Second)
	t.Logf("kill -9 → weight 0 in %v (measured from the kill; timers would take 40s)", took)
	_ = start
}

func TestDestinationWithLiveConnectionsWaits(t *testing.T) {
	c := startCluster(t, masterConfig())
	a := startAgent(t, c, "rs", constant(50))
	c.waitWeight("127.0.0.1", 50, 10*time.Second)
	rs := ipvs.DestKey{Address: netip.MustParseAddr("127.0.0.1"), Port: 80}
	if err := c.kv.SetConns(webKey, rs, 2, 0); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Kill()
	c.waitWeight("127.0.0.1", 0, 2*time.Second)
	// Several removal checks pass while connections are live.
	c.waitFor("a removal check that found live connections", 5*time.Second, func() bool {
		return strings.Contains(c.logs.String(), "still has active connections")
	})
	if _, ok := c.weights()["127.0.0.1"]; !ok {
		t.Fatal("deleted while connections were active")
	}
	c.kv.SetConns(webKey, rs, 0, 5)
	c.waitFor("removed once active connections are 0", 5*time.Second, func() bool { return len(c.weights()) == 0 })
}

func TestMasterRestartAgentsReRegister(t *testing.T) {
	// Between stop and start nothing listens (unlike under systemd, whose
	// socket stays open), so the agent's immediate redial is refused and it
	// backs off about a second. The restarted master's grace,
	// (1 + retries) × timeout, is made 3 s so that the agent is always back
	// in time.
	cfg := masterConfig()
	cfg.KeepaliveTimeout = time.Second
	c := startCluster(t, cfg)
	a := startAgent(t, c, "rs", constant(70))
	c.waitWeight("127.0.0.1", 70, 10*time.Second)
	writesBefore := c.kv.Writes()

	addr := c.addr
	c.stop()
	// The master leaves the table as it is on exit.
	if w := c.weights()["127.0.0.1"]; w != 70 {
		t.Fatalf("weight after master exit = %d, want 70 untouched", w)
	}
	c.start(cfg, addr)
	c.waitFor("agent re-registered with the new master", 10*time.Second, func() bool {
		return c.m.Summary().Active == 1 && c.m.Summary().Agents == 1
	})
	// Weights never left the kernel, and the restart wrote nothing.
	if w := c.weights()["127.0.0.1"]; w != 70 {
		t.Fatalf("weight after restart = %d", w)
	}
	if n := c.kv.Writes() - writesBefore; n != 0 {
		t.Fatalf("master restart wrote IPVS %d times; want 0", n)
	}
	_ = a
}

// webNAT is the service the scripted agents below START.
var webNAT = necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardNAT}

// dialRaw connects a scripted NECP agent from the loopback address local,
// for agents that misbehave on purpose or need their own address; it is
// closed when the test ends.
func dialRaw(t *testing.T, c *cluster, local string) *necptest.Agent {
	t.Helper()
	return necptest.DialAgent(t, c.addr, necptest.AgentOptions{Local: netip.MustParseAddr(local)})
}

// join does INIT and START for tcp/80 and checks that it is accepted.
func join(t *testing.T, r *necptest.Agent) {
	t.Helper()
	if err := r.Join(webNAT); err != nil {
		t.Fatal(err)
	}
}

// joinedAgent is a scripted agent from local that has joined and reported
// health h, as the master's table shows.
func joinedAgent(t *testing.T, c *cluster, local string, h uint8) *necptest.Agent {
	t.Helper()
	r := dialRaw(t, c, local)
	join(t, r)
	answer(t, r, h)
	c.waitWeight(local, int(h), 5*time.Second)
	return r
}

// answer replies to the next KEEPALIVE with health h.
func answer(t *testing.T, r *necptest.Agent, h uint8) {
	t.Helper()
	if err := r.Answer(h); err != nil {
		t.Fatal(err)
	}
}

// closedByMaster waits until the master closes r's connection, skipping
// anything it sends first, fails if that takes longer than within, and
// returns how long it took.
func closedByMaster(t *testing.T, r *necptest.Agent, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := r.WaitClosed(within); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestSilentAgentQuiescedAfterTimeoutTimesRetries(t *testing.T) {
	cfg := masterConfig()
	c := startCluster(t, cfg)
	r := joinedAgent(t, c, "127.0.0.2", 40)
	// Stop answering (the process is alive, the socket open).
	start := time.Now()
	took := c.waitWeight("127.0.0.2", 0, 10*time.Second)
	// (1 + retries) × timeout = 900ms after the first unanswered KEEPALIVE,
	// which goes out one interval (100ms) after the last answer.
	min := time.Duration(1+cfg.KeepaliveRetries) * cfg.KeepaliveTimeout
	if took < min-50*time.Millisecond {
		t.Fatalf("silent agent quiesced after %v, before (1+retries)×timeout = %v", took, min)
	}
	t.Logf("silent agent quiesced after %v (expected ≈ %v + one interval)", took, min)
	_ = start
	// The master closed the connection.
	closedByMaster(t, r, 5*time.Second)
}

func TestMalformedMessageClosesOnlyThatConnection(t *testing.T) {
	c := startCluster(t, masterConfig())
	good := joinedAgent(t, c, "127.0.0.3", 55)

	bad := joinedAgent(t, c, "127.0.0.4", 20)
	// Length 7 is below the header size: a protocol error.
	if err := bad.SendRaw([]byte{0x01, 0x05, 0x00, 0x07, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	c.waitWeight("127.0.0.4", 0, 5*time.Second)
	closedByMaster(t, bad, 5*time.Second)
	if !strings.Contains(c.logs.String(), "malformed message") {
		t.Fatal("master did not log the malformed message")
	}
	// The other agent is untouched and still polled.
	answer(t, good, 56)
	c.waitWeight("127.0.0.3", 56, 5*time.Second)
}

func TestUnknownHealthLeavesWeight(t *testing.T) {
	c := startCluster(t, masterConfig())
	r := joinedAgent(t, c, "127.0.0.5", 61)
	writes := c.kv.Writes()
	answer(t, r, necp.HealthUnknown)
	answer(t, r, necp.HealthUnknown)
	answer(t, r, 61)
	answer(t, r, 61)
	if w := c.weights()["127.0.0.5"]; w != 61 {
		t.Fatalf("weight %d after unknown health, want 61", w)
	}
	if n := c.kv.Writes() - writes; n != 0 {
		t.Fatalf("%d IPVS writes for unchanged weights; want 0", n)
	}
}

var _ = slog.LevelInfo

// -n/--dry-run: IPVS is read but never written, and each write the master
// would make is logged.
func TestDryRunWritesNothing(t *testing.T) {
	mem := ipvs.NewMemory(nil)
	logs := &testutil.SyncBuffer{}
	log := logging.New(logging.Options{Level: logging.LevelDebug, Writer: logs})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := master.New(masterConfig(), master.Options{Logger: log, IPVS: ipvs.NewDryRun(mem, log), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()

	c := &cluster{t: t, kv: mem, addr: ln.Addr().String(), logs: logs}
	r := dialRaw(t, c, "127.0.0.6")
	join(t, r)
	answer(t, r, 33)
	c.waitFor("the weight the master would write", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "would update destination") && strings.Contains(logs.String(), "weight=33")
	})
	if n := mem.Writes(); n != 0 {
		t.Fatalf("dry run wrote IPVS %d times", n)
	}
	if svcs, _ := mem.Services(); len(svcs) != 0 {
		t.Fatalf("dry run created services: %v", svcs)
	}
	for _, want := range []string{"would add service", "would add destination"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs.String())
	}
}

// SIGHUP does not kill an agent (its default action would, without STOP).
func TestAgentIgnoresSIGHUP(t *testing.T) {
	c := startCluster(t, masterConfig())
	a := startAgent(t, c, "rs", constant(55))
	c.waitWeight("127.0.0.1", 55, 10*time.Second)
	a.cmd.Process.Signal(syscall.SIGHUP)
	c.waitFor("the agent to log the ignored SIGHUP", 5*time.Second, func() bool {
		return strings.Contains(a.out.String(), "SIGHUP ignored")
	})
	select {
	case <-a.done:
		t.Fatal("agent exited on SIGHUP")
	default:
	}
	if w := c.weights()["127.0.0.1"]; w != 55 {
		t.Fatalf("weight %d after SIGHUP, want 55", w)
	}
}

// A reload's keepalive timers reach sessions that started before it: after
// the interval is raised, KEEPALIVEs to an existing agent slow down.
func TestReloadRetimesExistingSessions(t *testing.T) {
	c := startCluster(t, masterConfig())
	r := dialRaw(t, c, "127.0.0.7")
	join(t, r)
	answer(t, r, 50)
	cfg := masterConfig()
	cfg.KeepaliveInterval = 700 * time.Millisecond
	if err := c.m.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	answer(t, r, 50) // answered under the old interval; the next uses the new one
	start := time.Now()
	answer(t, r, 50)
	if gap := time.Since(start); gap < 500*time.Millisecond {
		t.Fatalf("next KEEPALIVE after %v; the reloaded interval (700ms) was not applied", gap)
	}
}
