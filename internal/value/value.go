// Package value is the one grammar of configuration values: timers,
// counts, health values, switches, ports and addresses, as the master's
// and the agent's files write them, with the words of their errors.
//
// Both readers use it: internal/config when it checks a file (-t, start,
// reload), and internal/monitor when it builds a monitor from its keys.
// Before, each had its own parser, and they disagreed: "interval = 1e3"
// failed -t but would have been 16m40s to the monitor (issue 14).
//
// An error names the value but not the key or the place: the caller adds
// those (config.Error's FILE:LINE: KEY), so the same text reads right in a
// -t listing and in a monitor's own error.
package value

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	secondsRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	digitsRE  = regexp.MustCompile(`^[0-9]+$`)
)

// Duration reads a timer value. The HOWTO gives every timer in seconds as
// a bare number ("keepalive-interval = 2"), so a bare number, decimals
// allowed ("0.5"), means seconds; a Go duration with a unit ("500ms",
// "2s", "1m30s") is accepted as well because it is unambiguous.
// Exponents, signs and hexadecimal are refused: a timer is typed by a
// person, and "1e3" is more likely a typo than a wish for 16 minutes. Zero
// and negative values are refused because every timer is a period or a
// deadline.
func Duration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	in := s
	if secondsRE.MatchString(s) {
		// Through time.ParseDuration rather than float64 so that "0.1"
		// is exactly 100ms and overflow is detected.
		in = s + "s"
	}
	d, err := time.ParseDuration(in)
	// time.ParseDuration takes a leading sign; "+2s" is no timer anyone
	// writes on purpose, and "-2s" is caught below as not positive.
	if err != nil || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid duration %q (want seconds such as 2 or 0.5, or a duration such as 500ms)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be greater than zero", s)
	}
	return d, nil
}

// Timer is Duration with a floor, for a timer that cannot work below it;
// why says what goes wrong there, for the person who set it.
func Timer(s string, floor time.Duration, why string) (time.Duration, error) {
	d, err := Duration(s)
	if err != nil {
		return 0, err
	}
	if d < floor {
		return 0, fmt.Errorf("%v is too short (at least %v: %s)", d, floor, why)
	}
	return d, nil
}

// Count reads a whole number, 0 or more, in decimal digits (no sign, no
// spaces inside), up to 2^31 - 1.
func Count(s string) (int, error) {
	if !digitsRE.MatchString(s) {
		return 0, fmt.Errorf("invalid number %q (want a whole number, 0 or more)", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > math.MaxInt32 {
		return 0, fmt.Errorf("number %q is too large", s)
	}
	return n, nil
}

// Range reads a whole number from lo to hi.
func Range(s string, lo, hi int) (int, error) {
	n, err := Count(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("invalid value %q (want a whole number from %d to %d)", s, lo, hi)
	}
	return n, nil
}

// Health reads a health value as the files write it: a whole number from
// 0 to 100.
func Health(s string) (int, error) {
	n, err := Count(s)
	if err != nil || n > 100 {
		return 0, fmt.Errorf("invalid health %q (want a whole number from 0 to 100)", s)
	}
	return n, nil
}

// Bool reads a yes/no switch. The HOWTO has none, so the spellings are the
// common ones of daemon configuration files, in any case.
func Bool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("invalid switch %q (want yes or no)", s)
}

// NonEmpty accepts any value but the empty one; what names the value in
// the error ("path", "log file path").
func NonEmpty(s, what string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty %s", what)
	}
	return s, nil
}

// Choice reads one of a fixed set of words, in any case, and returns it as
// the set spells it.
func Choice(s string, choices ...string) (string, error) {
	for _, c := range choices {
		if strings.EqualFold(strings.TrimSpace(s), c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("invalid value %q (want %s)", s, strings.Join(choices, ", "))
}
