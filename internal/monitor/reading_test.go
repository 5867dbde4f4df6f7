package monitor

import (
	"errors"
	"strings"
	"testing"
)

// TestReadHealth is the table of the reading rules (reading.go): what an
// exec command may print and a perl get_health() may return.
func TestReadHealth(t *testing.T) {
	const (
		both     = iota // same answer for exec and perl
		perlOnly        // a health for perl, not a health value for exec
	)
	for _, tc := range []struct {
		in   string
		want int    // when why == ""
		why  string // a part of the error, "" for a health
		mode int
	}{
		// Health values.
		{in: "42", want: 42},
		{in: "42\n", want: 42},
		{in: "  42 \r\n", want: 42},
		{in: "\t7\t", want: 7},
		{in: "42%", want: 42},
		{in: "66.6%\n", want: 67},
		{in: "49.5", want: 50}, // half away from zero
		{in: "49.49", want: 49},
		{in: ".4", want: 0},
		{in: "0.5", want: 1},
		{in: "100", want: 100},
		{in: "100.49", want: 100},
		{in: "0", want: 0},
		{in: "-0", want: 0},
		{in: "150", want: 100}, // clamped: the HOWTO's 0..100
		{in: "-5", want: 0},
		{in: "-25.5", want: 0},
		{in: "99999999999999999999999999999999999999999999", want: 100},
		{in: "10\nsecond line 90\n", want: 10}, // lines after the first are free text
		{in: "10\n\n", want: 10},
		// Perl prints a scalar under 0.0001 with an exponent.
		{in: "1e-05", want: 0, mode: perlOnly},
		{in: "1.77635683940025e-15", want: 0, mode: perlOnly},
		{in: "-3.5e-07", want: 0, mode: perlOnly},

		// Not health values: the junk of issue 19 first.
		{in: "HTTP/1.1 503 Service Unavailable", why: "the first line is not a number alone"},
		{in: "HTTP/1.1 200 OK\r\n\r\n42", why: "the first line is not a number alone"},
		{in: "1e9", why: "exponent"},
		{in: "1E9", why: "exponent"},
		{in: "1e+20", why: "exponent"},
		{in: "2.5e2", why: "exponent"},
		{in: "load: 42%", why: "the first line is not a number alone"},
		{in: "cpu-3 idle 12", why: "the first line is not a number alone"},
		{in: "42 percent", why: "the first line is not a number alone"},
		{in: "42 %", why: "the first line is not a number alone"},
		{in: "42%%", why: "the first line is not a number alone"},
		{in: "%42", why: "the first line is not a number alone"},
		{in: "4 2", why: "the first line is not a number alone"},
		{in: "42,5", why: "the first line is not a number alone"},
		{in: "1.2.3", why: "the first line is not a number alone"},
		{in: "5.", why: "the first line is not a number alone"},
		{in: ".", why: "the first line is not a number alone"},
		{in: "-", why: "the first line is not a number alone"},
		{in: "+5", why: "the first line is not a number alone"},
		{in: "0x40", why: "the first line is not a number alone"},
		{in: "0 but true", why: "the first line is not a number alone"},
		{in: "plenty", why: "the first line is not a number alone"},
		{in: "inf", why: "not a finite number"},
		{in: "-Inf", why: "not a finite number"},
		{in: "NaN", why: "not a finite number"},
		{in: "", why: "no output"},
		{in: " \n\t\n", why: "no output"},
		{in: "\n50\n", why: "the first line is blank"},
		{in: "\x00\x01\xff", why: "the first line is not a number alone"},
		{in: "４２", why: "the first line is not a number alone"}, // fullwidth digits
	} {
		for _, perl := range []bool{false, true} {
			got, err := readHealth([]byte(tc.in), perl)
			isHealth := tc.why == "" && (perl || tc.mode == both)
			switch {
			case isHealth && (err != nil || got != tc.want):
				t.Errorf("readHealth(%q, perl=%v) = %d, %v; want %d", tc.in, perl, got, err, tc.want)
			case !isHealth && err == nil:
				t.Errorf("readHealth(%q, perl=%v) = %d; want an error", tc.in, perl, got)
			case !isHealth && !errors.Is(err, errNotHealth):
				t.Errorf("readHealth(%q, perl=%v): error %v is not errNotHealth", tc.in, perl, err)
			case !isHealth && tc.why != "" && !strings.Contains(err.Error(), tc.why):
				t.Errorf("readHealth(%q, perl=%v): error %q lacks %q", tc.in, perl, err, tc.why)
			case !isHealth && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) && len(strings.TrimSpace(tc.in)) > 3:
				// The error must not quote the output: its text is what the
				// sampler compares to decide whether to log again.
				t.Errorf("readHealth(%q, perl=%v): error %q quotes the output", tc.in, perl, err)
			}
		}
	}
}
