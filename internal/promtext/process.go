package promtext

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// procRoot is where /proc is; tests point it at a fake tree.
var procRoot = "/proc"

// userHZ is the unit of /proc's CPU times. It is 100 on every Linux
// architecture Go supports (the kernel's USER_HZ, not its HZ), which is
// also what the Prometheus client assumes.
const userHZ = 100

// WriteProcess writes the standard process_* metrics of the running
// process (those of the Prometheus client's process collector that
// dashboards use) and a few go_* ones. A value that cannot be read is left
// out rather than written as 0.
func WriteProcess(w *Writer) {
	if st, ok := readStat(); ok {
		w.Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter")
		w.Sample("process_cpu_seconds_total", nil, float64(st.utime+st.stime)/userHZ)
		w.Family("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge")
		w.Sample("process_resident_memory_bytes", nil, float64(st.rss*int64(os.Getpagesize())))
		w.Family("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge")
		w.Sample("process_virtual_memory_bytes", nil, float64(st.vsize))
		if bt, ok := bootTime(); ok {
			w.Family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge")
			w.Sample("process_start_time_seconds", nil, float64(bt)+float64(st.start)/userHZ)
		}
	}
	if fds, err := os.ReadDir(procRoot + "/self/fd"); err == nil {
		w.Family("process_open_fds", "Number of open file descriptors.", "gauge")
		w.Sample("process_open_fds", nil, float64(len(fds)))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		w.Family("process_max_fds", "Maximum number of open file descriptors.", "gauge")
		w.Sample("process_max_fds", nil, float64(rl.Cur))
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Family("go_goroutines", "Number of goroutines that currently exist.", "gauge")
	w.Sample("go_goroutines", nil, float64(runtime.NumGoroutine()))
	w.Family("go_info", "Information about the Go environment.", "gauge")
	w.Sample("go_info", []Label{{"version", runtime.Version()}}, 1)
	w.Family("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", "gauge")
	w.Sample("go_memstats_alloc_bytes", nil, float64(ms.HeapAlloc))
	w.Family("go_memstats_sys_bytes", "Number of bytes obtained from system.", "gauge")
	w.Sample("go_memstats_sys_bytes", nil, float64(ms.Sys))
	w.Family("go_gc_cycles_total", "Number of completed GC cycles.", "counter")
	w.Sample("go_gc_cycles_total", nil, float64(ms.NumGC))
}

type procStat struct {
	utime, stime, start, vsize, rss int64
}

// readStat reads /proc/self/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func readStat() (procStat, bool) {
	b, err := os.ReadFile(procRoot + "/self/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(field int) int64 {
		v, _ := strconv.ParseInt(string(f[field-3]), 10, 64)
		return v
	}
	return procStat{utime: num(14), stime: num(15), start: num(22), vsize: num(23), rss: num(24)}, true
}

// bootTime is btime of /proc/stat: the boot time in seconds since the
// epoch, which process start times count from.
func bootTime() (int64, bool) {
	b, err := os.ReadFile(procRoot + "/stat")
	if err != nil {
		return 0, false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
