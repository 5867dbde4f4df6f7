package cli

import (
	"os"
	"runtime"
)

// CapProcs lowers GOMAXPROCS to max, unless the operator chose a value
// with the GOMAXPROCS environment variable, and returns the value in force.
//
// Why: Go gives a process one P per CPU, and every P keeps its own caches
// of memory spans and the threads to run them. A daemon whose work is a
// reply and a few samples at a time gains nothing from the 64th P, but pays
// for it: the agent's anonymous memory was 1.5 MB with 2 Ps and 3.0 MB with
// 64 (docs/benchmarks.md, "Agent idle memory").
func CapProcs(max int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	if runtime.GOMAXPROCS(0) > max {
		runtime.GOMAXPROCS(max)
	}
	return runtime.GOMAXPROCS(0)
}
