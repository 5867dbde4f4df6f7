package master

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Regression tests for the interleavings of issue 13: each drives the real
// owner (events, then a pass, on a virtual clock) against the in-memory
// IPVS and a store that can fail, and each failed on 01480e1.

type ownerRig struct {
	t       *testing.T
	sysctls fs.FS // Options.Sysctls of the next restart
	kv      *ipvs.Memory
	store   *flakyStore
	logs    *syncBuffer
	o       *owner
	now     time.Time
	kicks   map[sessionID]string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// flakyStore is a MemoryStore whose Save and Append fail while err is
// set. With file set, the list of destinations is kept there instead (the
// admin states and services stay in memory).
type flakyStore struct {
	MemoryStore
	err  error
	file *FileStore
}

func (f *flakyStore) Load() ([]Ref, error) {
	if f.file != nil {
		return f.file.Load()
	}
	return f.MemoryStore.Load()
}

func (f *flakyStore) Save(refs []Ref) error {
	if f.err != nil {
		return f.err
	}
	if f.file != nil {
		return f.file.Save(refs)
	}
	return f.MemoryStore.Save(refs)
}

func (f *flakyStore) Append(added, removed []Ref) error {
	if f.err != nil {
		return f.err
	}
	if f.file != nil {
		return f.file.Append(added, removed)
	}
	return f.MemoryStore.Append(added, removed)
}

func newRig(t *testing.T, cfg *config.Master) *ownerRig {
	return newRigWith(t, cfg, &flakyStore{})
}

func newRigWith(t *testing.T, cfg *config.Master, store *flakyStore) *ownerRig {
	r := &ownerRig{t: t, kv: ipvs.NewMemory(nil), store: store, logs: &syncBuffer{}, now: t0,
		kicks: map[sessionID]string{}}
	r.restart(cfg)
	return r
}

// restart is a master crash and start: a new owner on the same kernel and
// state file.
func (r *ownerRig) restart(cfg *config.Master) {
	r.t.Helper()
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(cfg, Options{IPVS: r.kv, Store: r.store, Logger: log, Sysctls: r.sysctls})
	if err != nil {
		r.t.Fatal(err)
	}
	if r.o, err = m.newOwner(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.o.start(r.now); err != nil {
		r.t.Fatal(err)
	}
}

func (r *ownerRig) pass() { r.o.pass(r.now) }

func (r *ownerRig) advance(d time.Duration) {
	end := r.now.Add(d)
	for r.now.Before(end) {
		r.now = r.now.Add(time.Second)
		r.pass()
	}
}

func (r *ownerRig) join(sid sessionID, p netip.AddrPort, auth []byte, recs ...necp.ServiceRecord) []necp.Status {
	reply := make(chan []necp.Status, 1)
	r.o.handle(joinEvent{sid: sid, peer: p, auth: auth, recs: recs, reply: reply,
		kick: func(reason string) { r.kicks[sid] = reason }}, r.now)
	r.pass()
	return <-reply
}

func (r *ownerRig) health(sid sessionID, port uint16, h uint8) {
	r.o.handle(healthEvent{sid: sid, recs: []necp.HealthRecord{{Protocol: necp.ProtoTCP, Port: port, Health: h}}}, r.now)
	r.pass()
}

func (r *ownerRig) stop(sid sessionID, recs ...necp.ServiceRecord) {
	r.o.handle(stopEvent{sid: sid, recs: recs}, r.now)
	r.pass()
}

func (r *ownerRig) gone(sid sessionID, reason string) {
	r.o.handle(goneEvent{sid: sid, reason: reason}, r.now)
	r.pass()
}

func (r *ownerRig) reload(cfg *config.Master) {
	r.t.Helper()
	cfg.FillLimits() // what Master.Reload does before handing it over
	done := make(chan error, 1)
	r.o.handle(reloadEvent{cfg: cfg, done: done}, r.now)
	if err := <-done; err != nil {
		r.t.Fatal(err)
	}
	r.pass()
}

// weight is the kernel's weight of rs under vip1 tcp/80, -1 when absent.
func (r *ownerRig) weight(rs netip.Addr) int {
	ds, _ := r.kv.Destinations(svc(vip1, necp.ProtoTCP, 80))
	for _, d := range ds {
		if d.Address == rs {
			return d.Weight
		}
	}
	return -1
}

func (r *ownerRig) expectWeight(rs netip.Addr, want int) {
	r.t.Helper()
	if got := r.weight(rs); got != want {
		r.t.Fatalf("kernel weight of %v = %d, want %d\n%s\nlog:\n%s", rs, got, want, r.kv, r.logs)
	}
}

func (r *ownerRig) recorded(rs netip.Addr) bool {
	refs, _ := r.store.Load()
	for _, ref := range refs {
		if ref == id(vip1, necp.ProtoTCP, 80, rs) {
			return true
		}
	}
	return false
}

// httpOnly is a configuration with the one virtual service vip1 tcp/80.
func httpOnly() *config.Master {
	cfg := testConfig()
	cfg.VirtualServices = cfg.VirtualServices[:1]
	return cfg
}

var (
	http80 = rec(necp.ProtoTCP, 80, necp.ForwardDR)
	rs3    = netip.MustParseAddr("10.0.0.13")
)

// Defect 1: a reload during an agent restart handed the entry back to the
// silent old session, whose death then removed a realserver whose new
// session was reporting.
func TestReloadDoesNotMoveEntryToSilentSession(t *testing.T) {
	// Go's map order decided the old outcome, so try it many times.
	for trial := range 20 {
		r := newRig(t, httpOnly())
		r.join(1, netip.AddrPortFrom(rs1, 1000), nil, http80)
		r.health(1, 80, 70)
		r.join(2, netip.AddrPortFrom(rs1, 1001), nil, http80) // the restarted agent
		r.health(2, 80, 90)
		r.expectWeight(rs1, 90)
		r.reload(httpOnly())
		r.gone(1, "keepalives unanswered")
		r.advance(2 * time.Minute)
		if w := r.weight(rs1); w != 90 {
			t.Fatalf("trial %d: weight %d after the silent session died, want 90\n%s", trial, w, r.logs)
		}
	}
}

// Defect 2: a STOPped service came back on reload at its last health.
func TestStoppedServiceStaysOutAcrossReload(t *testing.T) {
	r := newRig(t, httpOnly())
	r.kv.SetConns(svc(vip1, necp.ProtoTCP, 80), ipvs.DestKey{Address: rs1, Port: 80}, 0, 0)
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 60)
	r.stop(1) // every service; the connection stays open
	r.expectWeight(rs1, 0)
	r.reload(httpOnly())
	r.health(1, 80, 60)
	r.expectWeight(rs1, 0)
	r.advance(time.Minute) // removal-interval 30 s, no connections
	r.expectWeight(rs1, -1)
	if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
		t.Fatalf("a new START after STOP: %v", st)
	}
	r.health(1, 80, 60)
	r.expectWeight(rs1, 60)
}

