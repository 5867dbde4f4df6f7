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
	_, err := New("nosuch.so", nil, Options{})
	if err == nil || !strings.Contains(err.Error(), `"nosuch.so"`) || !strings.Contains(err.Error(), strings.Join(Names(), ", ")) {
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
		{"constant", map[string]string{"value": "101"}, `value: invalid health "101" (want a whole number from 0 to 100)`},
		{"constant", map[string]string{"value": "-1"}, `value: invalid health "-1"`},
		{"constant", map[string]string{"value": "50", "interval": "0"}, `interval: duration "0" must be greater than zero`},
		{"cpuload", map[string]string{"interval": "soon"}, `interval: invalid duration "soon"`},
		// Read as 16m40s before the grammar was shared with -t (issue 14).
		{"cpuload", map[string]string{"interval": "1e3"}, `interval: invalid duration "1e3"`},
		{"cpuload", map[string]string{"interval": "5ms"}, "interval: 5ms is too short (at least 10ms"},
		{"exec", nil, "command is required"},
		{"exec", map[string]string{"command": "echo 1", "timeout": "-2"}, "timeout: invalid duration"},
		{"exec", map[string]string{"command": "echo 1", "timeout": "-2s"}, "greater than zero"},
		{"exec", map[string]string{"command": "echo 1", "timeout": "50ms"}, "timeout: 50ms is too short (at least 100ms"},
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

// TestKeySpecCheck: New reads every key as KeySpec.Check does, which is
// what the config reader calls; both are internal/value.
func TestKeySpecCheck(t *testing.T) {
	for _, tc := range []struct {
		kind, key, v string
		ok           bool
	}{
		{"cpuload", "interval", "2", true},
		{"cpuload", "interval", "0.5", true},
		{"cpuload", "interval", "500ms", true},
		{"cpuload", "interval", "10ms", true},
		{"cpuload", "interval", "9ms", false},
		{"cpuload", "interval", "1e3", false},
		{"cpuload", "interval", "+2", false},
		{"cpuload", "interval", "0x10", false},
		{"cpuload", "interval", "NaN", false},
		{"cpuload", "interval", "", false},
		{"constant", "value", "0", true},
		{"constant", "value", "100", true},
		{"constant", "value", "+5", false},
		{"constant", "value", "5.0", false},
		{"exec", "timeout", "0.1", true},
		{"exec", "timeout", "0.09", false},
		{"perl", "timeout", "1m", true},
	} {
		k, _ := Lookup(tc.kind)
		var spec *KeySpec
		for i := range k.Keys {
			if k.Keys[i].Name == tc.key {
				spec = &k.Keys[i]
			}
		}
		if spec == nil {
			t.Fatalf("%s has no key %s", tc.kind, tc.key)
		}
		checkErr := spec.Check(tc.v)
		if (checkErr == nil) != tc.ok {
			t.Errorf("%s %s = %q: Check = %v, want ok=%v", tc.kind, tc.key, tc.v, checkErr, tc.ok)
		}
		if tc.kind == "perl" {
			continue // New would load a script
		}
		params := map[string]string{tc.key: tc.v, "value": "1", "command": "true"}
		_, newErr := New(tc.kind, params, Options{})
		if (newErr == nil) != tc.ok || checkErr != nil && !strings.HasSuffix(newErr.Error(), tc.key+": "+checkErr.Error()) {
			t.Errorf("%s %s = %q: New = %v, Check = %v; want the same verdict and words", tc.kind, tc.key, tc.v, newErr, checkErr)
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

// TestRegistry: every kind registered itself with its keys and a
// constructor, under its own name, and a second registration of a name is
// refused.
func TestRegistry(t *testing.T) {
	if got := strings.Join(Names(), " "); got != "constant cpuload exec http loadavg perl tcp" {
		t.Errorf("Names() = %q", got)
	}
	for name, k := range kinds {
		if k.Name != name || k.build == nil {
			t.Errorf("kinds[%q] = %+v", name, k)
		}
		if k, _ := Lookup(name); k.Keys[len(k.Keys)-1].Name != "interval" {
			t.Errorf("%s: keys %+v lack the common interval", name, k.Keys)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("registering constant twice did not panic")
		}
	}()
	register(kinds["constant"])
}
