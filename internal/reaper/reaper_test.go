package reaper

import (
	"slices"
	"strings"
	"testing"
)

// Env and commandEnv: the command gets back the environment the agent
// gave the reaper, whatever it held.
func TestReaperEnvRoundTrip(t *testing.T) {
	for _, env := range [][]string{
		{"PATH=/bin", "HOME=/"},
		{"PATH=/bin", "GOMAXPROCS=8"},
		{"GOMAXPROCS="},
		{"A=b", procsVar + "=stale", "C=d"}, // a reaper started by a reaper's command
	} {
		r := Env(env)
		if !slices.Contains(r, "GOMAXPROCS=1") {
			t.Errorf("Env(%q) = %q: no GOMAXPROCS=1", env, r)
		}
		want := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, procsVar+"=") })
		if got := commandEnv(r); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("commandEnv(Env(%q)) = %q, want %q", env, got, want)
		}
	}
	if env := []string{"GOMAXPROCS=4"}; !slices.Equal(commandEnv(env), env) {
		t.Errorf("an environment without the marker changed: %q", commandEnv(env))
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
