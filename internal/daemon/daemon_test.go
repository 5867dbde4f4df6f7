package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

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
