//go:build linux

package master

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
	"github.com/lvs-feedbackd/feedbackd/internal/uring"
)

// slowIPVS makes every weight write take a while, so that the owner falls
// behind the sessions.
type slowIPVS struct {
	*ipvs.Memory
	delay time.Duration
}

func (s slowIPVS) UpdateDestination(k ipvs.ServiceKey, d ipvs.Destination) error {
	time.Sleep(s.delay)
	return s.Memory.UpdateDestination(k, d)
}

// pollerMaster runs a master on loopback (keepalive-interval 20 ms) with
// the owner's queue shortened to queue events, until the test ends.
func pollerMaster(t *testing.T, kv ipvs.IPVS, queue int) (*Master, string) {
	t.Helper()
	m, addr, _ := pollerMasterStop(t, kv, queue)
	return m, addr
}

// pollerMasterStop is pollerMaster with a function that stops the master
// before the test ends (and reports how it stopped).
func pollerMasterStop(t *testing.T, kv ipvs.IPVS, queue int) (*Master, string, func()) {
	t.Helper()
	return pollerMasterWith(t, kv, queue, nil)
}

// pollerMasterWith is pollerMasterStop with options set by opt.
func pollerMasterWith(t *testing.T, kv ipvs.IPVS, queue int, opt func(*Options)) (*Master, string, func()) {
	t.Helper()
	cfg := &config.Master{
		File:              "test",
		KeepaliveInterval: 20 * time.Millisecond,
		KeepaliveTimeout:  time.Second,
		KeepaliveRetries:  3,
		RemovalInterval:   time.Minute,
		VirtualServices: []config.VirtualService{
			{Name: "web", Address: netip.MustParseAddr("192.0.2.1"), Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
		},
	}
	ready := make(chan struct{})
	opts := Options{IPVS: kv, OnReady: func() { close(ready) }}
	if opt != nil {
		opt(&opts)
	}
	m, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	m.events = make(chan event, queue)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("master: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("master did not stop within 10 s")
		}
	})
	t.Cleanup(stop)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("master not ready within 10 s")
	}
	return m, ln.Addr().String(), stop
}

type polledAgent struct {
	a       *necptest.Agent
	churn   atomic.Bool
	mu      sync.Mutex
	lastSeq uint32
	resends int
}

// joinAgents connects n agents from 127.0.1.x; churn makes every answer
// carry a new health.
func joinAgents(t *testing.T, addr string, n int, churn bool) []*polledAgent {
	t.Helper()
	var out []*polledAgent
	for i := range n {
		pa, err := joinAgent(t, addr, i, churn)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pa)
	}
	return out
}

// joinAgent connects agent i, from 127.0.1.(1+i), joins it at health 50
// and serves it; the test closes it at its end.
func joinAgent(t *testing.T, addr string, i int, churn bool) (*polledAgent, error) {
	pa := &polledAgent{}
	pa.churn.Store(churn)
	local := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i)})
	a, err := necptest.Dial(addr, necptest.AgentOptions{Local: local, OnKeepalive: func(seq uint32) {
		pa.mu.Lock()
		if seq == pa.lastSeq {
			pa.resends++
		}
		pa.lastSeq = seq
		pa.mu.Unlock()
		if pa.churn.Load() {
			pa.a.SetHealth(uint8(40 + seq%20))
		}
	}})
	if err != nil {
		return nil, err
	}
	pa.a = a
	t.Cleanup(func() { a.Close() })
	a.SetHealth(50)
	if err := a.Join(necp.ServiceRecord{Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR}); err != nil {
		return nil, err
	}
	a.Serve()
	return pa, nil
}

// sessionGoroutines counts the goroutines running a session's own loop.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "master.(*session).loop")
}

