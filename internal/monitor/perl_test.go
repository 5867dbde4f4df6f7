package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

func needPerl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("perl is not on PATH")
	}
}

// writeScript writes a monitor script into a temporary directory.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "monitor.pl")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestPerl(t *testing.T, file, timeout string, log *slog.Logger) *perlMon {
	t.Helper()
	params := map[string]string{"file": file}
	if timeout != "" {
		params["timeout"] = timeout
	}
	m, err := New("perl.so", params, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.(*perlMon)
}

func measureWant(t *testing.T, m Monitor, want int) {
	t.Helper()
	got, err := m.Measure(context.Background())
	if err != nil || got != want {
		t.Fatalf("got %d, %v; want %d", got, err, want)
	}
}

func pidOf(m *perlMon) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return 0
	}
	return int(m.p.pid.Load())
}

func TestPerlStatePersists(t *testing.T) {
	needPerl(t)
	m := newTestPerl(t, writeScript(t, `
my $calls = 0;
sub get_health() { $calls++; return $calls * 10 }
`), "", nil)
	if m.Name() != "perl" {
		t.Errorf("Name() = %q", m.Name())
	}
	pid := pidOf(m)
	// 10, 20, 30: the counter survives between calls, so it is one
	// process that loaded the script once.
	for _, want := range []int{10, 20, 30} {
		measureWant(t, m, want)
	}
	if got := pidOf(m); got != pid {
		t.Fatalf("pid changed from %d to %d", pid, got)
	}
}

func TestPerlValues(t *testing.T) {
	needPerl(t)
	for _, tc := range []struct {
		ret  string
		want int
	}{
		{"55.5", 56}, {"150", 100}, {"-3", 0}, {"'42%'", 42}, {"\"7\\n\"", 7},
	} {
		t.Run(tc.ret, func(t *testing.T) {
			m := newTestPerl(t, writeScript(t, "sub get_health { return "+tc.ret+" }\n"), "", nil)
			measureWant(t, m, tc.want)
		})
	}
}

