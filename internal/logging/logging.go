// Package logging maps the HOWTO's log levels (CRIT ERR WARN INFO DEBUG
// VDEBUG) onto log/slog and builds the daemons' handlers.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// Level is one of the HOWTO's levels, as an slog.Level so that it can be
// passed to any slog call. CRIT and VDEBUG extend slog's four levels.
type Level = slog.Level

const (
	LevelCrit   Level = slog.LevelError + 4
	LevelErr    Level = slog.LevelError
	LevelWarn   Level = slog.LevelWarn
	LevelInfo   Level = slog.LevelInfo
	LevelDebug  Level = slog.LevelDebug
	LevelVDebug Level = slog.LevelDebug - 4
)

var levelNames = []struct {
	name  string
	level Level
}{
	{"CRIT", LevelCrit}, {"ERR", LevelErr}, {"WARN", LevelWarn},
	{"INFO", LevelInfo}, {"DEBUG", LevelDebug}, {"VDEBUG", LevelVDebug},
}

// ParseLevel accepts the HOWTO's level names, case-insensitively.
func ParseLevel(s string) (Level, error) {
	for _, l := range levelNames {
		if strings.EqualFold(strings.TrimSpace(s), l.name) {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("unknown log level %q (want one of CRIT, ERR, WARN, INFO, DEBUG, VDEBUG)", s)
}

// LevelName returns the HOWTO's name for a level.
func LevelName(l Level) string {
	for _, n := range levelNames {
		if l >= n.level {
			return n.name
		}
	}
	return "VDEBUG"
}

// Syslog priority for a level (RFC 5424 numbering), for the "<N>" prefix
// that journald's stream reader understands.
func SyslogPriority(l Level) int {
	switch {
	case l >= LevelCrit:
		return 2
	case l >= LevelErr:
		return 3
	case l >= LevelWarn:
		return 4
	case l >= LevelInfo:
		return 6
	default:
		return 7
	}
}

// Options selects where and how much to log.
type Options struct {
	Level Level
	// Writer receives the log lines; nil means stderr.
	Writer io.Writer
}

// New returns a text logger that prints the HOWTO's level names.
func New(o Options) *slog.Logger {
	w := o.Writer
	if w == nil {
		w = os.Stderr
	}
	h := slog.NewTextHandler(&lockedWriter{w: w}, &slog.HandlerOptions{
		Level: o.Level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(LevelName(l))
				}
			}
			return a
		},
	})
	return slog.New(h)
}

// Discard is a logger that drops everything (tests, benchmarks).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// OpenFile opens a logfile for appending, as the HOWTO's logfile= does.
func OpenFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
