// Command cpuhttp is the realserver of the load-balancing experiment
// (test/experiment/run.sh): a tiny HTTP server whose every request costs a
// fixed amount of CPU work and whose answer names the realserver. It has
// two helper modes: -calibrate, which says how many work iterations take a
// given CPU time on this machine, and -hog, which burns CPU forever.
//
//	cpuhttp -listen :80 -name rs1 -work 120000
//	cpuhttp -calibrate 8ms
//	cpuhttp -hog 2
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"
)

// spin does n iterations of an xorshift generator: pure integer work that
// the compiler cannot drop, since the result is returned and printed.
func spin(x uint64, n int) uint64 {
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// chunks is how many pieces a request's work is cut into; between two
// the handler checks whether the client has gone (closed or timed out),
// as a well-behaved server stops working for nobody.
const chunks = 16

func serve(listen, name string, work int) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := uint64(time.Now().UnixNano()) | 1
		per := work / chunks
		for i := 0; i < chunks; i++ {
			if r.Context().Err() != nil {
				return
			}
			x = spin(x, per)
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s\n%x\n", name, x)
	})
	srv := &http.Server{Addr: listen, Handler: h, ReadHeaderTimeout: 30 * time.Second}
	return srv.ListenAndServe()
}

// threadCPU is the calling OS thread's CPU time (user + system).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		log.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// calibrate returns the iterations that take d of CPU time: the median of
// seven trials of about 40 ms each, measured in thread CPU time so that
// time the (emulated) CPU spends elsewhere does not count.
func calibrate(d time.Duration) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := 10000
	// Grow n until one trial takes at least 40 ms of CPU.
	for {
		t0 := threadCPU()
		runtime.KeepAlive(spin(1, n)) // not optimised away
		if threadCPU()-t0 >= 40*time.Millisecond || n > 1<<40 {
			break
		}
		n *= 2
	}
	var rates []float64 // iterations per nanosecond
	for i := 0; i < 7; i++ {
		t0 := threadCPU()
		x := spin(uint64(i)+1, n)
		dt := threadCPU() - t0
		if x == 0 || dt <= 0 {
			continue
		}
		rates = append(rates, float64(n)/float64(dt))
	}
	if len(rates) == 0 {
		log.Fatal("calibration measured no CPU time")
	}
	sort.Float64s(rates)
	return int(rates[len(rates)/2] * float64(d))
}

func main() {
	listen := flag.String("listen", ":80", "address to serve on")
	name := flag.String("name", "", "realserver name, the body of every answer (required to serve)")
	work := flag.Int("work", 100000, "work iterations per request")
	cal := flag.Duration("calibrate", 0, "print the iterations that take this much CPU time, and exit")
	hog := flag.Int("hog", 0, "burn CPU in this many goroutines forever")
	flag.Parse()
	switch {
	case *cal > 0:
		fmt.Println(calibrate(*cal))
	case *hog > 0:
		runtime.GOMAXPROCS(*hog)
		for i := 1; i < *hog; i++ {
			go func() {
				for x := uint64(i); ; x = spin(x, 1<<20) {
				}
			}()
		}
		for x := uint64(7); ; x = spin(x, 1<<20) {
		}
	default:
		if *name == "" || *work <= 0 {
			fmt.Fprintln(os.Stderr, "cpuhttp: -name and a positive -work are required")
			os.Exit(2)
		}
		log.Fatal(serve(*listen, *name, *work))
	}
}
