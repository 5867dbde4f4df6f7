package agentmetrics

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
)

func TestAgentMetrics(t *testing.T) {
	a := New("0.6.0", map[string]string{"http": "cpuload", "dns": "exec", "idle": "constant"})
	a.Sampled("http", "cpuload", 2*time.Millisecond, 73, nil)
	a.Sampled("dns", "exec", 5*time.Second, 0, errors.New("timed out"))
	// Scraped as Prometheus does, over HTTP from the server the agent runs.
	addr, err := promtext.Serve(t.Context(), "127.0.0.1:0", a.Expose, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(b)
	for _, want := range []string{
		`feedbackd_agent_health{monitor="cpuload",service="http"} 73`,
		`feedbackd_agent_health{monitor="exec",service="dns"} -1`,
		`feedbackd_agent_sample_failures_total{monitor="exec",service="dns"} 1`,
		`feedbackd_agent_sample_failures_total{monitor="cpuload",service="http"} 0`,
		`feedbackd_agent_samples_total{monitor="cpuload",service="http"} 1`,
		`feedbackd_agent_samples_total{monitor="constant",service="idle"} 0`,
		// le is inclusive: 5 s lands in the 5 bucket, 2 ms in 0.005.
		`feedbackd_agent_sample_duration_seconds_bucket{monitor="exec",service="dns",le="5"} 1`,
		`feedbackd_agent_sample_duration_seconds_bucket{monitor="exec",service="dns",le="2.5"} 0`,
		`feedbackd_agent_sample_duration_seconds_bucket{monitor="cpuload",service="http",le="0.005"} 1`,
		`feedbackd_agent_sample_duration_seconds_bucket{monitor="cpuload",service="http",le="0.001"} 0`,
		`feedbackd_agent_sample_duration_seconds_count{monitor="exec",service="dns"} 1`,
		`feedbackd_agent_last_sample_timestamp_seconds{monitor="cpuload",service="http"}`,
		`feedbackd_agent_build_info{goversion="go`,
		`process_resident_memory_bytes `,
		`go_goroutines `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	// No health before the first sample: unknown is not 0.
	if strings.Contains(out, `feedbackd_agent_health{monitor="constant",service="idle"}`) {
		t.Error("health of a service never sampled")
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(strings.NewReader(out)); err != nil {
		t.Errorf("the Prometheus parser refuses the scrape: %v", err)
	}
	if problems, err := promlint.New(strings.NewReader(out)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
}
