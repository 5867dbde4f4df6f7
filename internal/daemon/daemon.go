// Package daemon is the process shell the feedbackd daemons share: signals,
// the systemd notifier, reloads and the stop notification, so that each
// main only wires its own parts together.
package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/execpages"
	"github.com/lvs-feedbackd/feedbackd/internal/sd"
)

// Shell is one running daemon's process around its work.
type Shell struct {
	// Ctx is cancelled by SIGTERM or SIGINT.
	Ctx context.Context
	// Notifier talks to systemd (a no-op outside it).
	Notifier *sd.Notifier

	log    *slog.Logger
	pages  *execpages.Pages // the executable's, once ReturnMemory first drops them
	shaped error            // why the pages' shaping stopped, once said
	stop   context.CancelFunc
	hup    chan os.Signal
	note   atomic.Value // string: the last reload's failure, "" after a good one
	doneFn func()
}

// Start installs the signal handlers. It is called before anything slow:
// a SIGHUP that arrived during start-up would otherwise kill the process
// (its default action).
func Start(log *slog.Logger) *Shell {
	s := &Shell{log: log, hup: make(chan os.Signal, 1), Notifier: sd.New(log)}
	s.Ctx, s.stop = signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(s.hup, syscall.SIGHUP)
	s.note.Store("")
	// STOPPING=1 as soon as the signal arrives, and before the process
	// exits.
	s.doneFn = s.Notifier.StoppingWhenDone(s.Ctx)
	return s
}

// Reloads runs reload for every SIGHUP until the shell stops, with
// RELOADING=1 before and READY=1 with status() after. A reload that fails
// is noted in the status line until one succeeds, so that `systemctl
// status` shows the running configuration is not the file on disk.
func (s *Shell) Reloads(reload func(context.Context) error, status func() string) {
	go func() {
		for {
			select {
			case <-s.Ctx.Done():
				return
			case <-s.hup:
			}
			s.Notifier.Reloading()
			if err := reload(s.Ctx); err != nil {
				s.note.Store("; last reload failed: " + firstLine(err.Error()))
			} else {
				s.note.Store("")
			}
			s.Notifier.Ready(status() + s.Note())
		}
	}()
}

// IgnoreHUP logs and otherwise ignores SIGHUP, for a daemon without a
// reload (its default action would kill it without a clean stop).
func (s *Shell) IgnoreHUP(why string) {
	go func() {
		for {
			select {
			case <-s.Ctx.Done():
				return
			case <-s.hup:
				s.log.Warn("SIGHUP ignored: " + why)
			}
		}
	}()
}

// Note is what the status line says about the last reload.
func (s *Shell) Note() string { return s.note.Load().(string) }

// Close stops listening for signals and waits for STOPPING=1 to be sent.
func (s *Shell) Close() {
	s.doneFn()
	signal.Stop(s.hup)
	s.stop()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
