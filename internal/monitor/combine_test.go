package monitor

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"cpuload":             "cpuload",
		"CPULOAD.so":          "cpuload",
		"cpuload, http":       "cpuload,http",
		"cpuload.so,http":     "cpuload,http",
		" loadavg  tcp ":      "loadavg,tcp",
		"http,exec,constant":  "http,exec,constant",
		"constant, cpuload  ": "constant,cpuload",
	} {
		k, err := Parse(in)
		if err != nil || k.Name != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, k.Name, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                              "empty monitor",
		" , ":                           "empty monitor",
		"cpuload, nosuch":               `unknown monitor "nosuch"`,
		"cpuload, cpuload.so":           "listed twice",
		"cpuload,http,tcp,exec,loadavg": "at most 4",
		"min(cpuload, http)":            "unknown monitor",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", in, err, want)
		}
	}
}

// A combination takes the keys of all its monitors, each once, required
// when one of them requires it, plus interval.
func TestCombinationKeys(t *testing.T) {
	k, err := Parse("exec, http")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	required := map[string]bool{}
	for _, s := range k.Keys {
		names = append(names, s.Name)
		required[s.Name] = s.Required
	}
	want := []string{"command", "timeout", "url", "method", "max-redirects", "response-time", "body-health", "interval"}
	if !slices.Equal(names, want) {
		t.Errorf("keys %v, want %v", names, want)
	}
	if !required["command"] || !required["url"] || required["timeout"] {
		t.Errorf("required: %v", required)
	}
	// Cross-key checks of a member apply, naming it.
	key, err := k.CheckKeys(map[string]string{"command": "true", "url": "http://h/", "response-time": "9"})
	if key != "response-time" || err == nil || !strings.HasPrefix(err.Error(), "http: ") {
		t.Errorf("CheckKeys = %q, %v", key, err)
	}
	if got := memberParams(k.members[0], map[string]string{"command": "true", "url": "u", "timeout": "2", "interval": "3"}); len(got) != 2 || got["command"] != "true" || got["timeout"] != "2" {
		t.Errorf("exec's keys: %v", got)
	}
}

func TestCombine(t *testing.T) {
	bad := errors.New("broken")
	names := []string{"a", "b", "c"}
	for _, tc := range []struct {
		healths []int
		errs    []error
		want    int
		unknown bool
	}{
		{[]int{80, 30, 90}, []error{nil, nil, nil}, 30, false},
		{[]int{100, 100, 100}, []error{nil, nil, nil}, 100, false},
		{[]int{0, 50, 50}, []error{nil, nil, nil}, 0, false},
		{[]int{80, 0, 90}, []error{nil, bad, nil}, 0, true}, // b unknown: could be lower than 80
		{[]int{0, 0, 90}, []error{nil, bad, nil}, 0, false}, // a is 0: nothing is lower
		{[]int{0, 0, 0}, []error{bad, bad, bad}, 0, true},
	} {
		h, err := combine(names, tc.healths, tc.errs)
		if tc.unknown {
			if err == nil || !strings.Contains(err.Error(), "b: broken") {
				t.Errorf("%v %v: got %d, %v; want unknown naming b", tc.healths, tc.errs, h, err)
			}
			continue
		}
		if err != nil || h != tc.want {
			t.Errorf("%v %v: got %d, %v; want %d", tc.healths, tc.errs, h, err, tc.want)
		}
	}
}

// End to end through New: a constant and a tcp check, as a block would
// give them.
func TestCombinationMeasure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	m, err := New("constant, tcp", map[string]string{"value": "60", "connect": addr, "timeout": "2", "interval": "0.5"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Name() != "constant,tcp" {
		t.Errorf("Name() = %q", m.Name())
	}
	if h, err := measureCtx(t, m); err != nil || h != 60 {
		t.Fatalf("port open: %d, %v; want 60 (the constant, the lower)", h, err)
	}
	ln.Close()
	if h, err := measureCtx(t, m); err != nil || h != 0 {
		t.Fatalf("port closed: %d, %v; want 0", h, err)
	}
	// A member that cannot be built is named.
	if _, err := New("constant, tcp", map[string]string{"value": "60"}, Options{}); err == nil || !strings.Contains(err.Error(), "tcp: connect") {
		t.Errorf("missing connect: %v", err)
	}
}
