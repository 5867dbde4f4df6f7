package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file. The position is kept apart
// from the text so that callers (feedbackd-master -t, tests) can match on it.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem concerns the file as a whole
	Key  string // the configuration key concerned; empty for syntax errors
	Msg  string
	// Err is the underlying cause when there is one (a read error), so that
	// errors.Is(err, fs.ErrNotExist) works through Errors.
	Err error
}

// Error formats as "FILE:LINE: KEY: MSG", the shape compilers use, so that
// editors can jump to the line. ": KEY" is left out when there is no key and
// ":LINE" when the problem has no single line (a required key missing from a
// whole layered configuration, an unreadable file).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one load, sorted by file (in the order
// the files were given) and line. An operator running -t wants the whole
// list at once rather than one fix-and-retry round per mistake.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.Is and errors.As look at every element.
func (es Errors) Unwrap() []error {
	u := make([]error, len(es))
	for i, e := range es {
		u[i] = e
	}
	return u
}

// errorList collects problems while a file is checked.
type errorList struct {
	file string
	errs Errors
}

func (l *errorList) add(line int, key, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// badValue reports a value that failed to parse. With IgnoreInlineComment
// set, "loglevel = WARN # quiet" keeps the comment in the value, so when a
// failing value contains a comment character the message says why.
func (l *errorList) badValue(e entry, err error) {
	msg := err.Error()
	if strings.ContainsAny(e.value, "#;") {
		msg += " (comments must be on a line of their own)"
	}
	l.add(e.line, e.key, "%s", msg)
}

// sortErrors orders errors by the position of their file in files, then by
// line; errors on the same line keep the order in which they were found.
func sortErrors(errs Errors, files ...string) {
	rank := func(f string) int {
		if i := slices.Index(files, f); i >= 0 {
			return i
		}
		return len(files)
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if c := cmp.Compare(rank(a.File), rank(b.File)); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
