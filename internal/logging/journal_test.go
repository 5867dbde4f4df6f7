// External test package: the cli.Logger selection test imports cli, which
// imports logging.
package logging_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

type entry struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

// recorder stands in for journal.Send.
type recorder struct {
	mu      sync.Mutex
	entries []entry
}

func (r *recorder) send(msg string, p journal.Priority, vars map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, entry{msg, p, vars})
	return nil
}

func (r *recorder) all() []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]entry(nil), r.entries...)
}

func (r *recorder) only(t *testing.T) entry {
	t.Helper()
	es := r.all()
	if len(es) != 1 {
		t.Fatalf("got %d entries, want 1: %+v", len(es), es)
	}
	return es[0]
}

func newJournalLogger(level slog.Leveler) (*slog.Logger, *recorder) {
	rec := &recorder{}
	h := logging.NewJournalHandler(logging.JournalOptions{Level: level, Identifier: "feedbackd-master", Send: rec.send})
	return slog.New(h), rec
}

// wantFields fails for every field in want that e lacks or has otherwise.
func wantFields(t *testing.T, e entry, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := e.vars[k]; !ok || got != v {
			t.Errorf("field %s = %q (present %v), want %q; all: %v", k, got, ok, v, e.vars)
		}
	}
}

var validField = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

func TestJournalWellKnownFields(t *testing.T) {
	log, rec := newJournalLogger(nil)
	args := []any{}
	want := map[string]string{}
	for i, f := range logging.JournalFields {
		v := fmt.Sprintf("v%d", i)
		args = append(args, f.Key, v)
		want[f.Field] = v
		if !validField.MatchString(f.Field) || f.Meaning == "" {
			t.Errorf("table entry %+v: invalid field name or no meaning", f)
		}
	}
	log.Info("weight changed", args...)
	e := rec.only(t)
	wantFields(t, e, want)
	wantFields(t, e, map[string]string{"LEVEL": "INFO", "SYSLOG_IDENTIFIER": "feedbackd-master"})
	if e.prio != journal.PriInfo {
		t.Errorf("priority %d, want %d", e.prio, journal.PriInfo)
	}
	if !strings.HasPrefix(e.msg, "weight changed agent=v0 realserver=v1 vs=v2 ") || !strings.HasSuffix(e.msg, " file=v11 unit=v12") {
		t.Errorf("MESSAGE %q", e.msg)
	}
	// The record's PC gives the call site.
	if !strings.HasSuffix(e.vars["CODE_FILE"], "journal_test.go") || e.vars["CODE_LINE"] == "" ||
		!strings.HasSuffix(e.vars["CODE_FUNC"], "TestJournalWellKnownFields") {
		t.Errorf("CODE_*: %q %q %q", e.vars["CODE_FILE"], e.vars["CODE_LINE"], e.vars["CODE_FUNC"])
	}
	for k := range e.vars {
		if !validField.MatchString(k) {
			t.Errorf("invalid field name %q", k)
		}
	}
}

type secret string

func (secret) LogValue() slog.Value { return slog.StringValue("***") }

func TestJournalValues(t *testing.T) {
	log, rec := newJournalLogger(nil)
	ts := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)
	log.Info("values",
		"s", "two words", "n", 42, "f", 0.5, "b", true, "d", 1500*time.Millisecond,
		"t", ts, "err", errors.New("connection refused"), "pw", secret("hunter2"), "empty", "")
	e := rec.only(t)
	wantFields(t, e, map[string]string{
		"S": "two words", "N": "42", "F": "0.5", "B": "true", "D": "1.5s",
		"T": "2026-03-04T05:06:07.890123456Z", "ERROR": "connection refused", "PW": "***", "EMPTY": "",
	})
	want := `values s="two words" n=42 f=0.5 b=true d=1.5s t=2026-03-04T05:06:07.890123456Z err="connection refused" pw=*** empty=""`
	if e.msg != want {
		t.Errorf("MESSAGE\n got %s\nwant %s", e.msg, want)
	}
}