// Defect 3: tightening allow, adding a secret, or trust-agent-address
// yes → no by reload left unauthorized sessions in control.
func TestReloadTighteningAccessClosesSessions(t *testing.T) {
	t.Run("allow", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.join(1, peer(rs1), nil, http80)
		r.join(2, peer(rs2), nil, http80)
		r.health(1, 80, 50)
		r.health(2, 80, 50)
		cfg := httpOnly()
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.11/32")}
		r.reload(cfg)
		if r.kicks[2] == "" || r.kicks[1] != "" {
			t.Fatalf("kicks %v: want session 2 only", r.kicks)
		}
		r.expectWeight(rs2, 0)
		r.health(2, 80, 99) // already on its way out: ignored
		r.expectWeight(rs2, 0)
		r.expectWeight(rs1, 50)
	})
	t.Run("secret", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.join(1, peer(rs1), nil, http80)
		r.health(1, 80, 50)
		cfg := httpOnly()
		cfg.Secret = []byte("s3cret")
		r.reload(cfg)
		if r.kicks[1] != "not authenticated" {
			t.Fatalf("kicks %v", r.kicks)
		}
		r.expectWeight(rs1, 0)
		// An agent that proves the new secret joins again.
		if st := r.join(2, peer(rs1), []byte("s3cret"), http80); st[0] != necp.StatusAccepted {
			t.Fatalf("authenticated START: %v", st)
		}
		// A session that authenticated before the reload but STARTs after it
		// with no (or the old) secret is refused and closed.
		if st := r.join(3, peer(rs2), nil, http80); st[0] != necp.StatusRefused || r.kicks[3] == "" {
			t.Fatalf("unauthenticated START after the reload: %v, kicks %v", st, r.kicks)
		}
	})
	t.Run("trust", func(t *testing.T) {
		cfg := httpOnly()
		cfg.TrustAgentAddress = true
		r := newRig(t, cfg)
		claim := http80
		claim.Address = rs2
		r.join(1, peer(rs1), nil, http80, claim)
		r.health(1, 80, 70)
		r.expectWeight(rs2, 70)
		r.reload(httpOnly()) // trust-agent-address = no
		r.expectWeight(rs2, 0)
		r.health(1, 80, 20)
		r.expectWeight(rs2, 0)
		r.expectWeight(rs1, 20)
		if strings.Contains(r.logs.String(), `msg="refused service`) {
			t.Fatalf("reload logged a refusal while applying the health anyway:\n%s", r.logs)
		}
	})
}

