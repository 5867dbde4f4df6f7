package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestAgentMetrics(t *testing.T) {
	a := NewAgent("0.6.0", map[string]string{"http": "cpuload", "dns": "exec"})
	a.Sampled("http", "cpuload", 2*time.Millisecond, 73, nil)
	a.Sampled("dns", "exec", 5*time.Second, 0, errors.New("timed out"))
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	out := string(b)
	for _, want := range []string{
		`feedbackd_agent_health{monitor="cpuload",service="http"} 73`,
		`feedbackd_agent_health{monitor="exec",service="dns"} -1`,
		`feedbackd_agent_sample_failures_total{monitor="exec",service="dns"} 1`,
		`feedbackd_agent_sample_failures_total{monitor="cpuload",service="http"} 0`,
		`feedbackd_agent_samples_total{monitor="cpuload",service="http"} 1`,
		`feedbackd_agent_sample_duration_seconds_bucket{monitor="exec",service="dns",le="5"} 1`,
		`feedbackd_agent_last_sample_timestamp_seconds{monitor="cpuload",service="http"}`,
		`feedbackd_agent_build_info{goversion=`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if problems, err := promlint.New(strings.NewReader(out)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
}