func TestJournalWithAttrsAndGroups(t *testing.T) {
	log, rec := newJournalLogger(nil)
	base := log.With("vs", "web", "realserver", "10.0.0.2")
	probe := base.WithGroup("probe").With("err", errors.New("timeout"))
	probe.Warn("check failed", "x", 1,
		slog.Group("g", "a-b", 2),
		slog.Group("", "inl", 3), // empty key: inlined
		slog.Group("empty"),      // no attrs: ignored
		slog.Attr{})              // zero attr: ignored
	e := rec.only(t)
	wantFields(t, e, map[string]string{
		"VIRTUAL_SERVICE": "web", "REALSERVER": "10.0.0.2", // With before the group: well-known names
		"PROBE_ERROR": "timeout", // well-known leaf, group in front
		"PROBE_X":     "1", "PROBE_G_A_B": "2", "PROBE_INL": "3",
		"LEVEL": "WARN",
	})
	for k := range e.vars {
		if strings.Contains(k, "EMPTY") {
			t.Errorf("empty group produced field %s", k)
		}
	}
	want := "check failed vs=web realserver=10.0.0.2 probe.err=timeout probe.x=1 probe.g.a-b=2 probe.inl=3"
	if e.msg != want {
		t.Errorf("MESSAGE\n got %s\nwant %s", e.msg, want)
	}

	// Siblings from one parent must not see each other's With attrs, and
	// a group without attributes in the record adds nothing.
	rec.entries = nil
	a := base.With("agent", "10.0.0.7:3262")
	b := base.With("service", "tcp/80")
	a.Info("a")
	b.Info("b")
	base.WithGroup("unused").Info("c")
	es := rec.all()
	if len(es) != 3 {
		t.Fatalf("got %d entries", len(es))
	}
	if _, ok := es[0].vars["SERVICE"]; ok || es[0].vars["AGENT"] != "10.0.0.7:3262" {
		t.Errorf("a: %v", es[0].vars)
	}
	if _, ok := es[1].vars["AGENT"]; ok || es[1].vars["SERVICE"] != "tcp/80" {
		t.Errorf("b: %v", es[1].vars)
	}
	if es[2].msg != "c vs=web realserver=10.0.0.2" {
		t.Errorf("c: %q", es[2].msg)
	}

	// A later attribute with the same field name wins; MESSAGE keeps both.
	rec.entries = nil
	base.Info("dup", "realserver", "10.0.0.3")
	e = rec.only(t)
	if e.vars["REALSERVER"] != "10.0.0.3" || e.msg != "dup vs=web realserver=10.0.0.2 realserver=10.0.0.3" {
		t.Errorf("dup: %q %q", e.vars["REALSERVER"], e.msg)
	}
}

func TestJournalFieldNames(t *testing.T) {
	long := strings.Repeat("k", 100)
	cases := []struct{ key, field string }{
		{"a-b", "A_B"},
		{"_x", "F_X"},   // journald reserves a leading "_"
		{"9z", "F9Z"},   // and rejects a leading digit
		{"ünï", "F_N_"}, // one "_" per non-ASCII character, then the "_" rule
		{"Mixed.Case", "MIXED_CASE"},
		{"master_timeout", "MASTER_TIMEOUT"},
		{"message", "FMESSAGE"}, // the handler's own fields are not overwritten
		{"priority", "FPRIORITY"},
		{"level", "FLEVEL"},
		{"syslog_identifier", "FSYSLOG_IDENTIFIER"},
		{"code_line", "FCODE_LINE"},
		{"", "F"},
		{long, strings.Repeat("K", 64)},
		{"error", "ERROR"}, // generic rule; same field as the table's err
	}
	for _, c := range cases {
		log, rec := newJournalLogger(nil)
		log.Info("m", c.key, "v")
		e := rec.only(t)
		if e.vars[c.field] != "v" {
			t.Errorf("key %q: want field %s, got %v", c.key, c.field, e.vars)
		}
		for k := range e.vars {
			if !validField.MatchString(k) {
				t.Errorf("key %q: invalid field %q", c.key, k)
			}
		}
		if e.vars["LEVEL"] != "INFO" || e.vars["SYSLOG_IDENTIFIER"] != "feedbackd-master" {
			t.Errorf("key %q clobbered the handler's own fields: %v", c.key, e.vars)
		}
	}
	// Group names follow the same rule.
	log, rec := newJournalLogger(nil)
	log.WithGroup("_g-1").Info("m", "k", "v")
	if e := rec.only(t); e.vars["F_G_1_K"] != "v" {
		t.Errorf("group: %v", e.vars)
	}
}

