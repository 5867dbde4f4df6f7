package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

var loadavgAverage = KeySpec{Name: "average", Type: TypeChoice, Choices: []string{"1", "5", "15"},
	Help: "which load average, over 1, 5 or 15 minutes (default 1)"}

func init() {
	register(Kind{Name: "loadavg",
		Keys: []KeySpec{loadavgAverage},
		build: func(params map[string]string, opts Options, _ *slog.Logger) (Monitor, error) {
			return newLoadavg(params, opts.ProcRoot)
		},
	})
}

// loadavg reports the load average per CPU online as a health:
//
//	health = 100 × (1 − load / CPUs online)
//
// rounded, and no lower than busyFloor: an idle machine is 100, a load
// of one runnable task per CPU or more is 1 (busy, not out of service,
// as with cpuload). Unlike cpuload it counts tasks waiting for the CPU
// and, on Linux, tasks in uninterruptible sleep (disk or NFS waits), so
// it sees a realserver that is overloaded beyond 100 % CPU or stuck on
// I/O; it reacts more slowly, being an exponential average over at least
// a minute.
//
// Both files are read under ProcRoot (like node_exporter's --path.procfs)
// so that tests, and an agent in a container, can point it elsewhere.
type loadavg struct {
	field    int    // 0, 1 or 2: the 1, 5 or 15 minute average
	path     string // <ProcRoot>/loadavg
	procStat string // <ProcRoot>/stat, for the CPUs online
}

func newLoadavg(params map[string]string, procRoot string) (*loadavg, error) {
	avg, err := loadavgAverage.choice(params, "1")
	if err != nil {
		return nil, err
	}
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &loadavg{
		field:    map[string]int{"1": 0, "5": 1, "15": 2}[avg],
		path:     filepath.Join(procRoot, "loadavg"),
		procStat: filepath.Join(procRoot, "stat"),
	}, nil
}

func (l *loadavg) Name() string { return "loadavg" }
func (l *loadavg) Close() error { return nil }

func (l *loadavg) Measure(ctx context.Context) (int, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return 0, err
	}
	// "0.52 0.58 0.59 2/1104 12345"
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, fmt.Errorf("%s: %q is not three load averages", l.path, strings.TrimSpace(string(b)))
	}
	load, err := strconv.ParseFloat(f[l.field], 64)
	if err != nil || load < 0 || math.IsNaN(load) {
		return 0, fmt.Errorf("%s: load average %q is not a number", l.path, f[l.field])
	}
	cpus, err := onlineCPUs(l.procStat)
	if err != nil {
		return 0, err
	}
	return loadHealth(load, cpus), nil
}

// loadHealth maps a load average on cpus CPUs to a health.
func loadHealth(load float64, cpus int) int {
	return max(busyFloor, clampHealth(100*(1-load/float64(cpus))))
}
