package promtext

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse reads w's output with the Prometheus server's own text parser.
func parse(t *testing.T, b []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("the Prometheus parser refuses the output: %v\n%s", err, b)
	}
	if problems, err := promlint.New(strings.NewReader(string(b))).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			k := name
			for _, l := range m.Label {
				k += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[k] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[k] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[k+",count"] = float64(m.Histogram.GetSampleCount())
				out[k+",sum"] = m.Histogram.GetSampleSum()
				for _, b := range m.Histogram.Bucket {
					out[k+",le="+string(appendFloat(nil, b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func TestWriter(t *testing.T) {
	var w Writer
	w.Family("x_total", "Help with a \\ backslash\nand a newline.", "counter")
	w.Sample("x_total", []Label{{"a", `quote " back \ nl ` + "\n" + `end`}, {"b", "ünï"}}, 3)
	w.Sample("x_total", nil, 1e21)
	w.Family("y_seconds", "A histogram.", "histogram")
	w.Histogram("y_seconds", []Label{{"s", "web"}}, []float64{0.1, 1}, []uint64{2, 0, 5}, 12.5)
	w.Family("z", "Special values.", "gauge")
	w.Sample("z", []Label{{"k", "inf"}}, math.Inf(1))
	w.Sample("z", []Label{{"k", "-inf"}}, math.Inf(-1))
	got := parse(t, w.Bytes())
	want := map[string]float64{
		"x_total,a=quote \" back \\ nl \nend,b=ünï": 3,
		"x_total":                 1e21,
		"y_seconds,s=web,count":   7,
		"y_seconds,s=web,sum":     12.5,
		"y_seconds,s=web,le=0.1":  2,
		"y_seconds,s=web,le=1":    2,
		"y_seconds,s=web,le=+Inf": 7,
		"z,k=inf":                 math.Inf(1),
		"z,k=-inf":                math.Inf(-1),
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%q: got %v (present %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d series parsed, want %d: %v", len(got), len(want), got)
	}
	if s := string(w.Bytes()); !strings.Contains(s, `y_seconds_bucket{s="web",le="+Inf"} 7`) {
		t.Errorf("histogram lines:\n%s", s)
	}
}

func TestProcess(t *testing.T) {
	// A command name with spaces and parentheses, as /proc shows it.
	dir := t.TempDir()
	mkdir := func(p string) { os.MkdirAll(filepath.Join(dir, p), 0o755) }
	mkdir("self/fd")
	for _, f := range []string{"0", "1", "2", "7"} {
		os.WriteFile(filepath.Join(dir, "self/fd", f), nil, 0o644)
	}
	stat := "4242 (feedbackd (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 9 0 12345 11534336 1800 18446744073709551615"
	os.WriteFile(filepath.Join(dir, "self/stat"), []byte(stat+" 1 1 0 0 0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "stat"), []byte("cpu  1 2 3\nbtime 1765000000\nprocesses 9\n"), 0o644)
	old := procRoot
	procRoot = dir
	t.Cleanup(func() { procRoot = old })

	var w Writer
	WriteProcess(&w)
	got := parse(t, w.Bytes())
	for k, v := range map[string]float64{
		"process_cpu_seconds_total":     4, // (250 + 150) / 100
		"process_resident_memory_bytes": float64(1800 * os.Getpagesize()),
		"process_virtual_memory_bytes":  11534336,
		"process_start_time_seconds":    1765000000 + 123.45,
		"process_open_fds":              4,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"process_max_fds", "go_goroutines", "go_memstats_alloc_bytes", "go_gc_cycles_total"} {
		if got[k] <= 0 && k != "go_gc_cycles_total" {
			t.Errorf("%s = %v", k, got[k])
		}
		if _, ok := got[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}

	// Without /proc, the process_ values are left out, not made up.
	procRoot = filepath.Join(dir, "none")
	var w2 Writer
	WriteProcess(&w2)
	if s := string(w2.Bytes()); strings.Contains(s, "process_cpu") || strings.Contains(s, "process_open_fds") {
		t.Errorf("values without /proc:\n%s", s)
	}
}
