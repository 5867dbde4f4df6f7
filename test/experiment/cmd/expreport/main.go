// Command expreport turns the load-balancing experiment's raw results
// (test/experiment/run.sh) into the numbers of docs/experiment.md and the
// data files that plot.gp draws.
//
//	expreport -dir OUT
//
// It reads, for each run R in static, feedback and feedback-damped,
// OUT/R.csv and OUT/R.meta (from loadgen) and OUT/R.weights.csv (from the
// guest's sampler: unix milliseconds, the three IPVS weights, the three
// realserver slices' usage_usec), and writes OUT/results.md (the latency
// table and the weight-oscillation table), OUT/R.lat.dat (per request:
// time, latency, realserver), OUT/R.win.dat (per 5 s window: p50, p95)
// and OUT/R.cpu.dat (per sample: weights and each slice's CPU use in per
// cent of one CPU).
//
// It also reads OUT/journal.txt (the guest's journal, short-monotonic) for
// the master's "weight changed" lines: every weight it wrote, with the
// target the health asked for, timed from the guest's "NAME: ...s at" line
// that precedes the run's load generator by a fraction of a second.
//
// A run whose files are missing is left out with a note (an older results
// directory has no feedback-damped run).
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

// weightSample is one line of the sampler: seconds from the start and the
// three IPVS weights (NaN where the destination was missing).
type weightSample struct {
	t float64
	w [3]float64
}

func readWeights(dir string, r *run) []weightSample {
	f, err := os.Open(filepath.Join(dir, r.name+".weights.csv"))
	if err != nil {
		log.Printf("no weights file for %s: %v", r.name, err)
		return nil
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	start := num(r.meta["start_unix_ms"])
	var out []weightSample
	for _, row := range rows {
		if len(row) != 7 || row[0] == "unix_ms" {
			continue
		}
		s := weightSample{t: (num(row[0]) - start) / 1000}
		for i := range 3 {
			s.w[i] = math.NaN()
			if v, err := strconv.ParseFloat(row[1+i], 64); err == nil {
				s.w[i] = v
			}
		}
		out = append(out, s)
	}
	return out
}

// oscillation of the IPVS weights over samples in [from, to).
type oscillation struct {
	samples   int
	changes   [3]int     // sample-to-sample changes of each weight
	perMin    float64    // all three weights' changes per minute
	mean, sd  [3]float64 // each weight's mean and standard deviation
	allZero   int        // samples in which no destination had a weight above 0
	allZeroPc float64
}

func oscillate(ws []weightSample, from, to float64) oscillation {
	var o oscillation
	var sum, sq [3]float64
	var n [3]int
	var prev *weightSample
	for k := range ws {
		s := &ws[k]
		if s.t < from || s.t >= to {
			continue
		}
		o.samples++
		zero := true
		for i := range 3 {
			if math.IsNaN(s.w[i]) {
				continue
			}
			n[i]++
			sum[i] += s.w[i]
			sq[i] += s.w[i] * s.w[i]
			if s.w[i] > 0 {
				zero = false
			}
			if prev != nil && !math.IsNaN(prev.w[i]) && prev.w[i] != s.w[i] {
				o.changes[i]++
			}
		}
		if zero {
			o.allZero++
		}
		prev = s
	}
	for i := range 3 {
		o.mean[i], o.sd[i] = math.NaN(), math.NaN()
		if n[i] > 0 {
			o.mean[i] = sum[i] / float64(n[i])
			o.sd[i] = math.Sqrt(max(0, sq[i]/float64(n[i])-o.mean[i]*o.mean[i]))
		}
	}
	o.perMin = float64(o.changes[0]+o.changes[1]+o.changes[2]) / ((to - from) / 60)
	o.allZeroPc = 100 * float64(o.allZero) / float64(max(o.samples, 1))
	return o
}

// write is one weight the master wrote, from its journal.
type write struct {
	t              float64 // seconds from the run's start line
	server         int     // 0..2
	old, w, target int
}

// readJournal returns the master's weight writes of each run, keyed by
// run name. Writes outside a run (start-up, between runs) are dropped.
func readJournal(dir string) map[string][]write {
	f, err := os.Open(filepath.Join(dir, "journal.txt"))
	if err != nil {
		log.Printf("no journal: %v", err)
		return nil
	}
	defer f.Close()
	out := map[string][]write{}
	cur, start := "", 0.0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		open, close := strings.IndexByte(l, '['), strings.IndexByte(l, ']')
		if open != 0 || close < 0 {
			continue
		}
		mono, err := strconv.ParseFloat(strings.TrimSpace(l[1:close]), 64)
		if err != nil {
			continue
		}
		if _, msg, ok := strings.Cut(l, "experiment: "); ok {
			name, rest, _ := strings.Cut(msg, ": ")
			switch {
			case strings.Contains(rest, "s at ") && strings.Contains(rest, "req/s"):
				cur, start = name, mono
			case strings.HasPrefix(rest, "done"):
				cur = ""
			}
			continue
		}
		if cur == "" || !strings.Contains(l, "feedbackd-master[") || !strings.Contains(l, "weight changed") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(l) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		idx := -1
		for i := range servers {
			if kv["realserver"] == fmt.Sprintf("10.0.0.1%d", i+1) {
				idx = i
			}
		}
		old, e1 := strconv.Atoi(kv["old_weight"])
		w, e2 := strconv.Atoi(kv["weight"])
		target, e3 := strconv.Atoi(kv["target"])
		if idx < 0 || e1 != nil || e2 != nil || e3 != nil {
			continue
		}
		out[cur] = append(out[cur], write{t: mono - start, server: idx, old: old, w: w, target: target})
	}
	return out
}

