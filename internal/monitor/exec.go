package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Output limits for exec. The health is one number on the first line;
// capping what is kept bounds memory if a command prints without end, and
// the rest is read and dropped so such a command does not block on a full
// pipe before its timeout kills it.
const (
	execStdoutMax = 4 << 10
	execStderrMax = 4 << 10
	// execWaitDelay bounds how long Measure waits, after the shell has
	// exited or been killed, for stdout and stderr to close. A process that
	// escaped the process group (setsid) but holds the pipes would
	// otherwise block Wait for as long as it lives.
	execWaitDelay = 1 * time.Second
)

// execMon runs a command through /bin/sh -c on every sample and reads the
// first number it prints.
type execMon struct {
	command string
	timeout time.Duration
}

func newExec(params map[string]string) (*execMon, error) {
	cmd := strings.TrimSpace(params["command"])
	if cmd == "" {
		return nil, errors.New("command is required")
	}
	timeout, err := timeoutParam(params)
	if err != nil {
		return nil, err
	}
	return &execMon{command: cmd, timeout: timeout}, nil
}

func (e *execMon) Name() string { return "exec" }
func (e *execMon) Close() error { return nil }

func (e *execMon) Measure(ctx context.Context) (int, error) {
	runCtx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()

	cmd := exec.CommandContext(runCtx, "/bin/sh", "-c", e.command)
	// Own process group, so that on timeout the shell and everything it
	// started die together; killing only the shell would leave e.g. a
	// `sleep` holding stdout open and running on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = execWaitDelay
	// cmd.Stdin stays nil, which is /dev/null: a command that reads stdin
	// must not hang on, or steal from, the agent's.
	stdout := &capBuffer{max: execStdoutMax}
	stderr := &capBuffer{max: execStderrMax}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("command %q: %w", e.command, ctx.Err())
	case runCtx.Err() != nil:
		return 0, fmt.Errorf("command %q timed out after %s and was killed", e.command, e.timeout)
	case errors.Is(err, exec.ErrWaitDelay):
		// The shell exited cleanly, but something it started in the
		// background kept stdout open. The answer is already in; clean
		// up what is left of the group and use it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	case err != nil:
		msg := err.Error() // "exit status 3", "signal: segmentation fault"
		if line := firstLine(stderr.buf); line != "" {
			msg += ", stderr: " + quoteHead([]byte(line), 200)
		}
		return 0, fmt.Errorf("command %q: %s", e.command, msg)
	}
	h, ok := firstNumber(stdout.buf)
	if !ok {
		return 0, fmt.Errorf("command %q: no number in output %s", e.command, quoteHead(stdout.buf, 80))
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
