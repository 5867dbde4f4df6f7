// Package ratelog writes a recurring complaint at most once per period,
// with the number of occurrences it held back since its previous line.
//
// Why: a monitor whose check fails every second, or a peer that opens
// connections as fast as it can, must not write a line each time, nor one
// per distinct message when the message changes every time; but the first
// complaint after a quiet period goes out at once, and the count says how
// much was not written.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Logger writes at Warn through log, at most once per every. Make it with
// New; it is safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	key   string           // the attribute that counts what was held back
	now   func() time.Time // time.Now; tests substitute a clock

	mu   sync.Mutex
	last time.Time // when the previous line was written; zero: never
	held int
}

// New returns a Logger writing through log (nil: nothing is written) at
// most once per every; key names the count of the lines held back
// ("suppressed", "not_logged"), which the man pages document.
func New(log *slog.Logger, every time.Duration, key string) *Logger {
	return &Logger{log: log, every: every, key: key, now: time.Now}
}

// Warn writes msg unless a line went out less than every ago, in which
// case it only counts it.
func (r *Logger) Warn(msg string, args ...any) {
	if r.log == nil {
		return
	}
	r.mu.Lock()
	now := r.now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.held++
		r.mu.Unlock()
		return
	}
	n := r.held
	r.last, r.held = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, r.key, n)
	}
	r.log.Warn(msg, args...)
}
