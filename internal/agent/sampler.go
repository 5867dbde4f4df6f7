package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// StaleAfter is how many sample periods a value stays good: an older one
// is reported as unknown, as the monitor is then stuck or far slower than
// its interval and its value no longer describes the server.
const StaleAfter = 3

// ErrNoSample is what Last reports before the first sample has finished.
var ErrNoSample = errors.New("no sample yet")

// Sampler runs one monitor on its own ticker and caches the latest value,
// so the agent answers KEEPALIVEs at once and a slow monitor never delays
// a reply (necp-protocol.md §8, "when health is measured"). It lives here,
// beside the session that reads it, rather than in internal/monitor,
// because what it adds to a monitor is the wire's view: caching for the
// KEEPALIVE_ACK, staleness, and the "unknown" health 255.
type Sampler struct {
	m        monitor.Monitor
	interval time.Duration
	log      *slog.Logger
	// newTicker is time.NewTicker; tests substitute ticks they control.
	newTicker func(time.Duration) (<-chan time.Time, func())

	// last is swapped whole, so Health is one atomic load and never waits
	// for a Measure in progress.
	last atomic.Pointer[sample]
	// onSample, when set, is told of every finished sample (metrics).
	onSample func(took time.Duration, health int, err error)
}

type sample struct {
	health int
	at     time.Time // when Measure returned
	err    error
}

// NewSampler samples m every interval (monitor.DefaultInterval if
// interval <= 0).
func NewSampler(m monitor.Monitor, interval time.Duration, log *slog.Logger) *Sampler {
	if interval <= 0 {
		interval = monitor.DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Sampler{m: m, interval: interval, log: log.With("monitor", m.Name()), newTicker: realTicker}
}

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Run samples at once, then every interval, until ctx is done. It returns
// after the Measure in progress (which gets ctx) has returned.
//
// Samples never overlap: Measure runs on Run's goroutine, and a tick that
// fell due while it ran is dropped, so a monitor slower than its interval
// is sampled back to back at most once per tick, not in a growing queue.
func (s *Sampler) Run(ctx context.Context) {
	ticks, stop := s.newTicker(s.interval)
	defer stop()
	for {
		s.sample(ctx)
		select {
		case <-ticks:
			s.log.Debug("sample took longer than the interval; tick skipped", "interval", s.interval)
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

func (s *Sampler) sample(ctx context.Context) {
	began := time.Now()
	h, err := s.m.Measure(ctx)
	if ctx.Err() != nil {
		// Shutting down: an interrupted sample says nothing about health.
		return
	}
	if err == nil && (h < 0 || h > 100) {
		err = fmt.Errorf("monitor returned %d, outside 0..100", h)
	}
	if s.onSample != nil {
		s.onSample(time.Since(began), h, err)
	}
	cur := &sample{health: h, at: time.Now(), err: err}
	prev := s.last.Swap(cur)

	// Log changes of state, not every sample: a monitor failing once a
	// second would otherwise fill the log with the same line.
	switch {
	case err != nil && (prev == nil || prev.err == nil || prev.err.Error() != err.Error()):
		s.log.Warn("health unknown", "err", err)
	case err != nil:
		s.log.Debug("health still unknown", "err", err)
	case prev != nil && prev.err != nil:
		s.log.Info("health measured again", "health", h)
	default:
		s.log.Log(ctx, logging.LevelVDebug, "health measured", "health", h)
	}
}

// Health is the latest value for a KEEPALIVE_ACK, or necp.HealthUnknown if
// there is no sample yet, the latest failed, or it is older than
// StaleAfter intervals (the monitor is stuck or far slower than its
// interval, so its value no longer describes the server).
func (s *Sampler) Health(now time.Time) uint8 {
	h, _ := s.Reading(now)
	return h
}

// Reading is Health with, when the health is unknown, why, in a few fixed
// words: "no sample yet", "monitor failed" or "sample too old". It is for
// the agent-check line, which anyone who can reach the port may read, so
// it says no more than that; the monitor's own error, which may hold a
// command line or a path, is in the agent's log.
func (s *Sampler) Reading(now time.Time) (health uint8, why string) {
	cur := s.last.Load()
	switch {
	case cur == nil:
		return necp.HealthUnknown, ErrNoSample.Error()
	case cur.err != nil:
		return necp.HealthUnknown, "monitor failed"
	case now.Sub(cur.at) > StaleAfter*s.interval:
		return necp.HealthUnknown, "sample too old"
	}
	return uint8(cur.health), ""
}

// Last returns the latest sample as it is, for status and debug output.
// Before the first sample it returns ErrNoSample and a zero time.
func (s *Sampler) Last() (health int, at time.Time, err error) {
	cur := s.last.Load()
	if cur == nil {
		return 0, time.Time{}, ErrNoSample
	}
	return cur.health, cur.at, cur.err
}

// Interval is the sampling period in use.
func (s *Sampler) Interval() time.Duration { return s.interval }
