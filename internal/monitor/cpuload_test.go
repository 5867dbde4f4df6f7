package monitor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixtureProc is a /proc root whose stat file the test replaces between
// samples with one of the snapshots in testdata/stat.
type fixtureProc struct {
	t    *testing.T
	root string
}

func newFixtureProc(t *testing.T, snapshot string) *fixtureProc {
	f := &fixtureProc{t: t, root: t.TempDir()}
	f.install(snapshot)
	return f
}

func (f *fixtureProc) install(snapshot string) {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "stat", snapshot))
	if err != nil {
		f.t.Fatal(err)
	}
	// Rename over the old file, as the real /proc/stat changes as a whole.
	tmp := filepath.Join(f.root, "stat.new")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.root, "stat")); err != nil {
		f.t.Fatal(err)
	}
}

// newFixtureCPULoad returns a cpuload reading f whose first Measure sees
// first and then, instead of waiting, second.
func newFixtureCPULoad(t *testing.T, f *fixtureProc, second string) *cpuload {
	t.Helper()
	m, err := New("cpuload.so", nil, Options{ProcRoot: f.root})
	if err != nil {
		t.Fatal(err)
	}
	c := m.(*cpuload)
	c.pause = func(ctx context.Context, d time.Duration) error {
		if d != 100*time.Millisecond {
			t.Errorf("first-sample gap = %v, want 100ms", d)
		}
		f.install(second)
		return nil
	}
	return c
}

func TestCPULoadSequence(t *testing.T) {
	f := newFixtureProc(t, "a")
	c := newFixtureCPULoad(t, f, "b")
	if c.Name() != "cpuload" {
		t.Errorf("Name() = %q", c.Name())
	}
	ctx := context.Background()

	steps := []struct {
		snapshot string // installed before Measure; "" for the first one
		want     int
		wantErr  string
		why      string
	}{
		{"", 60, "", "a->b: 600 of 1000 ticks idle+iowait; guest (already in user) must not count"},
		{"c", 67, "", "b->c: 2 of 3 ticks, 66.7 rounds to 67"},
		{"c", 0, "no CPU time accounted", "no tick since the previous sample"},
		{"d-hotplug", 0, "went backwards (total 11003 -> 5500 ticks", "a CPU went offline"},
		{"e", 83, "", "d->e: the baseline was reset to d, 500 of 600"},
		{"f-iowait-dips", 33, "", "iowait alone falls, the idle sum does not: 50 of 150"},
	}
	for i, s := range steps {
		if s.snapshot != "" {
			f.install(s.snapshot)
		}
		got, err := c.Measure(ctx)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("step %d (%s): err = %v, want it to contain %q", i, s.why, err, s.wantErr)
			}
			continue
		}
		if err != nil || got != s.want {
			t.Fatalf("step %d (%s): got %d, %v; want %d", i, s.why, got, err, s.want)
		}
	}
}

func TestCPULoadNoTicks(t *testing.T) {
	// Sampled faster than the kernel's tick: unknown, not a division by
	// zero, and the next sample works.
	f := newFixtureProc(t, "a")
	c := newFixtureCPULoad(t, f, "a")
	if _, err := c.Measure(context.Background()); !errors.Is(err, errNoTicks) {
		t.Fatalf("a->a: err = %v, want errNoTicks", err)
	}
	f.install("b")
	if got, err := c.Measure(context.Background()); err != nil || got != 60 {
		t.Fatalf("a->b after a sample without ticks: got %d, %v; want 60", got, err)
	}
}

func TestCPULoadStatePerInstance(t *testing.T) {
	f := newFixtureProc(t, "a")
	one := newFixtureCPULoad(t, f, "b")
	if got, err := one.Measure(context.Background()); err != nil || got != 60 {
		t.Fatalf("one a->b: %d, %v", got, err)
	}
	// A second monitor sampling b->c must not move the first one's
	// baseline, as gopsutil's shared cpu.Percent(0) state would.
	two := newFixtureCPULoad(t, f, "c")
	if got, err := two.Measure(context.Background()); err != nil || got != 67 {
		t.Fatalf("two b->c: %d, %v", got, err)
	}
	if got, err := one.Measure(context.Background()); err != nil || got != 67 {
		t.Fatalf("one b->c: got %d, %v; want 67 from its own baseline b", got, err)
	}
}

func TestCPULoadClamps(t *testing.T) {
	for _, tc := range []struct {
		name, prev, cur string
		want            int
	}{
		{"all idle", "cpu  10 0 10 100 0 0 0 0\n", "cpu  10 0 10 200 0 0 0 0\n", 100},
		{"all busy: the floor of 1, never 0", "cpu  10 0 10 100 0 0 0 0\n", "cpu  60 0 60 100 0 0 0 0\n", 1},
		// Idle may not outgrow the total, but if a kernel ever reports
		// it so, the answer must stay in range.
		{"idle outruns total", "cpu  100 0 0 100 0 0 0 0\n", "cpu  50 0 0 200 0 0 0 0\n", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write := func(s string) {
				if err := os.WriteFile(filepath.Join(root, "stat"), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(tc.prev)
			c := newCPULoad(root)
			c.pause = func(context.Context, time.Duration) error { write(tc.cur); return nil }
			if got, err := c.Measure(context.Background()); err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestCPULoadBadFiles(t *testing.T) {
	for _, tc := range []struct{ snapshot, want string }{
		{"no-cpu-line", "no aggregate cpu line"},
		{"garbage", "no aggregate cpu line"},
	} {
		t.Run(tc.snapshot, func(t *testing.T) {
			f := newFixtureProc(t, tc.snapshot)
			_, err := newCPULoad(f.root).Measure(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.root) {
				t.Fatalf("err = %v, want the path and %q", err, tc.want)
			}
		})
	}
	_, err := newCPULoad(t.TempDir()).Measure(context.Background())
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing stat: err = %v, want ErrNotExist", err)
	}
}

func TestCPULoadRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat")
	}
	m, err := New("cpuload", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h, err := m.Measure(context.Background())
	if err != nil || h < 0 || h > 100 {
		t.Fatalf("got %d, %v", h, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("first Measure took %v, want the ~100ms of its two samples", d)
	}
}

func TestCPULoadFirstSampleHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFixtureProc(t, "a")
	if _, err := newCPULoad(f.root).Measure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func BenchmarkCPULoadMeasure(b *testing.B) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		b.Skip("no /proc/stat")
	}
	c := newCPULoad("")
	c.firstGap = 0
	_, _ = c.Measure(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		// Most of these see no new tick (errNoTicks): that is the
		// reading and parsing cost, which is what is measured.
		_, _ = c.Measure(context.Background())
	}
}
