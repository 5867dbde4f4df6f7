package agentsync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// submitter fakes go-systemd's Start/Stop/RestartUnitContext: it checks
// the mode and delivers result on the channel (or nothing when result is
// empty, as for a job that never finishes).
func submitter(t *testing.T, result string, err error) jobFunc {
	return func(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
		if mode != "replace" {
			t.Errorf("mode %q, want replace", mode)
		}
		if err != nil {
			return 0, err
		}
		if result != "" {
			ch <- result // must not block: the real sender holds a lock
		}
		return 42, nil
	}
}

func TestRunJob(t *testing.T) {
	const unit = `feedbackd-agent@web.service`
	if err := runJob(context.Background(), "start", unit, submitter(t, "done", nil), time.Minute); err != nil {
		t.Fatalf("done: %v", err)
	}
	for _, res := range []string{"failed", "canceled", "timeout", "dependency", "skipped"} {
		err := runJob(context.Background(), "restart", unit, submitter(t, res, nil), time.Minute)
		if err == nil || !strings.Contains(err.Error(), unit) || !strings.Contains(err.Error(), "job "+res) {
			t.Errorf("result %s: err %v, want one naming the unit and the result", res, err)
		}
	}
	denied := errors.New("Access denied")
	if err := runJob(context.Background(), "stop", unit, submitter(t, "", denied), time.Minute); !errors.Is(err, denied) || !strings.Contains(err.Error(), "stop "+unit) {
		t.Errorf("submit error: %v", err)
	}
	// A job whose result never comes: the short timeout is the point of
	// the test, nothing sleeps.
	if err := runJob(context.Background(), "start", unit, submitter(t, "", nil), time.Millisecond); !errors.Is(err, errJobTimeout) {
		t.Errorf("no result: %v, want errJobTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runJob(ctx, "start", unit, submitter(t, "", nil), time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestRunningFrom(t *testing.T) {
	for state, want := range map[string][2]bool{ // active, failed
		"active": {true, false}, "reloading": {true, false}, "activating": {true, false},
		"deactivating": {false, false}, "inactive": {false, false}, "failed": {false, true},
	} {
		r, ok := RunningFrom(`feedbackd-agent@web\x2d1.service`, state)
		if !ok || r.Name != "web-1" || r.Active != want[0] || r.Failed != want[1] || r.State != state {
			t.Errorf("%s: %+v %v", state, r, ok)
		}
	}
	if _, ok := RunningFrom("feedbackd-master.service", "active"); ok {
		t.Error("feedbackd-master.service taken for an instance")
	}
}