// Once past the handshake no session keeps a goroutine: the poller reads
// and times them all, and they go on being polled.
func TestPollerAdoptsActiveSessions(t *testing.T) {
	m, addr := pollerMaster(t, ipvs.NewMemory(nil), 1024)
	agents := joinAgents(t, addr, 20, false)
	for _, pa := range agents {
		if err := pa.a.WaitAnswered(10, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := sessionGoroutines(); n != 0 {
		t.Errorf("%d sessions still on their own goroutine after 10 KEEPALIVEs each", n)
	}
	// The way of polling is the one asked for: io_uring by default, on
	// a kernel that allows it (FEEDBACKD_TEST_NO_IO_URING=1: known not to).
	want := defaultPoller
	if want == PollerAuto {
		want = PollerIOURing
		if os.Getenv("FEEDBACKD_TEST_NO_IO_URING") == "1" {
			want = PollerEpoll
		}
	}
	if got := m.poll.using.Load(); got == nil || *got != want {
		t.Errorf("sessions polled with %v, want %s", got, want)
	}
	// An adopted session keeps no net.Conn: its descriptor is the
	// poller's, and the closed Conn's memory is not kept 20 000 times.
	m.mu.Lock()
	for s := range m.sessions {
		s.kmu.Lock()
		if s.conn != nil || s.fd < 0 {
			t.Errorf("session %d: conn %v, fd %d after adoption", s.id, s.conn, s.fd)
		}
		s.kmu.Unlock()
	}
	m.mu.Unlock()
	for i, pa := range agents {
		pa.mu.Lock()
		if pa.resends != 0 {
			t.Errorf("agent %d: %d KEEPALIVEs resent", i, pa.resends)
		}
		pa.mu.Unlock()
	}
}

// An owner that cannot keep up parks the sessions whose events wait, one
// by one, without holding up the others' polling, and every report still
// reaches it in order: the last weight is the last health.
func TestPollerParksBehindASlowOwner(t *testing.T) {
	kv := ipvs.NewMemory(nil)
	m, addr := pollerMaster(t, slowIPVS{Memory: kv, delay: 5 * time.Millisecond}, 1)
	agents := joinAgents(t, addr, 16, true)
	for _, pa := range agents {
		if err := pa.a.WaitAnswered(30, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i, pa := range agents {
		pa.mu.Lock()
		if pa.resends != 0 {
			t.Errorf("agent %d: %d KEEPALIVEs resent", i, pa.resends)
		}
		pa.mu.Unlock()
	}
	// Steady health from now on: each weight must settle on it.
	for i, pa := range agents {
		pa.churn.Store(false)
		pa.a.SetHealth(uint8(10 + 5*i))
	}
	key := ipvs.ServiceKey{Protocol: uint16(necp.ProtoTCP), Address: netip.MustParseAddr("192.0.2.1"), Port: 80}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, _ := kv.Destinations(key)
		got := map[string]int{}
		for _, d := range ds {
			got[d.Address.String()] = d.Weight
		}
		bad := ""
		for i := range agents {
			rs := fmt.Sprintf("127.0.1.%d", 1+i)
			if want := 10 + 5*i; got[rs] != want {
				bad = fmt.Sprintf("%s at %d, want %d", rs, got[rs], want)
				break
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weights did not settle: %s", bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = m
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Every way a polled session ends gives its descriptor back, also when
// the kernel still holds a read for it (io_uring: the descriptor is
// closed only once the read has come back): the agent hangs up, the agent
// sends garbage, the master stops. Counted in /proc/self/fd, which the
// leak of one descriptor per ended session changes.
func TestPollerEndsSessionsWithoutLeaks(t *testing.T) {
	// The runtime's own descriptors (its poller) exist before counting.
	if ln, err := net.Listen("tcp4", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	before := openFDs(t)
	m, addr, stop := pollerMasterStop(t, ipvs.NewMemory(nil), 1024)
	agents := joinAgents(t, addr, 30, false)
	for _, pa := range agents {
		if err := pa.a.WaitAnswered(3, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, pa := range agents[:10] {
		pa.a.Close()
	}
	for _, pa := range agents[10:20] {
		pa.a.SendRaw([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // no such version or length
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Summary().Agents != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d agents still connected, want the 10 that behaved", m.Summary().Agents)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	for _, pa := range agents {
		pa.a.Close()
	}
	// The agents' ends close as they see the master's; wait for them.
	for {
		n := openFDs(t)
		if n == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open after the master stopped, %d before it started", n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A kernel that refuses io_uring (the ring's setup fails) leaves the
// master polling with epoll: it says so, at WARN when io_uring was asked
// for, and its agents are polled all the same.
func TestPollerFallsBackToEpoll(t *testing.T) {
	newRing = func(uint32, uint32) (*uring.Ring, error) {
		return nil, fmt.Errorf("%w: refused by the test", uring.ErrUnsupported)
	}
	t.Cleanup(func() { newRing = uring.New })
	logs := &syncBuffer{}
	m, addr, _ := pollerMasterWith(t, ipvs.NewMemory(nil), 1024, func(o *Options) {
		o.Poller = PollerIOURing
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	for _, pa := range joinAgents(t, addr, 3, false) {
		if err := pa.a.WaitAnswered(5, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.poll.using.Load(); got == nil || *got != PollerEpoll {
		t.Errorf("sessions polled with %v, want the epoll fallback", got)
	}
	for _, want := range []string{
		`level=WARN msg="io_uring asked for but not usable; polling with epoll" err="io_uring not usable: refused by the test"`,
		`level=INFO msg="agent sessions polled" poller=epoll chosen_by=fallback err="io_uring not usable: refused by the test"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
