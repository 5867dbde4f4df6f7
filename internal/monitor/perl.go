package monitor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
	"github.com/lvs-feedbackd/feedbackd/internal/reaper"
)

// The perl monitor keeps the original plugin's contract: the script is
// loaded once and get_health() is called for each sample, so a script may
// keep state between calls (counters, open handles, a previous reading).
// Go cannot embed a Perl interpreter, so one long-lived perl process runs
// perlDriver, which loads the script with `do` and then answers requests:
//
//	Go -> perl   "<seq>\n"                      one request per Measure
//	perl -> Go   "<seq> H <get_health() value>\n"
//	             "<seq> E <why there is none>\n"  get_health died or returned undef
//	perl -> Go   "R\n"                          once, when the script has loaded
//
// The protocol runs on private duplicates of the original stdin and
// stdout. Before loading the script the driver points STDIN at /dev/null
// and STDOUT at STDERR, so whatever the script prints, and whatever its
// child processes print, goes to stderr, which Go logs, and cannot be
// taken for an answer. The driver also localises $/, $\ and $, around its
// own I/O, in case the script changes them.
//
// Nothing get_health() starts outlives the call (issue 13): the driver is
// a child subreaper, so every process the script starts stays below it
// even when its parent exits or it detaches with setsid, and after loading
// the script and after every call the driver kills and reaps all of them
// before it answers. The interpreter is the only process that lasts from
// one sample to the next. prctl has no Perl binding; Go passes the
// architecture's syscall number.
//
// If get_health() hangs past the timeout, or the process dies, the process
// is killed, with everything below it, by its reaper (reaper.go), and a new
// one is started on the next Measure. A restart loads the file again, so
// an edited script takes effect then, and state kept in the script starts
// afresh.
const perlDriver = `
use strict;
my ($file, $prctl) = @ARGV;
$0 = "feedbackd perl monitor $file";  # what ps shows, instead of this script
# PR_SET_CHILD_SUBREAPER (36): orphans of the script's processes come back here.
syscall($prctl, 36, 1, 0, 0, 0) == 0
	or print STDERR "feedbackd perl driver: cannot become a subreaper ($!); processes get_health() leaves behind may survive it\n";
open(my $req, '<&', \*STDIN)  or die "feedbackd perl driver: dup stdin: $!\n";
open(my $ans, '>&', \*STDOUT) or die "feedbackd perl driver: dup stdout: $!\n";
open(STDIN, '<', '/dev/null') or die "feedbackd perl driver: /dev/null: $!\n";
open(STDOUT, '>&', \*STDERR)  or die "feedbackd perl driver: stdout to stderr: $!\n";
select((select($ans), $| = 1)[0]);
$| = 1;

sub answer {
	local $\ = "\n";
	local $, = "";
	print $ans $_[0];
}

# The processes below this one, from /proc/PID/stat ("pid (comm) S ppid").
sub descendants {
	local $/ = "\n";
	my %kids;
	opendir(my $dh, '/proc') or return ();
	while (defined(my $p = readdir $dh)) {
		next unless $p =~ /^[0-9]+\z/;
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $st = <$fh>;
		close $fh;
		push @{ $kids{$1} }, $p if defined $st && $st =~ /\)\s+\S+\s+([0-9]+)/;
	}
	closedir $dh;
	my @out;
	my @todo = ($$);
	while (@todo) {
		my $k = $kids{ pop @todo } or next;
		push @out, @$k;
		push @todo, @$k;
	}
	return @out;
}

# Kill and reap every process below this one. As a subreaper without
# children has no descendants at all, waitpid's -1 (ECHILD) proves that all
# are gone; in the usual case, a script that started nothing, that is the
# first and only check. 1 is WNOHANG. Bounded, for a process stuck in the
# kernel.
sub reap_all {
	local ($!, $?);
	my $deadline = time + 2;
	while (1) {
		my $r = waitpid(-1, 1);
		last if $r == -1;
		next if $r > 0;
		kill 'KILL', descendants();
		last if time > $deadline;
		select(undef, undef, undef, 0.001);
	}
}

-r $file or die "cannot read $file: $!\n";
do $file;
die $@ if $@;
die "$file does not define get_health()\n" unless defined &main::get_health;
reap_all();
answer("R $$");

while (1) {
	my $seq;
	{
		local $/ = "\n";
		$seq = <$req>;
	}
	last unless defined $seq;
	$seq =~ s/\s+\z//;
	my $h = eval { main::get_health() };
	reap_all();
	if ($@) {
		my $e = "$@";
		$e =~ s/\s+/ /g;
		answer("$seq E get_health() died: " . substr($e, 0, 500));
	} elsif (!defined $h) {
		answer("$seq E get_health() returned undef");
	} else {
		$h =~ s/\s+/ /g;
		answer("$seq H " . substr($h, 0, 200));
	}
}
`

