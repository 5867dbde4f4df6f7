package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl/ctltest"
)

// The test binary runs as feedbackctl when this is set, so that the
// tests below see the process's real exit status.
const asMain = "FEEDBACKCTL_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// feedbackctl runs this test binary as the command, under a deadline.
func feedbackctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("feedbackctl %v: no result within a minute", args)
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatalf("feedbackctl %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

// The process exits with the status the page documents, for each kind of
// outcome.
func TestProcessExitStatus(t *testing.T) {
	ok := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, OK: true,
		Status: &control.Status{Destinations: []control.Destination{{VS: "http", Realserver: "10.0.0.11:80", Health: 80, Kernel: 80, Weight: 80, Target: 80}}}}))
	refused := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Error: "no such realserver"}))
	denied := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Denied: true, Error: "permission denied: uid 1000"}))
	for _, c := range []struct {
		args []string
		want int
		out  string
	}{
		{[]string{"-s", ok.Path, "status"}, ctl.ExitOK, "http  10.0.0.11:80"},
		{[]string{"--version"}, ctl.ExitOK, "feedbackctl "},
		{[]string{"-s", refused.Path, "drain", "10.0.0.11"}, ctl.ExitFailed, ""},
		{[]string{"status", "--no-such-option"}, ctl.ExitUsage, ""},
		{[]string{"-s", filepath.Join(t.TempDir(), "none.sock"), "status"}, ctl.ExitUnreachable, ""},
		{[]string{"-s", denied.Path, "maint", "10.0.0.11"}, ctl.ExitDenied, ""},
	} {
		code, out, errs := feedbackctl(t, c.args...)
		if code != c.want || !strings.Contains(out, c.out) {
			t.Errorf("feedbackctl %v: exit %d, want %d\nstdout %q\nstderr %q", c.args, code, c.want, out, errs)
		}
	}
}
