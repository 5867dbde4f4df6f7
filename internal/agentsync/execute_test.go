package agentsync_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
	"github.com/lvs-feedbackd/feedbackd/internal/agentsync/fakesystemd"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

func textLogger(buf *bytes.Buffer) *slog.Logger {
	return logging.New(logging.Options{Level: logging.LevelDebug, Writer: buf})
}

func TestExecuteGoesOnAfterFailures(t *testing.T) {
	u := agentsync.UnitFor
	m := fakesystemd.New(map[string]string{
		u("gone"): "active", u("gone2"): "active", u("changed"): "active", u("crashed"): "failed", u("hand"): "active",
	})
	m.Fail("stop", u("gone"), errors.New("Access denied"))
	m.Fail("restart", u("changed"), errors.New("job failed"))
	bad := invalid("broken")
	acts := []agentsync.Action{
		{Kind: agentsync.Refuse, Name: "broken", Unit: bad.Unit, Path: bad.Path, Err: errors.New(bad.Path + ":3: port: bad port\n" + bad.Path + ":7: bogus: unknown key")},
		{Kind: agentsync.Stop, Name: "gone", Unit: u("gone")},
		{Kind: agentsync.Stop, Name: "gone2", Unit: u("gone2")},
		{Kind: agentsync.Start, Name: "new", Unit: u("new"), Hash: "hn"},
		{Kind: agentsync.Start, Name: "crashed", Unit: u("crashed"), Hash: "hc", ResetFailed: true},
		{Kind: agentsync.Restart, Name: "changed", Unit: u("changed"), Hash: "h2"},
		{Kind: agentsync.Adopt, Name: "hand", Unit: u("hand"), Hash: "hh"},
	}
	old := agentsync.State{"gone": "g", "gone2": "g2", "changed": "h1", "crashed": "hc", "broken": "hb"}
	oldCopy := maps.Clone(old)
	var logs bytes.Buffer
	next, sum := agentsync.Execute(context.Background(), m, acts, old, textLogger(&logs))

	wantCalls := []string{
		"stop " + u("gone"), "stop " + u("gone2"), "start " + u("new"),
		"reset-failed " + u("crashed"), "start " + u("crashed"), "restart " + u("changed"),
	}
	if got := m.Calls(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls\n got %q\nwant %q", got, wantCalls)
	}
	if want := (agentsync.Summary{Done: 4, Failed: 2, Refused: 1}); sum != want || sum.OK() {
		t.Errorf("summary %+v, want %+v, not OK", sum, want)
	}
	// Recorded only after success: the failed restart keeps the old hash
	// (so the next run tries again), the failed stop keeps its record, the
	// refused file's record is untouched.
	wantState := agentsync.State{"gone": "g", "changed": "h1", "crashed": "hc", "broken": "hb", "new": "hn", "hand": "hh"}
	if !maps.Equal(next, wantState) {
		t.Errorf("state %v, want %v", next, wantState)
	}
	if !maps.Equal(old, oldCopy) {
		t.Errorf("Execute modified its input state: %v", old)
	}
	out := logs.String()
	for _, want := range []string{
		`level=ERR msg="refused invalid configuration" unit=feedbackd-agent@broken.service`,
		`err="/d/broken.conf:3: port: bad port"`, `err="/d/broken.conf:7: bogus: unknown key"`,
		`msg="stop failed" unit=feedbackd-agent@gone.service`, "Access denied",
		`msg="restart failed" unit=feedbackd-agent@changed.service`,
		`msg=stopped unit=feedbackd-agent@gone2.service`, `msg=started unit=feedbackd-agent@new.service`,
		`msg=adopted unit=feedbackd-agent@hand.service`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 8 { // 2 for the refusal + 6 other actions
		t.Errorf("%d log lines, want 8 (one per action, one per configuration error):\n%s", n, out)
	}
}

func TestExecuteAllGoodIsOK(t *testing.T) {
	m := fakesystemd.New(nil)
	acts := []agentsync.Action{{Kind: agentsync.Start, Name: "web", Unit: agentsync.UnitFor("web"), Hash: "h"}}
	var logs bytes.Buffer
	next, sum := agentsync.Execute(context.Background(), m, acts, nil, textLogger(&logs))
	if !sum.OK() || sum.Done != 1 || next["web"] != "h" {
		t.Errorf("summary %+v, state %v", sum, next)
	}
	if m.State(agentsync.UnitFor("web")) != "active" {
		t.Error("unit not started")
	}
}
