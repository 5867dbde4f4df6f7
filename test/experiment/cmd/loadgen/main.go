// Command loadgen is the client of the load-balancing experiment: an open
// loop load generator. Requests are sent at Poisson arrival times drawn
// from a fixed seed, each on a new TCP connection (so that IPVS schedules
// every request), whether or not earlier ones have been answered; the
// latency of a request is measured from its scheduled time, so time spent
// queueing anywhere, in the generator included, counts.
//
//	loadgen -addr 192.0.2.10:80 -rate 40 -duration 150s -seed 1 \
//	    -at '60s=systemctl start hog' -out run.csv -meta run.meta
//
// The CSV has one line per request, in order of scheduled time:
//
//	seq,sched_s,lag_ms,latency_ms,server,status
//
// sched_s is the scheduled time from the start, lag_ms how late the
// generator itself was to send it, latency_ms the time from the scheduled
// time to the end of the answer (or to the failure), server the
// realserver's name from the answer, status ok, timeout or error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

type result struct {
	seq      int
	sched    time.Duration
	lag      time.Duration
	latency  time.Duration
	server   string
	status   string
	errorMsg string
}

type event struct {
	at  time.Duration
	cmd string
}

type events []event

func (e *events) String() string { return fmt.Sprint(*e) }
func (e *events) Set(s string) error {
	at, cmd, ok := strings.Cut(s, "=")
	if !ok {
		return errors.New("want OFFSET=COMMAND")
	}
	d, err := time.ParseDuration(at)
	if err != nil {
		return err
	}
	*e = append(*e, event{d, cmd})
	return nil
}

// schedule draws the arrival times: exponential gaps of mean 1/rate from
// a PCG generator seeded with seed, up to duration.
func schedule(rate float64, duration time.Duration, seed uint64) []time.Duration {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var out []time.Duration
	t := 0.0
	for {
		t += r.ExpFloat64() / rate
		d := time.Duration(t * float64(time.Second))
		if d >= duration {
			return out
		}
		out = append(out, d)
	}
}

// request sends one HTTP/1.0 GET on a new connection and reads the whole
// answer, all before deadline.
func request(addr string, deadline time.Time) (server string, err error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: experiment\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.")) || !bytes.Contains(b[:min(len(b), 16)], []byte(" 200")) {
		return "", fmt.Errorf("bad answer %q", b[:min(len(b), 40)])
	}
	_, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return "", errors.New("no body")
	}
	name, _, _ := bytes.Cut(body, []byte("\n"))
	return string(name), nil
}

func main() {
	addr := flag.String("addr", "192.0.2.10:80", "virtual service address")
	rate := flag.Float64("rate", 40, "mean requests per second (Poisson arrivals)")
	duration := flag.Duration("duration", 150*time.Second, "how long to send requests")
	seed := flag.Uint64("seed", 1, "seed of the arrival times")
	timeout := flag.Duration("timeout", 10*time.Second, "a request not answered this long after its scheduled time is a timeout")
	out := flag.String("out", "loadgen.csv", "CSV file of the results")
	meta := flag.String("meta", "", "file for key=value facts about the run (start time, events)")
	var evs events
	flag.Var(&evs, "at", "OFFSET=COMMAND: run COMMAND with /bin/sh -c at OFFSET from the start (repeatable)")
	flag.Parse()

	plan := schedule(*rate, *duration, *seed)
	results := make([]result, len(plan))
	var wg sync.WaitGroup
	var metaLines []string
	var metaMu sync.Mutex
	note := func(format string, a ...any) {
		metaMu.Lock()
		metaLines = append(metaLines, fmt.Sprintf(format, a...))
		metaMu.Unlock()
	}

	start := time.Now()
	note("start_unix_ms=%d", start.UnixMilli())
	note("rate=%g", *rate)
	note("duration_s=%g", duration.Seconds())
	note("seed=%d", *seed)
	note("timeout_s=%g", timeout.Seconds())
	note("requests=%d", len(plan))
	for i, ev := range evs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(ev.at)))
			t := time.Since(start)
			o, err := exec.Command("/bin/sh", "-c", ev.cmd).CombinedOutput()
			note("event%d_s=%.3f", i, t.Seconds())
			note("event%d_cmd=%s", i, ev.cmd)
			if err != nil {
				note("event%d_error=%v: %s", i, err, strings.TrimSpace(string(o)))
			}
		}()
	}
	for i, at := range plan {
		sched := start.Add(at)
		time.Sleep(time.Until(sched))
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			server, err := request(*addr, sched.Add(*timeout))
			r := result{seq: i, sched: at, lag: sent.Sub(sched), latency: time.Since(sched), server: server, status: "ok"}
			var ne net.Error
			switch {
			case err == nil:
			case errors.As(err, &ne) && ne.Timeout():
				r.status, r.errorMsg = "timeout", err.Error()
			default:
				r.status, r.errorMsg = "error", err.Error()
			}
			results[i] = r
		}()
	}
	wg.Wait()
	note("end_s=%.3f", time.Since(start).Seconds())

	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "seq,sched_s,lag_ms,latency_ms,server,status")
	errs := map[string]int{}
	for _, r := range results {
		fmt.Fprintf(w, "%d,%.6f,%.3f,%.3f,%s,%s\n", r.seq, r.sched.Seconds(),
			float64(r.lag)/1e6, float64(r.latency)/1e6, r.server, r.status)
		if r.errorMsg != "" {
			errs[r.status+": "+r.errorMsg]++
		}
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	// The most frequent failure messages, for the record.
	type kv struct {
		k string
		n int
	}
	var top []kv
	for k, n := range errs {
		top = append(top, kv{k, n})
	}
	sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n })
	for i, e := range top {
		if i == 5 {
			break
		}
		note("failure%d=%d x %s", i, e.n, e.k)
	}
	if *meta != "" {
		if err := os.WriteFile(*meta, []byte(strings.Join(metaLines, "\n")+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("loadgen: %d requests in %.1f s\n", len(plan), time.Since(start).Seconds())
}
