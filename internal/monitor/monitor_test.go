package monitor

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNewKinds(t *testing.T) {
	for _, kind := range []string{"constant", "constant.so", " constant.so "} {
		m, err := New(kind, map[string]string{"value": "32"}, Options{})
		if err != nil {
			t.Fatalf("%q: %v", kind, err)
		}
		if m.Name() != "constant" {
			t.Errorf("%q: Name() = %q", kind, m.Name())
		}
	}
	_, err := New("loadavg.so", nil, Options{})
	if err == nil || !strings.Contains(err.Error(), `"loadavg.so"`) || !strings.Contains(err.Error(), strings.Join(Names(), ", ")) {
		t.Fatalf("unknown kind: err = %v, want the name and the known monitors", err)
	}
	for _, name := range Names() {
		if _, ok := Lookup(name); !ok {
			t.Errorf("Names() lists %q, Lookup does not know it", name)
		}
	}
}

func TestNewRejectsBadParams(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		params map[string]string
		want   string
	}{
		{"constant", nil, "value is required"},
		{"constant", map[string]string{"value": "101"}, "not an integer from 0 to 100"},
		{"constant", map[string]string{"value": "-1"}, "not an integer from 0 to 100"},
		{"constant", map[string]string{"value": "50", "interval": "0"}, "interval"},
		{"cpuload", map[string]string{"interval": "soon"}, "neither a number of seconds"},
		{"exec", nil, "command is required"},
		{"exec", map[string]string{"command": "echo 1", "timeout": "-2"}, "greater than zero"},
		{"perl", nil, "file is required"},
	} {
		_, err := New(tc.kind, tc.params, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "monitor "+tc.kind) {
			t.Errorf("New(%s, %v): err = %v, want %q", tc.kind, tc.params, err, tc.want)
		}
	}
}

func TestConstant(t *testing.T) {
	m, err := New("constant", map[string]string{"value": "32"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if h, err := m.Measure(context.Background()); h != 32 || err != nil {
			t.Fatalf("Measure = %d, %v", h, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{" 1.25 ", 1250 * time.Millisecond, true},
		{"500ms", 500 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"0", 0, true},
		{"-1", -time.Second, true},
		{"5 s", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"1e300", 0, false},
		{"", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestInterval(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   time.Duration
	}{
		{nil, DefaultInterval},
		{map[string]string{"interval": "2.5"}, 2500 * time.Millisecond},
		{map[string]string{"interval": "250ms"}, 250 * time.Millisecond},
		{map[string]string{"interval": "0"}, DefaultInterval},
		{map[string]string{"interval": "junk"}, DefaultInterval},
	} {
		if got := Interval(tc.params); got != tc.want {
			t.Errorf("Interval(%v) = %v, want %v", tc.params, got, tc.want)
		}
	}
}
