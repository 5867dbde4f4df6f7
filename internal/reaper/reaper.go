// Package reaper is the process every monitor command runs under: it
// runs the command, and when the command exits, or the agent dies or asks
// it to stop, it kills and reaps every process the command left below it,
// and then exits as the command did. Why, and how the agent starts it:
// internal/monitor/reaper.go.
//
// It is its own package, with nothing but the standard library below it
// (and internal/execpages and internal/hugepages, which have nothing else
// below them either),
// so that it can be its own small executable (cmd/feedbackd-monitor-reaper):
// started from the agent's executable instead, a reaper first initialises
// every package the agent links (90 of them: TLS, HTTP, gopsutil), at every
// exec sample.
package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/lvs-feedbackd/feedbackd/internal/execpages"
	"github.com/lvs-feedbackd/feedbackd/internal/hugepages"
)

// Name is argv[0] of a reaper process, whichever executable runs it.
const Name = "feedbackd-monitor-reaper"

// CleanupLimit bounds how long a reaper keeps killing. Only a
// process stuck in the kernel (D state) outlasts SIGKILL; the reaper then
// gives up on it rather than hold the sample for ever.
const CleanupLimit = 2 * time.Second

// Linux prctl(2) options; the syscall package has no names for them.
const (
	prSetDumpable        = 4
	prSetChildSubreaper  = 36
	wnohang              = 1 // wait4(2) WNOHANG
	rtSigactionSigsetLen = 8 // sizeof(sigset_t) as rt_sigaction(2) wants it
)

// ParentDeathSignal is what the kernel sends a reaper when the agent dies
// (PDEATHSIG). Not SIGTERM, the agent's own stop request: the kernel also
// sends it when merely the agent's thread that started the reaper ends
// (golang/go#27505), and the reaper must then tell the two apart, by its
// parent pid, which changes only when the agent is gone.
const ParentDeathSignal = syscall.SIGUSR1

// DropAfter is how long a reaper waits on its command before it unmaps
// the executable pages its start touched (execpages.Drop). A reaper that
// waits that long is a long-lived one, the perl interpreter's, which then
// runs almost nothing until its command ends; an exec sample's reaper is
// usually gone long before, and pays nothing.
const DropAfter = 10 * time.Second

// A reaper is a whole Go runtime, and Go gives it one P per CPU, each with
// its own caches: a reaper's anonymous memory was 2.3-2.6 MB with 64 Ps (a
// 64-CPU realserver), 0.95 MB with one. It waits on one command, so one P
// is all it uses. The runtime reads GOMAXPROCS before any of our code runs,
// so the reaper gets it in its environment; its command must not, so the
// agent's own value travels beside it, in procsVar, and the reaper puts it
// back (commandEnv).
const (
	procsVar  = "FEEDBACKD_REAPER_GOMAXPROCS"
	unsetMark = "-" // the agent had no GOMAXPROCS
)

// Env is the reaper's environment: env with GOMAXPROCS=1, and the
// agent's GOMAXPROCS, if any, kept in procsVar.
func Env(env []string) []string {
	saved := unsetMark
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			saved = "=" + v
			continue
		}
		if strings.HasPrefix(kv, procsVar+"=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GOMAXPROCS=1", procsVar+"="+saved)
}

// commandEnv undoes Env: the environment the command gets is the
// agent's. An environment without procsVar is passed on as it is.
func commandEnv(env []string) []string {
	saved, found := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, procsVar+"="); ok {
			saved, found = v, true
		}
	}
	if !found {
		return env
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, procsVar+"=") {
			out = append(out, kv)
		}
	}
	if v, ok := strings.CutPrefix(saved, "="); ok {
		out = append(out, "GOMAXPROCS="+v)
	}
	return out
}

