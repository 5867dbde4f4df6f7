// Command expreport turns the load-balancing experiment's raw results
// (test/experiment/run.sh) into the numbers of docs/experiment.md and the
// data files that plot.gp draws.
//
//	expreport -dir OUT
//
// It reads, for each run R in static and feedback, OUT/R.csv and OUT/R.meta
// (from loadgen) and OUT/R.weights.csv (from the guest's sampler: unix
// milliseconds, the three IPVS weights, the three realserver slices'
// usage_usec), and writes OUT/results.md (the table), OUT/R.lat.dat
// (per request: time, latency, realserver), OUT/R.win.dat (per 5 s window:
// p50, p95) and OUT/R.cpu.dat (per sample: weights and each slice's CPU
// use in per cent of one CPU).
package main

import (
	"bufio"
	"encoding/csv"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

var servers = []string{"rs1", "rs2", "rs3"}

type req struct {
	t, lat float64 // seconds from the start; milliseconds
	server string
	status string
}

type run struct {
	name  string
	reqs  []req
	meta  map[string]string
	hog   float64 // seconds from the start
	end   float64 // the last scheduled time
	tmout float64 // ms
}

func readMeta(p string) map[string]string {
	b, err := os.ReadFile(p)
	if err != nil {
		log.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func num(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		log.Fatalf("%q: %v", s, err)
	}
	return f
}

func load(dir, name string) *run {
	r := &run{name: name, meta: readMeta(filepath.Join(dir, name+".meta"))}
	r.hog = num(r.meta["event0_s"])
	r.end = num(r.meta["duration_s"])
	r.tmout = num(r.meta["timeout_s"]) * 1000
	f, err := os.Open(filepath.Join(dir, name+".csv"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	for _, row := range rows[1:] {
		r.reqs = append(r.reqs, req{t: num(row[1]), lat: num(row[3]), server: row[4], status: row[5]})
	}
	return r
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

type phase struct {
	n                   int
	share               map[string]float64
	p50, p95, p99       float64
	failed, failedShare float64
}

// stats over requests scheduled in [from, to). A request that timed out
// or failed counts with the time it took to fail: for a timeout that is
// the timeout, a lower bound of its real latency.
func stats(r *run, from, to float64) phase {
	ph := phase{share: map[string]float64{}}
	var lats []float64
	for _, q := range r.reqs {
		if q.t < from || q.t >= to {
			continue
		}
		ph.n++
		lats = append(lats, q.lat)
		if q.status == "ok" {
			ph.share[q.server]++
		} else {
			ph.failed++
		}
	}
	sort.Float64s(lats)
	ph.p50, ph.p95, ph.p99 = pct(lats, 50), pct(lats, 95), pct(lats, 99)
	for k := range ph.share {
		ph.share[k] = 100 * ph.share[k] / float64(ph.n)
	}
	ph.failedShare = 100 * ph.failed / float64(max(ph.n, 1))
	return ph
}

func ms(v, timeout float64) string {
	if v >= timeout {
		return fmt.Sprintf("≥ %.0f", timeout)
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func writeDat(dir, name string, r *run) {
	f, err := os.Create(filepath.Join(dir, name+".lat.dat"))
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# t_s latency_ms server(1-3, 0 = failed)")
	for _, q := range r.reqs {
		idx := 0
		if q.status == "ok" {
			idx = sort.SearchStrings(servers, q.server) + 1
		}
		fmt.Fprintf(w, "%.3f %.3f %d\n", q.t, q.lat, idx)
	}
	w.Flush()
	f.Close()

	f, err = os.Create(filepath.Join(dir, name+".win.dat"))
	if err != nil {
		log.Fatal(err)
	}
	w = bufio.NewWriter(f)
	fmt.Fprintln(w, "# window_center_s p50_ms p95_ms (5 s windows)")
	for t := 0.0; t < r.end; t += 5 {
		s := stats(r, t, t+5)
		if s.n > 0 {
			fmt.Fprintf(w, "%.1f %.3f %.3f\n", t+2.5, s.p50, s.p95)
		}
	}
	w.Flush()
	f.Close()
}

// writeCPU converts the guest's sampler file: weights, and each slice's
// CPU use between two samples in per cent of one CPU.
func writeCPU(dir, name string, r *run) {
	f, err := os.Open(filepath.Join(dir, name+".weights.csv"))
	if err != nil {
		log.Printf("no weights file for %s: %v", name, err)
		return
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	start := num(r.meta["start_unix_ms"])
	o, err := os.Create(filepath.Join(dir, name+".cpu.dat"))
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(o)
	fmt.Fprintln(w, "# t_s w1 w2 w3 cpu1_pct cpu2_pct cpu3_pct")
	var prev []string
	for _, row := range rows {
		if len(row) != 7 || row[0] == "unix_ms" {
			continue
		}
		if prev != nil {
			dt := (num(row[0]) - num(prev[0])) * 1000 // µs
			t := (num(row[0]) - start) / 1000
			if dt > 0 {
				fmt.Fprintf(w, "%.2f %s %s %s", t, row[1], row[2], row[3])
				for i := 4; i < 7; i++ {
					fmt.Fprintf(w, " %.1f", 100*(num(row[i])-num(prev[i]))/dt)
				}
				fmt.Fprintln(w)
			}
		}
		prev = row
	}
	w.Flush()
	o.Close()
}

func main() {
	dir := flag.String("dir", "test/experiment/out", "results directory")
	warm := flag.Float64("warmup", 10, "seconds at the start left out of the 'before' phase")
	settle := flag.Float64("settle", 15, "seconds after the hog started left out of the 'after, settled' phase")
	flag.Parse()
	runs := []*run{load(*dir, "static"), load(*dir, "feedback")}
	var b strings.Builder
	fmt.Fprintf(&b, "| run | phase | requests | rs1 | rs2 | rs3 | failed | p50 ms | p95 ms | p99 ms |\n")
	fmt.Fprintf(&b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	after := map[string]phase{}
	settled := map[string]phase{}
	for _, r := range runs {
		for _, p := range []struct {
			label    string
			from, to float64
		}{
			{fmt.Sprintf("before the hog (%.0f–%.0f s)", *warm, r.hog), *warm, r.hog},
			{fmt.Sprintf("after the hog (%.0f–%.0f s)", r.hog, r.end), r.hog, r.end},
			{fmt.Sprintf("after, settled (%.0f–%.0f s)", r.hog+*settle, r.end), r.hog + *settle, r.end},
		} {
			s := stats(r, p.from, p.to)
			if p.from == r.hog {
				after[r.name] = s
			}
			if p.from == r.hog+*settle {
				settled[r.name] = s
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.1f %% | %.1f %% | %.1f %% | %.1f %% | %s | %s | %s |\n",
				r.name, p.label, s.n, s.share["rs1"], s.share["rs2"], s.share["rs3"], s.failedShare,
				ms(s.p50, r.tmout), ms(s.p95, r.tmout), ms(s.p99, r.tmout))
		}
		writeDat(*dir, r.name, r)
		writeCPU(*dir, r.name, r)
	}
	red := func(m map[string]phase) float64 { return 100 * (1 - m["feedback"].p95/m["static"].p95) }
	fmt.Fprintf(&b, "\np95 after the hog: static %.0f ms, feedback %.0f ms: %.0f %% lower with feedbackd (goal: at least 30 %%): %s\n",
		after["static"].p95, after["feedback"].p95, red(after), map[bool]string{true: "met", false: "NOT met"}[red(after) >= 30])
	fmt.Fprintf(&b, "p95 after the hog, settled: static %.0f ms, feedback %.0f ms: %.0f %% lower\n",
		settled["static"].p95, settled["feedback"].p95, red(settled))
	if err := os.WriteFile(filepath.Join(*dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Print(b.String())
}