func TestPerlLoadErrors(t *testing.T) {
	needPerl(t)
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"syntax", "sub get_health {\n  return 1;\n", []string{"could not load", "Missing right curly"}},
		{"dies at load", "die \"no config for the sensor\\n\";\nsub get_health { 1 }\n", []string{"no config for the sensor"}},
		{"no get_health", "sub health { 1 }\n1;\n", []string{"does not define get_health()"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeScript(t, tc.body)
			m, err := New("perl", map[string]string{"file": file}, Options{})
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	if _, err := New("perl", map[string]string{"file": filepath.Join(t.TempDir(), "missing.pl")}, Options{}); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestPerlScriptOutputDoesNotCorruptProtocol(t *testing.T) {
	needPerl(t)
	var logBuf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	m := newTestPerl(t, writeScript(t, `
print "junk at load 99\n";
# Hostile globals: the driver must not depend on them.
$\ = "!!\n"; $, = "::"; $/ = undef;
sub get_health {
	print "junk 1\n";
	print STDOUT "junk 2";
	printf("%d\n", 3);
	syswrite(STDOUT, "raw 4\n");
	system("echo child junk 5");
	my $in = <STDIN>;   # the driver's requests must not be readable here
	print "stdin gave [" . (defined $in ? $in : "undef") . "]";
	return 42;
}
`), "", log)
	for i := 0; i < 3; i++ {
		measureWant(t, m, 42)
	}
	// The junk went to stderr, which is logged.
	deadline := time.Now().Add(2 * time.Second)
	for strings.Count(logBuf.String(), "child junk 5") < 3 || strings.Count(logBuf.String(), "stdin gave [") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("script output not logged; log:\n%s", logBuf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// STDIN is /dev/null: slurp mode ($/ = undef) reads "" once, then undef.
	if strings.Count(logBuf.String(), "stdin gave [undef]") != 2 || !strings.Contains(logBuf.String(), "stdin gave []") {
		t.Fatalf("the script could read from STDIN; log:\n%s", logBuf.String())
	}
}

func TestPerlGetHealthErrors(t *testing.T) {
	needPerl(t)
	m := newTestPerl(t, writeScript(t, `
my $n = 0;
sub get_health {
	$n++;
	die "sensor offline\n" if $n == 1;
	return undef if $n == 2;
	return "HTTP/1.1 503 Service Unavailable" if $n == 3;
	return $n;
}
`), "", nil)
	pid := pidOf(m)
	for _, want := range []string{"get_health() died: sensor offline", "get_health() returned undef", "get_health()'s value is not a health value"} {
		if _, err := m.Measure(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	}
	// A die inside get_health is caught by the driver: same process, state kept.
	measureWant(t, m, 4)
	if got := pidOf(m); got != pid {
		t.Fatalf("pid changed from %d to %d", pid, got)
	}
}

func TestPerlHungGetHealthTimesOutAndRestarts(t *testing.T) {
	needPerl(t)
	dir := t.TempDir()
	flag, childPid := filepath.Join(dir, "hang"), filepath.Join(dir, "child.pid")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The first call hangs in a child process, as a script running an
	// external command would; the flag is gone before the restart.
	m := newTestPerl(t, writeScript(t, fmt.Sprintf(`
sub get_health {
	if (-e %[1]q) {
		unlink %[1]q;
		my $pid = fork();
		if ($pid == 0) { exec("sleep", "100") or die "exec: $!"; }
		open(my $fh, '>', %[2]q) or die; print $fh $pid; close $fh;
		waitpid($pid, 0);
	}
	return 70;
}
`, flag, childPid)), "300ms", nil)
	pid := pidOf(m)

	start := time.Now()
	_, err := m.Measure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Measure returned after %v", d)
	}
	processGone(t, pid)
	b, err := os.ReadFile(childPid)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	processGone(t, child) // the script's child died with the group

	measureWant(t, m, 70)
	if got := pidOf(m); got == pid || got == 0 {
		t.Fatalf("pid %d after restart, want a new process (old %d)", got, pid)
	}
}

func TestPerlRestartsAfterProcessDied(t *testing.T) {
	needPerl(t)
	m := newTestPerl(t, writeScript(t, "my $n = 0; sub get_health { return ++$n }\n"), "", nil)
	measureWant(t, m, 1)
	measureWant(t, m, 2)
	pid := pidOf(m)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !m.p.hasExited() {
		if time.Now().After(deadline) {
			t.Fatal("perl did not die")
		}
		time.Sleep(time.Millisecond)
	}
	// Found dead before the request: restarted at once, state afresh.
	measureWant(t, m, 1)
	if got := pidOf(m); got == pid {
		t.Fatal("same pid after restart")
	}
}

func TestPerlExitInsideGetHealth(t *testing.T) {
	needPerl(t)
	m := newTestPerl(t, writeScript(t, "sub get_health { print STDERR \"bailing out\\n\"; exit 3 }\n"), "", nil)
	_, err := m.Measure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "bailing out") {
		t.Fatalf("err = %v, want the exit status and the last stderr line", err)
	}
}

func TestPerlCloseEndsProcessGracefully(t *testing.T) {
	needPerl(t)
	endFile := filepath.Join(t.TempDir(), "end")
	m := newTestPerl(t, writeScript(t, fmt.Sprintf(`
sub get_health { 5 }
END { open(my $fh, '>', %q); print $fh "bye"; close $fh; }
`, endFile)), "", nil)
	measureWant(t, m, 5)
	pid := pidOf(m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	processGone(t, pid)
	if b, err := os.ReadFile(endFile); err != nil || string(b) != "bye" {
		t.Errorf("END block did not run: %q, %v", b, err)
	}
	if _, err := m.Measure(context.Background()); err == nil {
		t.Error("Measure after Close succeeded")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPerlCanceledKillsRequest(t *testing.T) {
	needPerl(t)
	m := newTestPerl(t, writeScript(t, "sub get_health { sleep 100 }\n"), "", nil)
	pid := pidOf(m)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := m.Measure(ctx); err == nil {
		t.Fatal("no error")
	}
	processGone(t, pid)
}

// TestPerlStrictReading: what get_health() returns is read by the rules of
// reading.go. A number Perl computed is a health even when Perl prints it
// with an exponent (a value under 0.0001); the string "1e9" is not, and
// what was returned is logged.
func TestPerlStrictReading(t *testing.T) {
	needPerl(t)
	var logBuf testutil.SyncBuffer
	m := newTestPerl(t, writeScript(t, `
my $n = 0;
sub get_health {
	$n++;
	return 1 - 0.99999 if $n == 1;   # Perl prints 1.00000000000655e-05
	return 100 - 25 * 0.5 if $n == 2; # 87.5
	return "1e9" if $n == 3;
	return "42%\n" if $n == 4;
	return 1e9;                       # the number: Perl prints 1000000000
}
`), "", slog.New(slog.NewTextHandler(&logBuf, nil)))
	measureWant(t, m, 0)
	measureWant(t, m, 88)
	if h, err := m.Measure(context.Background()); !errors.Is(err, errNotHealth) {
		t.Fatalf(`"1e9": got %d, %v; want not a health value`, h, err)
	}
	if !strings.Contains(logBuf.String(), `returned="\"1e9\""`) {
		t.Errorf("the returned value is not logged:\n%s", logBuf.String())
	}
	measureWant(t, m, 42)
	measureWant(t, m, 100)
}
