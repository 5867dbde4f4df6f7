package monitor

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
)

// checkSampleCost takes n samples of m, each of which must give want, and
// fails if together they started goroutines (each maps pages of the
// executable's function table again after the agent has unmapped them,
// docs/benchmarks.md) or if a sample allocated more than maxBytes.
func checkSampleCost(t *testing.T, m Monitor, n, want int, maxBytes uint64) {
	t.Helper()
	created := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	var ms0, ms1 runtime.MemStats
	c0 := created()
	runtime.ReadMemStats(&ms0)
	for range n {
		if h, err := m.Measure(context.Background()); err != nil || h != want {
			t.Fatalf("got %d, %v; want %d", h, err, want)
		}
	}
	runtime.ReadMemStats(&ms1)
	// Not zero: the runtime starts a few of its own now and then.
	if c := created() - c0; c >= uint64(n/2) {
		t.Errorf("%d goroutines started in %d samples, want none", c, n)
	}
	per := (ms1.TotalAlloc - ms0.TotalAlloc) / uint64(n)
	t.Logf("a sample allocates %d bytes", per)
	if per > maxBytes {
		t.Errorf("a sample allocates %d bytes, want under %d KB", per, maxBytes>>10)
	}
}