const (
	// perlLoadTimeout is the least time the script gets to load: loading
	// modules can take longer than one get_health() call is allowed.
	perlLoadTimeout = DefaultTimeout
	// perlStderrTail is how many of the last stderr lines are kept to
	// explain a failed load or a dead process.
	perlStderrTail = 8
	// perlExitGrace is how long Close waits for perl to leave on its own
	// after its stdin is closed, so END blocks may run.
	perlExitGrace = 1 * time.Second
)

var perlTimeout = KeySpec{Name: "timeout", Type: TypeDuration, Help: "seconds get_health() may take (default 5)", Min: MinTimeout, MinWhy: whyTimeout}

func init() {
	register(Kind{Name: "perl",
		Keys: []KeySpec{
			{Name: "file", Type: TypePath, Required: true, Help: "Perl script defining get_health()"},
			perlTimeout,
		},
		build: func(params map[string]string, _ Options, log *slog.Logger) (Monitor, error) {
			return newPerl(params, log)
		},
	})
}

type perlMon struct {
	file    string // absolute: do FILE searches @INC for a relative name
	perl    string // the interpreter, absolute: the reaper does no PATH search
	timeout time.Duration
	log     *slog.Logger
	// complain logs what get_health() returned when it is not a health
	// value, at a bounded rate.
	complain *ratelog.Logger

	mu     sync.Mutex // one request at a time on the one process
	p      *perlProc  // nil: start one on the next Measure
	seq    uint64
	closed bool
}