// Main is the reaper process: run argv, then kill and reap every
// process left below, and exit as the command did.
func Main(argv []string) int {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		fmt.Fprintf(os.Stderr, "feedbackd monitor: cannot become a subreaper (%v); processes the command leaves behind may survive it\n", e)
	}
	// Before the command starts, so that a stop request cannot be lost.
	// The parent pid is read first for the same reason: should the agent
	// die before this, the reaper already has another parent, and no
	// signal will come; its command then runs to its end (a perl
	// interpreter ends at once, its requests' pipe being closed).
	parent := os.Getppid()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, ParentDeathSignal)

	// The command stays in the reaper's process group, so the agent's
	// last resort (killReaperGroup) reaches it too. Only stdin, stdout and
	// stderr are passed on: everything else the reaper has is close-on-exec.
	// The command starts with the kernel's huge-page setting, not the
	// one the agent chose for itself and its reapers.
	env, keepSmall := hugepages.ForCommand(commandEnv(os.Environ()))
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
	})
	keepSmall()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", argv[0], err)
		return 127
	}

	dropping := time.AfterFunc(DropAfter, func() { execpages.Drop() })
	defer dropping.Stop()

	// Wait for the command, reaping whatever else is re-parented here in
	// the meantime (a background child that exits on its own).
	exited := make(chan syscall.WaitStatus, 1)
	go func() {
		for {
			var ws syscall.WaitStatus
			p, err := syscall.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				// ECHILD: cannot happen while the command is ours.
				exited <- syscall.WaitStatus(0xff00) // "exit status 255"
				return
			}
			if p == pid {
				exited <- ws
				return
			}
		}
	}()
	var ws syscall.WaitStatus
wait:
	for {
		select {
		case ws = <-exited:
			break wait
		case sig := <-stop:
			if sig == ParentDeathSignal && os.Getppid() == parent {
				continue // a thread of the agent ended, not the agent
			}
			killDescendants(os.Getpid())
			ws = <-exited
			break wait
		}
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, ParentDeathSignal)
	if left := cleanUp(time.Now().Add(CleanupLimit)); left > 0 {
		fmt.Fprintf(os.Stderr, "feedbackd monitor: %d processes left by the command could not be killed\n", left)
	}
	return exitLike(ws)
}

// cleanUp kills and reaps every descendant of this process until none is
// left or the deadline passes; it returns how many were left. As a
// subreaper with no children has no descendants at all, a wait4 that says
// ECHILD is the proof that all is gone.
func cleanUp(deadline time.Time) int {
	self := os.Getpid()
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, wnohang, nil)
		switch {
		case errors.Is(err, syscall.ECHILD):
			return 0
		case errors.Is(err, syscall.EINTR) || p > 0:
			continue // reaped one; look again
		}
		// Children, none of them dead yet.
		n := killDescendants(self)
		if time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}

// killDescendants sends SIGKILL to every process below pid and returns how
// many there were. All of them at once, not only pid's children: killing a
// parent first would let its children run on until the next round.
func killDescendants(pid int) int {
	ds := Descendants("/proc", pid)
	for _, d := range ds {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	return len(ds)
}

// Descendants lists every process below pid, from procRoot/PID/stat.
// Zombies are included: they are gone once reaped, not before. (The
// benches use it too, to add up an agent's monitor processes.)
func Descendants(procRoot string, pid int) []int {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	children := map[int][]int{}
	for _, name := range names {
		p, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if pp, ok := parentOf(procRoot, p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		out = append(out, children[p]...)
		todo = append(todo, children[p]...)
	}
	return out
}

// parentOf reads the parent pid from procRoot/PID/stat: "pid (comm) S ppid ...".
// The command name may hold spaces and parentheses, so the fields are
// counted from the last ")".
func parentOf(procRoot string, pid int) (int, bool) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// exitLike ends the reaper the way the command ended, so that the agent
// sees "exit status 3" or "signal: segmentation fault" as if it had run the
// command itself. A signal is raised again on the reaper with its default
// action restored (the Go runtime handles some signals itself); core dumps
// are turned off first, as the reaper's core would describe nothing.
func exitLike(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		sig := ws.Signal()
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0)
		// An all-zero struct sigaction is SIG_DFL with no flags on every
		// architecture; 64 bytes cover the largest.
		var dfl [8]uint64
		_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, rtSigactionSigsetLen, 0, 0)
		_ = syscall.Kill(os.Getpid(), sig)
		time.Sleep(100 * time.Millisecond)
		return 128 + int(sig) // the signal was ignored after all
	}
	return 255
}
