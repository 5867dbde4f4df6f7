package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/journal"
)

// JournalFields is THE list of structured journal fields operators filter
// by (journalctl -u feedbackd-master REALSERVER=10.0.0.2). The man pages
// copy it; a key's field name is part of the interface, so change it only
// with a release note. Keys not listed here get a field by the generic rule
// described at NewJournalHandler.
var JournalFields = []struct{ Key, Field, Meaning string }{
	{"agent", "AGENT", "address of the feedbackd-agent connection (master)"},
	{"realserver", "REALSERVER", "realserver IP address"},
	{"vs", "VIRTUAL_SERVICE", "name of a virtual service in the master's configuration"},
	{"service", "SERVICE", "service: its name (agent), protocol/port or IPVS service (master)"},
	{"health", "HEALTH", "health reported by an agent, 0-100"},
	{"weight", "WEIGHT", "IPVS weight, new or current"},
	{"old_weight", "OLD_WEIGHT", "IPVS weight before a change"},
	{"reason", "REASON", "why a realserver was quiesced or changed state"},
	{"err", "ERROR", "error text"},
	{"director", "DIRECTOR", "address of the feedbackd-master an agent reports to"},
	{"forwarding", "FORWARDING", "IPVS forwarding method"},
	{"file", "CONFIG_FILE", "configuration file"},
	// journalctl -u UNIT also matches OBJECT_SYSTEMD_UNIT=UNIT, so what
	// feedbackd-agent-sync logs about an instance shows up in
	// `journalctl -u feedbackd-agent@web.service`.
	{"unit", "OBJECT_SYSTEMD_UNIT", "systemd unit an entry is about (feedbackd-agent-sync)"},
}

// journalFieldOf is JournalFields as a map, built once.
var journalFieldOf = func() map[string]string {
	m := make(map[string]string, len(JournalFields))
	for _, f := range JournalFields {
		m[f.Key] = f.Field
	}
	return m
}()

// ownFields are the fields the handler writes itself. An attribute whose
// name comes out as one of them is renamed (F prefix) instead of silently
// replacing, or being replaced by, the handler's value.
var ownFields = map[string]bool{
	"MESSAGE": true, "PRIORITY": true, "LEVEL": true, "SYSLOG_IDENTIFIER": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true,
}

// maxFieldName is journald's limit on field names; longer ones are dropped
// by journald, so names are cut to fit.
const maxFieldName = 64

// JournalOptions configure NewJournalHandler.
type JournalOptions struct {
	// Level is the minimum level logged; nil means INFO (as in slog).
	Level slog.Leveler
	// Identifier is SYSLOG_IDENTIFIER, e.g. "feedbackd-master". The native
	// protocol does not fill it in, and journald's fallback (_COMM) is cut
	// to 15 characters ("feedbackd-maste"). Empty means no field.
	Identifier string
	// Send delivers one entry; nil means journal.Send. It is called from
	// every goroutine that logs, so it must be safe for concurrent use
	// (journal.Send is). Tests inject a recorder here.
	Send func(msg string, p journal.Priority, vars map[string]string) error
	// Fallback receives a text line for every entry Send could not deliver
	// (journal socket gone, entry too large for the memfd path ...), so
	// nothing is lost silently. Writes are serialized. nil drops the entry.
	// The line starts with "<N>" (syslog priority) because the fallback is
	// normally stderr, which is then journald's stream transport and turns
	// the prefix into PRIORITY.
	Fallback io.Writer
}

// JournalHandler is an slog.Handler that writes entries with the journal's
// native protocol. It is exported so that callers (and tests) can tell
// which handler a logger got; construct it with NewJournalHandler.
type JournalHandler struct {
	c *journalCore
	// Prefixes for attributes added after WithGroup: keyPrefix for the
	// MESSAGE text ("g.h.", as slog's text handler writes them),
	// fieldPrefix for field names ("G_H_").
	keyPrefix, fieldPrefix string
	// Attributes from WithAttrs, rendered once: text for MESSAGE and
	// fields in order (a later field of the same name wins).
	text   string
	fields []journalField
}

// journalCore is what a handler and all handlers derived from it share.
type journalCore struct {
	level    slog.Leveler
	ident    string
	send     func(string, journal.Priority, map[string]string) error
	mu       sync.Mutex // serializes writes to fallback
	fallback io.Writer
}

type journalField struct{ name, value string }

// NewJournalHandler returns a handler that sends every record as one
// journal entry:
//
//   - MESSAGE: the record's message followed by its attributes as
//     " key=value" (groups as "group.key", values quoted like slog's text
//     handler), so plain journalctl output shows the details too;
//   - PRIORITY: SyslogPriority of the level (CRIT 2, ERR 3, WARN 4, INFO 6,
//     DEBUG and VDEBUG 7), and LEVEL: the HOWTO's level name;
//   - SYSLOG_IDENTIFIER from the options; CODE_FILE, CODE_LINE and
//     CODE_FUNC of the logging call, when the record knows it;
//   - one field per attribute, from Logger.With and from the call.
//
// Field names: a key listed in JournalFields gets its field from there;
// any other key is upper-cased with every character outside [A-Z0-9_]
// replaced by "_" (per character, so "ünï" gives "_N_"). Inside groups the
// group names, treated the same way, are put in front, joined with "_"
// (group "probe", key "err" → PROBE_ERROR). A name that then starts with
// "_" or a digit (journald rejects those, or reserves "_" for its trusted
// fields), or that equals a field the handler writes itself (MESSAGE,
// PRIORITY, LEVEL, SYSLOG_IDENTIFIER, CODE_FILE, CODE_LINE, CODE_FUNC),
// gets an "F" in front: "_x" → F_X, "9z" → F9Z, "message" → FMESSAGE.
// Names are cut to journald's 64 characters. When two attributes end up
// with the same name, the last one wins (MESSAGE still shows both).
//
// Values: strings as they are, times in RFC 3339 with nanoseconds, errors
// as Error(), LogValuers resolved, anything else as slog.Value.String().
func NewJournalHandler(opts JournalOptions) slog.Handler {
	c := &journalCore{level: opts.Level, ident: opts.Identifier, send: opts.Send, fallback: opts.Fallback}
	if c.level == nil {
		c.level = slog.LevelInfo
	}
	if c.send == nil {
		c.send = journal.Send
	}
	return &JournalHandler{c: c}
}

