// Command faults tells what maps a running agent's executable pages back
// after its periodic unmapping (internal/execpages), and what else it
// touches for the first time: it records every page fault of the process
// with perf, with call chains, and lists those after the last unmapping in
// the recording, each with its time, the ELF section it fell in and the
// code that touched it. The executable must keep its symbols (no -s -w).
//
// Why faults, not residency: the kernel maps a whole 64 KB window of a
// file around each page touched (fault-around), so test/bench/residency
// shows which windows are mapped but not who needed them; the first touch
// of each window is a fault, and its call chain says who.
//
//	CGO_ENABLED=0 go build -trimpath -o /tmp/sym/feedbackd-agent ./cmd/feedbackd-agent
//	go run ./test/bench/faults -pid PID -for 40s
//
// Needs perf (Debian: linux-perf) and the right to trace the process.
package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	pid := flag.Int("pid", 0, "process to record")
	dur := flag.Duration("for", 40*time.Second, "how long to record: more than one unmapping period")
	mark := flag.String("after", "execpages.(*Pages).Drop", "list the faults after the last one whose call chain has this function")
	frames := flag.Int("frames", 4, "call-chain frames to print from each end")
	flag.Parse()
	if err := run(*pid, *dur, *mark, *frames); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
}

// fault is one recorded page fault of the process.
type fault struct {
	t      float64 // seconds, perf's clock
	addr   uint64
	frames []string // innermost first, the process's own frames only
}

func run(pid int, dur time.Duration, mark string, nframes int) error {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	path, err := os.Readlink(exe)
	if err != nil {
		return err
	}
	// The sections are read now: the process may be gone when perf is.
	secs, err := sections(exe)
	if err != nil {
		return err
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "faults-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "perf.data")
	// -c 1: every fault, not a sample of them; -d: the faulting address.
	rec := exec.Command("perf", "record", "-q", "-c", "1", "-e", "page-faults", "-d", "-g",
		"-p", strconv.Itoa(pid), "-o", data, "--", "sleep", strconv.FormatFloat(dur.Seconds(), 'f', 3, 64))
	rec.Stderr = os.Stderr
	if err := rec.Run(); err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	out, err := exec.Command("perf", "script", "-i", data, "-F", "comm,tid,time,addr,ip,sym,dso",
		"--comms", strings.TrimSpace(string(comm))).Output()
	if err != nil {
		return fmt.Errorf("perf script: %w", err)
	}
	fs, err := parse(bytes.NewReader(out), path)
	if err != nil {
		return err
	}
	if len(fs) == 0 {
		return fmt.Errorf("no faults recorded for pid %d", pid)
	}
	from, found := 0, false
	for i, f := range fs {
		for _, fr := range f.frames {
			if strings.Contains(fr, mark) {
				from, found = i, true
			}
		}
	}
	t0 := fs[from].t
	if found {
		fmt.Printf("%s (pid %d): faults from the last %s in %s of recording\n", path, pid, mark, dur)
	} else {
		fmt.Printf("%s (pid %d): no %s in %s of recording; all faults\n", path, pid, mark, dur)
	}
	perSec := map[string]int{}
	windows := map[string]map[uint64]bool{}
	for _, f := range fs[from:] {
		s := secs.of(f.addr)
		perSec[s]++
		if windows[s] == nil {
			windows[s] = map[uint64]bool{}
		}
		windows[s][f.addr>>16] = true
		fmt.Printf("  %+8.3fs %-11s %12x  %s\n", f.t-t0, s, f.addr, chain(f.frames, nframes))
	}
	names := make([]string, 0, len(perSec))
	for s := range perSec {
		names = append(names, s)
	}
	sort.Strings(names)
	fmt.Println("per section: faults, distinct 64 KB windows")
	for _, s := range names {
		fmt.Printf("  %-11s %5d %5d\n", s, perSec[s], len(windows[s]))
	}
	return nil
}

// chain prints the innermost and outermost n frames of a call chain.
func chain(frames []string, n int) string {
	short := make([]string, 0, len(frames))
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.goexit") {
			continue
		}
		short = append(short, strings.ReplaceAll(f, "github.com/lvs-feedbackd/feedbackd/internal/", "~"))
	}
	if len(short) <= 2*n {
		return strings.Join(short, " < ")
	}
	return strings.Join(short[:n], " < ") + " < … < " + strings.Join(short[len(short)-n:], " < ")
}

// parse reads perf script's output: a header line per fault ("comm tid
// time: addr"), then its call chain, one "ip sym (dso)" per line, then a
// blank line. Frames in other objects (the kernel) are left out.
func parse(r io.Reader, exe string) ([]fault, error) {
	var out []fault
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur *fault
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			cur = nil
		case cur == nil:
			f := strings.Fields(line)
			if len(f) < 4 {
				return nil, fmt.Errorf("perf script: %q", line)
			}
			t, err1 := strconv.ParseFloat(strings.TrimSuffix(f[2], ":"), 64)
			a, err2 := strconv.ParseUint(f[3], 16, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("perf script: %q", line)
			}
			out = append(out, fault{t: t, addr: a})
			cur = &out[len(out)-1]
		default:
			// "      4c6dc0 time.sendTime (/tmp/sym/feedbackd-agent)"
			f := strings.TrimSpace(line)
			_, rest, _ := strings.Cut(f, " ")
			sym, dso, ok := strings.Cut(rest, " (")
			if ok && strings.TrimSuffix(dso, ")") == exe {
				cur.frames = append(cur.frames, sym)
			}
		}
	}
	return out, sc.Err()
}

// section is one loaded section of an executable, by address.
type section struct {
	name     string
	lo, size uint64
}

// secTable is the loaded sections of an executable.
type secTable []section

func sections(exe string) (secTable, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var t secTable
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Size > 0 {
			t = append(t, section{s.Name, s.Addr, s.Size})
		}
	}
	return t, nil
}

// of names the section addr falls in; outside them it is anonymous memory
// (heap, stacks, the runtime's own) or another file.
func (t secTable) of(addr uint64) string {
	for _, s := range t {
		if addr >= s.lo && addr < s.lo+s.size {
			return s.name
		}
	}
	return "(anonymous)"
}
