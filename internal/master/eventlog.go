package master

import (
	"context"
	"log/slog"
	"slices"
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
	m  map[string][]storedEvent
}

// storedEvent is a control.Event as kept: its attributes as key, value
// pairs rather than a map, and its level as a number. With 32 events for
// each of 20 000 realservers, a map per event was half the master's heap
// (about 2.5 KB per realserver); get builds the maps on demand.
type storedEvent struct {
	time  time.Time
	level slog.Level
	msg   string
	kv    []string
}

const (
	eventsPerRealserver = 32
	// eventRealservers bounds the map; past it, it starts over rather
	// than grow (the journal keeps everything anyway).
	eventRealservers = 50000
)

func (l *eventLog) add(rs string, ev storedEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= eventRealservers {
		l.m = map[string][]storedEvent{}
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
	var out []control.Event
	for _, e := range l.m[rs] {
		ev := control.Event{Time: e.time, Level: e.level.String(), Message: e.msg}
		if len(e.kv) > 0 {
			ev.Attrs = make(map[string]string, len(e.kv)/2)
			for i := 0; i+1 < len(e.kv); i += 2 {
				ev.Attrs[e.kv[i]] = e.kv[i+1]
			}
		}
		out = append(out, ev)
	}
	return out
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
	if r.Level >= slog.LevelInfo {
		rs := ""
		var kv []string
		add := func(a slog.Attr) bool {
			v := a.Value.Resolve().String()
			if a.Key == "realserver" {
				rs = v
				return true
			}
			// A later attribute of the same key wins, as it did in a
			// map.
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == a.Key {
					kv[i+1] = v
					return true
				}
			}
			kv = append(kv, a.Key, v)
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		if rs != "" {
			h.log.add(rs, storedEvent{time: r.Time.Truncate(time.Millisecond), level: r.Level, msg: r.Message, kv: slices.Clip(kv)})
		}
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
