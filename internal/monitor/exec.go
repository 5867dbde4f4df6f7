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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
)

// Output limits for exec. The health is one number on the first line;
// capping what is kept bounds memory if a command prints without end, and
// the rest is read and dropped so such a command does not block on a full
// pipe before its timeout kills it.
const (
	execStdoutMax = 4 << 10
	execStderrMax = 4 << 10
	// execWaitDelay bounds how long Measure waits for a reaper told to
	// stop to exit before it kills the reaper's whole group, and how long
	// past the timeout it reads stdout and stderr. Only a process that
	// survives SIGKILL (stuck in the kernel) can hold them longer.
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
	complain *ratelog.Logger
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
	// with setsid, before it exits itself. On timeout it is asked to kill
	// the shell too (stopReaper).
	//
	// A sample starts no goroutine, and os/exec none either: the output
	// comes through pipes of our own, both read here (collect), and the
	// reaper is stopped from context.AfterFunc, which runs only on
	// timeout or cancellation. Each goroutine started reads the runtime's
	// function table, and os/exec's copying into an io.Writer used a new
	// 32 KB buffer per stream: an idle agent sampling every few seconds
	// kept those pages mapped (docs/benchmarks.md, "The agent's memory at
	// rest").
	cmd := reaperCommand(context.Background(), "/bin/sh", "-c", e.command)
	// cmd.Stdin stays nil, which is /dev/null: a command that reads stdin
	// must not hang on, or steal from, the agent's.
	var fds [4]int // stdout read, write; stderr read, write
	if err := syscall.Pipe2(fds[0:2], syscall.O_CLOEXEC); err != nil {
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	if err := syscall.Pipe2(fds[2:4], syscall.O_CLOEXEC); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	outW, errW := os.NewFile(uintptr(fds[1]), "|1"), os.NewFile(uintptr(fds[3]), "|2")
	cmd.Stdout, cmd.Stderr = outW, errW
	err := cmd.Start()
	// The reaper has its copies of the write ends; without closing ours
	// the reads below would never see the end.
	outW.Close()
	errW.Close()
	if err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[2])
		return 0, fmt.Errorf("command %q: %w", e.command, err)
	}
	exited := make(chan struct{})
	stop := context.AfterFunc(runCtx, func() { stopReaper(cmd.Process, exited) })
	// Past the timeout the reaper kills everything below it before it
	// exits, which closes the pipes. Only a process that survives SIGKILL
	// (stuck in the kernel) can hold them open longer: the reads give up
	// execWaitDelay later, and whatever came before is used.
	stdout, stderr := collect(fds[0], fds[2], time.Now().Add(e.timeout+execWaitDelay))
	err = cmd.Wait()
	close(exited)
	stop()
	if cmd.ProcessState == nil || !reaperFinished(cmd.ProcessState) {
		// The reaper did not finish its work (killed after
		// execWaitDelay): what is left in its group dies here.
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

// stopReaper asks the reaper to kill the command and everything below it
// (SIGTERM), and kills its whole group if it has not exited execWaitDelay
// later, so that Wait returns.
func stopReaper(p *os.Process, exited <-chan struct{}) {
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(execWaitDelay)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		killReaperGroup(p.Pid)
	}
}

// collect reads the command's stdout and stderr (the read ends of two
// pipes, which it closes) until both end or the deadline passes. It keeps
// the first execStdoutMax and execStderrMax bytes and drops the rest, so
// that the command never blocks on a full pipe. poll(2) waits for either
// in this goroutine's thread, as Wait does for the exit.
func collect(outFd, errFd int, deadline time.Time) (stdout, stderr []byte) {
	defer syscall.Close(outFd)
	defer syscall.Close(errFd)
	pfd := []unix.PollFd{{Fd: int32(outFd), Events: unix.POLLIN}, {Fd: int32(errFd), Events: unix.POLLIN}}
	kept := [2][]byte{make([]byte, 0, 64), make([]byte, 0, 64)}
	limit := [2]int{execStdoutMax, execStderrMax}
	var spill []byte // for what is past the limit, made only for such output
	for open := 2; open > 0; {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if _, err := unix.Poll(pfd, int(min(left.Milliseconds()+1, 1<<30))); err != nil {
			if err == syscall.EINTR {
				continue
			}
			break
		}
		for i := range pfd {
			if pfd[i].Fd < 0 || pfd[i].Revents == 0 {
				continue
			}
			b := kept[i]
			if len(b) == cap(b) && len(b) < limit[i] {
				b = slices.Grow(b, min(cap(b), limit[i]-len(b)))
			}
			into := b[len(b):min(cap(b), limit[i])]
			if len(into) == 0 {
				if spill == nil {
					spill = make([]byte, 4<<10)
				}
				into = spill
			}
			n, err := syscall.Read(int(pfd[i].Fd), into)
			if err == syscall.EINTR || err == syscall.EAGAIN {
				continue
			}
			if n > 0 && len(b) < limit[i] {
				b = b[:len(b)+n]
			}
			kept[i] = b
			if n <= 0 { // the end, or an error: this pipe is done
				pfd[i].Fd = -1 // poll(2) passes over a negative descriptor
				open--
			}
		}
	}
	return kept[0], kept[1]
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
