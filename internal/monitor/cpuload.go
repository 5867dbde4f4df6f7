package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/cpu"
)

func init() {
	register(Kind{Name: "cpuload",
		Keys: []KeySpec{
			{Name: "cgroup", Type: TypePath, Help: "measure this cgroup (v2) against its own CPU budget instead of the whole machine's /proc/stat"},
		},
		build: func(params map[string]string, opts Options, _ *slog.Logger) (Monitor, error) {
			if cg, ok := params["cgroup"]; ok {
				return newCgroupCPU(cg, opts.CgroupRoot, opts.ProcRoot)
			}
			return newCPULoad(opts.ProcRoot), nil
		},
	})
}

// cpuload reports the share of CPU time spent idle since this monitor's
// previous sample, from the aggregate "cpu" line of /proc/stat.
//
// The counters come from gopsutil's cpu.Times. gopsutil's cpu.Percent(0)
// would be wrong here: it diffs against one package-global baseline, so two
// cpuload monitors would steal each other's samples. The baseline lives in
// each monitor instead.
type cpuload struct {
	root string // ProcRoot, for gopsutil
	path string // <ProcRoot>/stat, for messages

	mu sync.Mutex // one Measure at a time: they share the baseline
	baseline[cpuTimes]
}

// baseline is the previous sample of a monitor that reports the change of
// cumulative counters between two samples (cpuload, and cpuload with a
// cgroup).
type baseline[T any] struct {
	// firstGap separates the two reads of the very first Measure, which
	// has no baseline yet; pause waits it out. Tests replace both.
	firstGap time.Duration
	pause    func(ctx context.Context, d time.Duration) error

	prev T
	have bool // prev holds a baseline
}

func newBaseline[T any]() baseline[T] {
	return baseline[T]{firstGap: 100 * time.Millisecond, pause: sleepCtx}
}

// advance reads the current sample. On the very first call there is no
// baseline: the counters since boot (or since the cgroup was made) say
// nothing about the load now, so it keeps that read as the baseline and
// reads again firstGap later. The caller compares the result with prev and
// then stores it there.
func (b *baseline[T]) advance(ctx context.Context, read func() (T, error)) (T, error) {
	cur, err := read()
	if err != nil || b.have {
		return cur, err
	}
	b.prev, b.have = cur, true
	if err := b.pause(ctx, b.firstGap); err != nil {
		var zero T
		return zero, err
	}
	return read()
}

// cpuTimes are sums of /proc/stat's aggregate counters, in USER_HZ ticks.
type cpuTimes struct {
	idle  uint64 // idle + iowait
	total uint64 // user + nice + system + idle + iowait + irq + softirq + steal
}

// errNoTicks is static because it is expected when samples come faster
// than the kernel's tick and should cost nothing on that path.
var errNoTicks = errors.New("no CPU time accounted since the previous sample")

func newCPULoad(procRoot string) *cpuload {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &cpuload{
		root:     procRoot,
		path:     filepath.Join(procRoot, "stat"),
		baseline: newBaseline[cpuTimes](),
	}
}

func (c *cpuload) Name() string { return "cpuload" }
func (c *cpuload) Close() error { return nil }

func (c *cpuload) Measure(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cur, err := c.advance(ctx, func() (cpuTimes, error) { return c.read(ctx) })
	if err != nil {
		return 0, err
	}

	// Only the sums are checked for going backwards. A single field may
	// legitimately dip (the kernel documents that iowait can decrease, the
	// time moving to idle), but the sums fall only when counters really
	// restart, e.g. when a CPU goes offline and drops out of the aggregate.
	if cur.total < c.prev.total || cur.idle < c.prev.idle {
		prev := c.prev
		c.prev = cur
		return 0, fmt.Errorf("%s: CPU counters went backwards (total %d -> %d ticks, idle %d -> %d); baseline reset",
			c.path, prev.total, cur.total, prev.idle, cur.idle)
	}
	dTotal, dIdle := cur.total-c.prev.total, cur.idle-c.prev.idle
	if dTotal == 0 {
		// Sampled within one tick: nothing to divide. (cur equals prev,
		// as idle is part of total, so the baseline needs no update.)
		return 0, errNoTicks
	}
	c.prev = cur
	if dIdle >= dTotal {
		return 100, nil
	}
	// 100 × dIdle / dTotal rounded to nearest, in integers.
	return max(busyFloor, int((200*dIdle+dTotal)/(2*dTotal))), nil
}

// busyFloor is the lowest health a load measurement reports. Health 0
// quiesces a realserver (weight 0: no new connections), and a realserver
// whose CPU is fully used is busy, not out of service: if every
// realserver of a virtual service were saturated at once, 0 would take
// them all out and turn overload into an outage (seen in the
// load-balancing experiment, docs/experiment.md). At 1 a saturated
// realserver gets the smallest share there is, and a cluster saturated
// everywhere is spread evenly. Taking a realserver out on purpose stays
// the job of the exec, perl and constant monitors, which can report 0.
const busyFloor = 1

// read returns the aggregate counters through gopsutil's cpu.Times, with
// /proc redirected to ProcRoot through gopsutil's context key.
//
// gopsutil hands back seconds (ticks / USER_HZ); they are turned back into
// whole ticks so that deltas are exact integers. It also returns an empty
// list, not an error, when the file is missing or unparsable, so that case
// is checked here.
func (c *cpuload) read(ctx context.Context) (cpuTimes, error) {
	ctx = context.WithValue(ctx, common.EnvKey, common.EnvMap{common.HostProcEnvKey: c.root})
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("%s: %w", c.path, err)
	}
	if len(ts) == 0 {
		if _, err := os.Stat(c.path); err != nil {
			return cpuTimes{}, err
		}
		return cpuTimes{}, fmt.Errorf("%s: no aggregate cpu line with at least 7 counters", c.path)
	}
	t := ts[0]
	ticks := func(sec float64) uint64 { return uint64(math.Round(sec * cpu.ClocksPerSec)) }
	// guest and guest_nice are left out: the kernel already counts them in
	// user and nice.
	idle := ticks(t.Idle) + ticks(t.Iowait)
	return cpuTimes{
		idle:  idle,
		total: ticks(t.User) + ticks(t.Nice) + ticks(t.System) + idle + ticks(t.Irq) + ticks(t.Softirq) + ticks(t.Steal),
	}, nil
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
