package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// fakeMonitor runs measure, counting calls and how many overlap.
type fakeMonitor struct {
	measure  func(ctx context.Context, call int) (int, error)
	calls    atomic.Int32
	inFlight atomic.Int32
	maxOver  atomic.Int32
}

func (f *fakeMonitor) Name() string { return "fake" }
func (f *fakeMonitor) Close() error { return nil }
func (f *fakeMonitor) Measure(ctx context.Context) (int, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		old := f.maxOver.Load()
		if n <= old || f.maxOver.CompareAndSwap(old, n) {
			break
		}
	}
	return f.measure(ctx, int(f.calls.Add(1)))
}

// runSampler runs s until the test ends, and checks that Run returns
// promptly once its context is cancelled.
func runSampler(t *testing.T, s *Sampler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockUntilDone is a Measure stuck until the sampler shuts down.
func blockUntilDone(ctx context.Context) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func TestSamplerCachesLatest(t *testing.T) {
	var value atomic.Int32
	value.Store(42)
	f := &fakeMonitor{measure: func(context.Context, int) (int, error) { return int(value.Load()), nil }}
	s := NewSampler(f, 5*time.Millisecond, nil)
	runSampler(t, s)

	eventually(t, "health 42", func() bool { return s.Health(time.Now()) == 42 })
	value.Store(43)
	eventually(t, "health 43", func() bool { return s.Health(time.Now()) == 43 })
	h, at, err := s.Last()
	if h != 43 || err != nil || at.IsZero() || time.Since(at) > time.Second {
		t.Fatalf("Last() = %d, %v, %v", h, at, err)
	}
	if f.maxOver.Load() != 1 {
		t.Fatalf("%d samples overlapped", f.maxOver.Load())
	}
}

func TestSamplerUnknownBeforeFirstSample(t *testing.T) {
	started := make(chan struct{})
	f := &fakeMonitor{measure: func(ctx context.Context, _ int) (int, error) {
		close(started)
		return blockUntilDone(ctx)
	}}
	s := NewSampler(f, time.Second, nil)
	if got := s.Health(time.Now()); got != necp.HealthUnknown {
		t.Fatalf("before Run: Health = %d", got)
	}
	runSampler(t, s)
	<-started // the first sample is taken at once, not after an interval
	if got := s.Health(time.Now()); got != necp.HealthUnknown {
		t.Fatalf("during the first sample: Health = %d", got)
	}
	if _, at, err := s.Last(); !errors.Is(err, ErrNoSample) || !at.IsZero() {
		t.Fatalf("Last() = %v, %v; want ErrNoSample", at, err)
	}
	if h, why := s.Reading(time.Now()); h != necp.HealthUnknown || why != ErrNoSample.Error() {
		t.Fatalf("Reading() = %d, %q; want unknown, %q", h, why, ErrNoSample)
	}
}

func TestSamplerUnknownOnError(t *testing.T) {
	var fail atomic.Bool
	f := &fakeMonitor{measure: func(context.Context, int) (int, error) {
		if fail.Load() {
			return 0, errors.New("exit status 3")
		}
		return 80, nil
	}}
	s := NewSampler(f, 5*time.Millisecond, nil)
	runSampler(t, s)
	eventually(t, "health 80", func() bool { return s.Health(time.Now()) == 80 })
	fail.Store(true)
	// Wait for the failed sample itself: with a 5 ms interval a loaded
	// machine can also make the last good sample stale (unknown) first.
	eventually(t, "a failed sample", func() bool { _, _, err := s.Last(); return err != nil })
	// Read as of the failed sample's own time, so that staleness cannot
	// stand in for the failure.
	_, at, err := s.Last()
	if err == nil || err.Error() != "exit status 3" {
		t.Fatalf("Last() err = %v", err)
	}
	if got := s.Health(at); got != necp.HealthUnknown {
		t.Fatalf("after a failed sample: Health = %d", got)
	}
	if h, why := s.Reading(at); h != necp.HealthUnknown || why != "monitor failed" {
		t.Fatalf("Reading() = %d, %q; want unknown, \"monitor failed\"", h, why)
	}
	fail.Store(false)
	eventually(t, "health 80 again", func() bool { return s.Health(time.Now()) == 80 })
}

func TestSamplerOutOfRangeIsUnknown(t *testing.T) {
	f := &fakeMonitor{measure: func(context.Context, int) (int, error) { return 101, nil }}
	s := NewSampler(f, time.Second, nil)
	runSampler(t, s)
	eventually(t, "a sample", func() bool { _, at, _ := s.Last(); return !at.IsZero() })
	if got := s.Health(time.Now()); got != necp.HealthUnknown {
		t.Fatalf("Health = %d", got)
	}
	if _, _, err := s.Last(); err == nil || !strings.Contains(err.Error(), "outside 0..100") {
		t.Fatalf("Last() err = %v", err)
	}
}

func TestSamplerStale(t *testing.T) {
	// One good sample, then the monitor hangs.
	f := &fakeMonitor{measure: func(ctx context.Context, call int) (int, error) {
		if call == 1 {
			return 42, nil
		}
		return blockUntilDone(ctx)
	}}
	const interval = 20 * time.Millisecond
	s := NewSampler(f, interval, nil)
	runSampler(t, s)
	eventually(t, "the first sample", func() bool { _, at, _ := s.Last(); return !at.IsZero() })
	_, at, _ := s.Last()

	limit := at.Add(StaleAfter * interval)
	if got := s.Health(limit); got != 42 {
		t.Errorf("Health at %d intervals = %d, want 42", StaleAfter, got)
	}
	if got := s.Health(limit.Add(time.Nanosecond)); got != necp.HealthUnknown {
		t.Errorf("Health past %d intervals = %d, want unknown", StaleAfter, got)
	}
	if h, why := s.Reading(limit.Add(time.Millisecond)); h != necp.HealthUnknown || why != "sample too old" {
		t.Errorf("Reading past %d intervals = %d, %q; want unknown and why", StaleAfter, h, why)
	}
	if h, why := s.Reading(limit); h != 42 || why != "" {
		t.Errorf("Reading at %d intervals = %d, %q; want 42 and no reason", StaleAfter, h, why)
	}
	// And in real time: the stuck monitor's value goes stale by itself.
	eventually(t, "stale", func() bool { return s.Health(time.Now()) == necp.HealthUnknown })
}

func TestSamplerSlowMonitorNeverBlocksHealth(t *testing.T) {
	var once sync.Once
	started := make(chan struct{})
	f := &fakeMonitor{measure: func(ctx context.Context, call int) (int, error) {
		if call == 1 {
			return 42, nil
		}
		once.Do(func() { close(started) })
		return blockUntilDone(ctx)
	}}
	s := NewSampler(f, 10*time.Millisecond, nil)
	runSampler(t, s)
	<-started // the second sample is stuck inside Measure now

	done := make(chan uint8)
	go func() {
		var h uint8
		for range 1000 {
			h = s.Health(time.Now())
		}
		done <- h
	}()
	select {
	case h := <-done:
		if h != 42 {
			t.Fatalf("Health = %d, want the cached 42", h)
		}
	case <-time.After(time.Second):
		t.Fatal("Health blocked while Measure was running")
	}
}

// manualTicker hands Run ticks the test sends. Its buffer of one matches
// a time.Ticker's: a tick that falls due while Run is busy waits for it.
func manualTicker(s *Sampler) chan time.Time {
	ch := make(chan time.Time, 1)
	s.newTicker = func(time.Duration) (<-chan time.Time, func()) { return ch, func() {} }
	return ch
}

func TestSamplerSkipsTickDueDuringSample(t *testing.T) {
	started := make(chan int)
	release := make(chan struct{})
	f := &fakeMonitor{measure: func(ctx context.Context, call int) (int, error) {
		started <- call
		select {
		case <-release:
			return 50, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}}
	s := NewSampler(f, time.Second, nil)
	ticks := manualTicker(s)
	runSampler(t, s)

	if c := <-started; c != 1 {
		t.Fatalf("call %d", c)
	}
	ticks <- time.Now() // falls due while sample 1 runs
	release <- struct{}{}
	// Sample 1 is over and its late tick dropped; only a new tick starts
	// sample 2. Had the late tick been honoured, sample 2 would already
	// be running and this tick would still sit in the channel.
	ticks <- time.Now()
	if c := <-started; c != 2 {
		t.Fatalf("call %d", c)
	}
	if n := len(ticks); n != 0 {
		t.Fatalf("%d tick(s) pending once sample 2 started: the late tick was not skipped", n)
	}
	release <- struct{}{}
	if f.maxOver.Load() != 1 {
		t.Fatalf("%d samples overlapped", f.maxOver.Load())
	}
}

func TestNewSamplerDefaultInterval(t *testing.T) {
	s := NewSampler(&fakeMonitor{}, 0, nil)
	if s.Interval() != monitor.DefaultInterval {
		t.Fatalf("interval %v", s.Interval())
	}
}

func BenchmarkSamplerHealth(b *testing.B) {
	s := NewSampler(&fakeMonitor{}, time.Second, nil)
	now := time.Now()
	s.last.Store(&sample{health: 42, at: now})
	b.ReportAllocs()
	for b.Loop() {
		if s.Health(now) != 42 {
			b.Fatal("wrong health")
		}
	}
}

func BenchmarkSamplerHealthParallel(b *testing.B) {
	// Many agent connections reading one sampler while it is updated.
	s := NewSampler(&fakeMonitor{}, time.Second, nil)
	now := time.Now()
	s.last.Store(&sample{health: 42, at: now})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if s.Health(now) != 42 {
				b.Fatal("wrong health")
			}
		}
	})
}
