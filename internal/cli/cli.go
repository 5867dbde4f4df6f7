// Package cli holds what the two daemons' command lines share: the
// HOWTO's options, usage text, version stamping and log setup.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

// Exit codes, documented in the man pages.
const (
	ExitOK    = 0
	ExitError = 1 // bad configuration, or a runtime failure
	ExitUsage = 2 // bad command line
)

// Common are the options both daemons accept (the HOWTO's list).
type Common struct {
	ConfFile string
	Test     bool
	Debug    bool
	Version  bool
	Help     bool
}

// Flags is a flag set that knows each option's short and long spelling,
// for the usage text.
type Flags struct {
	*flag.FlagSet
	prog  string
	lines []string
}

func NewFlags(prog string) *Flags {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // we print our own usage
	return &Flags{FlagSet: fs, prog: prog}
}

// Bool defines a boolean option under every given name ("c", "conffile").
func (f *Flags) Bool(p *bool, help string, names ...string) {
	for _, n := range names {
		f.BoolVar(p, n, false, help)
	}
	f.lines = append(f.lines, fmt.Sprintf("  %-28s %s", spell(names, ""), help))
}

// String defines a string option under every given name.
func (f *Flags) String(p *string, def, arg, help string, names ...string) {
	for _, n := range names {
		f.StringVar(p, n, def, help)
	}
	f.lines = append(f.lines, fmt.Sprintf("  %-28s %s", spell(names, arg), help))
}

func spell(names []string, arg string) string {
	var parts []string
	for _, n := range names {
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		s := dash + n
		if arg != "" {
			if len(n) == 1 {
				s += " " + arg
			} else {
				s += "=" + arg
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// Usage prints the version, a summary and the option list.
func (f *Flags) Usage(w io.Writer, summary string) {
	fmt.Fprintf(w, "%s %s\nUsage: %s [OPTION]...\n%s\n\nOptions:\n%s\n",
		f.prog, Version, f.prog, summary, strings.Join(f.lines, "\n"))
}

// RegisterCommon adds the HOWTO's common options.
func (f *Flags) RegisterCommon(c *Common, defaultConf string) {
	f.String(&c.ConfFile, defaultConf, "FILE", "read configuration from FILE (default "+defaultConf+")", "c", "conffile")
	f.Bool(&c.Test, "check the configuration and exit (0 = valid)", "t", "test-config")
	f.Bool(&c.Debug, "run in the foreground, log to stdout at DEBUG; config log settings are ignored", "d", "debug")
	f.Bool(&c.Version, "print the version and exit", "V", "version")
	f.Bool(&c.Help, "print this help and exit", "h", "help", "u", "usage")
}

// Parse parses args; on a usage error it prints the message and returns
// ExitUsage, with ok=false.
func (f *Flags) Parse(args []string, stderr io.Writer, summary string) (code int, ok bool) {
	err := f.FlagSet.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		f.Usage(stderr, summary)
		return ExitOK, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\nTry '%s --help'.\n", f.prog, err, f.prog)
		return ExitUsage, false
	}
	if f.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\nTry '%s --help'.\n", f.prog, f.Arg(0), f.prog)
		return ExitUsage, false
	}
	return ExitOK, true
}

// Logger builds the daemon's logger: with debug, DEBUG to stdout (the
// HOWTO's -d); otherwise the configured level to logfile; with no logfile,
// to the journal's native protocol when stderr is the process's own stderr
// and systemd connected it to the journal (JOURNAL_STREAM), so entries
// carry PRIORITY and filterable fields (REALSERVER=...), with prog as
// SYSLOG_IDENTIFIER; else as text to stderr. The returned writer is where
// other output (the master's in-memory IPVS table) should go.
func Logger(prog string, debug bool, level logging.Level, logfile string, stdout, stderr io.Writer) (*slog.Logger, io.Writer, func(), error) {
	if debug {
		return logging.New(logging.Options{Level: logging.LevelDebug, Writer: stdout}), stdout, func() {}, nil
	}
	if logfile != "" {
		f, err := logging.OpenFile(logfile)
		if err == nil {
			return logging.New(logging.Options{Level: level, Writer: f}), f, func() { f.Close() }, nil
		}
		// An unwritable logfile must not stop the daemon: under the
		// systemd units the file system is read-only, and a HOWTO-style
		// config with logfile= would otherwise crash-loop. Log where the
		// logfile was not set, and say so there.
		log, w, closer, _ := Logger(prog, false, level, "", stdout, stderr)
		log.Warn("cannot open logfile; logging here instead", "file", logfile, "err", err)
		return log, w, closer, nil
	}
	// Only the real fd 2 can be the journal stream; a caller-supplied
	// writer (tests) always gets text. A malformed JOURNAL_STREAM (error)
	// also means text: stderr still works, and nothing is there to report to.
	if f, ok := stderr.(*os.File); ok && f == os.Stderr {
		if isJournal, err := journal.StderrIsJournalStream(); err == nil && isJournal {
			h := logging.NewJournalHandler(logging.JournalOptions{Level: level, Identifier: prog, Fallback: stderr})
			return slog.New(h), stderr, func() {}, nil
		}
	}
	return logging.New(logging.Options{Level: level, Writer: stderr}), stderr, func() {}, nil
}

// PrintVersion prints "PROG VERSION".
func PrintVersion(w io.Writer, prog string) { fmt.Fprintf(w, "%s %s\n", prog, Version) }

// Stdio bundles the streams a main writes to, so mains are testable.
type Stdio struct {
	Stdout, Stderr io.Writer
}

// DefaultStdio is the process's own streams.
func DefaultStdio() Stdio { return Stdio{Stdout: os.Stdout, Stderr: os.Stderr} }

// Begin parses args and answers --help and --version. done means the run
// is over and the process should exit with code.
func (f *Flags) Begin(args []string, c *Common, io Stdio, summary string) (code int, done bool) {
	if code, ok := f.Parse(args, io.Stderr, summary); !ok {
		return code, true
	}
	switch {
	case c.Help:
		f.Usage(io.Stdout, summary)
		return ExitOK, true
	case c.Version:
		PrintVersion(io.Stdout, f.prog)
		return ExitOK, true
	}
	return ExitOK, false
}

// Loaded reports the outcome of reading a configuration file: every
// problem (file:line: key: message) and exit status 1 when err is set,
// otherwise the warnings. ok says whether to go on.
func Loaded(io Stdio, prog string, err error, warnings []string) (code int, ok bool) {
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: configuration error:\n%v\n", prog, err)
		return ExitError, false
	}
	for _, w := range warnings {
		fmt.Fprintf(io.Stderr, "%s: warning: %s\n", prog, w)
	}
	return ExitOK, true
}
