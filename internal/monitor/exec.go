package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// Output limits for exec. The health is one number on the first line;
// capping what is kept bounds memory if a command prints without end, and
// the rest is read and dropped so such a command does not block on a full
// pipe before its timeout kills it.
const (
	execStdoutMax = 4 << 10
	execStderrMax = 4 << 10
	// execWaitDelay bounds how long Measure waits, after the reaper has
	// exited or been told to stop, for it to exit and for stdout and
	// stderr to close. Only a process that survives SIGKILL (stuck in the
	// kernel) can hold them longer.
	execWaitDelay = 1 * time.Second
)

var execTimeout = KeySpec{Name: "timeout", Type: TypeDuration, Help: "seconds before the command is killed and the health is unknown (default 5)", Min: MinTimeout, MinWhy: whyTimeout}

func init() {
	register(Kind{Name: "exec",
		Keys: []KeySpec{
			{Name: "command", Type: TypeString, Required: true, Help: "run by /bin/sh -c; a number alone on the first line of stdout is the health"},
			execTimeout,
		},
		build: func(params map[string]string, _ Options, log *slog.Logger) (Monitor, error) {
			return newExec(params, log)
		},
	})
}

// execMon runs a command through /bin/sh -c on every sample and reads the
// health from the first line it prints (readHealth).
type execMon struct {
	command  string
	timeout  time.Duration
	complain *rateLog
}

func newExec(params map[string]string, log *slog.Logger) (*execMon, error) {
	cmd := strings.TrimSpace(params["command"])
	if cmd == "" {
		return nil, errors.New("command is required")
	}
	timeout, err := execTimeout.duration(params, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return &execMon{command: cmd, timeout: timeout, complain: newRateLog(log)}, nil
}

func (e *execMon) Name() string { return "exec" }
func (e *execMon) Close() error { return nil }

func (e *execMon) Measure(ctx context.Context) (int, error) {
	runCtx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()

	// Under a reaper (reaper.go): when the shell exits, the reaper kills
	// whatever the command left running, in the background or detached
	// with setsid, before it exits itself. On timeout Cancel asks it to
	// kill the shell too.
	cmd := reaperCommand(runCtx, "/bin/sh", "-c", e.command)
	cmd.WaitDelay = execWaitDelay
	// cmd.Stdin stays nil, which is /dev/null: a command that reads stdin
	// must not hang on, or steal from, the agent's.
	//
	// The output comes through pipes of our own, read here and by one
	// goroutine, not through io.Writers: for a writer os/exec starts a
	// goroutine per stream that copies through a new 32 KB buffer, and an
	// idle agent running its exec monitor every few seconds touched that
	// fresh memory, and the runtime's tables for the goroutines it
	// started, on every sample (docs/benchmarks.md, "The agent's memory
	// at rest").
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	// The reaper has its copies of the write ends; without closing ours
	// the reads below would never see the end.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	// Past the timeout the reaper is told to stop, and it kills everything
	// below it before it exits, which closes the pipes. Only a process
	// that survives SIGKILL (stuck in the kernel) can hold them open
	// longer: the reads give up execWaitDelay later, and whatever came
	// before is used.
	until := time.Now().Add(e.timeout + execWaitDelay)
	stderrc := make(chan []byte, 1)
	go func() { stderrc <- drain(errR, execStderrMax, until) }()
	stdout := drain(outR, execStdoutMax, until)
	stderr := <-stderrc
	err = cmd.Wait()
	if cmd.ProcessState == nil || !reaperFinished(cmd.ProcessState) {
		// The reaper did not finish its work (killed after WaitDelay):
		// what is left in its group dies here.
		killReaperGroup(cmd.Process.Pid)
	}
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("command %q: %w", e.command, ctx.Err())
	case runCtx.Err() != nil:
		return 0, fmt.Errorf("command %q timed out after %s and was killed", e.command, e.timeout)
	case err != nil:
		msg := err.Error() // "exit status 3", "signal: segmentation fault"
		if line := firstLine(stderr); line != "" {
			msg += ", stderr: " + quoteHead([]byte(line), 200)
		}
		return 0, fmt.Errorf("command %q: %s", e.command, msg)
	}
	h, err := readHealth(stdout, false)
	if err != nil {
		// The output goes to the log, at a bounded rate; the error,
		// which the sampler logs whenever its text changes, does not
		// quote it (notHealthError).
		e.complain.Warn("command output is not a health value; health unknown",
			"command", e.command, "output", quoteHead(stdout, 200), "why", err)
		return 0, fmt.Errorf("command %q: output is %w", e.command, err)
	}
	return h, nil
}

// drain reads f to its end, or until the deadline, keeps the first max
// bytes and drops the rest, so that the command never blocks on a full
// pipe before its timeout; then it closes f. What it keeps grows from a
// small start: a health is a few bytes.
func drain(f *os.File, max int, deadline time.Time) []byte {
	defer f.Close()
	f.SetReadDeadline(deadline)
	kept := make([]byte, 0, 64)
	var spill []byte // for what is past max, made only for such output
	for {
		if len(kept) == cap(kept) && len(kept) < max {
			kept = slices.Grow(kept, min(cap(kept), max-len(kept)))
		}
		into := kept[len(kept):min(cap(kept), max)]
		if len(into) == 0 {
			if spill == nil {
				spill = make([]byte, 4<<10)
			}
			into = spill
		}
		n, err := f.Read(into)
		if len(kept) < max {
			kept = kept[:len(kept)+n]
		}
		if err != nil { // io.EOF, the deadline, or a read error: done
			return kept
		}
	}
}

// firstLine is the first non-blank line of b, trimmed.
func firstLine(b []byte) string {
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if s := strings.TrimSpace(string(l)); s != "" {
			return s
		}
	}
	return ""
}