// Defect 4: another tool's destination, added while the master runs, was
// taken over when its agent STARTed before the next resync.
func TestForeignAddBeforeStartIsNotTakenOver(t *testing.T) {
	r := newRig(t, httpOnly())
	r.now = r.now.Add(time.Second)
	foreign := ipvs.Destination{DestKey: ipvs.DestKey{Address: rs1, Port: 80}, Weight: 7, Forwarding: ipvs.ForwardMasq}
	if err := r.kv.AddDestination(svc(vip1, necp.ProtoTCP, 80), foreign); err != nil {
		t.Fatal(err)
	}
	if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusRefused {
		t.Fatalf("START for another tool's destination answered %v", st)
	}
	r.health(1, 80, 90)
	r.gone(1, "agent closed the connection")
	r.advance(2 * time.Minute)
	r.expectWeight(rs1, 7)
	if r.recorded(rs1) {
		t.Fatal("the state file claims another tool's destination")
	}
}

// Defect 5: a virtual service absent for one reload (or one run) lost its
// destinations from the state file for good.
func TestOwnershipSurvivesConfigGaps(t *testing.T) {
	t.Run("reload", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.join(1, peer(rs1), nil, http80)
		r.health(1, 80, 40)
		r.gone(1, "agent closed the connection") // quiescing
		empty := httpOnly()
		empty.VirtualServices = nil
		r.reload(empty)
		if !r.recorded(rs1) {
			t.Fatal("destination forgotten while its virtual service is not configured")
		}
		r.reload(httpOnly())
		r.join(2, peer(rs1), nil, http80)
		r.health(2, 80, 55)
		r.expectWeight(rs1, 55)
	})
	t.Run("restart", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.join(1, peer(rs1), nil, http80)
		r.health(1, 80, 40)
		empty := httpOnly()
		empty.VirtualServices = nil
		r.restart(empty)
		if !r.recorded(rs1) {
			t.Fatal("destination forgotten by a run without its virtual service")
		}
		r.restart(httpOnly())
		r.expectWeight(rs1, 40) // adopted, untouched
		if st := r.join(2, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
			t.Fatalf("START for our own destination after the gap: %v\n%s", st, r.logs)
		}
		r.health(2, 80, 45)
		r.expectWeight(rs1, 45)
	})
}

