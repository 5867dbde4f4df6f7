package monitor

import (
	"context"
	"errors"
	"fmt"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Nothing a monitor starts may outlive its sample (issue 13, defect 12).
// Each test below starts processes that carry a marker in their command
// line and counts, with /proc, the processes that still carry it when
// Measure has returned. Not after a wait: the monitor must have killed
// and reaped them before it returns.

var markerSeq atomic.Int64

// leakMarker returns a string unique to this test run, and makes sure
// nothing marked with it survives the test, whatever the test finds.
func leakMarker(t *testing.T) string {
	t.Helper()
	m := fmt.Sprintf("feedbackd-leak-test-%d-%d", os.Getpid(), markerSeq.Add(1))
	t.Cleanup(func() {
		for _, p := range testutil.MarkedProcs(m) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	return m
}

func expectNoneMarked(t *testing.T, marker, when string) {
	t.Helper()
	if left := testutil.MarkedProcs(marker); len(left) > 0 {
		var desc []string
		for _, p := range left {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
			desc = append(desc, fmt.Sprintf("%d %q", p, strings.ReplaceAll(string(b), "\x00", " ")))
		}
		t.Fatalf("%s: %d processes left behind:\n%s", when, len(left), strings.Join(desc, "\n"))
	}
}

// sleeper is a shell command line that sleeps for a long time and keeps
// marker in its command line ("; :" stops the shell from exec'ing sleep,
// which would drop the marker).
func sleeper(marker string) string {
	return fmt.Sprintf("sh -c 'sleep 1000; :' %s", marker)
}

// cancelWhenMarked returns a context that is cancelled, as the agent's
// shutdown cancels a sample in progress, once n processes carry marker
// (or, if that never happens, after a deadline; the test then fails on
// what it finds).
func cancelWhenMarked(t *testing.T, marker string, n int) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		defer cancel()
		deadline := time.Now().Add(10 * time.Second)
		for len(testutil.MarkedProcs(marker)) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}()
	return ctx
}

func needSetsid(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatalf("setsid (util-linux) is needed to test a command that leaves its session: %v", err)
	}
}

func TestExecLeavesNothingBehind(t *testing.T) {
	needSetsid(t)
	for _, tc := range []struct{ name, command string }{
		// The report's case: a background child that does not hold stdout
		// outlived every sample.
		{"background", "%s >/dev/null 2>&1 & echo 50"},
		{"background holding stdout", "%s & echo 50"},
		{"orphaned at once", "(%s >/dev/null 2>&1 &); echo 50"},
		{"new session", "setsid %s >/dev/null 2>&1 & echo 50"},
		{"new session, forked", "setsid -f %s >/dev/null 2>&1; echo 50"},
		{"new session holding stdout", "setsid %s & echo 50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := leakMarker(t)
			m := newTestExec(t, fmt.Sprintf(tc.command, sleeper(mark)), "")
			for i := range 3 {
				measureWant(t, m, 50)
				expectNoneMarked(t, mark, fmt.Sprintf("after sample %d", i+1))
			}
		})
	}
}

func TestExecTimeoutLeavesNothingBehind(t *testing.T) {
	needSetsid(t)
	mark := leakMarker(t)
	// The command is killed at its timeout while a detached child runs.
	m := newTestExec(t, fmt.Sprintf("setsid %s >/dev/null 2>&1 & %s", sleeper(mark), sleeper(mark)), "1s")
	if _, err := m.Measure(context.Background()); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	expectNoneMarked(t, mark, "after the timeout")
}

func TestExecCanceledLeavesNothingBehind(t *testing.T) {
	needSetsid(t)
	mark := leakMarker(t)
	m := newTestExec(t, fmt.Sprintf("setsid %s >/dev/null 2>&1 & %s", sleeper(mark), sleeper(mark)), "")
	ctx := cancelWhenMarked(t, mark, 2)
	if _, err := m.Measure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	expectNoneMarked(t, mark, "after the cancellation")
}

// TestPerlLeavesNothingBehind: get_health() forks in every way a script
// can, and the interpreter is the only process left after each call. The
// script's state lives on, so the interpreter is the same one.
func TestPerlLeavesNothingBehind(t *testing.T) {
	needPerl(t)
	needSetsid(t)
	mark := leakMarker(t)
	sl := sleeper(mark)
	m := newTestPerl(t, writeScript(t, fmt.Sprintf(`
# At load time too.
system(q{%[1]s >/dev/null 2>&1 &});
my $n = 0;
sub get_health {
	# A background command: its shell exits, the sleeper is orphaned.
	system(q{%[1]s >/dev/null 2>&1 &});
	# A direct child, never waited for.
	my $pid = fork();
	if (defined $pid && $pid == 0) { exec('sh', '-c', 'sleep 1000; :', %[2]q); exit 1 }
	# One that leaves the session.
	system(q{setsid %[1]s >/dev/null 2>&1 &});
	return 40 + ++$n;
}
`, sl, mark)), "", nil)
	expectNoneMarked(t, mark, "after loading the script")
	pid := pidOf(m)
	for i := range 3 {
		measureWant(t, m, 41+i)
		expectNoneMarked(t, mark, fmt.Sprintf("after call %d", i+1))
	}
	if got := pidOf(m); got != pid {
		t.Fatalf("interpreter changed from %d to %d", pid, got)
	}
}

func TestPerlTimeoutLeavesNothingBehind(t *testing.T) {
	needPerl(t)
	needSetsid(t)
	mark := leakMarker(t)
	m := newTestPerl(t, writeScript(t, fmt.Sprintf(`
sub get_health {
	system(q{setsid %[1]s >/dev/null 2>&1 &});
	system(q{%[1]s});
	return 50;
}
`, sleeper(mark))), "300ms", nil)
	if _, err := m.Measure(context.Background()); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	expectNoneMarked(t, mark, "after the timeout")
}

func TestPerlCloseLeavesNothingBehind(t *testing.T) {
	needPerl(t)
	mark := leakMarker(t)
	// Close while get_health() is busy in a child: the agent's shutdown
	// cancels the sample, then closes the monitor.
	m := newTestPerl(t, writeScript(t, fmt.Sprintf("sub get_health { system(q{%s}); 50 }\n", sleeper(mark))), "", nil)
	ctx := cancelWhenMarked(t, mark, 1)
	if _, err := m.Measure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	expectNoneMarked(t, mark, "after Close")
}
