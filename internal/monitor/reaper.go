package monitor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/reaper"
)

// Nothing a monitor starts may outlive its sample (issue 13): an exec
// command such as "sleep 1000 & echo 50" used to leave one sleep behind per
// sample, for ever, and so did a perl get_health() that forked. Killing the
// command's process group is not enough: a child may leave the group
// (setsid, a daemon's double fork), and once its parent has exited it is
// re-parented to init, where nothing can tell it came from a monitor.
//
// So every monitor command runs under a reaper (which executable: below).
// The reaper marks itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
// every process its command leaves behind is re-parented to the reaper,
// not to init, and stays below it in the process tree, whatever group or
// session it moved to. When the command exits, or the reaper is told to
// stop (SIGTERM), or the agent dies (the kernel tells it through
// PDEATHSIG), the reaper kills everything below it and reaps it, and only
// then exits, with the command's own exit status. Its exit therefore means
// "the sample's processes are gone", and it also closes the last copy of
// the output pipes, so the agent never waits on a background child that
// holds stdout.
//
// Another subreaper would be the agent itself. But the agent's process
// has other children (every monitor's), a process re-parented to it no
// longer says which sample it came from, and reaping it would race with
// os/exec's own Wait. A reaper per command keeps the tree the attribution.
//
// The perl interpreter lives across samples, so it is a subreaper too and
// kills its own descendants after each get_health() call (see perl.go);
// its reaper covers the interpreter's death and the timeout kill.

// The reaper's code is internal/reaper. It runs from its own small
// executable, feedbackd-monitor-reaper, where one is installed (reaperPaths);
// otherwise from the agent's own, started again through /proc/self/exe
// with argv[0] set to reaper.Name, which makes the init function below run
// it instead of the program. Both work the same; the small one costs half
// the CPU per start and less than half the RSS (docs/benchmarks.md,
// "Agent memory over time, and per CPU").
//
// What passes between agent and reaper is argv, the environment
// (reaper.Env), signals and the exit status. Keep that compatible from one
// version to the next: an upgrade replaces the reaper executable a few
// seconds before it restarts the agents.
func init() {
	if len(os.Args) > 1 && os.Args[0] == reaper.Name {
		// syscall.Exit, not os.Exit: the reaper has nothing to flush, and
		// under the race detector os.Exit sleeps a second before exiting.
		syscall.Exit(reaper.Main(os.Args[1:]))
	}
}

// reaperPaths is where a reaper executable is looked for, first match
// wins: beside the agent's own executable (bin/ of a build), then where the
// lvs-feedbackd-agent package installs it.
func reaperPaths() []string {
	var ps []string
	if exe, err := os.Executable(); err == nil {
		ps = append(ps, filepath.Join(filepath.Dir(exe), reaper.Name))
	}
	return append(ps, "/usr/libexec/lvs-feedbackd-agent/"+reaper.Name)
}

// findReaper returns the first of paths that this process may execute
// (access(2) with X_OK, which also refuses a file on a noexec mount) and
// that nobody else could have put there: owned by root or by the agent's
// own user, and writable by neither group nor others. Else the agent's
// own executable.
func findReaper(paths []string) string {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o022 != 0 {
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
			continue
		}
		if syscall.Access(p, 0x1) == nil { // X_OK
			return p
		}
	}
	return "/proc/self/exe"
}

// reaperExe is the executable reapers run from, looked up once: it does
// not move while the agent runs. Tests replace it.
var reaperExe = sync.OnceValue(func() string { return findReaper(reaperPaths()) })

// ReaperExecutable is the executable exec and perl monitor commands run
// under, for the agent's start line: its own small one, or /proc/self/exe.
func ReaperExecutable() string { return reaperExe() }

// reaperCommand returns a Cmd that runs argv (argv[0] an absolute path)
// under a reaper. The reaper is its own process group leader, so the
// agent's terminal signals (Ctrl-C under -d) do not reach the command; it
// gets reaper.ParentDeathSignal when the agent dies; and Cancel asks it, with
// SIGTERM, to kill the command and everything below it.
func reaperCommand(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, reaperExe())
	cmd.Args = append([]string{reaper.Name}, argv...)
	cmd.Env = reaper.Env(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: reaper.ParentDeathSignal}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	return cmd
}

// killReaperGroup is the last resort when a reaper did not finish (it was
// SIGKILLed, or hung): whatever is left in its process group dies.
func killReaperGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// reaperFinished reports whether a reaper ended on its own terms: it exits
// (or re-raises the command's signal) only after its clean-up. SIGKILL is
// the exception: the command may have been killed by it, but so may the
// reaper itself have been, before cleaning up.
func reaperFinished(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && (ws.Exited() || ws.Signaled() && ws.Signal() != syscall.SIGKILL)
}
