package monitor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// procRoot writes a fake /proc with loadavg and a stat listing cpus CPUs.
func procRoot(t *testing.T, loadavg string, cpus int) string {
	t.Helper()
	dir := t.TempDir()
	stat := "cpu  10 0 10 100 0 0 0 0 0 0\n"
	for i := range cpus {
		stat += "cpu" + string(rune('0'+i)) + " 1 0 1 10 0 0 0 0 0 0\n"
	}
	stat += "intr 1\nctxt 1\n"
	for name, body := range map[string]string{"loadavg": loadavg, "stat": stat} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadavg(t *testing.T) {
	for _, tc := range []struct {
		loadavg string
		cpus    int
		average string
		want    int
	}{
		{"0.00 0.00 0.00 1/100 1\n", 4, "", 100},
		{"1.00 0.50 0.25 1/100 1\n", 4, "", 75},
		{"1.00 0.50 0.25 1/100 1\n", 4, "5", 88}, // 100 × (1 − 0.5/4) = 87.5
		{"1.00 0.50 0.25 1/100 1\n", 4, "15", 94},
		{"2.00 2.00 2.00 3/100 1\n", 2, "", 1},   // one task per CPU: busy, 1
		{"9.50 2.00 2.00 3/100 1\n", 2, "", 1},   // overloaded: still 1, not 0
		{"0.99 0.00 0.00 1/100 1\n", 1, "", 1},   // rounds to 1
		{"0.50 0.00 0.00 1/100 1\n", 1, "1", 50}, // average = 1 as written
	} {
		params := map[string]string{}
		if tc.average != "" {
			params["average"] = tc.average
		}
		m, err := New("loadavg", params, Options{ProcRoot: procRoot(t, tc.loadavg, tc.cpus)})
		if err != nil {
			t.Fatal(err)
		}
		if h, err := measureCtx(t, m); err != nil || h != tc.want {
			t.Errorf("%q on %d CPUs, average %q: got %d, %v; want %d", tc.loadavg, tc.cpus, tc.average, h, err, tc.want)
		}
	}
}

func TestLoadavgErrors(t *testing.T) {
	for _, tc := range []struct {
		loadavg string
		cpus    int
		want    string
	}{
		{"", 2, "is not three load averages"},
		{"0.5 0.5\n", 2, "is not three load averages"},
		{"x 0.5 0.5 1/1 1\n", 2, `load average "x" is not a number`},
		{"-1 0.5 0.5 1/1 1\n", 2, "is not a number"},
		{"nan 0.5 0.5 1/1 1\n", 2, "is not a number"},
		{"0.5 0.5 0.5 1/1 1\n", 0, "cannot count the CPUs online"},
	} {
		m, _ := New("loadavg", nil, Options{ProcRoot: procRoot(t, tc.loadavg, tc.cpus)})
		if _, err := measureCtx(t, m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q on %d CPUs: err = %v, want %q", tc.loadavg, tc.cpus, err, tc.want)
		}
	}
	m, _ := New("loadavg", nil, Options{ProcRoot: t.TempDir()})
	if _, err := measureCtx(t, m); err == nil {
		t.Error("no /proc/loadavg: no error")
	}
	if _, err := New("loadavg", map[string]string{"average": "10"}, Options{}); err == nil {
		t.Error("average = 10 accepted")
	}
}

// The real /proc, where there is one: a health in range.
func TestLoadavgReal(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		t.Skip("no /proc/loadavg on this system")
	}
	m, _ := New("loadavg", nil, Options{})
	h, err := measureCtx(t, m)
	if err != nil || h < 1 || h > 100 {
		t.Fatalf("got %d, %v", h, err)
	}
	t.Logf("loadavg health here: %d", h)
}
