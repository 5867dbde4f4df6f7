package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
)

func scrape(t *testing.T, m *Master) string {
	t.Helper()
	var w promtext.Writer
	m.Expose(&w)
	return string(w.Bytes())
}

func TestMasterMetrics(t *testing.T) {
	snapErr := error(nil)
	m := NewMaster("0.6.0", func(context.Context) ([]control.Destination, int, int, error) {
		return []control.Destination{
			{VS: "http", Realserver: "10.0.0.11:80", State: "active", Health: 80, Target: 80, Weight: 0, Kernel: 0, Admin: "drain", ActiveConn: 3},
			{VS: "http", Realserver: "10.0.0.12:80", State: "active", Health: -1, Target: 0, Weight: 0, Kernel: -1},
		}, 5, 2, snapErr
	})
	m.KeepaliveAnswered(3 * time.Millisecond)
	m.KeepaliveMissed()
	m.Refused("address not in allow")
	m.IPVSWrite("update", 100*time.Microsecond, nil)
	m.IPVSWrite("add", 100*time.Microsecond, errors.New("EIO"))
	m.Reloaded(nil)
	m.StateSaved(errors.New("ENOSPC"))
	out := scrape(t, m)
	for _, want := range []string{
		`feedbackd_realserver_health{realserver="10.0.0.11:80",vs="http"} 80`,
		`feedbackd_realserver_kernel_weight{realserver="10.0.0.11:80",vs="http"} 0`,
		`feedbackd_realserver_target_weight{realserver="10.0.0.11:80",vs="http"} 80`,
		`feedbackd_realserver_admin_state{realserver="10.0.0.11:80",state="drain",vs="http"} 1`,
		`feedbackd_realserver_admin_state{realserver="10.0.0.11:80",state="ready",vs="http"} 0`,
		`feedbackd_realserver_active_connections{realserver="10.0.0.11:80",vs="http"} 3`,
		`feedbackd_agent_connections 5`,
		`feedbackd_agents 2`,
		`feedbackd_keepalive_rtt_seconds_count 1`,
		`feedbackd_keepalives_missed_total 1`,
		`feedbackd_refusals_total{reason="address not in allow"} 1`,
		`feedbackd_ipvs_writes_total{op="add"} 1`,
		`feedbackd_ipvs_write_errors_total{op="add"} 1`,
		`feedbackd_ipvs_write_errors_total{op="update"} 0`,
		`feedbackd_reloads_total{result="applied"} 1`,
		`feedbackd_state_file_writes_total{result="error"} 1`,
		`feedbackd_build_info{goversion=`,
		`feedbackd_snapshot_ok 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	// Never reported, not in IPVS: no health and no kernel weight series,
	// rather than a 0 that would read as a fact.
	for _, absent := range []string{`feedbackd_realserver_health{realserver="10.0.0.12:80"`, `feedbackd_realserver_kernel_weight{realserver="10.0.0.12:80"`} {
		if strings.Contains(out, absent) {
			t.Errorf("scrape has %s", absent)
		}
	}
	// What promtool check metrics runs.
	problems, err := promlint.New(strings.NewReader(out)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
	snapErr = errors.New("owner busy")
	if out := scrape(t, m); !strings.Contains(out, "feedbackd_snapshot_ok 0") {
		t.Error("a failed snapshot is not visible")
	}
}

// A scrape at 20 000 realservers must not cost an object per series (the
// client library built seven or more per realserver): the text goes into
// one buffer.
func TestMasterScrapeAllocatesPerScrapeNotPerSeries(t *testing.T) {
	dests := make([]control.Destination, 5000)
	for i := range dests {
		dests[i] = control.Destination{VS: "web", Realserver: fmt.Sprintf("10.%d.%d.1:80", i/256, i%256), State: "active", Health: 70, Target: 70, Weight: 70, Kernel: 70}
	}
	m := NewMaster("0.6.0", func(context.Context) ([]control.Destination, int, int, error) {
		return dests, len(dests), len(dests), nil
	})
	var w promtext.Writer
	m.Expose(&w)
	if got := strings.Count(string(w.Bytes()), `realserver="10.19.135.1:80"`); got != 12 {
		t.Errorf("the last realserver is in %d series, want 12", got)
	}
	allocs := testing.AllocsPerRun(5, func() {
		var w promtext.Writer
		m.Expose(&w)
	})
	// The buffer's growth, the process metrics' reads of /proc, the
	// counters' sorting: a few hundred at most, against 60 000 series.
	if allocs > 400 {
		t.Errorf("%v allocations per scrape of 5 000 realservers", allocs)
	}
	t.Logf("%v allocations per scrape of 5 000 realservers", allocs)
}
