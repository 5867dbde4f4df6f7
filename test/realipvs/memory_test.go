package realipvs

// The harness against the in-memory IPVS table: a quick test that runs in
// every `go test ./...` (so the harness the real-kernel tests depend on is
// checked everywhere), and a benchmark of the same reconciles for
// comparison with the real-netlink figures.

import (
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// TestHarnessMemory runs the reconciles of the real-kernel tests with 50
// agents against ipvs.Memory: every weight changed (one write each),
// nothing changed (no write), and a reload (no write, then one per
// destination when max-weight changes).
func TestHarnessMemory(t *testing.T) {
	const n, interval = 50, 50 * time.Millisecond
	const timeout = 10 * time.Second
	mem := ipvs.NewMemory(nil)
	cfg := clusterConfig(t, "198.51.100.9", 80, "50ms", 100)
	c := startCluster(t, mem, cfg)
	f := startFleet(t, c.addr, n, 80, 40, timeout)
	waitTable(t, mem, c.vs, c.weights(f, 100), timeout)

	w0, _, _ := c.kv.counts()
	r := c.changeAll(t, f, 90, 100, interval, timeout)
	waitTable(t, mem, c.vs, c.weights(f, 100), timeout)
	w1, failed, _ := c.kv.counts()
	if w1-w0 != n || failed != 0 {
		t.Errorf("changing every weight: %d writes (%d failed), want %d", w1-w0, failed, n)
	}
	if r.toWritten <= 0 || r.passes < 1 {
		t.Errorf("round result %+v", r)
	}

	f.waitAcks(t, f.acks(), 2, timeout)
	if w2, _, _ := c.kv.counts(); w2 != w1 {
		t.Errorf("unchanged reports: %d writes, want 0", w2-w1)
	}

	if p := c.reload(t, cfg, timeout); p.writes != 0 {
		t.Errorf("reload of the same configuration: %d writes, want 0", p.writes)
	}
	if p := c.reload(t, clusterConfig(t, "198.51.100.9", 80, "50ms", 200), timeout); p.writes != n {
		t.Errorf("reload with max-weight 200: %d writes, want %d", p.writes, n)
	}
	waitTable(t, mem, c.vs, c.weights(f, 200), timeout)
}

// BenchmarkReconcile1000Memory is the reconcile of
// TestRealIPVSReconcile1000Changed against the in-memory table: 1000
// agents report a new health at once (timed from their KEEPALIVE_ACKs to
// the last weight written), and a reload that changes all 1000 weights in
// one owner pass (timed over that pass). Each op waits up to one
// keepalive-interval (50 ms, untimed) for the agents' next KEEPALIVE, so
// run it with a fixed count:
//
//	go test -run '^$' -bench Reconcile1000Memory -benchtime 20x ./test/realipvs
func BenchmarkReconcile1000Memory(b *testing.B) {
	const n, interval = 1000, 50 * time.Millisecond
	const timeout = 30 * time.Second
	mem := ipvs.NewMemory(nil)
	cfg := clusterConfig(b, "198.51.100.9", 80, "50ms", 100)
	c := startCluster(b, mem, cfg)
	f := startFleet(b, c.addr, n, 80, 40, timeout)
	waitTable(b, mem, c.vs, c.weights(f, 100), timeout)

	b.Run("reports", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			b.StopTimer()
			r := c.changeAll(b, f, otherHealth(f), 100, interval, timeout)
			total += r.toWritten
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(ms(total)/float64(b.N), "ms/reconcile")
	})
	// The reload sub-benchmark flips max-weight between 100 and 200; cur
	// is the configuration in force (b.Run calls the function more than
	// once).
	cfgs := map[bool]*config.Master{false: cfg, true: clusterConfig(b, "198.51.100.9", 80, "50ms", 200)}
	cur := false
	b.Run("reload", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			b.StopTimer()
			cur = !cur
			p := c.reload(b, cfgs[cur], timeout)
			if p.writes != n {
				b.Fatalf("reload pass wrote %d weights, want %d", p.writes, n)
			}
			total += p.lastWrite.Sub(p.lastReadEnd)
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(ms(total)/float64(b.N), "ms/apply")
	})
}
