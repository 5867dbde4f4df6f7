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
	f := fields(fmt.Sprintf("/proc/%d/status", pid), nil)
	return f["VmRSS"], f["VmHWM"]
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
	f := fields(fmt.Sprintf("/proc/%d/io", pid), nil)
	return f["syscr"], f["syscw"]
}

// Rollup returns the named fields of /proc/PID/smaps_rollup (Rss, Pss,
// Anonymous, Shared_Clean, Private_Clean, ...) in KiB, and the thread count
// from /proc/PID/status under "Threads". It tells memory the process owns
// (anonymous: heap, stacks) from the executable's pages it maps, which the
// page cache holds and other processes running the same file share.
func Rollup(pid int) map[string]int64 {
	out := fields(fmt.Sprintf("/proc/%d/smaps_rollup", pid), nil)
	return fields(fmt.Sprintf("/proc/%d/status", pid), out)
}

// fields adds the "Key: number ..." lines of a /proc file to into (a new
// map if nil): the number only, in the file's unit (kB for sizes).
func fields(path string, into map[string]int64) map[string]int64 {
	if into == nil {
		into = map[string]int64{}
	}
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				into[k] = n
			}
		}
	}
	return into
}
