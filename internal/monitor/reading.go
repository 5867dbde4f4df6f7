package monitor

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
)

// How a health is read from text: an exec command's standard output, the
// value a perl get_health() returns, an http monitor's body.
//
// The reading is strict (issue 19). The 2007 HOWTO asks an exec program for
// "a single line of output (on stdout), with a single number indicating
// the health (between 0 and 100)", and a perl get_health() for "a scalar
// between 0 and 100". Reading the first number anywhere in the output, as
// this agent did before, turned "HTTP/1.1 503 Service Unavailable" into
// health 1 and "1e9" into 1: a broken check became a weight. Now text that
// is not a health value makes the health unknown, which the master reads
// as "leave the weight alone", and the reason is logged.
//
// What is kept of the lenient reading is what the HOWTO's own contract
// needs:
//   - blanks around the number and the line's end ("42\n", "  42 \r\n"):
//     the HOWTO asks for a line;
//   - a decimal part, rounded half away from zero: a perl scalar is often
//     a computed float ("100 - 25 * $load" gives 87.5);
//   - numbers outside 0..100 clamped to it: the same computed healths go
//     below 0 exactly when the load is highest, and "unknown" would then
//     freeze the weight instead of lowering it;
//   - for perl only, an exponent with a negative power ("1e-05"): that is
//     how Perl prints a scalar between 0 and 0.0001, which the HOWTO
//     allows. Perl prints every number from 0.0001 up to 10^15 without an
//     exponent, so "1e9" or "1e+20" cannot be a number Perl computed
//     within 0..100; they are refused.
//
// A "%" right after the number is accepted: "42%" is a health written as
// what it is, a percentage. Lines after the first are ignored, so a
// command may print details below its health.
var (
	healthRE     = regexp.MustCompile(`^-?([0-9]+(\.[0-9]+)?|\.[0-9]+)%?$`)
	perlSmallRE  = regexp.MustCompile(`^-?[0-9](\.[0-9]+)?e-[0-9]+%?$`)
	exponentRE   = regexp.MustCompile(`^[-+]?[0-9.]+[eE][-+]?[0-9]+%?$`)
	nonFiniteRE  = regexp.MustCompile(`(?i)^[-+]?(inf|infinity|nan)%?$`)
	healthFormat = "a number alone on the first line, optionally with %"
)

// notHealthError says why a text is not a health value. Its text is one of
// a few fixed phrases and never quotes the text itself, so that a check
// printing a different line each time (a timestamp, a request id) gives
// the same error every time: the sampler logs an error when its text
// changes, and the text itself is logged at a bounded rate (rateLog).
type notHealthError struct{ why string }

func (e *notHealthError) Error() string {
	return "not a health value (" + healthFormat + "): " + e.why
}

// errNotHealth matches every notHealthError with errors.Is.
var errNotHealth = errors.New("not a health value")

func (e *notHealthError) Is(target error) bool { return target == errNotHealth }

// readHealth reads the health from the first line of b by the rules
// above; perl allows Perl's small-number exponents.
func readHealth(b []byte, perl bool) (int, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return 0, &notHealthError{"no output"}
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	s := strings.TrimSpace(string(line))
	switch {
	case s == "":
		return 0, &notHealthError{"the first line is blank"}
	case healthRE.MatchString(s):
	case perl && perlSmallRE.MatchString(s):
	case exponentRE.MatchString(s):
		if perl {
			return 0, &notHealthError{"a number with an exponent that Perl does not print for a value from 0 to 100"}
		}
		return 0, &notHealthError{"a number with an exponent"}
	case nonFiniteRE.MatchString(s):
		return 0, &notHealthError{"not a finite number"}
	default:
		return 0, &notHealthError{"the first line is not a number alone"}
	}
	// The patterns leave digits, one dot, an optional minus and exponent:
	// ParseFloat's only possible error is ErrRange, and then f is ±Inf or
	// 0, which clamp fine.
	f, _ := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	return clampHealth(f), nil
}

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

// quoteHead quotes the start of a program's output for a log line, so a
// script that prints a page of text does not flood the log.
func quoteHead(b []byte, max int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// rateLogEvery is the least time between two lines of a monitor's
// recurring complaint (the output it could not read, why an http check
// failed); the count of those held back goes out as not_logged.
const rateLogEvery = time.Minute

func newRateLog(log *slog.Logger) *ratelog.Logger {
	return ratelog.New(log, rateLogEvery, "not_logged")
}