func newPerl(params map[string]string, log *slog.Logger) (*perlMon, error) {
	file := strings.TrimSpace(params["file"])
	if file == "" {
		return nil, errors.New("file is required")
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	// Fail here with Go's clear message rather than perl's.
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	f.Close()
	perl, err := exec.LookPath("perl")
	if err != nil {
		return nil, fmt.Errorf("needs perl: %w", err)
	}
	if perl, err = filepath.Abs(perl); err != nil {
		return nil, err
	}
	timeout, err := perlTimeout.duration(params, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	m := &perlMon{file: abs, perl: perl, timeout: timeout, log: log.With("file", abs)}
	m.complain = newRateLog(m.log)
	// Load now, like the original, so that a broken script is a start-up
	// error rather than a stream of unknown healths.
	if m.p, err = m.start(context.Background()); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *perlMon) Name() string { return "perl" }

func (m *perlMon) Measure(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, errors.New("perl monitor is closed")
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if m.p != nil && m.p.hasExited() {
		m.log.Warn("perl monitor process died; restarting it", "reason", m.p.exitReason())
		m.p.kill()
		m.p = nil
	}
	if m.p == nil {
		p, err := m.start(ctx)
		if err != nil {
			return 0, err
		}
		m.log.Info("perl monitor process started", "pid", p.pid.Load())
		m.p = p
	}
	p := m.p

	m.seq++
	want := strconv.FormatUint(m.seq, 10)
	if _, err := p.stdin.Write([]byte(want + "\n")); err != nil {
		p.waitExit(time.Second)
		m.drop()
		return 0, fmt.Errorf("perl process gone (%s); restarting on the next sample", p.exitReason())
	}
	timer := time.NewTimer(m.timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				// EOF: perl is on its way out. Let it finish, so that
				// the exit status is its own and not our SIGKILL.
				p.waitExit(time.Second)
				m.drop()
				return 0, fmt.Errorf("perl process exited during get_health() (%s); restarting on the next sample", p.exitReason())
			}
			seq, rest, _ := strings.Cut(line, " ")
			if seq != want {
				// Every abandoned request kills its process, so a stale
				// answer cannot arrive; the check costs nothing and keeps
				// it that way should that ever change.
				continue
			}
			kind, val, _ := strings.Cut(rest, " ")
			if kind == "E" {
				return 0, errors.New(val)
			}
			h, err := readHealth([]byte(val), true)
			if err != nil {
				m.complain.Warn("get_health() returned no health value; health unknown",
					"returned", quoteHead([]byte(val), 200), "why", err)
				return 0, fmt.Errorf("get_health()'s value is %w", err)
			}
			return h, nil
		case <-timer.C:
			m.log.Warn("get_health() timed out; killing the perl process", "timeout", m.timeout, "pid", p.pid.Load())
			m.drop()
			return 0, fmt.Errorf("get_health() timed out after %s; perl process killed, restarting on the next sample", m.timeout)
		case <-ctx.Done():
			// Abandoned mid-call: get_health() may still be running, or
			// stuck. Killing is the simple way to be sure the next
			// request starts on a quiet process.
			m.drop()
			return 0, ctx.Err()
		}
	}
}

// drop kills the current process; the next Measure starts a new one.
func (m *perlMon) drop() {
	m.p.kill()
	m.p = nil
}

func (m *perlMon) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.p == nil {
		return nil
	}
	p := m.p
	m.p = nil
	// A closed stdin ends the driver's loop, so the script's END blocks run.
	p.stdin.Close()
	p.waitExit(perlExitGrace)
	p.kill()
	return nil
}

// perlProc is one running driver, under its reaper.
type perlProc struct {
	pid    atomic.Int64 // the interpreter's, as it reported it; 0 until it has loaded
	reaper int          // the reaper's; the process Go started and waits for
	stdin  *os.File
	stdout *os.File
	stderr *os.File

	lines      chan string   // stdout lines; closed at EOF
	gone       chan struct{} // closed by kill, releases the stdout reader
	exited     chan struct{} // closed once the process is reaped
	stderrDone chan struct{}
	waitErr    error // set before exited is closed

	killOnce sync.Once

	tailMu sync.Mutex
	tail   []string // last stderr lines
}

