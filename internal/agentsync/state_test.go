package agentsync_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
)

func TestStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "agent-sync") // created on save
	st, err := agentsync.LoadState(dir)
	if err != nil || len(st) != 0 {
		t.Fatalf("missing state: %v, %v; want empty, no error", st, err)
	}
	want := agentsync.State{"web": "h1", "web-frontend": "h2"}
	if err := agentsync.SaveState(dir, want); err != nil {
		t.Fatal(err)
	}
	// Replacing an existing file works the same way.
	want["mail"] = "h3"
	if err := agentsync.SaveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := agentsync.LoadState(dir)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("loaded %v, %v; want %v", got, err, want)
	}
	// Atomic write: only the state file is left, no temporary, readable
	// by all (operators look at it).
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "state.json" {
		t.Errorf("state dir holds %v", ents)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("state file: %v %v", fi.Mode(), err)
	}
}

func TestCorruptStateIsEmptyWithWarning(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"version":1,"instances":{"web":`,
		"not json":      "web=h1\n",
		"wrong version": `{"version":2,"instances":{"web":"h1"}}`,
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "state.json"), []byte(content), 0o644)
		st, err := agentsync.LoadState(dir)
		if err == nil || st == nil || len(st) != 0 || !strings.Contains(err.Error(), "state ignored") {
			t.Errorf("%s: %v, %v; want an empty state and a warning", name, st, err)
		}
	}
}

func TestStatePrune(t *testing.T) {
	st := agentsync.State{"web": "h1", "gone": "h2", "broken": "h3"}
	st.Prune([]agentsync.File{valid("web", "x"), invalid("broken"), valid("new", "y")})
	if want := (agentsync.State{"web": "h1", "broken": "h3"}); !maps.Equal(st, want) {
		t.Errorf("pruned to %v, want %v", st, want)
	}
}

// Two runs (the path unit's and one by hand) take turns. Checked with a
// non-blocking flock of our own rather than by timing a blocked Lock.
func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	unlock, err := agentsync.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("second lock while held: %v, want EWOULDBLOCK", err)
	}
	unlock()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
}
