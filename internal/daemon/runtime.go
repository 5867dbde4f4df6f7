package daemon

import (
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/execpages"
)

// The two settings below are for a daemon that idles: the agent, whose
// work is a reply every keepalive and a sample every interval. Measured in
// docs/benchmarks.md, "Agent memory over time, and per CPU".

// CapProcs lowers GOMAXPROCS to max, unless the operator chose a value
// with the GOMAXPROCS environment variable, and returns the value in force.
//
// Why: Go gives a process one P per CPU, and every P keeps its own caches
// of memory spans and the threads to run them. A daemon whose work is a
// reply and a few samples at a time gains nothing from the 64th P, but pays
// for it: the agent's anonymous memory was 1.5 MB with 2 Ps and 3.0 MB with
// 64.
func CapProcs(max int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	if runtime.GOMAXPROCS(0) > max {
		runtime.GOMAXPROCS(max)
	}
	return runtime.GOMAXPROCS(0)
}

// ReturnMemory collects the heap and gives its free pages back to the
// kernel every period, and unmaps the executable's pages that the daemon
// touched since and the page cache still holds (execpages.Drop), until
// the shell stops.
//
// Why the heap: Go does not collect a heap before it reaches 4 MB, and
// after a collection it keeps the freed pages for the next cycle. An idle
// agent allocates a little with every sample (an exec command's process
// and output), so its heap only grew: anonymous memory went from 1.5 MB
// at the start to 4.8 MB after ten minutes. Collected every 30 s it stays
// near 2.6 MB, for 0.02 % of a core. A lower GOGC did not help (each cycle
// keeps the collector's own buffers), and a memory limit is a cliff: at
// 5 MiB the agent spent 6.6 times the CPU collecting, because the
// runtime's own overhead was already close to it.
//
// Why the executable's pages: the start touches most of them once
// (package initialisation, the configuration), and an idle agent maps
// half of them again (6.1 MB before, 2.8-3.3 MB after). They are dropped
// after the collection, not before it, because the collector also reads
// the executable (its tables of functions and types): what only it reads
// stays out until the next one.
func (s *Shell) ReturnMemory(period time.Duration) {
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		said := false
		for {
			select {
			case <-s.Ctx.Done():
				return
			case <-t.C:
				debug.FreeOSMemory()
				said = s.dropPages(said)
			}
		}
	}()
}

// dropPages unmaps the executable's pages (execpages.Pages.Drop),
// shaped so that the pages touched at rest come back one by one. Until it
// has said something, it says what the first drop took out of the
// resident set, so that an operator who sees the RSS fall after the start
// knows why, or why it could not: a failure would be the same every
// period, and costs memory, not correctness. It returns whether it has
// said it.
func (s *Shell) dropPages(said bool) bool {
	if said {
		if s.pages != nil {
			s.pages.Drop()
			s.sayShaping()
		}
		return true
	}
	var before int64
	p, err := execpages.Own(true)
	if err == nil {
		before, err = p.Resident()
	}
	if err == nil {
		_, err = p.Drop()
	}
	if err != nil {
		s.log.Warn("cannot unmap the executable's unused pages; the resident set stays larger", "err", err)
		return true
	}
	s.pages = p
	after, _ := p.Resident()
	areas, _ := p.Areas()
	s.log.Info("unmapped the executable's pages, which the page cache keeps; those used again come back",
		"resident_before_kb", before>>10, "resident_after_kb", after>>10, "areas", areas)
	s.sayShaping()
	return true
}

// sayShaping warns, once, that the pages are no longer shaped one by one:
// the kernel refused a split (vm.max_map_count, say). They are still
// dropped, and come back in windows as without shaping.
func (s *Shell) sayShaping() {
	if _, err := s.pages.Areas(); err != nil && s.shaped == nil {
		s.shaped = err
		s.log.Warn("cannot keep the executable's pages in areas of their own; those used again come back 64 KB at a time", "err", err)
	}
}
