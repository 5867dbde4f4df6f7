package master

import (
	"context"
	"encoding/binary"
	"log/slog"
	"strconv"
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

// storedEvent is a control.Event as kept: its message and attributes
// packed into one string (rec: the message, then key and value in turn,
// each behind its length as a uvarint), its time in milliseconds and its
// level as a number. At 20 000 realservers a map per event was half the
// master's heap, and a slice of strings per event still 2.5 KB per
// realserver; one string per event is a few hundred bytes. get unpacks
// on demand.
type storedEvent struct {
	unixMilli int64
	level     slog.Level
	rec       string
}

// packString appends s to b behind its length: the message, and each key
// and value, of a storedEvent.rec.
func packString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// unpack returns the message and the attributes of a storedEvent; a later
// attribute of the same key wins, as it did in a map.
func (e storedEvent) unpack() (msg string, attrs map[string]string) {
	next := func(rec string) (string, string, bool) {
		n, w := binary.Uvarint([]byte(rec[:min(len(rec), binary.MaxVarintLen64)]))
		if w <= 0 || uint64(len(rec)-w) < n {
			return "", "", false
		}
		return rec[w : w+int(n)], rec[w+int(n):], true
	}
	msg, rest, ok := next(e.rec)
	if !ok {
		return "", nil
	}
	for rest != "" {
		var k, v string
		if k, rest, ok = next(rest); !ok {
			break
		}
		if v, rest, ok = next(rest); !ok {
			break
		}
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs[k] = v
	}
	return msg, attrs
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
		msg, attrs := e.unpack()
		out = append(out, control.Event{Time: time.UnixMilli(e.unixMilli), Level: e.level.String(), Message: msg, Attrs: attrs})
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
		var arr [256]byte
		rec := packString(arr[:0], r.Message)
		add := func(a slog.Attr) bool {
			v := a.Value.Resolve()
			if a.Key == "realserver" {
				rs = v.String()
				return true
			}
			rec = packString(rec, a.Key)
			switch v.Kind() {
			case slog.KindString:
				rec = packString(rec, v.String())
			case slog.KindInt64:
				var num [20]byte
				rec = packString(rec, string(strconv.AppendInt(num[:0], v.Int64(), 10)))
			default:
				rec = packString(rec, v.String())
			}
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		if rs != "" {
			h.log.add(rs, storedEvent{unixMilli: r.Time.UnixMilli(), level: r.Level, rec: string(rec)})
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