func TestJournalPriorities(t *testing.T) {
	cases := []struct {
		level logging.Level
		name  string
		prio  journal.Priority
	}{
		{logging.LevelCrit, "CRIT", 2}, {logging.LevelErr, "ERR", 3}, {logging.LevelWarn, "WARN", 4},
		{logging.LevelInfo, "INFO", 6}, {logging.LevelDebug, "DEBUG", 7}, {logging.LevelVDebug, "VDEBUG", 7},
	}
	log, rec := newJournalLogger(logging.LevelVDebug)
	for _, c := range cases {
		log.Log(context.Background(), c.level, "m")
	}
	es := rec.all()
	if len(es) != len(cases) {
		t.Fatalf("got %d entries", len(es))
	}
	for i, c := range cases {
		if es[i].prio != c.prio || es[i].vars["LEVEL"] != c.name {
			t.Errorf("%s: PRIORITY %d LEVEL %s, want %d %s", c.name, es[i].prio, es[i].vars["LEVEL"], c.prio, c.name)
		}
	}
}

func TestJournalLevelFiltering(t *testing.T) {
	log, rec := newJournalLogger(logging.LevelWarn)
	log.Debug("no")
	log.Info("no")
	log.Warn("yes")
	log.Log(context.Background(), logging.LevelCrit, "yes")
	if es := rec.all(); len(es) != 2 || es[0].msg != "yes" || es[1].msg != "yes" {
		t.Errorf("WARN: %+v", es)
	}

	// nil Level means INFO, as in slog.
	log, rec = newJournalLogger(nil)
	log.Debug("no")
	log.Info("yes")
	if es := rec.all(); len(es) != 1 {
		t.Errorf("default: %+v", es)
	}

	// A LevelVar is read on every call, through With and WithGroup too.
	var lv slog.LevelVar
	lv.Set(logging.LevelErr)
	log, rec = newJournalLogger(&lv)
	derived := log.With("a", 1).WithGroup("g")
	derived.Info("no")
	lv.Set(logging.LevelVDebug)
	derived.Log(context.Background(), logging.LevelVDebug, "yes")
	if es := rec.all(); len(es) != 1 || es[0].msg != "yes a=1" {
		t.Errorf("LevelVar: %+v", es)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("stderr closed") }

func TestJournalFallback(t *testing.T) {
	sendErr := errors.New("dial unixgram /run/systemd/journal/socket: no such file")
	failing := func(string, journal.Priority, map[string]string) error { return sendErr }

	var buf bytes.Buffer
	log := slog.New(logging.NewJournalHandler(logging.JournalOptions{Send: failing, Fallback: &buf}))
	log.With("realserver", "10.0.0.2").Error("IPVS write failed", "err", errors.New("boom"), "weight", 0)
	want := `<3>level=ERR msg="IPVS write failed" realserver=10.0.0.2 err=boom weight=0 journal_error="dial unixgram /run/systemd/journal/socket: no such file"` + "\n"
	if buf.String() != want {
		t.Errorf("fallback\n got %q\nwant %q", buf.String(), want)
	}

	// Without a fallback (or when it fails too) Handle reports the error.
	h := logging.NewJournalHandler(logging.JournalOptions{Send: failing})
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	if err := h.Handle(context.Background(), r); !errors.Is(err, sendErr) {
		t.Errorf("no fallback: %v", err)
	}
	h = logging.NewJournalHandler(logging.JournalOptions{Send: failing, Fallback: failWriter{}})
	if err := h.Handle(context.Background(), r); !errors.Is(err, sendErr) || !strings.Contains(err.Error(), "stderr closed") {
		t.Errorf("failing fallback: %v", err)
	}
}

// Run with -race: one handler tree, many goroutines, both the Send path
// and the fallback path (the fallback is a bytes.Buffer, which is not safe
// for concurrent use by itself).
func TestJournalConcurrent(t *testing.T) {
	const goroutines, each = 8, 200
	rec := &recorder{}
	var buf bytes.Buffer
	var n int
	var mu sync.Mutex
	send := func(msg string, p journal.Priority, vars map[string]string) error {
		mu.Lock()
		n++
		fail := n%2 == 0
		mu.Unlock()
		if fail {
			return errors.New("socket gone")
		}
		return rec.send(msg, p, vars)
	}
	log := slog.New(logging.NewJournalHandler(logging.JournalOptions{Send: send, Fallback: &buf})).With("vs", "web")
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("agent", fmt.Sprintf("10.0.0.%d", g)).WithGroup("grp")
			for i := range each {
				l.Info("tick", "i", i)
			}
		}()
	}
	wg.Wait()
	es := rec.all()
	lines := strings.Count(buf.String(), "\n")
	if len(es)+lines != goroutines*each || len(es) != goroutines*each/2 {
		t.Fatalf("%d sent + %d fallback lines, want %d each", len(es), lines, goroutines*each/2)
	}
	for _, e := range es {
		want := fmt.Sprintf("tick vs=web agent=%s grp.i=%s", e.vars["AGENT"], e.vars["GRP_I"])
		if e.msg != want || e.vars["VIRTUAL_SERVICE"] != "web" {
			t.Fatalf("mixed up entry: %q vs fields %v", e.msg, e.vars)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "<6>level=INFO msg=tick vs=web agent=10.0.0.") {
			t.Fatalf("torn fallback line %q", line)
		}
	}
}

