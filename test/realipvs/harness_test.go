package realipvs

// The harness shared by the real-kernel tests (realipvs_test.go, build tag
// realipvs) and the in-memory ones (memory_test.go): a counting IPVS
// wrapper that also times the master's owner passes, a fleet of fake agents
// speaking NECP over loopback, and an in-process master.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

// ---- counting IPVS wrapper ----

// destRef names a destination under a virtual service.
type destRef struct {
	svc  ipvs.ServiceKey
	dest ipvs.DestKey
}

// passStat describes one pass of the master's owner loop, as seen from its
// IPVS calls: a pass is everything between two OnLoop calls, and only
// passes that called IPVS at all are kept.
type passStat struct {
	reads, writes int
	servicesRead  bool      // Services() was called: start-up or a reload
	firstCall     time.Time // start of the first IPVS call of the pass
	lastReadEnd   time.Time // end of the last read before the first write
	firstWrite    time.Time // start of the first write
	lastWrite     time.Time // end of the last write
	end           time.Time // OnLoop
}

// counting wraps the master's IPVS backend. It counts every call that
// reaches the backend, times the owner passes (its onLoop is the master's
// Options.OnLoop, called by the owner goroutine at the end of each pass),
// and tells a waiting test when a set of expected weights has been
// written. Only the master's owner goroutine calls the IPVS methods.
type counting struct {
	ipvs.IPVS

	// batch is held by ApplyDestinations from before its writes until
	// they are all counted, and taken by counts: a test that has seen a
	// batch's effect in the table (it reads the table directly) must not
	// read the counters while the batch is still being counted, or the
	// batch's writes would be charged to its next round.
	batch   sync.Mutex
	mu      sync.Mutex
	writes  int // successful writes (service or destination)
	failed  int // failed writes
	reads   int
	cur     passStat
	passes  []passStat
	nPasses int // passes ended, with or without IPVS calls
	notify  chan struct{}

	// expect: destinations still to be written with the given weight.
	target     map[destRef]int
	targetDone chan struct{}
	targetAt   time.Time // end of the write that completed the target
	targetPass int       // nPasses when the target was set
	targetN    int       // passes it took
}

func newCounting(x ipvs.IPVS) *counting {
	return &counting{IPVS: x, notify: make(chan struct{}, 1)}
}

func (c *counting) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *counting) read(start time.Time, services bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if c.cur.firstCall.IsZero() {
		c.cur.firstCall = start
	}
	c.cur.reads++
	c.cur.servicesRead = c.cur.servicesRead || services
	if c.cur.writes == 0 {
		c.cur.lastReadEnd = now
	}
}

func (c *counting) wrote(start time.Time, ref destRef, weight int, isDest bool, err error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failed++
		return
	}
	c.writes++
	if c.cur.firstCall.IsZero() {
		c.cur.firstCall = start
	}
	if c.cur.writes == 0 {
		c.cur.firstWrite = start
	}
	c.cur.writes++
	c.cur.lastWrite = now
	if !isDest || c.target == nil {
		return
	}
	if w, ok := c.target[ref]; ok && w == weight {
		delete(c.target, ref)
		if len(c.target) == 0 {
			c.target = nil
			c.targetAt = now
			c.targetN = c.nPasses - c.targetPass + 1
			close(c.targetDone)
		}
	}
}

func (c *counting) Services() ([]ipvs.Service, error) {
	t := time.Now()
	s, err := c.IPVS.Services()
	c.read(t, true)
	return s, err
}

func (c *counting) Destinations(k ipvs.ServiceKey) ([]ipvs.Destination, error) {
	t := time.Now()
	d, err := c.IPVS.Destinations(k)
	c.read(t, false)
	return d, err
}

func (c *counting) AddService(s ipvs.Service) error {
	t := time.Now()
	err := c.IPVS.AddService(s)
	c.wrote(t, destRef{}, 0, false, err)
	return err
}

func (c *counting) AddDestination(k ipvs.ServiceKey, d ipvs.Destination) error {
	t := time.Now()
	err := c.IPVS.AddDestination(k, d)
	c.wrote(t, destRef{k, d.DestKey}, d.Weight, true, err)
	return err
}

func (c *counting) UpdateDestination(k ipvs.ServiceKey, d ipvs.Destination) error {
	t := time.Now()
	err := c.IPVS.UpdateDestination(k, d)
	c.wrote(t, destRef{k, d.DestKey}, d.Weight, true, err)
	return err
}

func (c *counting) DeleteDestination(k ipvs.ServiceKey, d ipvs.DestKey) error {
	t := time.Now()
	err := c.IPVS.DeleteDestination(k, d)
	c.wrote(t, destRef{k, d}, -1, true, err)
	return err
}

