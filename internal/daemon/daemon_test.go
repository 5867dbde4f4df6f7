package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/execpages"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// A SIGHUP runs the reload; a failed one is noted in the status until a
// good one clears it; SIGTERM cancels the context.
func TestShellReloadsAndStops(t *testing.T) {
	sh := Start(slog.New(slog.DiscardHandler))
	results := make(chan error, 2)
	results <- errors.New("master.conf:3: scheduler: unknown\nmore")
	results <- nil
	ran := make(chan struct{}, 2)
	sh.Reloads(func(context.Context) error { ran <- struct{}{}; return <-results }, func() string { return "up" })
	for i, want := range []string{"; last reload failed: master.conf:3: scheduler: unknown", ""} {
		syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("reload %d did not run", i)
		}
		deadline := time.Now().Add(5 * time.Second)
		for sh.Note() != want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if sh.Note() != want {
			t.Fatalf("after reload %d the note is %q, want %q", i, sh.Note(), want)
		}
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	select {
	case <-sh.Ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not stop the shell")
	}
	sh.Close()
}

func TestIgnoreHUPLogs(t *testing.T) {
	var buf testutil.SyncBuffer
	sh := Start(slog.New(slog.NewTextHandler(&buf, nil)))
	defer sh.Close()
	sh.IgnoreHUP("no reload here")
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "SIGHUP ignored: no reload here") {
		if time.Now().After(deadline) {
			t.Fatalf("log: %q", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ReturnMemory collects and returns memory, and unmaps the executable's
// pages, every period, and stops with the shell.
func TestReturnMemory(t *testing.T) {
	var buf testutil.SyncBuffer
	s := Start(slog.New(slog.NewJSONHandler(&buf, nil)))
	forced := func() uint32 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.NumForcedGC
	}
	before := forced()
	resident, err := execpages.Resident()
	if err != nil || resident == 0 {
		t.Fatalf("executable's resident pages: %d, %v", resident, err)
	}
	s.ReturnMemory(5 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	least := resident
	for forced() < before+3 || least >= resident {
		if time.Now().After(deadline) {
			t.Fatalf("in 10 s: %d forced collections, want 3; executable's resident pages %d kB at most, %d kB before",
				forced()-before, least>>10, resident>>10)
		}
		time.Sleep(time.Millisecond)
		if r, err := execpages.Resident(); err == nil && r < least {
			least = r
		}
	}
	s.Close()
	time.Sleep(20 * time.Millisecond) // a tick already taken may still run
	// The first drop, and it only, is logged, with what it took out.
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first struct {
		Msg    string
		Before int64 `json:"resident_before_kb"`
		After  int64 `json:"resident_after_kb"`
		Areas  int
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("log line %q: %v", lines[0], err)
	}
	if len(lines) != 1 || !strings.HasPrefix(first.Msg, "unmapped the executable's pages") ||
		first.After <= 0 || first.After >= first.Before || first.Areas < 100 {
		t.Errorf("log: %q, want one line, on the first drop, with less resident after it, and its pages in one area each", lines)
	}
	stopped := forced()
	time.Sleep(100 * time.Millisecond)
	if n := forced() - stopped; n != 0 {
		t.Errorf("%d forced collections after the shell stopped", n)
	}
}

// CapProcs lowers GOMAXPROCS unless the environment sets it.
func TestCapProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		env          string
		before, want int
	}{{"", 8, 2}, {"", 1, 1}, {"8", 8, 8}} {
		runtime.GOMAXPROCS(tc.before)
		t.Setenv("GOMAXPROCS", tc.env)
		if got := CapProcs(2); got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
			t.Errorf("GOMAXPROCS=%q, %d Ps before: CapProcs(2) = %d, runtime has %d, want %d", tc.env, tc.before, got, runtime.GOMAXPROCS(0), tc.want)
		}
	}
}
