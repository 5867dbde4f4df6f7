package logging

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
	}{
		{"CRIT", LevelCrit}, {"err", LevelErr}, {"Warn", LevelWarn}, {"INFO", LevelInfo},
		{"DEBUG", LevelDebug}, {" VDEBUG ", LevelVDebug},
	} {
		got, err := ParseLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if n := LevelName(got); !strings.EqualFold(n, strings.TrimSpace(tc.in)) {
			t.Errorf("LevelName(%v) = %q, want %q", got, n, tc.in)
		}
	}
	for _, bad := range []string{"", "WARNING", "ERROR", "7"} {
		if _, err := ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) accepted", bad)
		}
	}
}

// The HOWTO's order: CRIT < ERR < WARN < INFO < DEBUG < VDEBUG in verbosity.
func TestLevelsFilterAndPrintHOWTONames(t *testing.T) {
	var b bytes.Buffer
	log := New(Options{Level: LevelWarn, Writer: &b})
	log.Log(context.Background(), LevelCrit, "c")
	log.Error("e")
	log.Warn("w")
	log.Info("i")
	log.Debug("d")
	log.Log(context.Background(), LevelVDebug, "v")
	out := b.String()
	for _, want := range []string{"level=CRIT msg=c", "level=ERR msg=e", "level=WARN msg=w"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, not := range []string{"msg=i", "msg=d", "msg=v"} {
		if strings.Contains(out, not) {
			t.Errorf("%q logged at WARN:\n%s", not, out)
		}
	}
	if got := SyslogPriority(LevelCrit); got != 2 {
		t.Errorf("CRIT priority %d, want 2", got)
	}
	if got := SyslogPriority(LevelVDebug); got != 7 {
		t.Errorf("VDEBUG priority %d, want 7", got)
	}
}