// ApplyDestinations forwards the owner's batch, so that the master writes
// through the backend's own batching (ipvs.Kernel pipelines it), and
// counts each write of it.
func (c *counting) ApplyDestinations(ops []ipvs.DestOp) []error {
	c.batch.Lock()
	defer c.batch.Unlock()
	t := time.Now()
	errs := ipvs.ApplyDestinations(c.IPVS, ops)
	for i, op := range ops {
		w := op.Dest.Weight
		if op.Kind == ipvs.OpDelete {
			w = -1
		}
		c.wrote(t, destRef{op.Service, op.Dest.DestKey}, w, true, errs[i])
	}
	return errs
}

// onLoop is the master's Options.OnLoop: the owner pass has ended.
func (c *counting) onLoop() {
	now := time.Now()
	c.mu.Lock()
	c.nPasses++
	if !c.cur.firstCall.IsZero() {
		c.cur.end = now
		c.passes = append(c.passes, c.cur)
	}
	c.cur = passStat{}
	c.mu.Unlock()
	c.poke()
}

func (c *counting) counts() (writes, failed, reads int) {
	c.batch.Lock() // after any batch being counted
	defer c.batch.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.failed, c.reads
}

func (c *counting) passCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.passes)
}

// expect arms the target: the returned channel is closed by the write that
// leaves every destination of want written with its weight.
func (c *counting) expect(want map[destRef]int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.target = make(map[destRef]int, len(want))
	for k, v := range want {
		c.target[k] = v
	}
	c.targetDone = make(chan struct{})
	c.targetPass = c.nPasses
	done := c.targetDone
	if len(want) == 0 {
		c.target = nil
		c.targetAt = time.Now()
		close(done)
	}
	return done
}

// missing reports how many expected writes have not happened yet.
func (c *counting) missing() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.target)
}

func (c *counting) targetResult() (at time.Time, passes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.targetAt, c.targetN
}

// waitPass waits until a pass numbered from or later (in c.passes) that
// satisfies ok has ended, and returns it.
func (c *counting) waitPass(tb testing.TB, from int, timeout time.Duration, ok func(passStat) bool) passStat {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, p := range c.passes[min(from, len(c.passes)):] {
			if ok(p) {
				c.mu.Unlock()
				return p
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline.C:
			tb.Fatalf("no matching owner pass within %v", timeout)
		}
	}
}

// ---- fake agents ----

// fleet is a set of fake agents (internal/necptest), one NECP connection
// each, all answering KEEPALIVEs with their current health. hold makes
// every agent park the next KEEPALIVE it receives, unanswered, until
// release: that is how all of them report a new health at the same moment.
type fleet struct {
	port   uint16
	agents []*fakeAgent

	mu       sync.Mutex
	holding  bool
	parked   int
	release  chan struct{}
	parkedCh chan struct{} // poked when an agent parks
	stop     chan struct{}
	stopOnce sync.Once
}

// fakeAgent is one agent of the fleet, registering realserver rs.
type fakeAgent struct {
	*necptest.Agent
	rs     netip.Addr
	health atomic.Uint32 // what the next KEEPALIVE_ACK reports; set at any time
	ackAt  atomic.Int64  // UnixNano just before the latest KEEPALIVE_ACK was written
}

// rsAddr is the realserver address of agent i: 198.18.0.0/15, the range
// set aside for benchmarks (RFC 2544), 250 per /24.
func rsAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
}

