//go:build realipvs

package realipvs

// The real-kernel measurements of issue 7. Each test runs the master
// in-process on ipvs.Kernel (moby/ipvs over generic netlink), with its
// IPVS calls counted and timed by the harness's wrapper, and reads the
// kernel back through a second ipvs.Kernel: a netlink socket of its own.
//
// They need root and ip_vs; each uses its own virtual service in
// 198.51.100.0/24, deletes it first if an earlier run left it behind, and
// deletes it again at the end however the test ends.

import (
	"bufio"
	"flag"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// testNet2 is the only range these tests create virtual services in.
var testNet2 = netip.MustParsePrefix("198.51.100.0/24")

// Goals of issue 7.
const (
	goalReconcile1000 = 200 * time.Millisecond // 1000 changed weights, reports → kernel
	goalLatencySlack  = 20 * time.Millisecond  // health change → kernel: keepalive-interval + this
)

// realIPVS checks the environment and returns two handles on the kernel's
// IPVS table, one for the master and one for reading back, and arranges for
// the virtual service vip:80/tcp to be deleted when the test ends. Call it
// before startCluster, so that the deletion runs after the master stopped.
func realIPVS(t *testing.T, vip string) (forMaster, readBack *ipvs.Kernel) {
	t.Helper()
	logEnvironment(t)
	if os.Geteuid() != 0 {
		t.Fatal("TestRealIPVS* need root (CAP_NET_ADMIN) and a kernel with ip_vs; " +
			"run the test binary as root, e.g. in the QEMU guest of make e2e-ipvs")
	}
	addr := netip.MustParseAddr(vip)
	if !testNet2.Contains(addr) {
		t.Fatalf("virtual service %s outside %s", addr, testNet2)
	}
	k, err := ipvs.NewKernel(nil)
	if err != nil {
		t.Fatalf("TestRealIPVS* need a kernel with ip_vs: %v", err)
	}
	rb, err := ipvs.NewKernel(nil)
	if err != nil {
		k.Close()
		t.Fatal(err)
	}
	deleteService(t, addr, "left over from an earlier run")
	t.Cleanup(func() {
		deleteService(t, addr, "cleanup")
		rb.Close()
		k.Close()
	})
	return k, rb
}

// deleteService removes every virtual service on vip (destinations go with
// it). ipvs.IPVS cannot delete services (the master never does), so this
// uses moby/ipvs directly.
func deleteService(t *testing.T, vip netip.Addr, why string) {
	t.Helper()
	h, err := mobyipvs.New("")
	if err != nil {
		t.Errorf("deleting virtual service %s (%s): %v", vip, why, err)
		return
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		t.Errorf("deleting virtual service %s (%s): %v", vip, why, err)
		return
	}
	for _, s := range svcs {
		a, ok := netip.AddrFromSlice(s.Address)
		if !ok || a.Unmap() != vip || s.FWMark != 0 {
			continue
		}
		if err := h.DelService(s); err != nil {
			t.Errorf("deleting virtual service %s:%d (%s): %v", vip, s.Port, why, err)
		} else if why != "cleanup" {
			t.Logf("deleted virtual service %s:%d (%s)", vip, s.Port, why)
		}
	}
}

// logEnvironment says where the figures come from. The e2e-ipvs guest runs
// under QEMU's software emulation, roughly ten times slower than hardware,
// so its absolute times are pessimistic.
func logEnvironment(t *testing.T) {
	t.Helper()
	model := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	t.Logf("environment: kernel %s, cpu %q", strings.TrimSpace(string(rel)), model)
	if emulated() {
		t.Logf("environment: QEMU guest under software emulation (TCG, as in make e2e-ipvs): everything runs " +
			"roughly 10x slower than on hardware, so these absolute times are pessimistic")
	}
}

// TestRealIPVSReconcile1000Changed: 1000 agents, one realserver each under
// one virtual service, report a new health at the same moment; measured from
// their KEEPALIVE_ACKs until the kernel has every new weight. Then the
// owner's apply step alone: a reload that changes max-weight makes one
// owner pass write all 1000 weights, timed from inside the master through
// the IPVS wrapper and Options.OnLoop.
func TestRealIPVSReconcile1000Changed(t *testing.T) {
	const n, rounds, interval = 1000, 5, time.Second
	vip := "198.51.100.1"
	k, rb := realIPVS(t, vip)
	cfg := clusterConfigSched(t, vip, 80, "1", 100, *scheduler)
	t.Logf("scheduler %s", *scheduler)
	c := startCluster(t, k, cfg)
	t0 := time.Now()
	f := startFleet(t, c.addr, n, 80, 50, 5*time.Minute)
	waitTable(t, rb, c.vs, c.weights(f, 100), 2*time.Minute)
	figure(t, "join-1000-to-weights", time.Since(t0).Seconds(), "s")

	toWritten, toReadBack := changeRounds(t, c, f, rb, rounds, interval)
	distribution(t, "reconcile-1000-changed", toWritten)
	distribution(t, "reconcile-1000-changed-readback", toReadBack)

	// What the read-back costs by itself: one netlink dump of the 1000
	// destinations, parsed by moby/ipvs.
	var dumps []time.Duration
	for range rounds {
		t1 := time.Now()
		ds, err := rb.Destinations(c.vs)
		dumps = append(dumps, time.Since(t1))
		if err != nil || len(ds) != n {
			t.Fatalf("reading back: %d destinations, %v", len(ds), err)
		}
	}
	distribution(t, "readback-dump-1000", dumps)

	// The apply step alone. Reload flips max-weight 100 ↔ 200, so every
	// weight doubles or halves; the pass that carries the reload reads the
	// services and the destinations, then diffs and writes. apply is from
	// the end of that last read to the last write acknowledged (resync,
	// diff, 1000 netlink writes); writes is first write to last.
	cfgs := map[bool]*config.Master{false: cfg, true: clusterConfigSched(t, vip, 80, "1", 200, *scheduler)}
	cur := false
	var apply, writes, pass []time.Duration
	for r := range 2 * rounds {
		cur = !cur
		maxW := 100
		if cur {
			maxW = 200
		}
		p := c.reload(t, cfgs[cur], time.Minute)
		waitTable(t, rb, c.vs, c.weights(f, maxW), time.Minute)
		if p.writes != n {
			t.Errorf("reload %d: the pass wrote %d weights, want %d", r+1, p.writes, n)
			continue
		}
		apply = append(apply, p.lastWrite.Sub(p.lastReadEnd))
		writes = append(writes, p.lastWrite.Sub(p.firstWrite))
		pass = append(pass, p.end.Sub(p.firstCall))
	}
	distribution(t, "apply-1000-changed", apply)
	distribution(t, "apply-1000-changed-writes-only", writes)
	distribution(t, "reload-pass-1000-changed", pass)
	if len(writes) > 0 {
		figure(t, "netlink-write-each", float64(percentile(writes, 50))/float64(time.Microsecond)/n, "us")
	}

	reportGoal(t, "reconcile-1000-changed-p50", percentile(toWritten, 50), 0, goalReconcile1000)
}

// changeRounds runs rounds reconciles in which every agent of f reports a
// new health at once, and returns for each the time from the reports to
// the last write acknowledged, and to the read-back through rb that showed
// every new weight.
func changeRounds(t *testing.T, c *cluster, f *fleet, rb ipvs.IPVS, rounds int, interval time.Duration) (toWritten, toReadBack []time.Duration) {
	t.Helper()
	n := len(f.agents)
	for r := range rounds {
		w0, _, _ := c.kv.counts()
		res := c.changeAll(t, f, otherHealth(f), 100, interval, time.Minute)
		seen := waitTable(t, rb, c.vs, c.weights(f, 100), time.Minute)
		w1, failed, _ := c.kv.counts()
		sent := res.written.Add(-res.toWritten)
		toWritten = append(toWritten, res.toWritten)
		toReadBack = append(toReadBack, seen.Sub(sent))
		t.Logf("round %d: %d writes (%d failed) in %d owner passes; last write acknowledged after %.1f ms, read back after %.1f ms",
			r+1, w1-w0, failed, res.passes, ms(res.toWritten), ms(seen.Sub(sent)))
		if w1-w0 != n || failed != 0 {
			t.Errorf("round %d: %d writes, %d failed; want exactly %d", r+1, w1-w0, failed, n)
		}
	}
	return toWritten, toReadBack
}

// TestRealIPVSEmulationReference is the reconcile of
// TestRealIPVSReconcile1000Changed on the in-memory table instead of the
// kernel's: the same master, agents and loopback TCP, no netlink. It needs
// neither root nor ip_vs. Run in the guest and on a host, the ratio of its
// figures is the slowdown of that environment for this code path, which
// turns the guest's real-netlink figures into an estimate for hardware.
func TestRealIPVSEmulationReference(t *testing.T) {
	const n, rounds, interval = 1000, 5, time.Second
	logEnvironment(t)
	mem := ipvs.NewMemory(nil)
	c := startCluster(t, mem, clusterConfig(t, "198.51.100.4", 80, "1", 100))
	f := startFleet(t, c.addr, n, 80, 50, 5*time.Minute)
	waitTable(t, mem, c.vs, c.weights(f, 100), 2*time.Minute)
	toWritten, _ := changeRounds(t, c, f, mem, rounds, interval)
	distribution(t, "reference-memory-reconcile-1000-changed", toWritten)
}

// TestRealIPVSReconcile1000Unchanged: with 1000 destinations at their
// weights, agents that report the same health again cause no netlink
// write; nor does a full reconcile (a reload of the same configuration:
// every session matched again, the kernel read back, resync, diff).
func TestRealIPVSReconcile1000Unchanged(t *testing.T) {
	const n = 1000
	vip := "198.51.100.2"
	k, rb := realIPVS(t, vip)
	cfg := clusterConfig(t, vip, 80, "1", 100)
	c := startCluster(t, k, cfg)
	f := startFleet(t, c.addr, n, 80, 50, 5*time.Minute)
	want := c.weights(f, 100)
	waitTable(t, rb, c.vs, want, 2*time.Minute)

	w0, f0, r0 := c.kv.counts()
	before := f.acks()
	f.waitAcks(t, before, 2, time.Minute)
	w1, f1, r1 := c.kv.counts()
	var reports int64
	for i, a := range f.acks() {
		reports += a - before[i]
	}
	figure(t, "reconcile-1000-unchanged-reports", float64(reports), "reports")
	figure(t, "reconcile-1000-unchanged-writes", float64(w1-w0+f1-f0), "writes")
	if w1 != w0 || f1 != f0 {
		t.Errorf("%d unchanged health reports caused %d netlink writes, want 0", reports, w1-w0+f1-f0)
	}
	t.Logf("(%d reads in that time: the master does not read IPVS for unchanged reports either)", r1-r0)

	p := c.reload(t, cfg, time.Minute)
	figure(t, "reload-1000-unchanged-writes", float64(p.writes), "writes")
	figure(t, "reload-pass-1000-unchanged", ms(p.end.Sub(p.firstCall)), "ms")
	if p.writes != 0 {
		t.Errorf("a reload of the same configuration wrote %d times, want 0", p.writes)
	}
	waitTable(t, rb, c.vs, want, time.Minute)
	if w2, f2, _ := c.kv.counts(); w2 != w1 || f2 != f1 {
		t.Errorf("%d netlink writes during the unchanged reconciles, want 0", w2-w1+f2-f1)
	}
}

// TestRealIPVSHealthToKernelLatency: an agent's health changes at a random
// moment of its keepalive cycle; measured until the kernel has acknowledged
// the new weight (and read back through the second handle). The master
// only learns the health at its next KEEPALIVE, so the bound is one
// keepalive-interval plus the master's own work.
func TestRealIPVSHealthToKernelLatency(t *testing.T) {
	const n, changes, interval = 10, 20, time.Second
	vip := "198.51.100.3"
	k, rb := realIPVS(t, vip)
	c := startCluster(t, k, clusterConfig(t, vip, 80, "1", 100))
	f := startFleet(t, c.addr, n, 80, 50, time.Minute)
	waitTable(t, rb, c.vs, c.weights(f, 100), time.Minute)

	rng := rand.New(rand.NewPCG(7, 11))
	var total, master, readBack []time.Duration
	for i := range changes {
		a := f.agents[i%n]
		// A random phase against the agent's keepalive cycle: this wait
		// is the experiment, not a wait for a condition.
		phase := time.NewTimer(time.Duration(rng.Int64N(int64(interval + interval/10))))
		<-phase.C
		h := uint8(30)
		if a.health.Load() == 30 {
			h = 70
		}
		ref := destRef{c.vs, ipvs.DestKey{Address: a.rs, Port: f.port}}
		want := map[destRef]int{ref: int(h)}
		done := c.kv.expect(want)
		t0 := time.Now()
		a.health.Store(uint32(h))
		select {
		case <-done:
		case <-time.After(interval + 30*time.Second):
			t.Fatalf("change %d: weight %d for %s not written", i+1, h, a.rs)
		}
		at, _ := c.kv.targetResult()
		acked := time.Unix(0, a.ackAt.Load())
		seen := waitTable(t, rb, c.vs, want, 30*time.Second)
		total = append(total, at.Sub(t0))
		master = append(master, at.Sub(acked))
		readBack = append(readBack, seen.Sub(t0))
		t.Logf("change %2d: %s health %d: written after %.1f ms (KEEPALIVE_ACK → written %.1f ms), read back after %.1f ms",
			i+1, a.rs, h, ms(at.Sub(t0)), ms(at.Sub(acked)), ms(seen.Sub(t0)))
	}
	figure(t, "health-to-kernel-interval", ms(interval), "ms")
	distribution(t, "health-to-kernel", total)
	distribution(t, "health-to-kernel-ack-to-write", master)
	distribution(t, "health-to-kernel-readback", readBack)
	reportGoal(t, "health-to-kernel-max", percentile(total, 100), interval, goalLatencySlack)
}

// scheduler is the IPVS scheduler of TestRealIPVSReconcile1000Changed's
// virtual service. The kernel's wrr (the master's default) recomputes the
// greatest common divisor and the largest of all the service's weights on
// every weight change, so a write costs more the more destinations the
// service has; rr does not look at weights at all.
var scheduler = flag.String("realipvs.scheduler", "wrr", "IPVS scheduler of the 1000-destination virtual service")

// slowdown scales the goals' CPU-bound parts in what reportGoal prints;
// see goalFactor.
var slowdown = flag.Float64("realipvs.slowdown", 0,
	"factor the CPU-bound part of each goal is multiplied by; 0 means 10 under software emulation (QEMU without KVM), else 1")

// emulated reports whether this looks like a QEMU guest without hardware
// virtualisation: a QEMU CPU model and no kvm-clock.
func emulated() bool {
	info, _ := os.ReadFile("/proc/cpuinfo")
	cs, _ := os.ReadFile("/sys/devices/system/clocksource/clocksource0/available_clocksource")
	return strings.Contains(string(info), "QEMU") && !strings.Contains(string(cs), "kvm-clock")
}

// goalFactor is what the goals of issue 7 (hardware figures) are scaled by
// here: -realipvs.slowdown if given, otherwise 10 under software emulation,
// the rough slowdown of QEMU TCG (TestRealIPVSEmulationReference measures
// it for this code path), and 1 elsewhere.
func goalFactor() float64 {
	switch {
	case *slowdown > 0:
		return *slowdown
	case emulated():
		return 10
	}
	return 1
}

// reportGoal prints got next to the goal of issue 7, fixed + scaled ×
// goalFactor() (fixed is wall-clock time that emulation does not stretch, a
// keepalive-interval; scaled the CPU-bound budget), as figures only. It
// never fails the test: a time measured on a shared, loaded or emulated
// machine says nothing certain about the code (the same build gave 2129
// and 795 ms on one CI machine), and CI fails only for real defects. The
// figures go to docs/benchmarks.md; the functional checks (every weight
// written, nothing written when nothing changed) stay assertions.
func reportGoal(t *testing.T, name string, got, fixed, scaled time.Duration) {
	t.Helper()
	f := goalFactor()
	goal := fixed + time.Duration(float64(scaled)*f)
	where := "within"
	if got >= goal {
		where = "over"
	}
	figure(t, name+"-goal", ms(goal), "ms") // name itself is one of distribution's figures
	t.Logf("goal: %s: %.1f ms, %s the goal of %.1f ms (%v + %v × %g); a figure, not a pass/fail",
		name, ms(got), where, ms(goal), fixed, scaled, f)
	if f != 1 {
		t.Logf("goal: scaled by %g for a slow environment; the goal on hardware is %v + %v", f, fixed, scaled)
	}
}

// The figures are printed only by the real-kernel tests, so their helpers
// live here, behind the same build tag.

// figure logs one measured value in the greppable form
// "figure: NAME: VALUE UNIT".
func figure(tb testing.TB, name string, v float64, unit string) {
	tb.Helper()
	tb.Logf("figure: %s: %.1f %s", name, v, unit)
}

// percentile is the nearest-rank percentile p (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// distribution logs p50, p95 and max of ds under name.
func distribution(tb testing.TB, name string, ds []time.Duration) {
	tb.Helper()
	figure(tb, name+"-p50", ms(percentile(ds, 50)), "ms")
	figure(tb, name+"-p95", ms(percentile(ds, 95)), "ms")
	figure(tb, name+"-max", ms(percentile(ds, 100)), "ms")
}
