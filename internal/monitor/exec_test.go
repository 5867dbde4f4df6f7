package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/hugepages"
	"github.com/lvs-feedbackd/feedbackd/internal/reaper"
)

func newTestExec(t *testing.T, command, timeout string) Monitor {
	t.Helper()
	params := map[string]string{"command": command}
	if timeout != "" {
		params["timeout"] = timeout
	}
	m, err := New("exec.so", params, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestExecHealth(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    int
	}{
		{"echo 42", 42},
		{"echo '  7  '", 7},
		{"printf '66.6%%\\r\\n'", 67},
		{"echo 49.5", 50},
		{"echo .4", 0},
		{"echo 150", 100},
		{"echo -5", 0},
		{"echo 99999999999999999999999999999999999999999999", 100},
		{"echo 10; echo second line 90", 10},           // lines after the first are the command's own
		{"exec 2>/dev/null; echo 31 >&2; echo 32", 32}, // stderr is not read for the health
		{"yes 55 | head -c 100000", 55},                // long output is capped, not blocking
		{"yes e | head -c 200000 >&2; echo 44", 44},    // so is stderr, read while stdout is
		{"cat; echo 61", 61},                           // stdin is /dev/null, not the agent's
	} {
		t.Run(tc.command, func(t *testing.T) {
			got, err := newTestExec(t, tc.command, "").Measure(context.Background())
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestExecSampleIsLight checks what an exec sample costs the agent between
// collections: its own pipes read into small buffers, not os/exec's copy
// goroutines with a 32 KB buffer per stream (64 KB of fresh heap on every
// sample), no goroutine started (each reads the runtime's function table,
// docs/benchmarks.md), and no descriptor left open.
func TestExecSampleIsLight(t *testing.T) {
	m := newTestExec(t, "echo 50", "")
	ctx := context.Background()
	if _, err := m.Measure(ctx); err != nil { // the reaper's path, looked up once
		t.Fatal(err)
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	const n = 10
	before := fds()
	checkSampleCost(t, m, n, 50, 24<<10)
	if after := fds(); after > before {
		t.Errorf("%d descriptors open after %d samples, %d before", after, n, before)
	}
}

func TestExecErrors(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    []string
	}{
		{"echo abc", []string{`output is not a health value`, "the first line is not a number alone"}},
		{"true", []string{`output is not a health value`, "no output"}},
		{"echo HTTP/1.1 503 Service Unavailable", []string{"the first line is not a number alone"}},
		{"echo 'load: 42%'", []string{"the first line is not a number alone"}},
		{"echo 1e9", []string{"a number with an exponent"}},
		{"echo; echo 50", []string{"the first line is blank"}},
		{"echo 50; exit 3", []string{"exit status 3"}},
		{"echo 'disk gone' >&2; echo 'second line' >&2; exit 2", []string{"exit status 2", `stderr: "disk gone"`}},
		{"kill -SEGV $$", []string{"signal: segmentation fault"}},
		{"/nonexistent/monitor", []string{"exit status 127", "not found"}},
	} {
		t.Run(tc.command, func(t *testing.T) {
			_, err := newTestExec(t, tc.command, "").Measure(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
			// The command itself is quoted in the message; look after it.
			if _, after, _ := strings.Cut(err.Error(), "exit status"); strings.Contains(after, "second line") {
				t.Errorf("err = %q, want only the first stderr line", err)
			}
		})
	}
}

// processGone waits until pid is no longer running (gone, or a zombie
// awaiting a reaper that is not ours).
func processGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// The state follows the ")" that ends the command name.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still running: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	for _, command := range []string{
		"sleep 100",
		// A child in the background, holding stdout: it must die too, or
		// Wait would sit on the open pipe and the sleep live on.
		"sleep 100 & echo $! > " + pidFile + "; wait",
	} {
		t.Run(command, func(t *testing.T) {
			// Long enough for the command to start even under the race
			// detector, whose reaper takes long to start.
			m := newTestExec(t, command, "1s")
			start := time.Now()
			_, err := m.Measure(context.Background())
			elapsed := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
				t.Fatalf("err = %v, want a timeout", err)
			}
			// Not a measure of speed: a Measure that waited for the sleep
			// would take 100 s.
			if elapsed > 60*time.Second {
				t.Fatalf("Measure returned after %v", elapsed)
			}
			if strings.Contains(command, pidFile) {
				b, err := os.ReadFile(pidFile)
				if err != nil {
					t.Fatal(err)
				}
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatal(err)
				}
				processGone(t, pid)
			}
		})
	}
}

func TestExecBackgroundChildHoldingStdout(t *testing.T) {
	// The shell answers and exits, but leaves a child with stdout open.
	// The answer counts, and the child is killed when the shell exits, so
	// Measure does not wait for it.
	pidFile := filepath.Join(t.TempDir(), "pid")
	m := newTestExec(t, "echo 42; sleep 100 & echo $! > "+pidFile, "5s")
	start := time.Now()
	got, err := m.Measure(context.Background())
	if err != nil || got != 42 {
		t.Fatalf("got %d, %v; want 42", got, err)
	}
	// Not a measure of speed: waiting for the sleep would take 100 s.
	if d := time.Since(start); d > 60*time.Second {
		t.Fatalf("took %v", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	processGone(t, pid)
}

func TestExecCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestExec(t, "echo 42", "").Measure(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// BenchmarkExecMeasure is the cost of one exec sample of a trivial
// command, reaper included.
func BenchmarkExecMeasure(b *testing.B) {
	m, err := New("exec", map[string]string{"command": "echo 50"}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Measure(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// A reaper runs with one P (GOMAXPROCS=1 in its environment), and its
// command gets the agent's environment back: the agent's GOMAXPROCS or
// none, and no trace of the hand-over.
func TestReaperRunsWithOneP(t *testing.T) {
	const check = `tr '\0' '\n' < /proc/$PPID/environ | grep -qx GOMAXPROCS=1 || { echo 11; exit; }
[ -z "${FEEDBACKD_REAPER_GOMAXPROCS+x}" ] || { echo 12; exit; }
`
	t.Run("agent without GOMAXPROCS", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", "")
		os.Unsetenv("GOMAXPROCS")
		got, err := newTestExec(t, check+`[ -z "${GOMAXPROCS+x}" ] && echo 77 || echo 13`, "").Measure(context.Background())
		if err != nil || got != 77 {
			t.Fatalf("got %d, %v; want 77 (11: reaper without GOMAXPROCS=1, 12: marker reached the command, 13: command got a GOMAXPROCS)", got, err)
		}
	})
	t.Run("agent with GOMAXPROCS=3", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", "3")
		got, err := newTestExec(t, check+`[ "$GOMAXPROCS" = 3 ] && echo 78 || echo 14`, "").Measure(context.Background())
		if err != nil || got != 78 {
			t.Fatalf("got %d, %v; want 78 (11: reaper without GOMAXPROCS=1, 12: marker reached the command, 14: command lost the agent's GOMAXPROCS)", got, err)
		}
	})
}

// findReaper takes the first executable file that only its owner (root or
// the agent's user) can write, and the agent's own executable when there is
// none.
func TestFindReaper(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	exe := filepath.Join(dir, "exe")
	shared := filepath.Join(dir, "shared")
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(shared, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(shared, 0o777) // past the umask: anyone could have replaced it
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{filepath.Join(dir, "missing"), plain, dir, shared, exe}, exe},
		{[]string{shared}, "/proc/self/exe"},
		{[]string{plain, dir}, "/proc/self/exe"},
		{nil, "/proc/self/exe"},
	} {
		if got := findReaper(tc.paths); got != tc.want {
			t.Errorf("findReaper(%q) = %q, want %q", tc.paths, got, tc.want)
		}
	}
}

// With its own executable built and found, a reaper runs from it, with the
// same contract: one P for itself, the agent's environment for the
// command, and everything the command leaves behind killed.
func TestReaperExecutable(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "feedbackd-monitor-reaper")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/feedbackd-monitor-reaper").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	old := reaperExe
	reaperExe = func() string { return bin }
	defer func() { reaperExe = old }()
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	got, err := newTestExec(t, `[ "$(readlink /proc/$PPID/exe)" = "`+bin+`" ] || { echo 15; exit; }
tr '\0' '\n' < /proc/$PPID/environ | grep -qx GOMAXPROCS=1 || { echo 11; exit; }
[ -z "${GOMAXPROCS+x}${FEEDBACKD_REAPER_GOMAXPROCS+x}" ] || { echo 12; exit; }
echo 79`, "").Measure(context.Background())
	if err != nil || got != 79 {
		t.Fatalf("got %d, %v; want 79 (15: the reaper is not the built executable, 11: without GOMAXPROCS=1, 12: the command's environment changed)", got, err)
	}
	// A background child outlives neither the command nor the reaper.
	pidFile := filepath.Join(t.TempDir(), "pid")
	got, err = newTestExec(t, "sleep 1000 & echo $! > "+pidFile+"; echo 44", "").Measure(context.Background())
	if err != nil || got != 44 {
		t.Fatalf("got %d, %v; want 44", got, err)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("no pid written: %q", b)
	}
	processGone(t, pid)

	// Where the agent keeps off transparent huge pages (it set the flag
	// itself: hugepages.Marker), its reaper does too, and the command
	// starts with the kernel's setting and without the marker.
	t.Setenv(hugepages.Marker, "1")
	if err := hugepages.SetDisabled(true); err != nil {
		t.Fatalf("PR_SET_THP_DISABLE: %v", err)
	}
	defer hugepages.SetDisabled(false)
	got, err = newTestExec(t, `grep -q '^THP_enabled:[[:space:]]*1$' /proc/self/status || { echo 17; exit; }
[ -z "${`+hugepages.Marker+`+x}" ] || { echo 18; exit; }
n=0; until grep -q '^THP_enabled:[[:space:]]*0$' /proc/$PPID/status; do n=$((n+1)); [ $n -lt 30 ] || { echo 19; exit; }; sleep 0.1; done
echo 46`, "").Measure(context.Background())
	if err != nil || got != 46 {
		t.Fatalf("got %d, %v; want 46 (17: the command kept the agent's no-THP flag, 18: it got the marker, 19: the reaper did not keep the flag)", got, err)
	}
	os.Unsetenv(hugepages.Marker)

	// A reaper still waiting after reaper.DropAfter unmaps its
	// executable's pages (execpages.Drop): the perl interpreter's reaper
	// lives as long as the agent. An executable on tmpfs (a container's
	// /tmp) has them counted as RssShmem, not RssFile.
	wait := reaper.DropAfter + time.Second
	got, err = newTestExec(t, fmt.Sprintf(`rss() { awk '/^Rss(File|Shmem):/ { s += $2 } END { print s }' /proc/$PPID/status; }
a=$(rss); sleep %.1f; b=$(rss)
[ "$b" -lt "$a" ] && echo 45 || echo 16`, wait.Seconds()), (wait + 5*time.Second).String()).Measure(context.Background())
	if err != nil || got != 45 {
		t.Fatalf("got %d, %v; want 45 (16: the reaper's file pages did not shrink after %v)", got, err, wait)
	}
}
