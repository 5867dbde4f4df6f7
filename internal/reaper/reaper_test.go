package reaper

import (
	"os/exec"
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

// The reaper's executable links the standard library and nothing of the
// project but this package, execpages and hugepages: whatever else it linked, every
// exec sample would initialise (see the package comment).
func TestReaperLinksLittle(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "../../cmd/feedbackd-monitor-reaper").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/lvs-feedbackd/feedbackd/"
	want := []string{mod + "cmd/feedbackd-monitor-reaper", mod + "internal/execpages", mod + "internal/hugepages", mod + "internal/reaper"}
	got := strings.Fields(string(out))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the reaper links %q beyond the standard library, want only %q", got, want)
	}
}
