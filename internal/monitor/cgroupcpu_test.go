package monitor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixtureCgroup is a copy of testdata/cgroup/sys (a small cgroup v2 tree:
// web.slice limited to 1.5 CPUs with nginx.service at 0.5 and php.service
// unlimited inside it, unlimited.service, pinned.service on cpuset 2-3,
// nocpu.slice without the cpu controller), a /proc root from
// testdata/cgroup/proc-NCPU, and a clock the test moves.
type fixtureCgroup struct {
	t     *testing.T
	root  string // the cgroup tree
	proc  string // the /proc root
	clock time.Time
}

func newFixtureCgroup(t *testing.T, procDir string) *fixtureCgroup {
	t.Helper()
	f := &fixtureCgroup{t: t, root: t.TempDir(), proc: filepath.Join("testdata", "cgroup", procDir),
		clock: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)}
	src := filepath.Join("testdata", "cgroup", "sys")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(f.root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// install puts the cpu.stat snapshot testdata/cgroup/cpustat/SNAPSHOT in
// the cgroup REL, and moves the clock on by STEP.
func (f *fixtureCgroup) install(rel, snapshot string, step time.Duration) {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cgroup", "cpustat", snapshot))
	if err != nil {
		f.t.Fatal(err)
	}
	tmp := filepath.Join(f.root, rel, "cpu.stat.new")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.root, rel, "cpu.stat")); err != nil {
		f.t.Fatal(err)
	}
	f.clock = f.clock.Add(step)
}

func (f *fixtureCgroup) write(rel, file, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.root, rel, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// monitor builds "cpuload" with "cgroup = CG" through New, as the agent
// does; its first Measure sees first and then, after the usual short gap
// (replaced: the clock moves by step), second.
func (f *fixtureCgroup) monitor(cg, rel, first, second string, step time.Duration) *cgroupCPU {
	f.t.Helper()
	f.install(rel, first, 0)
	m, err := New("cpuload.so", map[string]string{"cgroup": cg}, Options{ProcRoot: f.proc, CgroupRoot: f.root})
	if err != nil {
		f.t.Fatal(err)
	}
	c, ok := m.(*cgroupCPU)
	if !ok {
		f.t.Fatalf("New(cpuload, cgroup=%s) is a %T, want *cgroupCPU", cg, m)
	}
	if c.Name() != "cpuload" {
		f.t.Errorf("Name() = %q, want cpuload", c.Name())
	}
	c.now = func() time.Time { return f.clock }
	c.pause = func(ctx context.Context, d time.Duration) error {
		if d != 100*time.Millisecond {
			f.t.Errorf("first-sample gap = %v, want 100ms", d)
		}
		f.install(rel, second, step)
		return nil
	}
	return c
}

func TestCgroupCPUBudgets(t *testing.T) {
	sec := time.Second
	for _, tc := range []struct {
		name, proc, cg string
		first, second  string
		step           time.Duration
		want           int
		why            string
	}{
		{"own quota", "proc-2cpu", "/web.slice/nginx.service", "t0", "t1", sec, 50,
			"0.25 s used of cpu.max 50000/100000 = 0.5 CPU-seconds"},
		{"own quota, half the time", "proc-2cpu", "web.slice/nginx.service", "t0", "t1", sec / 2, 1,
			"0.25 s used of 0.5 CPU for 0.5 s: the whole budget (busy, not out of service: the floor of 1)"},
		{"over budget clamps to the floor", "proc-2cpu", "/web.slice/nginx.service", "t1", "t2", sec, 1,
			"1.2 s used of 0.5 (a burst, or a limit lowered mid-interval)"},
		{"parent's quota", "proc-2cpu", "/web.slice/php.service", "t1", "t2", sec, 20,
			"php.service has max, web.slice 1.5 CPUs: 1.2 of 1.5"},
		{"no quota: CPUs online", "proc-2cpu", "/unlimited.service", "t0", "t1", sec, 88,
			"0.25 of 2 CPUs online = 12.5 % used, 87.5 rounds to 88"},
		{"no quota: CPUs online, 4", "proc-4cpu", "/unlimited.service", "t1", "t2", sec, 70,
			"1.2 of 4 CPUs online"},
		{"cpuset", "proc-4cpu", "/pinned.service", "t1", "t2", sec, 40,
			"no quota, cpuset.cpus.effective 2-3: 1.2 of 2 CPUs"},
		{"no cpu controller", "proc-2cpu", "/nocpu.slice/app.service", "t0", "t1", sec / 2, 75,
			"no cpu.max anywhere: 0.25 of 2 CPUs for 0.5 s"},
		{"path under the mount", "proc-2cpu", "/sys/fs/cgroup/web.slice/nginx.service", "t0", "t1", sec, 50,
			"the same cgroup as /web.slice/nginx.service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureCgroup(t, tc.proc)
			rel, err := cgroupPath(tc.cg)
			if err != nil {
				t.Fatal(err)
			}
			c := f.monitor(tc.cg, rel, tc.first, tc.second, tc.step)
			if got, err := c.Measure(context.Background()); err != nil || got != tc.want {
				t.Fatalf("%s: got %d, %v; want %d", tc.why, got, err, tc.want)
			}
		})
	}
}

