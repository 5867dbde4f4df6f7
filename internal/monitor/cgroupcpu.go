package monitor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cgroupCPU is the cpuload monitor with "cgroup = PATH": the health is the
// share of the CPU time that one cgroup (v2) may use which it did not use
// since the previous sample,
//
//	health = 100 × (1 − Δusage_usec / (Δwall × allowed CPUs))
//
// where usage_usec comes from the cgroup's cpu.stat and the allowed CPUs
// are the tightest of: each cpu.max quota/period from the cgroup up to
// the root (a container inside a limited slice gets no more than the
// slice), the CPUs in its cpuset.cpus.effective, and the CPUs online
// (the cpuN lines of /proc/stat). A realserver that runs in a container
// or a systemd slice thus reports how close it is to its own budget,
// not how busy the whole machine is.
type cgroupCPU struct {
	cgRoot   string // CgroupRoot, the cgroup v2 mount
	rel      string // the cgroup's path inside the hierarchy, "/a/b"
	dir      string // cgRoot + rel
	procStat string // <ProcRoot>/stat, for the number of CPUs online

	now func() time.Time

	mu sync.Mutex // one Measure at a time: they share the baseline
	baseline[cgroupSample]
}

type cgroupSample struct {
	usage uint64    // cpu.stat usage_usec
	at    time.Time // when it was read (monotonic clock)
}

// errNoTime is the cgroup counterpart of errNoTicks.
var errNoTime = errors.New("no time elapsed since the previous sample")

// cgroupMount is where cgroup v2 is mounted; a cgroup key given as a path
// under it is accepted and taken relative to it.
const cgroupMount = "/sys/fs/cgroup"

// cgroupPath turns the key's value into a clean path inside the
// hierarchy, "/" being the root cgroup. "system.slice/x.service",
// "/system.slice/x.service" (as /proc/PID/cgroup shows it) and
// "/sys/fs/cgroup/system.slice/x.service" all name the same cgroup.
func cgroupPath(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("cgroup: empty path")
	}
	if v == cgroupMount || strings.HasPrefix(v, cgroupMount+"/") {
		v = strings.TrimPrefix(v, cgroupMount)
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return "", fmt.Errorf("cgroup: %q: \"..\" is not allowed", v)
		}
	}
	return path.Clean("/" + v), nil
}

func newCgroupCPU(cgroup, cgRoot, procRoot string) (*cgroupCPU, error) {
	rel, err := cgroupPath(cgroup)
	if err != nil {
		return nil, err
	}
	if cgRoot == "" {
		cgRoot = cgroupMount
	}
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &cgroupCPU{
		cgRoot:   cgRoot,
		rel:      rel,
		dir:      filepath.Join(cgRoot, filepath.FromSlash(rel)),
		procStat: filepath.Join(procRoot, "stat"),
		now:      time.Now,
		baseline: newBaseline[cgroupSample](),
	}, nil
}

func (c *cgroupCPU) Name() string { return "cpuload" }
func (c *cgroupCPU) Close() error { return nil }

func (c *cgroupCPU) Measure(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cur, err := c.advance(ctx, c.sample)
	if err != nil {
		return 0, err
	}
	if cur.usage < c.prev.usage {
		// The cgroup was removed and made again (a restarted service
		// gets a new one): its counter starts from zero.
		prev := c.prev
		c.prev = cur
		return 0, fmt.Errorf("%s: usage_usec went backwards (%d -> %d), the cgroup was probably recreated; baseline reset",
			filepath.Join(c.dir, "cpu.stat"), prev.usage, cur.usage)
	}
	elapsed := cur.at.Sub(c.prev.at)
	if elapsed <= 0 {
		return 0, errNoTime
	}
	cpus, err := c.allowedCPUs()
	if err != nil {
		return 0, err
	}
	used := float64(cur.usage - c.prev.usage)
	allowed := float64(elapsed.Microseconds()) * cpus
	c.prev = cur
	if allowed <= 0 {
		return 0, errNoTime
	}
	return max(busyFloor, clampHealth(100*(1-used/allowed))), nil
}

