package localadmin

import (
	"strings"
	"testing"
)

func TestParseAndOf(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       map[string]State // service → state
	}{
		{"empty file: all ready", "", map[string]State{"web": Ready, "mail": Ready}},
		{"comments and blanks", "# nothing\n\n   \t\n", map[string]State{"web": Ready}},
		{"one service drained", "web drain\n", map[string]State{"web": Drain, "mail": Ready}},
		{"one in maintenance, case and comment", "  web   MAINT   # kernel update\n", map[string]State{"web": Maint, "mail": Ready}},
		{"whole realserver", "* drain", map[string]State{"web": Drain, "mail": Drain}},
		{"the stricter of * and the service", "* drain\nweb maint\nmail ready\n", map[string]State{"web": Maint, "mail": Drain, "dns": Drain}},
		{"ready lines change nothing", "web ready\n* ready\n", map[string]State{"web": Ready}},
		{"the same line twice", "web drain\nweb drain\n", map[string]State{"web": Drain}},
		{"CRLF", "web drain\r\n", map[string]State{"web": Drain}},
	} {
		f, err := Parse("admin", []byte(c.file))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for svc, want := range c.want {
			if got := f.Of(svc); got != want {
				t.Errorf("%s: Of(%q) = %s, want %s", c.name, svc, got, want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for file, want := range map[string]string{
		"web":                     "admin:1: want",
		"\nweb drain now\n":       "admin:2: want",
		"web drian":               `admin:1: web: unknown state "drian"`,
		"web drain\nweb maint\n":  "admin:2: web is set twice",
		"ok ready\n* sleep # zz ": `admin:2: *: unknown state "sleep"`,
	} {
		if f, err := Parse("admin", []byte(file)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, %v; want an error starting %q", file, f, err, want)
		}
	}
}

func TestStateOrderAndNames(t *testing.T) {
	if !(Ready < Drain && Drain < Maint) {
		t.Fatal("states must be ordered by restriction")
	}
	for s, n := range map[State]string{Ready: "ready", Drain: "drain", Maint: "maint"} {
		if s.String() != n {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), n)
		}
	}
}
