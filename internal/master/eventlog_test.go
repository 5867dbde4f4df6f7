package master

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The event log keeps what the journal line said about a realserver:
// message, level, every attribute (the logger's own included) as text, a
// later attribute of the same key winning; lines about no realserver are
// not kept, and neither are DEBUG lines.
func TestEventLogKeepsWhatTheLineSaid(t *testing.T) {
	l := &eventLog{}
	log := slog.New(&eventHandler{next: slog.NewTextHandler(io.Discard, nil), log: l}).With("agent", "192.0.2.9:4000")
	long := strings.Repeat("é", 300) // longer than one byte of length
	log.Warn("weight changed", "vs", "web", "realserver", "10.0.0.2", "weight", 75, "err", io.EOF, "why", long, "vs", "web2")
	log.Info("no realserver here", "vs", "web")
	log.Debug("too quiet", "realserver", "10.0.0.2")
	log.Info("realserver removed", "realserver", "10.0.0.2", "delay", 1500*time.Millisecond)

	evs := l.get("10.0.0.2")
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Message != "weight changed" || e.Level != "WARN" || time.Since(e.Time) > time.Minute {
		t.Errorf("first event %+v", e)
	}
	want := map[string]string{"agent": "192.0.2.9:4000", "vs": "web2", "weight": "75", "err": "EOF", "why": long}
	if len(e.Attrs) != len(want) {
		t.Errorf("attributes %v, want %v", e.Attrs, want)
	}
	for k, v := range want {
		if e.Attrs[k] != v {
			t.Errorf("%s = %q, want %q", k, e.Attrs[k], v)
		}
	}
	if evs[1].Message != "realserver removed" || evs[1].Attrs["delay"] != "1.5s" || evs[1].Level != "INFO" {
		t.Errorf("second event %+v", evs[1])
	}
	// A damaged record unpacks to what it can read, never panics.
	for _, rec := range []string{"", "\x05ab", "\x02ab\x01k", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
		storedEvent{rec: rec}.unpack()
	}
}

// Keeping 32 events for each of 20 000 realservers must stay cheap: one
// allocation for the packed record, whatever the number of attributes.
func TestEventLogPacksOneString(t *testing.T) {
	l := &eventLog{}
	h := &eventHandler{next: slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}), log: l}
	log := slog.New(h)
	for range eventsPerRealserver {
		log.Info("weight changed", "vs", "web", "realserver", "10.0.0.2", "weight", 75, "health", 80)
	}
	allocs := testing.AllocsPerRun(200, func() {
		log.Info("weight changed", "vs", "web", "realserver", "10.0.0.2", "weight", 75, "health", 80)
	})
	// slog's own record handling plus the realserver's name and the
	// packed record.
	if allocs > 4 {
		t.Errorf("%v allocations per kept event, want at most 4", allocs)
	}
	t.Logf("%v allocations per kept event", allocs)
}
