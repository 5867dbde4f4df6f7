// Package hugepages keeps a small daemon off transparent huge pages where
// the kernel would give them to every process (THP "always"), and gives
// the commands it runs the kernel's setting back.
//
// Why: with THP "always", the first touch of an aligned 2 MB of a Go
// heap's address space takes a whole 2 MB page. A daemon whose heap is a
// few hundred KB pays for the whole page: the agent's anonymous memory
// was 4.2-4.4 MB instead of 1.8-2.0 thirty seconds after its start, and
// its process tree's (with the reapers) 9.6 instead of 4.4 MB. Huge pages
// speed up large working sets, which the agent does not have. Measured in
// docs/benchmarks.md, "Transparent huge pages".
//
// How: prctl(PR_SET_THP_DISABLE), which applies to the process and, across
// fork and exec, to everything it starts. The Go runtime has mapped and
// touched its heap before main runs, so the agent sets it and then starts
// its own executable again, once (the process keeps its pid: systemd sees
// nothing). The reaper clears it for the monitor command, so that an
// operator's command sees the kernel's setting, as before.
//
// Only the standard library is below it, so that the reaper can use it.
package hugepages

import (
	"os"
	"strings"
	"syscall"
)

// Marker is in the environment of an agent that set the flag itself, and
// of its reapers; the reaper takes it out for the command.
const Marker = "FEEDBACKD_SMALL_PAGES"

// prctl(2) options; the syscall package has no names for them.
const (
	prSetTHPDisable = 41
	prGetTHPDisable = 42
)

// enabledPath is where the kernel says its THP mode, and execve how the
// process starts itself again; tests replace them.
var (
	enabledPath = "/sys/kernel/mm/transparent_hugepage/enabled"
	execve      = syscall.Exec
)

// Always says whether the kernel's THP mode, as enabledPath reads
// ("always [madvise] never"), is "always": the only one in which a process
// that asks for nothing gets huge pages.
func Always(mode string) bool {
	return strings.Contains(mode, "[always]")
}

// Avoid sets PR_SET_THP_DISABLE and starts this executable again with
// Marker in its environment, if the kernel gives huge pages to everyone and
// neither this process nor an earlier start of it already asked for none.
// On success it does not return. It returns nil when there was nothing to
// do, and an error when it could not do it; the process then runs on as it
// was, which costs memory, not correctness.
func Avoid() error {
	if os.Getenv(Marker) != "" || Disabled() {
		return nil
	}
	mode, err := os.ReadFile(enabledPath)
	if err != nil || !Always(string(mode)) {
		return nil // no THP at all, or not for everyone
	}
	if err := SetDisabled(true); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err == nil {
		err = execve(exe, os.Args, append(os.Environ(), Marker+"=1"))
	}
	// Not started again: without the marker the reapers could not tell
	// the flag was the agent's, and commands would inherit it.
	SetDisabled(false)
	return err
}

// ForCommand is for a reaper about to start its command with env: if the
// agent set the flag itself (Marker), it takes Marker out of env and
// clears the flag, so that the command starts with the kernel's setting,
// and returns the function that sets it again once the command is started.
func ForCommand(env []string) ([]string, func()) {
	out := env[:0:0]
	mine := false
	for _, kv := range env {
		if strings.HasPrefix(kv, Marker+"=") {
			mine = true
			continue
		}
		out = append(out, kv)
	}
	if !mine {
		return env, func() {}
	}
	SetDisabled(false)
	return out, func() { SetDisabled(true) }
}

// Disabled says whether this process runs with PR_SET_THP_DISABLE.
func Disabled() bool {
	// All six arguments: the kernel refuses these options when an unused
	// one is not zero.
	r, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prGetTHPDisable, 0, 0, 0, 0, 0)
	return e == 0 && r == 1
}

// SetDisabled sets or clears PR_SET_THP_DISABLE for this process.
func SetDisabled(on bool) error {
	v := uintptr(0)
	if on {
		v = 1
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetTHPDisable, v, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}
