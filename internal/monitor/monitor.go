package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
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

// New builds the monitor kind ("cpuload" or "cpuload.so", ...) from its
// config keys. The config package has validated the keys already, but New
// checks again what it relies on, so that a caller that skipped validation
// gets an error here rather than a monitor that misbehaves later.
func New(kind string, params map[string]string, opts Options) (Monitor, error) {
	name := CanonicalName(kind)
	k, ok := kinds[name]
	if !ok {
		return nil, fmt.Errorf("unknown monitor %q (known: %s)", kind, strings.Join(Names(), ", "))
	}
	if _, err := intervalKey.duration(params, DefaultInterval); err != nil {
		return nil, fmt.Errorf("monitor %s: %w", name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := k.build(params, opts, log.With("monitor", name))
	if err != nil {
		return nil, fmt.Errorf("monitor %s: %w", name, err)
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

// firstNumber finds the first number in b, an integer or a decimal with an
// optional leading minus sign, and returns it rounded and clamped to
// 0..100. The original exec plugin expected "a single number" on a line;
// scanning for the first one also accepts output such as "load: 42%".
// A minus sign counts only at the start or after a space, so that
// "cpu-3 idle 50" is not read as -3.
func firstNumber(b []byte) (int, bool) {
	for i := 0; i < len(b); i++ {
		if !isDigit(b[i]) && !(b[i] == '.' && i+1 < len(b) && isDigit(b[i+1])) {
			continue
		}
		start, end := i, i
		for end < len(b) && isDigit(b[end]) {
			end++
		}
		if end+1 < len(b) && b[end] == '.' && isDigit(b[end+1]) {
			end++
			for end < len(b) && isDigit(b[end]) {
				end++
			}
		}
		if start > 0 && b[start-1] == '-' && (start == 1 || isSpace(b[start-2])) {
			start--
		}
		// The text is digits with at most one dot, so the only possible
		// error is ErrRange, and then f is ±Inf or 0, which clamp fine.
		f, _ := strconv.ParseFloat(string(b[start:end]), 64)
		return clampHealth(f), true
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// clampHealth rounds half away from zero and clamps to the health range.
func clampHealth(f float64) int {
	switch {
	case math.IsNaN(f), f <= 0:
		return 0
	case f >= 100:
		return 100
	}
	return int(math.Round(f))
}

// quoteHead quotes the start of a program's output for an error message,
// so a script that prints a page of text does not flood the log.
func quoteHead(b []byte, max int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
