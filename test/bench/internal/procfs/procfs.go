// Package procfs reads the per-process figures the bench programs report.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MemKB returns VmRSS and VmHWM (peak RSS) of pid in KiB.
func MemKB(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return
}

// CPUTicks is utime+stime of pid in clock ticks (/proc/PID/stat fields 14
// and 15, counted after the parenthesised command name, which may hold
// spaces).
func CPUTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// Syscalls returns the read-family and write-family system calls pid has
// made (/proc/PID/io syscr, syscw: read, readv, pread and the like; recv
// and send are not counted).
func Syscalls(pid int) (reads, writes int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return
}

// Rollup returns the named fields of /proc/PID/smaps_rollup (Rss, Pss,
// Anonymous, Shared_Clean, Private_Clean, ...) in KiB, and the thread count
// from /proc/PID/status under "Threads". It tells memory the process owns
// (anonymous: heap, stacks) from the executable's pages it maps, which the
// page cache holds and other processes running the same file share.
func Rollup(pid int) map[string]int64 {
	out := map[string]int64{}
	for _, f := range []string{"smaps_rollup", "status"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			fs := strings.Fields(v)
			if len(fs) == 0 {
				continue
			}
			if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// Descendants returns the pids of every process below pid (children,
// their children, ...), from the parent field of /proc/*/stat.
func Descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			kids[pp] = append(kids[pp], p)
		}
	}
	var out []int
	for todo := kids[pid]; len(todo) > 0; {
		p := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], kids[p]...)
		out = append(out, p)
	}
	return out
}