// start runs the driver and waits until the script has loaded.
func (m *perlMon) start(ctx context.Context) (*perlProc, error) {
	var ends []*os.File // in, out, err pipes: read end, write end
	for range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(ends...)
			return nil, err
		}
		ends = append(ends, r, w)
	}
	inR, inW, outR, outW, errR, errW := ends[0], ends[1], ends[2], ends[3], ends[4], ends[5]
	// Not tied to a context: the interpreter outlives the Measure that
	// starts it, and kill stops it.
	cmd := reaperCommand(context.Background(), m.perl, "-e", perlDriver, "--", m.file, strconv.Itoa(syscall.SYS_PRCTL))
	// Passing *os.File ends means exec starts no copying goroutines, so
	// Wait returns when the reaper exits whatever holds a pipe.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	err := cmd.Start()
	// The child has its copies; ours of the far ends must go, or we would
	// never see EOF.
	closeFiles(inR, outW, errW)
	if err != nil {
		closeFiles(inW, outR, errR)
		return nil, err
	}

	p := &perlProc{
		reaper: cmd.Process.Pid,
		stdin:  inW, stdout: outR, stderr: errR,
		lines:      make(chan string),
		gone:       make(chan struct{}),
		exited:     make(chan struct{}),
		stderrDone: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	go p.readStdout()
	go p.readStderr(m.log)

	timeout := max(m.timeout, perlLoadTimeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-p.lines:
		if pid, found := strings.CutPrefix(line, "R "); ok && found {
			n, _ := strconv.Atoi(pid)
			p.pid.Store(int64(n))
			return p, nil
		}
		// perl died while loading; collect its exit status and complaint.
		p.waitExit(time.Second)
		p.kill()
		return nil, fmt.Errorf("perl could not load %s: %s", m.file, p.exitReason())
	case <-timer.C:
		p.kill()
		return nil, fmt.Errorf("perl did not finish loading %s within %s", m.file, timeout)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

func closeFiles(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func (p *perlProc) readStdout() {
	defer close(p.lines)
	sc := bufio.NewScanner(p.stdout)
	for sc.Scan() {
		select {
		case p.lines <- sc.Text():
		case <-p.gone:
			return
		}
	}
}

// readStderr logs what the script (and perl) write to stderr, which
// includes the script's prints to STDOUT, and keeps the last lines to
// explain a failure.
func (p *perlProc) readStderr(log *slog.Logger) {
	defer close(p.stderrDone)
	r := bufio.NewReaderSize(p.stderr, 4096)
	for {
		b, more, err := r.ReadLine()
		if err != nil {
			return
		}
		line := string(b)
		// Drop the rest of an over-long line rather than stop reading:
		// a full stderr pipe would block the script.
		for more && err == nil {
			_, more, err = r.ReadLine()
		}
		log.Info("perl monitor output", "pid", p.pid.Load(), "line", line)
		p.tailMu.Lock()
		if len(p.tail) == perlStderrTail {
			p.tail = append(p.tail[:0], p.tail[1:]...)
		}
		p.tail = append(p.tail, line)
		p.tailMu.Unlock()
	}
}

// waitExit waits up to d for the process to exit by itself.
func (p *perlProc) waitExit(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
}

func (p *perlProc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// exitReason describes how the process ended, with its last stderr lines.
func (p *perlProc) exitReason() string {
	p.waitExit(time.Second)
	why := "still running"
	if p.hasExited() {
		why = "exit status 0"
		if p.waitErr != nil {
			why = p.waitErr.Error()
		}
	}
	p.tailMu.Lock()
	tail := strings.Join(p.tail, " | ")
	p.tailMu.Unlock()
	if tail != "" {
		why += ": " + tail
	}
	return why
}

// kill ends the interpreter and everything below it, and releases the
// reader goroutines. It is safe to call more than once and after the
// process has exited.
func (p *perlProc) kill() {
	p.killOnce.Do(func() {
		// The reaper kills the interpreter and all it started, then exits.
		// Once it is reaped its pid could in principle be reused, so it is
		// signalled only while it is not; between this check and the kill
		// the Wait goroutine could still reap it, a window of a few
		// instructions that would need a pid reused within it to matter.
		if !p.hasExited() {
			_ = syscall.Kill(p.reaper, syscall.SIGTERM)
		}
		close(p.gone)
		p.stdin.Close()
		// Bounded in case something is stuck in the kernel (D state); the
		// Wait goroutine reaps the reaper when it can.
		p.waitExit(reaper.CleanupLimit + time.Second)
		if !p.hasExited() {
			killReaperGroup(p.reaper)
			p.waitExit(time.Second)
		}
		// With the group dead, stderr reaches EOF by itself; waiting for
		// that keeps its last lines for exitReason.
		select {
		case <-p.stderrDone:
		case <-time.After(500 * time.Millisecond):
		}
		// Unblocks the readers should an escaped child hold the pipes.
		p.stdout.Close()
		p.stderr.Close()
	})
}