func TestCgroupCPUSequence(t *testing.T) {
	f := newFixtureCgroup(t, "proc-4cpu")
	const rel = "/unlimited.service"
	c := f.monitor(rel, rel, "t0", "t1", time.Second)
	ctx := context.Background()
	steps := []struct {
		snapshot string
		step     time.Duration
		setup    func()
		want     int
		wantErr  string
		why      string
	}{
		{"", 0, nil, 94, "", "first Measure, t0->t1: 0.25 of 4 CPUs, 93.75 rounds to 94"},
		{"t2", time.Second, func() { f.write(rel, "cpu.max", "200000 100000\n") }, 40, "",
			"t1->t2 after the quota was set to 2 CPUs at run time: 1.2 of 2"},
		{"t2", 0, nil, 0, "no time elapsed", "the clock did not move"},
		{"t3-restart", time.Second, nil, 0, "went backwards (6450000 -> 12000)", "the service restarted: a new cgroup"},
		{"t4", time.Second, func() { f.write(rel, "cpu.max", "max 100000\n") }, 75, "",
			"t3->t4 from the reset baseline, quota lifted: 1.0 of 4"},
		{"t4", 2 * time.Second, nil, 100, "", "nothing used for 2 s"},
	}
	for i, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		if s.snapshot != "" && i > 0 {
			f.install(rel, s.snapshot, s.step)
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

func TestCgroupCPUErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no such cgroup", func(t *testing.T) {
		f := newFixtureCgroup(t, "proc-2cpu")
		m, err := New("cpuload", map[string]string{"cgroup": "/web.slice/gone.service"}, Options{ProcRoot: f.proc, CgroupRoot: f.root})
		if err != nil {
			t.Fatalf("New must not need the cgroup to exist yet: %v", err)
		}
		_, err = m.Measure(ctx)
		if err == nil || !strings.Contains(err.Error(), "/web.slice/gone.service does not exist") {
			t.Fatalf("err = %v, want the cgroup named as missing", err)
		}
		// It appears later (the unit started): the monitor recovers.
		if err := os.Mkdir(filepath.Join(f.root, "web.slice", "gone.service"), 0o755); err != nil {
			t.Fatal(err)
		}
		c := m.(*cgroupCPU)
		c.now = func() time.Time { return f.clock }
		c.pause = func(context.Context, time.Duration) error {
			f.install("web.slice/gone.service", "t1", time.Second)
			return nil
		}
		f.install("web.slice/gone.service", "t0", 0)
		if got, err := m.Measure(ctx); err != nil || got != 83 {
			t.Fatalf("after the cgroup appeared: got %d, %v; want 83 (0.25 of web.slice's 1.5)", got, err)
		}
	})
	t.Run("not a cgroup v2 tree", func(t *testing.T) {
		_, err := newCgroupCPUMust(t, "/", t.TempDir(), "testdata/cgroup/proc-2cpu").Measure(ctx)
		if err == nil || !strings.Contains(err.Error(), "no cpu.stat") {
			t.Fatalf("err = %v", err)
		}
	})
	for _, tc := range []struct{ snapshot, want string }{
		{"no-usage", "no usage_usec line"},
		{"garbage", `usage_usec "lots" is not a number`},
	} {
		t.Run(tc.snapshot, func(t *testing.T) {
			f := newFixtureCgroup(t, "proc-2cpu")
			f.install("unlimited.service", tc.snapshot, 0)
			_, err := newCgroupCPUMust(t, "unlimited.service", f.root, f.proc).Measure(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.root) {
				t.Fatalf("err = %v, want the path and %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ cpuMax, want string }{
		{"lots 100000\n", `quota "lots" is not a number`},
		{"50000 0\n", `period "0" is not a positive number`},
		{"\n", `is not "QUOTA PERIOD"`},
		{"1 2 3\n", `is not "QUOTA PERIOD"`},
	} {
		t.Run("cpu.max "+strings.TrimSpace(tc.cpuMax), func(t *testing.T) {
			f := newFixtureCgroup(t, "proc-2cpu")
			f.write("web.slice", "cpu.max", tc.cpuMax)
			c := f.monitor("/web.slice/nginx.service", "/web.slice/nginx.service", "t0", "t1", time.Second)
			_, err := c.Measure(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(f.root, "web.slice", "cpu.max")) {
				t.Fatalf("err = %v, want the parent's cpu.max and %q", err, tc.want)
			}
		})
	}
	t.Run("quota without period", func(t *testing.T) {
		// The kernel accepts a quota alone and keeps the period; a
		// hand-made tree may have it so: 100000 µs is the default.
		f := newFixtureCgroup(t, "proc-2cpu")
		f.write("web.slice/nginx.service", "cpu.max", "50000\n")
		c := f.monitor("/web.slice/nginx.service", "/web.slice/nginx.service", "t0", "t1", time.Second)
		if got, err := c.Measure(ctx); err != nil || got != 50 {
			t.Fatalf("got %d, %v; want 50", got, err)
		}
	})
	t.Run("first sample honours the context", func(t *testing.T) {
		f := newFixtureCgroup(t, "proc-2cpu")
		f.install("unlimited.service", "t0", 0)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := newCgroupCPUMust(t, "unlimited.service", f.root, f.proc).Measure(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func newCgroupCPUMust(t *testing.T, cg, cgRoot, procRoot string) *cgroupCPU {
	t.Helper()
	c, err := newCgroupCPU(cg, cgRoot, procRoot)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCgroupPath(t *testing.T) {
	for _, tc := range []struct{ in, want, wantErr string }{
		{"/system.slice/nginx.service", "/system.slice/nginx.service", ""},
		{"system.slice/nginx.service", "/system.slice/nginx.service", ""},
		{" /system.slice//nginx.service/ ", "/system.slice/nginx.service", ""},
		{"/sys/fs/cgroup/system.slice/nginx.service", "/system.slice/nginx.service", ""},
		{"/sys/fs/cgroup", "/", ""},
		{"/", "/", ""},
		{"/sys/fs/cgroupx/a", "/sys/fs/cgroupx/a", ""},
		{"/a/../../etc", "", `".." is not allowed`},
		{"  ", "", "empty path"},
	} {
		got, err := cgroupPath(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("cgroupPath(%q): err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cgroupPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := New("cpuload", map[string]string{"cgroup": "../x"}, Options{}); err == nil ||
		!strings.HasPrefix(err.Error(), "monitor cpuload: cgroup:") {
		t.Errorf("New with cgroup = ../x: err = %v", err)
	}
}

func TestCountCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 1, true}, {"0-3", 4, true}, {"0-3,8,10-11", 7, true}, {"2-3", 2, true},
		{"", 0, false}, {"3-1", 0, false}, {"a-b", 0, false}, {"1,,2", 0, false}, {"-1", 0, false},
	} {
		if got, ok := countCPUList(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("countCPUList(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestCgroupCPUOwnCgroup measures the test's own cgroup on a real cgroup
// v2 system.
func TestCgroupCPUOwnCgroup(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup")
	}
	own, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok || strings.Contains(own, "\n") {
		t.Skip("not a pure cgroup v2 system")
	}
	if _, err := os.Stat(filepath.Join(cgroupMount, own, "cpu.stat")); err != nil {
		t.Skipf("own cgroup not readable under %s: %v", cgroupMount, err)
	}
	m, err := New("cpuload", map[string]string{"cgroup": own}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := m.Measure(context.Background()); err != nil || h < 0 || h > 100 {
		t.Fatalf("cgroup %s: got %d, %v", own, h, err)
	}
}
