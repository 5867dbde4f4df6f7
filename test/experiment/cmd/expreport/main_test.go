package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeRun writes the files of one run as the guest and loadgen write
// them: requests every 0.25 s whose latency and realserver come from
// lat, sampler lines every 0.5 s whose weights come from weights.
func fakeRun(t *testing.T, dir, name string, end float64, events []string,
	lat func(t float64, i int) (float64, string), weights func(t float64) [3]int) {
	t.Helper()
	const startMs = 1_700_000_000_000
	meta := fmt.Sprintf("start_unix_ms=%d\nrate=4\nduration_s=%g\nseed=1\ntimeout_s=10\n%s\n", startMs, end, strings.Join(events, "\n"))
	must(t, os.WriteFile(filepath.Join(dir, name+".meta"), []byte(meta), 0o644))
	var b strings.Builder
	b.WriteString("seq,sched_s,lag_ms,latency_ms,server,status\n")
	for i := 0; float64(i)*0.25 < end; i++ {
		ts := float64(i) * 0.25
		l, s := lat(ts, i)
		status := "ok"
		if s == "" {
			status = "timeout"
		}
		fmt.Fprintf(&b, "%d,%.6f,0.1,%.3f,%s,%s\n", i, ts, l, s, status)
	}
	must(t, os.WriteFile(filepath.Join(dir, name+".csv"), []byte(b.String()), 0o644))
	b.Reset()
	b.WriteString("unix_ms,w1,w2,w3,usage1,usage2,usage3\n")
	for i := 0; float64(i)*0.5 < end; i++ {
		ts := float64(i) * 0.5
		w := weights(ts)
		// Each slice uses 100 ms of CPU per 0.5 s: 20 % of one CPU.
		fmt.Fprintf(&b, "%d,%d,%d,%d,%d,%d,%d\n", startMs+int64(ts*1000), w[0], w[1], w[2], i*100000, i*100000, i*100000)
	}
	must(t, os.WriteFile(filepath.Join(dir, name+".weights.csv"), []byte(b.String()), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReport runs the report on a made-up recovery scenario with a static
// and a keepalived run whose figures are known by construction.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	events := []string{
		"event0_s=60.000", "event0_cmd=systemd-run -q --unit=exp-hog-rs3 --slice=exp-rs3.slice cpuhttp -hog 2",
		"event1_s=120.000", "event1_cmd=systemctl stop exp-hog-rs3",
	}
	rr := func(i int) string { return servers[i%3] }
	// static: rs1 and rs2 at 100 ms; rs3 at 100 ms, but timing out (10 s)
	// during the hog.
	fakeRun(t, dir, "recovery-static", 180, events, func(ts float64, i int) (float64, string) {
		s := rr(i)
		if s == "rs3" && ts >= 60 && ts < 120 {
			return 10000, ""
		}
		return 100, s
	}, func(float64) [3]int { return [3]int{1, 1, 1} })
	// keepalived: nothing to rs3 during the hog, rs1 and rs2 at 150 ms;
	// rs1's weight swings 40/60 during the hog (sd 10), rs3's is 1 then
	// and back to 100 five seconds after the hog stopped.
	fakeRun(t, dir, "recovery-keepalived", 180, events, func(ts float64, i int) (float64, string) {
		s := rr(i)
		if ts >= 60 && ts < 120 {
			return 150, servers[i%2]
		}
		return 100, s
	}, func(ts float64) [3]int {
		switch {
		case ts < 60:
			return [3]int{100, 100, 100}
		case ts < 120:
			w1 := 40
			if int(ts*2)%2 == 1 {
				w1 = 60
			}
			return [3]int{w1, 50, 1}
		case ts < 125:
			return [3]int{100, 100, 1}
		}
		return [3]int{100, 100, 100}
	})
	must(t, os.WriteFile(filepath.Join(dir, "runs.txt"), []byte("recovery-static recovery static\nrecovery-keepalived recovery keepalived\n"), 0o644))
	// The journal: the run's start line at 1000 s, keepalived's weight
	// changes of rs1 every second during the hog (60 in 60 s), one master
	// line that must not count (no master in this run), and lines outside
	// the run.
	var j strings.Builder
	fmt.Fprintf(&j, "[  990.000000] experiment Keepalived_healthcheckers[9]: Changing weight from 100 to 50 for active service [10.0.0.11]:tcp:80 of VS [192.0.2.10]:tcp:80\n")
	fmt.Fprintf(&j, "[ 1000.000000] experiment guest.sh[7]: experiment: recovery-keepalived: 180s at 4 req/s, scenario recovery, arm keepalived\n")
	for s := 60; s < 120; s++ {
		fmt.Fprintf(&j, "[ %d.500000] experiment Keepalived_healthcheckers[9]: Changing weight from 40 to 60 for active service [10.0.0.11]:tcp:80 of VS [192.0.2.10]:tcp:80\n", 1000+s)
	}
	fmt.Fprintf(&j, "[ 1090.000000] experiment feedbackd-master[5]: weight changed vs=web realserver=10.0.0.12 health=40 old_weight=45 weight=40 target=40 unlogged_changes=4\n")
	fmt.Fprintf(&j, "[ 1100.000000] experiment Keepalived_healthcheckers[9]: Misc check for [[10.0.0.13]:tcp:80 VS [192.0.2.10]:tcp:80] by [/x/cgroup-health.sh] timed out with retry disabled.\n")
	fmt.Fprintf(&j, "[ 1100.100000] experiment Keepalived_healthcheckers[9]: Removing service [10.0.0.13]:tcp:80 from VS [192.0.2.10]:tcp:80\n")
	fmt.Fprintf(&j, "[ 1185.000000] experiment guest.sh[7]: experiment: recovery-keepalived: done, 720 requests\n")
	fmt.Fprintf(&j, "[ 1186.000000] experiment Keepalived_healthcheckers[9]: Changing weight from 100 to 1 for active service [10.0.0.13]:tcp:80 of VS [192.0.2.10]:tcp:80\n")
	must(t, os.WriteFile(filepath.Join(dir, "journal.txt"), []byte(j.String()), 0o644))

	must(t, os.WriteFile(filepath.Join(dir, "controller-cpu.txt"), []byte("recovery-keepalived 30000000000 200\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "disturbed.txt"), []byte("recovery-keepalived repeated 12\n"), 0o644))

	stdout := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	report(dir, 10, 15, 0)
	os.Stdout = stdout

	res, err := os.ReadFile(filepath.Join(dir, "results.md"))
	must(t, err)
	for _, want := range []string{"| recovery-keepalived | 30.0 | 10.0 | 1 | 1 |", "recovery-keepalived was run 1 more time(s)"} {
		if !strings.Contains(string(res), want) {
			t.Errorf("results.md lacks %q:\n%s", want, res)
		}
	}
	recs, err := readTSV(filepath.Join(dir, "summary.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(arm, window, col string) float64 {
		t.Helper()
		ci := -1
		for i, h := range tsvHeader {
			if h == col {
				ci = i
			}
		}
		for _, r := range recs[1:] {
			if r[1] == arm && r[2] == window {
				v, err := strconv.ParseFloat(r[ci], 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no row %s/%s", arm, window)
		return 0
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.IsNaN(got) != math.IsNaN(want) || math.Abs(got-want) > tol {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("static failed during the hog", get("static", "hog", "failed_pct"), 100.0/3, 0.5)
	near("static p95 during the hog", get("static", "hog", "p95_ms"), 10000, 0)
	near("static rs1+rs2 p50", get("static", "hog", "healthy_p50_ms"), 100, 0)
	near("keepalived rs1+rs2 p50 ÷ static", get("keepalived", "hog", "healthy_p50_x_static"), 1.5, 1e-9)
	near("keepalived p95 below static", get("keepalived", "hog", "p95_below_static_pct"), 98.5, 1e-9)
	near("keepalived rs1 weight sd during the hog", get("keepalived", "hog", "w1_sd"), 10, 0.01)
	near("keepalived rs3 weight mean during the hog", get("keepalived", "hog", "w3_mean"), 1, 0)
	near("writes/min during the hog (60 of keepalived, 1 + 4 unlogged of a master line)", get("keepalived", "hog", "writes_per_min"), 65, 0.01)
	near("keepalived writes/min before", get("keepalived", "before", "writes_per_min"), 0, 0)
	near("keepalived rs3 low after the hog", get("keepalived", "hog", "rs3_low_after_s"), 0, 0)
	near("keepalived rs3 back after the hog stopped", get("keepalived", "recovery", "rs3_back_after_s"), 5, 0)
	near("static writes/min", get("static", "hog", "writes_per_min"), math.NaN(), 0)
	near("recovery window failures (static)", get("static", "recovery", "failed_pct"), 0, 0)
	near("first 20 s of recovery: window end", get("static", "recovery-20s", "to_s"), 140, 0)

	// Three invocations, this one twice over and once with every run
	// disturbed by another VM: the ranges and the target counts, the
	// disturbed rows left out.
	top := t.TempDir()
	for _, inv := range []string{"a", "b", "c"} {
		must(t, os.MkdirAll(filepath.Join(top, inv), 0o755))
		b, err := os.ReadFile(filepath.Join(dir, "summary.tsv"))
		must(t, err)
		switch inv {
		case "b":
			b = []byte(strings.Replace(string(b), "\t98.500\t", "\t70.000\t", 1))
		case "c":
			b = []byte(strings.ReplaceAll(strings.ReplaceAll(string(b), "\t98.500\t", "\t10.000\t"), "\tfalse\n", "\ttrue\n"))
		}
		must(t, os.WriteFile(filepath.Join(top, inv, "summary.tsv"), b, 0o644))
	}
	must(t, os.Symlink("b", filepath.Join(top, "latest")))
	os.Stdout, _ = os.Open(os.DevNull)
	combine(top)
	os.Stdout = stdout
	c, err := os.ReadFile(filepath.Join(top, "combined.md"))
	must(t, err)
	for _, want := range []string{
		"over 3 invocations: a, b, c. Left out: 10 rows of runs that another VM on the host disturbed or that ran while the host was busy",
		"| keepalived | hog | 2 | 0.0 | 150 | 150 | 150 | 1.50 | 70–98 |",
		"| keepalived | 0 of 2 | 0 of 2 | 2 of 2 | 1 of 2 |",
	} {
		if !strings.Contains(string(c), want) {
			t.Errorf("combined.md lacks %q:\n%s", want, c)
		}
	}

	// The same runs on a host whose load average was 9 while
	// recovery-static ran (2 CPUs: the limit is 4): that run is left out
	// like a disturbed one, and says why.
	var hl strings.Builder
	hl.WriteString("# unix_s loadavg1 other_qemu_processes\n")
	for s := 0; s <= 180; s += 10 {
		fmt.Fprintf(&hl, "%d 9.00 0\n", 1_700_000_000+s)
	}
	must(t, os.WriteFile(filepath.Join(dir, "hostload.txt"), []byte(hl.String()), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "host.txt"), []byte("host_cpus=2 host_cpu=x\n"), 0o644))
	os.Stdout, _ = os.Open(os.DevNull)
	report(dir, 10, 15, 0)
	os.Stdout = stdout
	res, err = os.ReadFile(filepath.Join(dir, "results.md"))
	must(t, err)
	if !strings.Contains(string(res), "**recovery-static ran on a busy host**: the host's load average was 9.0") {
		t.Errorf("results.md does not say recovery-static ran on a busy host:\n%s", res)
	}
	recs, err = readTSV(filepath.Join(dir, "summary.tsv"))
	must(t, err)
	for _, r := range recs[1:] {
		if r[1] == "static" && r[len(r)-1] != "true" {
			t.Errorf("summary.tsv: static row %v not marked disturbed", r)
		}
	}
}