// startFleet connects n agents to the master at addr, each registering
// realserver rsAddr(i) for TCP port with direct routing, and reporting
// health h until told otherwise. It returns once every START is
// acknowledged as accepted; the first KEEPALIVE follows at once.
func startFleet(tb testing.TB, addr string, n int, port uint16, h uint8, timeout time.Duration) *fleet {
	tb.Helper()
	f := &fleet{port: port, parkedCh: make(chan struct{}, 1), stop: make(chan struct{})}
	tb.Cleanup(f.close)
	f.agents = make([]*fakeAgent, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32) // connections being set up at once
	var wg sync.WaitGroup
	deadline := time.Now().Add(timeout)
	for i := range n {
		a := &fakeAgent{rs: rsAddr(i)}
		a.health.Store(uint32(h))
		f.agents[i] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := f.connect(a, addr, time.Until(deadline)); err != nil {
				errs <- fmt.Errorf("agent %s: %w", a.rs, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("starting %d agents: %v", n, err)
	}
	for _, a := range f.agents {
		a.Serve()
	}
	return f
}

// connect dials and joins as a; each wait is bounded by timeout.
func (f *fleet) connect(a *fakeAgent, addr string, timeout time.Duration) error {
	ag, err := necptest.Dial(addr, necptest.AgentOptions{Timeout: timeout,
		// Runs on the agent's loop for every KEEPALIVE, before the answer.
		OnKeepalive: func(uint32) {
			f.park()
			a.SetHealth(uint8(a.health.Load()))
			// Stamped before the write, so that the master cannot
			// have acted on the report before the stamp is visible.
			a.ackAt.Store(time.Now().UnixNano())
		}})
	if err != nil {
		return err
	}
	a.Agent = ag
	return ag.Join(necp.ServiceRecord{Protocol: necp.ProtoTCP, Forwarding: necp.ForwardDR, Port: f.port, Address: a.rs})
}

// park blocks while the fleet holds KEEPALIVEs, or until it stops.
func (f *fleet) park() {
	f.mu.Lock()
	if !f.holding {
		f.mu.Unlock()
		return
	}
	f.parked++
	rel := f.release
	f.mu.Unlock()
	select {
	case f.parkedCh <- struct{}{}:
	default:
	}
	select {
	case <-rel:
	case <-f.stop:
	}
}

// holdAll makes every agent park its next KEEPALIVE, and waits until all
// have one parked (at most one keepalive-interval, plus slack).
func (f *fleet) holdAll(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	f.mu.Lock()
	f.holding, f.parked, f.release = true, 0, make(chan struct{})
	f.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		p := f.parked
		f.mu.Unlock()
		if p == len(f.agents) {
			return
		}
		select {
		case <-f.parkedCh:
		case <-deadline.C:
			tb.Fatalf("only %d of %d agents received a KEEPALIVE within %v", p, len(f.agents), timeout)
		}
	}
}

// releaseAll lets every parked agent answer, now.
func (f *fleet) releaseAll() {
	f.mu.Lock()
	f.holding = false
	close(f.release)
	f.mu.Unlock()
}

func (f *fleet) acks() []int64 {
	out := make([]int64, len(f.agents))
	for i, a := range f.agents {
		out[i] = a.Answered()
	}
	return out
}

// waitAcks waits until every agent has answered at least k more KEEPALIVEs
// than in before.
func (f *fleet) waitAcks(tb testing.TB, before []int64, k int64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		short := 0
		for i, a := range f.agents {
			if a.Answered() < before[i]+k {
				short++
			}
		}
		if short == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d agents did not answer %d more KEEPALIVEs within %v", short, len(f.agents), k, timeout)
		}
		<-tick.C
	}
}

func (f *fleet) close() {
	f.stopOnce.Do(func() {
		close(f.stop) // before Close, which waits for a parked hook
		for _, a := range f.agents {
			if a != nil && a.Agent != nil {
				a.Close()
			}
		}
	})
}

// ---- the master ----

// cluster is an in-process master on loopback with the counting wrapper
// around its IPVS backend.
type cluster struct {
	m    *master.Master
	kv   *counting
	addr string
	vs   ipvs.ServiceKey
}

// clusterConfig is a master.conf with one TCP virtual service vip:port.
func clusterConfig(tb testing.TB, vip string, port uint16, interval string, maxWeight int) *config.Master {
	tb.Helper()
	return clusterConfigSched(tb, vip, port, interval, maxWeight, "wrr")
}

// clusterConfigSched is clusterConfig with another IPVS scheduler.
func clusterConfigSched(tb testing.TB, vip string, port uint16, interval string, maxWeight int, sched string) *config.Master {
	tb.Helper()
	// weight-law = direct and no slow start: these tests time how one
	// report per agent becomes one write per destination, the path every
	// weight law ends in; the smoothed law would spread each change over
	// several writes, and slow start would ramp every join.
	text := fmt.Sprintf(`loglevel = WARN
keepalive-interval = %s
keepalive-timeout = 30
keepalive-retries = 3
removal-interval = 600
weight-law = direct
slow-start = 0

[virtual-service]
name = bench
address = %s
protocol = tcp
port = %d
scheduler = %s
max-weight = %d
`, interval, vip, port, sched, maxWeight)
	// The agents claim realserver addresses other than their loopback
	// source address (1000 distinct realservers from one host; loopback
	// addresses would not do, as the kernel turns a destination with a
	// local address into a local-node one), which the master refuses
	// unless trust-agent-address is on.
	// All of them also connect from that one host, so the per-address
	// session limit must allow the whole fleet.
	cfg, err := config.ParseMaster("realipvs.conf", []byte("trust-agent-address = yes\nmax-sessions-per-address = 100000\n"+text))
	if err != nil {
		tb.Fatalf("master configuration: %v", err)
	}
	return cfg
}

