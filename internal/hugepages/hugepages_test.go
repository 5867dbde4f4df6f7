package hugepages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The helper process: TestAvoid runs this test binary again with
// helperVar naming a file that stands for the kernel's THP mode.
const helperVar = "HUGEPAGES_TEST_MODE_FILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperVar); path != "" {
		enabledPath = path
		err := Avoid()
		fmt.Printf("disabled=%v marker=%q err=%v\n", Disabled(), os.Getenv(Marker), err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestAlways(t *testing.T) {
	for mode, want := range map[string]bool{
		"[always] madvise never\n": true,
		"always [madvise] never\n": false,
		"always madvise [never]\n": false,
		"":                         false,
	} {
		if Always(mode) != want {
			t.Errorf("Always(%q) = %v", mode, !want)
		}
	}
}

// Under "always" the process starts again, once, with the flag and the
// marker; under any other mode it runs on untouched.
func TestAvoid(t *testing.T) {
	for mode, want := range map[string]string{
		"[always] madvise never\n": `disabled=true marker="1" err=<nil>`,
		"always [madvise] never\n": `disabled=false marker="" err=<nil>`,
	} {
		file := filepath.Join(t.TempDir(), "enabled")
		os.WriteFile(file, []byte(mode), 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperVar+"="+file)
		out, err := cmd.Output()
		cancel()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("mode %q: %q, %v; want %q", mode, got, err, want)
		}
	}
}

// When the process cannot start itself again, it says why and clears the
// flag it set: without the marker, the reapers could not tell it was the
// agent's, and every command would inherit it.
func TestAvoidExecFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "enabled")
	os.WriteFile(file, []byte("[always] madvise never\n"), 0o644)
	defer func(p string, e func(string, []string, []string) error) { enabledPath, execve = p, e }(enabledPath, execve)
	enabledPath = file
	execve = func(string, []string, []string) error { return errors.New("refused") }
	t.Setenv(Marker, "")
	if Disabled() {
		t.Fatal("the flag is set before the test")
	}
	if err := Avoid(); err == nil || err.Error() != "refused" || Disabled() {
		t.Errorf("Avoid: %v, flag %v; want the exec's error and the flag off", err, Disabled())
	}
}

// The reaper's side: the marker leaves the command's environment, the
// flag is off while the command starts and back on after.
func TestForCommand(t *testing.T) {
	if err := SetDisabled(true); err != nil {
		t.Fatalf("PR_SET_THP_DISABLE: %v", err)
	}
	defer SetDisabled(false)
	env, restore := ForCommand([]string{"PATH=/bin", Marker + "=1", "HOME=/"})
	if !slices.Equal(env, []string{"PATH=/bin", "HOME=/"}) || Disabled() {
		t.Errorf("for the command: %q, flag %v; want no marker and the flag off", env, Disabled())
	}
	restore()
	if !Disabled() {
		t.Error("the flag is not back on after the command started")
	}
	// Without the marker the agent did not set the flag: it is the
	// operator's, and stays as it is.
	env, restore = ForCommand([]string{"PATH=/bin"})
	restore()
	if !slices.Equal(env, []string{"PATH=/bin"}) || !Disabled() {
		t.Errorf("without the marker: %q, flag %v", env, Disabled())
	}
}