// sample reads usage_usec from the cgroup's cpu.stat, which cgroup v2
// keeps for every cgroup whether or not the cpu controller is enabled.
func (c *cgroupCPU) sample() (cgroupSample, error) {
	p := filepath.Join(c.dir, "cpu.stat")
	b, err := os.ReadFile(p)
	at := c.now()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(c.dir); serr != nil {
				return cgroupSample{}, fmt.Errorf("cgroup %s does not exist (%s): is the unit or container running?", c.rel, c.dir)
			}
			return cgroupSample{}, fmt.Errorf("%s: no cpu.stat: is %s a cgroup v2 hierarchy?", p, c.cgRoot)
		}
		return cgroupSample{}, err
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 2 && f[0] == "usage_usec" {
			u, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return cgroupSample{}, fmt.Errorf("%s: usage_usec %q is not a number", p, f[1])
			}
			return cgroupSample{usage: u, at: at}, nil
		}
	}
	return cgroupSample{}, fmt.Errorf("%s: no usage_usec line", p)
}

// allowedCPUs is how many CPUs' worth of time the cgroup may use: the
// tightest cpu.max from the cgroup up to the top of the hierarchy, and no
// more than the CPUs it may run on. Read at every sample, as limits can
// change at run time (systemctl set-property, docker update).
func (c *cgroupCPU) allowedCPUs() (float64, error) {
	n, err := c.cpuCount()
	if err != nil {
		return 0, err
	}
	limit := float64(n)
	for rel := c.rel; rel != "/"; rel = path.Dir(rel) {
		q, ok, err := readCPUMax(filepath.Join(c.cgRoot, filepath.FromSlash(rel), "cpu.max"))
		if err != nil {
			return 0, err
		}
		if ok && q < limit {
			limit = q
		}
	}
	return limit, nil
}

// cpuCount is the number of CPUs in the cgroup's cpuset.cpus.effective
// when the cpuset controller gives it one, else the CPUs online.
func (c *cgroupCPU) cpuCount() (int, error) {
	if b, err := os.ReadFile(filepath.Join(c.dir, "cpuset.cpus.effective")); err == nil {
		if n, ok := countCPUList(strings.TrimSpace(string(b))); ok && n > 0 {
			return n, nil
		}
	}
	return onlineCPUs(c.procStat)
}

// onlineCPUs counts the CPUs online: the cpuN lines of /proc/stat, which
// the kernel writes for online CPUs only.
func onlineCPUs(procStat string) (int, error) {
	b, err := os.ReadFile(procStat)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no per-CPU lines, cannot count the CPUs online", procStat)
	}
	return n, nil
}

// readCPUMax reads a cpu.max file, "QUOTA PERIOD" in microseconds or
// "max PERIOD": the CPUs' worth it allows, and ok=false when it sets no
// limit or does not exist (no cpu controller there, or the root cgroup).
func readCPUMax(p string) (cpus float64, ok bool, err error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f) > 2 {
		return 0, false, fmt.Errorf("%s: %q is not \"QUOTA PERIOD\"", p, strings.TrimSpace(string(b)))
	}
	if f[0] == "max" {
		return 0, false, nil
	}
	quota, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: quota %q is not a number", p, f[0])
	}
	period := uint64(100000) // the kernel's default when only a quota is written
	if len(f) == 2 {
		if period, err = strconv.ParseUint(f[1], 10, 64); err != nil || period == 0 {
			return 0, false, fmt.Errorf("%s: period %q is not a positive number", p, f[1])
		}
	}
	return float64(quota) / float64(period), true, nil
}

// countCPUList counts the CPUs in a kernel CPU list such as "0-3,8,10-11".
func countCPUList(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, r := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, false
			}
		}
		if b-a >= math.MaxInt32 {
			return 0, false
		}
		n += b - a + 1
	}
	return n, true
}