// startCluster runs a master on backend until the test ends. The master
// leaves IPVS as it is when it stops; deleting the virtual service is the
// caller's cleanup, registered before this one so that it runs after.
func startCluster(tb testing.TB, backend ipvs.IPVS, cfg *config.Master) *cluster {
	tb.Helper()
	kv := newCounting(backend)
	ready := make(chan struct{})
	var log *slog.Logger
	if os.Getenv("REALIPVS_MASTER_LOG") != "" {
		// For debugging the harness: the master's log on stderr.
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := master.New(cfg, master.Options{
		Logger:  log,
		IPVS:    kv,
		OnReady: func() { close(ready) },
		OnLoop:  kv.onLoop,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("master: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("master did not stop within 30 s")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		tb.Fatalf("master stopped at start-up: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("master not ready within 30 s")
	}
	vs := &cfg.VirtualServices[0]
	return &cluster{m: m, kv: kv, addr: ln.Addr().String(),
		vs: ipvs.ServiceKey{Protocol: uint16(vs.Protocol), Address: vs.Address, Port: vs.Port}}
}

// weights is what the kernel should hold for the fleet at health h each.
func (c *cluster) weights(f *fleet, maxWeight int) map[destRef]int {
	out := make(map[destRef]int, len(f.agents))
	for _, a := range f.agents {
		w, _ := master.Weight(uint8(a.health.Load()), maxWeight)
		out[destRef{c.vs, ipvs.DestKey{Address: a.rs, Port: f.port}}] = w
	}
	return out
}

// otherHealth is a health far from the fleet's current one (30 or 70), so
// that every weight changes by more than any damping threshold.
func otherHealth(f *fleet) uint8 {
	if f.agents[0].health.Load() == 30 {
		return 70
	}
	return 30
}

// roundResult is one reconcile in which every agent reported a new health.
type roundResult struct {
	toWritten time.Duration // reports sent → last of the writes acknowledged
	passes    int           // owner passes that took
	written   time.Time     // when the last write was acknowledged
}

// changeAll makes every agent report health h at the same moment and waits
// until the master has written every new weight. The clock starts when the
// agents are released to send their KEEPALIVE_ACKs.
func (c *cluster) changeAll(tb testing.TB, f *fleet, h uint8, maxWeight int, interval, timeout time.Duration) roundResult {
	tb.Helper()
	f.holdAll(tb, 2*interval+timeout)
	for _, a := range f.agents {
		a.health.Store(uint32(h))
	}
	done := c.kv.expect(c.weights(f, maxWeight))
	t0 := time.Now()
	f.releaseAll()
	select {
	case <-done:
	case <-time.After(timeout):
		tb.Fatalf("health %d: %d of %d new weights not written within %v", h, c.kv.missing(), len(f.agents), timeout)
	}
	at, passes := c.kv.targetResult()
	return roundResult{toWritten: at.Sub(t0), passes: passes, written: at}
}

// reload applies cfg and returns the owner pass that carried it out (the
// one that read the virtual services).
func (c *cluster) reload(tb testing.TB, cfg *config.Master, timeout time.Duration) passStat {
	tb.Helper()
	from := c.kv.passCount()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.m.Reload(ctx, cfg); err != nil {
		tb.Fatalf("reload: %v", err)
	}
	return c.kv.waitPass(tb, from, timeout, func(p passStat) bool { return p.servicesRead })
}

// waitTable polls rb (a handle of its own on the same table) until the
// destinations of svc carry exactly the weights in want, and returns when
// the read that showed it ended.
func waitTable(tb testing.TB, rb ipvs.IPVS, svc ipvs.ServiceKey, want map[destRef]int, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		ds, err := rb.Destinations(svc)
		now := time.Now()
		if err != nil {
			why = err.Error()
		} else if why = tableDiff(svc, ds, want); why == "" {
			return now
		}
		if now.After(deadline) {
			tb.Fatalf("IPVS table of %s not as expected within %v: %s", svc, timeout, why)
		}
		t := time.NewTimer(20 * time.Millisecond)
		<-t.C
	}
}

// tableDiff describes how ds differs from want ("" if it does not).
func tableDiff(svc ipvs.ServiceKey, ds []ipvs.Destination, want map[destRef]int) string {
	n, bad := 0, 0
	var first string
	for _, d := range ds {
		w, ok := want[destRef{svc, d.DestKey}]
		if !ok {
			continue
		}
		n++
		if d.Weight != w {
			if bad == 0 {
				first = fmt.Sprintf("%s has weight %d, want %d", d.DestKey, d.Weight, w)
			}
			bad++
		}
	}
	switch {
	case bad > 0:
		return fmt.Sprintf("%d weights differ (first: %s)", bad, first)
	case n != len(want):
		return fmt.Sprintf("%d of %d destinations present", n, len(want))
	}
	return ""
}

// ---- figures ----

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
