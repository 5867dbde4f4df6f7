package master

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
)

// eventLog keeps the latest log lines about each realserver, for
// `feedbackctl events RS`: what happened to this one, in an incident,
// without a trip through the journal. It wraps the master's log handler
// and keeps every record that carries a "realserver" attribute.
type eventLog struct {
	mu sync.Mutex
	m  map[string][]control.Event
}

const (
	eventsPerRealserver = 32
	// eventRealservers bounds the map; past it, it starts over rather
	// than grow (the journal keeps everything anyway).
	eventRealservers = 50000
)

func (l *eventLog) add(rs string, ev control.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= eventRealservers {
		l.m = map[string][]control.Event{}
	}
	evs := append(l.m[rs], ev)
	if len(evs) > eventsPerRealserver {
		evs = append(evs[:0], evs[len(evs)-eventsPerRealserver:]...)
	}
	l.m[rs] = evs
}

func (l *eventLog) get(rs string) []control.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]control.Event(nil), l.m[rs]...)
}

// eventHandler is the slog.Handler that feeds an eventLog.
type eventHandler struct {
	next  slog.Handler
	log   *eventLog
	attrs []slog.Attr
}

func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// Events are kept from INFO up even when the log level is WARN, so
	// that feedbackctl events tells the story at any level.
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	rs := ""
	attrs := map[string]string{}
	add := func(a slog.Attr) bool {
		v := a.Value.Resolve().String()
		if a.Key == "realserver" {
			rs = v
		} else {
			attrs[a.Key] = v
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if rs != "" && r.Level >= slog.LevelInfo {
		h.log.add(rs, control.Event{Time: r.Time.Truncate(time.Millisecond), Level: r.Level.String(), Message: r.Message, Attrs: attrs})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{next: h.next.WithAttrs(as), log: h.log, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{next: h.next.WithGroup(name), log: h.log, attrs: h.attrs}
}