// cli.Logger chooses the journal when, and only when, no -d and no logfile
// are given, the stderr writer is the process's fd 2, and JOURNAL_STREAM
// names fd 2's device and inode (what journal.StderrIsJournalStream
// compares). fd 2 under go test is a pipe or terminal; either has a
// device and inode, so the real check runs.
func TestLoggerPicksJournalWhenStderrIsTheJournalStream(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Skipf("fstat(2): %v", err)
	}
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	pick := func(debug bool, logfile string, stderr io.Writer) (slog.Handler, io.Writer) {
		t.Helper()
		log, w, closeLog, err := cli.Logger("feedbackd-master", debug, logging.LevelInfo, logfile, &bytes.Buffer{}, stderr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeLog)
		return log.Handler(), w
	}

	t.Setenv("JOURNAL_STREAM", match)
	h, out := pick(false, "", os.Stderr)
	jh, ok := h.(*logging.JournalHandler)
	if !ok {
		t.Fatalf("JOURNAL_STREAM=%s (fd 2): got %T, want *logging.JournalHandler", match, h)
	}
	if out != io.Writer(os.Stderr) {
		t.Errorf("journal case: returned writer %v, want os.Stderr", out)
	}
	if jh.Enabled(context.Background(), logging.LevelDebug) || !jh.Enabled(context.Background(), logging.LevelInfo) {
		t.Error("journal handler ignores the configured level")
	}

	// Everything else is text.
	if h, _ := pick(true, "", os.Stderr); !isText(h) {
		t.Errorf("-d: got %T", h)
	}
	if h, _ := pick(false, filepath.Join(t.TempDir(), "log"), os.Stderr); !isText(h) {
		t.Errorf("logfile: got %T", h)
	}
	var buf bytes.Buffer
	if h, _ := pick(false, "", &buf); !isText(h) {
		t.Errorf("other writer: got %T", h)
	}
	for _, env := range []string{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), "garbage", ""} {
		t.Setenv("JOURNAL_STREAM", env)
		if h, _ := pick(false, "", os.Stderr); !isText(h) {
			t.Errorf("JOURNAL_STREAM=%q: got %T", env, h)
		}
	}
}

func isText(h slog.Handler) bool { _, ok := h.(*slog.TextHandler); return ok }
