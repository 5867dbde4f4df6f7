package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Monitor measures one service's health.
type Monitor interface {
	// Name is the canonical kind, e.g. "cpuload".
	Name() string
	// Measure returns the health, 0..100. An error means the health is
	// unknown; its text says why, because the caller logs it as it is.
	Measure(ctx context.Context) (int, error)
	// Close releases what the monitor holds (the perl process).
	Close() error
}

// Options carries what a monitor needs from outside its own config keys.
type Options struct {
	ProcRoot   string       // "" means "/proc"; tests point it at fixture directories
	CgroupRoot string       // "" means "/sys/fs/cgroup" (cpuload with "cgroup ="); likewise
	Logger     *slog.Logger // nil discards
}

// New builds the monitor kind ("cpuload" or "cpuload.so", ..., or a
// combination such as "cpuload, http": see Parse) from its config keys.
// The config package has validated the keys already, but New checks again
// what it relies on, so that a caller that skipped validation gets an
// error here rather than a monitor that misbehaves later.
func New(kind string, params map[string]string, opts Options) (Monitor, error) {
	k, err := Parse(kind)
	if err != nil {
		return nil, err
	}
	if _, err := intervalKey.duration(params, DefaultInterval); err != nil {
		return nil, fmt.Errorf("monitor %s: %w", k.Name, err)
	}
	if key, err := k.CheckKeys(params); err != nil {
		if key != "" {
			err = fmt.Errorf("%s: %w", key, err)
		}
		return nil, fmt.Errorf("monitor %s: %w", k.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := k.build(params, opts, log.With("monitor", k.Name))
	if err != nil {
		return nil, fmt.Errorf("monitor %s: %w", k.Name, err)
	}
	return m, nil
}

// Interval is the sampling period from the "interval" key, or
// DefaultInterval when the key is absent or unusable (New rejects an
// unusable one, so the fallback only covers callers that skipped New).
func Interval(params map[string]string) time.Duration {
	d, err := intervalKey.duration(params, DefaultInterval)
	if err != nil {
		return DefaultInterval
	}
	return d
}
