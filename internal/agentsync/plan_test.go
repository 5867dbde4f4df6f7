package agentsync_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
)

func valid(name, hash string) agentsync.File {
	return agentsync.File{Name: name, Path: "/d/" + name + ".conf", Unit: agentsync.UnitFor(name), Hash: hash}
}

func invalid(name string) agentsync.File {
	f := valid(name, "h-bad")
	f.Err = errors.New(f.Path + ":3: port: bad port")
	return f
}

func unit(name, state string) agentsync.Running {
	r, ok := agentsync.RunningFrom(agentsync.UnitFor(name), state)
	if !ok {
		panic(name)
	}
	return r
}

// brief renders a plan as "kind name" lines, with "+reset" when the failed
// state is cleared first and "=hash" for what would be recorded.
func brief(acts []agentsync.Action) []string {
	var s []string
	for _, a := range acts {
		line := fmt.Sprintf("%v %s", a.Kind, a.Name)
		if a.ResetFailed {
			line += " +reset"
		}
		if a.Kind != agentsync.Stop && a.Kind != agentsync.Refuse {
			line += " =" + a.Hash
		}
		s = append(s, line)
	}
	return s
}

func TestPlan(t *testing.T) {
	type F = []agentsync.File
	type R = []agentsync.Running
	type S = agentsync.State
	for _, tc := range []struct {
		name    string
		files   F
		running R
		state   S
		want    []string
	}{
		{"nothing", nil, nil, nil, nil},
		{"new file starts", F{valid("web", "h1")}, nil, S{}, []string{"start web =h1"}},
		{"loaded but inactive unit starts", F{valid("web", "h1")}, R{unit("web", "inactive")}, S{"web": "h1"}, []string{"start web =h1"}},
		{"deactivating unit starts again", F{valid("web", "h1")}, R{unit("web", "deactivating")}, S{"web": "h1"}, []string{"start web =h1"}},
		{"up to date: nothing", F{valid("web", "h1")}, R{unit("web", "active")}, S{"web": "h1"}, nil},
		{"changed file restarts", F{valid("web", "h2")}, R{unit("web", "active")}, S{"web": "h1"}, []string{"restart web =h2"}},
		{"changed file restarts a unit in auto-restart", F{valid("web", "h2")}, R{unit("web", "activating")}, S{"web": "h1"}, []string{"restart web =h2"}},
		{"running without record is adopted", F{valid("web", "h1")}, R{unit("web", "active")}, S{}, []string{"adopt web =h1"}},
		{"failed, unchanged: retried", F{valid("web", "h1")}, R{unit("web", "failed")}, S{"web": "h1"}, []string{"start web +reset =h1"}},
		{"failed, changed: restarted", F{valid("web", "h2")}, R{unit("web", "failed")}, S{"web": "h1"}, []string{"restart web +reset =h2"}},
		{"failed, never ours: retried", F{valid("web", "h1")}, R{unit("web", "failed")}, nil, []string{"start web +reset =h1"}},
		{"invalid file, running: refused, not stopped", F{invalid("web")}, R{unit("web", "active")}, S{"web": "h1"}, []string{"refuse web"}},
		{"invalid file, not running: refused, not started", F{invalid("web")}, nil, S{}, []string{"refuse web"}},
		{"invalid file, failed: refused, not retried", F{invalid("web")}, R{unit("web", "failed")}, S{"web": "h1"}, []string{"refuse web"}},
		{"removed file stops", nil, R{unit("web", "active")}, S{"web": "h1"}, []string{"stop web"}},
		{"removed file stops a hand-started unit too", nil, R{unit("web", "active")}, nil, []string{"stop web"}},
		{"removed file stops a unit in auto-restart", nil, R{unit("web", "activating")}, nil, []string{"stop web"}},
		{"removed file, unit already down: nothing", nil, R{unit("web", "inactive"), unit("mail", "failed")}, S{"web": "h1"}, nil},
		{
			"a change of agent.conf (every hash) restarts all",
			F{valid("a", "n1"), valid("b", "n2"), valid("c", "n3")},
			R{unit("a", "active"), unit("b", "active"), unit("c", "active")},
			S{"a": "o1", "b": "o2", "c": "o3"},
			[]string{"restart a =n1", "restart b =n2", "restart c =n3"},
		},
		{
			"mixed: refusals, then stops, starts, restarts, adoptions, by name",
			F{valid("new", "h"), valid("changed", "h2"), valid("hand", "h"), valid("same", "h"), invalid("broken"), invalid("zbroken")},
			R{unit("changed", "active"), unit("hand", "active"), unit("same", "active"), unit("broken", "active"), unit("gone", "active"), unit("agone", "active")},
			S{"changed": "h1", "same": "h", "broken": "h", "gone": "h"},
			[]string{"refuse broken", "refuse zbroken", "stop agone", "stop gone", "start new =h", "restart changed =h2", "adopt hand =h"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := brief(agentsync.Plan(tc.files, tc.running, tc.state))
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// A unit started by hand under an unescaped name is not the instance of
// web-frontend.conf (its %I would read web/frontend.conf): it is stopped
// and the properly named unit started.
func TestPlanMatchesEscapedUnitNames(t *testing.T) {
	hand, ok := agentsync.RunningFrom("feedbackd-agent@web-frontend.service", "active")
	if !ok {
		t.Fatal("not an instance")
	}
	acts := agentsync.Plan([]agentsync.File{valid("web-frontend", "h")}, []agentsync.Running{hand}, nil)
	var got []string
	for _, a := range acts {
		got = append(got, a.Kind.String()+" "+a.Unit)
	}
	want := []string{`stop feedbackd-agent@web-frontend.service`, `start feedbackd-agent@web\x2dfrontend.service`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPlanRefusalCarriesTheError(t *testing.T) {
	f := invalid("web")
	acts := agentsync.Plan([]agentsync.File{f}, []agentsync.Running{unit("web", "active")}, nil)
	if len(acts) != 1 || acts[0].Err != f.Err || acts[0].Path != f.Path || acts[0].Unit != f.Unit {
		t.Fatalf("%+v", acts)
	}
}
