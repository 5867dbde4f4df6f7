// Package experiment holds the load-balancing experiment's tests that need
// no virtual machine (the experiment itself is make experiment, run.sh).
package experiment

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCgroupHealthScript runs the keepalived arm's MISC_CHECK script on a
// made-up cgroup tree and checks its exit status, 2 + health, against the
// formula the agent's cgroup cpuload monitor uses (internal/monitor/
// cgroupcpu.go): 100 × (1 − used / (elapsed × allowed CPUs)), the allowed
// CPUs the tightest cpu.max up the tree, no more than the cpuset or the
// CPUs online, clamped to 1..100.
//
// The clock is the made-up /proc/uptime, 1000.08 s (the 08 is no octal
// number), and the previous reading 20 s before it.
func TestCgroupHealthScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh is needed to run cgroup-health.sh: %v", err)
	}
	script, err := filepath.Abs("cgroup-health.sh")
	if err != nil {
		t.Fatal(err)
	}
	const sec = 1_000_000 // µs
	for _, tc := range []struct {
		name     string
		files    map[string]string // relative to the cgroup root
		onlineN  int               // cpuN lines in /proc/stat
		prev     int64             // previous usage_usec; -1: no state file
		usage    int64             // usage_usec now
		want     int               // exit status
		why      string
		newState bool // the state file must be (re)written with usage
	}{
		{"own quota", map[string]string{"exp.slice/rs1.slice/cpu.max": "5000 20000\n"}, 2,
			0, 2.5 * sec, 2 + 50, "2.5 s used of 0.25 CPU × 20 s = 5 s", true},
		{"parent's quota is tighter", map[string]string{"exp.slice/rs1.slice/cpu.max": "max 100000\n", "exp.slice/cpu.max": "50000 100000\n"}, 2,
			1 * sec, 3 * sec, 2 + 80, "2 s used of 0.5 CPU × 20 s = 10 s", true},
		{"no quota: CPUs online", nil, 2,
			0, 10 * sec, 2 + 75, "10 s of 2 CPUs × 20 s", true},
		{"cpuset", map[string]string{"exp.slice/rs1.slice/cpuset.cpus.effective": "0-2,5\n"}, 8,
			0, 20 * sec, 2 + 75, "20 s of 4 CPUs (0-2,5) × 20 s", true},
		{"over budget: the floor of 1", map[string]string{"exp.slice/rs1.slice/cpu.max": "5000 20000\n"}, 2,
			0, 7 * sec, 2 + 1, "7 s used of 5 s allowed", true},
		{"first run", map[string]string{"exp.slice/rs1.slice/cpu.max": "5000 20000\n"}, 2,
			-1, 12345, 0, "no state: two reads 0.1 s apart, on a clock that does not move here: weight unchanged", true},
		{"counter went backwards", map[string]string{"exp.slice/rs1.slice/cpu.max": "5000 20000\n"}, 2,
			9 * sec, 100, 0, "a recreated cgroup: measured afresh, as the first run", true},
		{"no such cgroup", nil, 2, 0, -1, 1, "cpu.stat missing: the check fails", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cg := filepath.Join(dir, "cg")
			proc := filepath.Join(dir, "proc")
			rs := filepath.Join(cg, "exp.slice", "rs1.slice")
			must(t, os.MkdirAll(rs, 0o755))
			must(t, os.MkdirAll(proc, 0o755))
			stat := "cpu  1 2 3 4 5 6 7 0 0 0\n"
			for i := range tc.onlineN {
				stat += fmt.Sprintf("cpu%d 1 2 3 4 5 6 7 0 0 0\n", i)
			}
			must(t, os.WriteFile(filepath.Join(proc, "stat"), []byte(stat+"intr 0\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(proc, "uptime"), []byte("1000.08 1500.00\n"), 0o644))
			const now = 1000_080_000 // µs
			for f, c := range tc.files {
				must(t, os.WriteFile(filepath.Join(cg, f), []byte(c), 0o644))
			}
			if tc.usage >= 0 {
				must(t, os.WriteFile(filepath.Join(rs, "cpu.stat"), []byte(fmt.Sprintf("usage_usec %d\nuser_usec 0\nsystem_usec 0\n", tc.usage)), 0o644))
			}
			state := filepath.Join(dir, "state")
			if tc.prev >= 0 {
				must(t, os.WriteFile(state, []byte(fmt.Sprintf("%d %d\n", tc.prev, now-20*sec)), 0o644))
			}
			cmd := exec.Command("sh", script, "/exp.slice/rs1.slice/", state)
			cmd.Env = append(os.Environ(), "CGROUP_ROOT="+cg, "PROC_ROOT="+proc)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			got := 0
			switch {
			case errors.As(err, &ee):
				got = ee.ExitCode()
			case err != nil:
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s: exit %d, want %d", tc.why, got, tc.want)
			}
			if len(out) != 0 {
				t.Errorf("printed %q; a MISC_CHECK script here prints nothing", out)
			}
			if tc.newState {
				b, err := os.ReadFile(state)
				if err != nil {
					t.Fatal(err)
				}
				f := strings.Fields(string(b))
				if len(f) != 2 || f[0] != fmt.Sprint(tc.usage) || f[1] != fmt.Sprint(now) {
					t.Errorf("state file %q, want the usage %d and the time %d", b, tc.usage, now)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