// Defect 6: with an unwritable state file the master accepted agents and
// created destinations it would disown after a restart.
func TestUnwritableStateFile(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		m, _ := New(httpOnly(), Options{IPVS: ipvs.NewMemory(nil), Store: &flakyStore{err: syscall.ENOENT}})
		o, _ := m.newOwner()
		if err := o.start(t0); err == nil || !strings.Contains(err.Error(), "state file") {
			t.Fatalf("start with an unwritable state file: %v", err)
		}
	})
	t.Run("while running", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.store.err = syscall.ENOSPC
		if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusRefused {
			t.Fatalf("START while the state file cannot be written: %v", st)
		}
		r.expectWeight(rs1, -1)
		if !strings.Contains(r.logs.String(), "cannot record owned destinations") {
			t.Fatalf("no clear error:\n%s", r.logs)
		}
		r.store.err = nil
		if st := r.join(2, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
			t.Fatalf("START once it can: %v", st)
		}
		if !r.recorded(rs1) {
			t.Fatal("accepted but not recorded")
		}
	})
}

// Defect 7: two live sessions for one realserver — the newer one's STOP or
// close quiesced the realserver while the older kept reporting; and a
// claimer could displace the realserver's own agent.
func TestTwoLiveSessions(t *testing.T) {
	t.Run("newer stops", func(t *testing.T) {
		r := newRig(t, httpOnly())
		r.join(1, netip.AddrPortFrom(rs1, 1000), nil, http80)
		r.health(1, 80, 60)
		r.join(2, netip.AddrPortFrom(rs1, 1001), nil, http80)
		r.health(2, 80, 30)
		r.expectWeight(rs1, 30)
		r.stop(2)
		r.expectWeight(rs1, 60) // back to the older, still-live session
		r.gone(2, "agent closed the connection")
		r.advance(time.Minute)
		r.expectWeight(rs1, 60)
	})
	t.Run("claimer", func(t *testing.T) {
		cfg := httpOnly()
		cfg.TrustAgentAddress = true
		r := newRig(t, cfg)
		r.join(1, peer(rs1), nil, http80)
		r.health(1, 80, 90)
		claim := http80
		claim.Address = rs1
		r.join(2, peer(rs3), nil, claim)
		r.health(2, 80, 1)
		r.expectWeight(rs1, 90)
		r.gone(2, "agent closed the connection")
		r.advance(time.Minute)
		r.expectWeight(rs1, 90)
	})
}

// Defect 13: a reload logged "rejoined" for every session, and a false
// "changed outside feedbackd" WARN with equal weights.
func TestReloadIsQuiet(t *testing.T) {
	r := newRig(t, httpOnly())
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(20 + i)})
		r.join(sessionID(i+1), peer(a), nil, http80)
		r.health(sessionID(i+1), 80, 70)
	}
	before := len(r.logs.String())
	for range 5 {
		r.reload(httpOnly())
	}
	r.advance(time.Minute) // two resyncs
	after := r.logs.String()[before:]
	for _, noise := range []string{"rejoined", "changed outside", "level=WARN"} {
		if strings.Contains(after, noise) {
			t.Fatalf("reloads of an unchanged configuration logged %q:\n%s", noise, after)
		}
	}
}

// An add that fails for another reason is retried, and its START is not
// answered "accepted" while the destination is not in the kernel.
func TestFailedAddIsRetriedAndNotAccepted(t *testing.T) {
	r := newRig(t, httpOnly())
	r.kv.FailNext(errors.New("netlink: EIO"))
	if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusRefused {
		t.Fatalf("START answered %v while the add failed", st)
	}
	r.pass()
	r.expectWeight(rs1, -1) // its offer was given up with the refusal
}