// Enabled reports whether the level reaches the configured minimum.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.c.level.Level()
}

// WithAttrs renders attrs once, so each record only appends its own.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	var text []byte
	// Copy, not append in place: h's slice may be shared with siblings.
	h2.fields = append([]journalField(nil), h.fields...)
	for _, a := range attrs {
		text = appendJournalAttr(text, &h2.fields, h.keyPrefix, h.fieldPrefix, a)
	}
	h2.text = h.text + string(text)
	return &h2
}

// WithGroup qualifies later attributes with name.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h // slog: an empty group name is ignored
	}
	h2 := *h
	h2.keyPrefix += name + "."
	h2.fieldPrefix += sanitizeField(name) + "_"
	return &h2
}

// Handle sends one entry, or writes it to the fallback if that fails.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	text := make([]byte, 0, len(r.Message)+len(h.text)+64)
	text = append(text, r.Message...)
	text = append(text, h.text...)
	fields := make([]journalField, 0, len(h.fields)+r.NumAttrs())
	fields = append(fields, h.fields...)
	r.Attrs(func(a slog.Attr) bool {
		text = appendJournalAttr(text, &fields, h.keyPrefix, h.fieldPrefix, a)
		return true
	})

	vars := make(map[string]string, len(fields)+6)
	for _, f := range fields {
		vars[f.name] = f.value
	}
	// Set after the attributes: ownFields guarantees no attribute has
	// these names, so nothing is overwritten here.
	vars["LEVEL"] = LevelName(r.Level)
	if h.c.ident != "" {
		vars["SYSLOG_IDENTIFIER"] = h.c.ident
	}
	if r.PC != 0 {
		// One frame lookup per record: cheap next to the socket write,
		// and it lets journalctl -o verbose show where a line came from.
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			vars["CODE_FILE"] = f.File
			vars["CODE_LINE"] = strconv.Itoa(f.Line)
		}
		if f.Function != "" {
			vars["CODE_FUNC"] = f.Function
		}
	}

	msg := string(text)
	if r.Message == "" {
		msg = strings.TrimPrefix(msg, " ") // no blank before the first attribute
	}
	prio := SyslogPriority(r.Level)
	err := h.c.send(msg, journal.Priority(prio), vars)
	if err == nil {
		return nil
	}
	if h.c.fallback == nil {
		return err
	}
	// Text-handler style without time: journald stamps stream lines itself.
	line := make([]byte, 0, len(text)+64)
	line = append(line, '<')
	line = strconv.AppendInt(line, int64(prio), 10)
	line = append(line, ">level="...)
	line = append(line, LevelName(r.Level)...)
	line = append(line, " msg="...)
	line = appendTextValue(line, r.Message)
	line = append(line, text[len(r.Message):]...)
	line = append(line, " journal_error="...)
	line = appendTextValue(line, err.Error())
	line = append(line, '\n')
	h.c.mu.Lock()
	_, werr := h.c.fallback.Write(line)
	h.c.mu.Unlock()
	if werr != nil {
		return errors.Join(err, werr)
	}
	return nil
}

// appendJournalAttr appends a's " key=value" text to text and its fields
// to fields, following slog's handler rules (resolve LogValuers, ignore
// empty attrs and empty groups, inline groups with an empty key).
func appendJournalAttr(text []byte, fields *[]journalField, keyPrefix, fieldPrefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return text
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return text
		}
		if a.Key != "" {
			keyPrefix += a.Key + "."
			fieldPrefix += sanitizeField(a.Key) + "_"
		}
		for _, ga := range attrs {
			text = appendJournalAttr(text, fields, keyPrefix, fieldPrefix, ga)
		}
		return text
	}
	v := journalValue(a.Value)
	text = append(text, ' ')
	text = append(text, keyPrefix...)
	text = append(text, a.Key...)
	text = append(text, '=')
	text = appendTextValue(text, v)
	*fields = append(*fields, journalField{journalFieldName(fieldPrefix, a.Key), v})
	return text
}

// journalFieldName is the field for key inside groups fieldPrefix (see
// NewJournalHandler for the rule).
func journalFieldName(fieldPrefix, key string) string {
	leaf, ok := journalFieldOf[key]
	if !ok {
		leaf = sanitizeField(key)
	}
	name := fieldPrefix + leaf
	if name == "" || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') || ownFields[name] {
		name = "F" + name
	}
	if len(name) > maxFieldName { // all ASCII by now, so bytes are characters
		name = name[:maxFieldName]
	}
	return name
}

// sanitizeField upper-cases s and replaces every character outside
// [A-Z0-9_] with "_".
func sanitizeField(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// journalValue renders a resolved, non-group value for a field.
func journalValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// appendTextValue appends s, quoted when slog's text handler would quote
// it (empty, spaces, '=', '"', unprintable), so MESSAGE reads the same as
// the text log.
func appendTextValue(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == utf8.RuneError || r == '=' || r == '"' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}
