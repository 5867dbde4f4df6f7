package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
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
	stdout := &capBuffer{max: execStdoutMax}
	stderr := &capBuffer{max: execStderrMax}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	err := cmd.Run()
	if cmd.Process != nil && (cmd.ProcessState == nil || !reaperFinished(cmd.ProcessState)) {
		// The reaper did not finish its work (killed after WaitDelay,
		// or it could not start): what is left in its group dies here.
		killReaperGroup(cmd.Process.Pid)
	}
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("command %q: %w", e.command, ctx.Err())
	case runCtx.Err() != nil:
		return 0, fmt.Errorf("command %q timed out after %s and was killed", e.command, e.timeout)
	case errors.Is(err, exec.ErrWaitDelay):
		// The reaper exited, so everything the command started is dead,
		// yet a pipe stayed open: a process that could not be killed
		// (stuck in the kernel). The answer is in; use it.
	case err != nil:
		msg := err.Error() // "exit status 3", "signal: segmentation fault"
		if line := firstLine(stderr.buf); line != "" {
			msg += ", stderr: " + quoteHead([]byte(line), 200)
		}
		return 0, fmt.Errorf("command %q: %s", e.command, msg)
	}
	h, err := readHealth(stdout.buf, false)
	if err != nil {
		// The output goes to the log, at a bounded rate; the error,
		// which the sampler logs whenever its text changes, does not
		// quote it (notHealthError).
		e.complain.Warn("command output is not a health value; health unknown",
			"command", e.command, "output", quoteHead(stdout.buf, 200), "why", err)
		return 0, fmt.Errorf("command %q: output is %w", e.command, err)
	}
	return h, nil
}

// capBuffer keeps the first max bytes written and accepts (and drops) the
// rest, so the writer never sees an error and never blocks.
type capBuffer struct {
	buf []byte
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
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