func main() {
	dir := flag.String("dir", "test/experiment/out", "results directory")
	warm := flag.Float64("warmup", 10, "seconds at the start left out of the 'before' phase")
	settle := flag.Float64("settle", 15, "seconds after the hog started left out of the 'after, settled' phase")
	flag.Parse()
	var runs []*run
	var missing []string
	for _, name := range []string{"static", "feedback", "feedback-damped"} {
		if _, err := os.Stat(filepath.Join(*dir, name+".meta")); err != nil {
			missing = append(missing, name)
			continue
		}
		runs = append(runs, load(*dir, name))
	}
	if len(runs) == 0 || runs[0].name != "static" {
		log.Fatalf("no static run in %s", *dir)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| run | phase | requests | rs1 | rs2 | rs3 | failed | p50 ms | p95 ms | p99 ms |\n")
	fmt.Fprintf(&b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	after := map[string]phase{}
	settled := map[string]phase{}
	weights := map[string][]weightSample{}
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
		weights[r.name] = readWeights(*dir, r)
	}

	journal := readJournal(*dir)
	fmt.Fprintf(&b, "\nIPVS weights as the sampler saw them (ipvsadm -Ln, one sample every 0.5 s or as fast as the guest manages): changes of any weight per minute, each weight's mean ± standard deviation, and the share of samples in which no realserver had a weight above 0; and the weights the master wrote (its journal): writes per minute, of which cut short by weight-max-step.\n\n")
	fmt.Fprintf(&b, "| run | phase | samples | changes/min (rs1/rs2/rs3) | rs1 weight | rs2 weight | rs3 weight | all 0 | master writes/min | of them capped |\n")
	fmt.Fprintf(&b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range runs {
		for _, p := range []struct {
			label    string
			from, to float64
		}{
			{fmt.Sprintf("before the hog (%.0f–%.0f s)", *warm, r.hog), *warm, r.hog},
			{fmt.Sprintf("after the hog (%.0f–%.0f s)", r.hog, r.end), r.hog, r.end},
		} {
			o := oscillate(weights[r.name], p.from, p.to)
			writes, capped := 0, 0
			for _, w := range journal[r.name] {
				if w.t >= p.from && w.t < p.to {
					writes++
					if w.w != w.target {
						capped++
					}
				}
			}
			wr := "–"
			if r.name != "static" {
				wr = fmt.Sprintf("%.1f | %d", float64(writes)/((p.to-p.from)/60), capped)
			} else {
				wr += " | –"
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.1f (%d/%d/%d) | %.1f ± %.1f | %.1f ± %.1f | %.1f ± %.1f | %.1f %% | %s |\n",
				r.name, p.label, o.samples, o.perMin, o.changes[0], o.changes[1], o.changes[2],
				o.mean[0], o.sd[0], o.mean[1], o.sd[1], o.mean[2], o.sd[2], o.allZeroPc, wr)
		}
	}

	b.WriteString("\n")
	lower := func(m map[string]phase, a, z string) float64 { return 100 * (1 - m[z].p95/m[a].p95) }
	for _, r := range runs[1:] {
		red := lower(after, "static", r.name)
		fmt.Fprintf(&b, "p95 after the hog: static %.0f ms, %s %.0f ms: %.0f %% lower with feedbackd (goal: at least 30 %%): %s\n",
			after["static"].p95, r.name, after[r.name].p95, red, map[bool]string{true: "met", false: "NOT met"}[red >= 30])
		fmt.Fprintf(&b, "p95 after the hog, settled: static %.0f ms, %s %.0f ms: %.0f %% lower\n",
			settled["static"].p95, r.name, settled[r.name].p95, lower(settled, "static", r.name))
	}
	for _, r := range runs[1:] {
		// How long after the hog the master first wrote rs3 a weight of at
		// most a tenth of max-weight (100).
		react := "never"
		for _, w := range journal[r.name] {
			if w.server == 2 && w.t >= r.hog && w.w <= 10 {
				react = fmt.Sprintf("%.1f s", w.t-r.hog)
				break
			}
		}
		fmt.Fprintf(&b, "%s: rs3's weight first at most 10 after the hog: %s\n", r.name, react)
	}
	if _, ok := after["feedback-damped"]; ok {
		fmt.Fprintf(&b, "feedback-damped against feedback, after the hog: p95 %.0f against %.0f ms (%+.0f %%), failed %.1f against %.1f %%\n",
			after["feedback-damped"].p95, after["feedback"].p95, -lower(after, "feedback", "feedback-damped"),
			after["feedback-damped"].failedShare, after["feedback"].failedShare)
	}
	for _, m := range missing {
		fmt.Fprintf(&b, "(no %s run in this directory)\n", m)
	}
	if err := os.WriteFile(filepath.Join(*dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Print(b.String())
}
