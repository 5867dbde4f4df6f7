package man

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl/ctltest"
)

// exitSpec is what a command's EXIT STATUS section must say: exactly the
// statuses of the code, in order, words that must be there, and runs of
// the built command that prove it exits so.
type exitSpec struct {
	codes []int
	words []string
	runs  []exitRun
}

type exitRun struct {
	args []string
	want int
}

// exitSpecOf gives the daemons' statuses (internal/cli), or feedbackctl's
// own (internal/ctl), each proven by a run: feedbackctl's 1 and 4 against
// a stand-in control socket.
func exitSpecOf(t *testing.T, cmd string) exitSpec {
	if cmd != "feedbackctl" {
		return exitSpec{
			codes: []int{cli.ExitOK, cli.ExitError, cli.ExitUsage},
			words: []string{"bad command line", "configuration error"},
			runs: []exitRun{
				{[]string{"-V"}, cli.ExitOK},
				{[]string{"--no-such-option"}, cli.ExitUsage},
				{[]string{"-t", "-c", filepath.Join(t.TempDir(), "missing.conf")}, cli.ExitError},
			},
		}
	}
	refused := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Error: "no such realserver"}))
	denied := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Denied: true, Error: "permission denied"}))
	return exitSpec{
		codes: []int{ctl.ExitOK, ctl.ExitFailed, ctl.ExitUsage, ctl.ExitUnreachable, ctl.ExitDenied},
		words: []string{"bad command line", "refused", "cannot reach the master", "permission denied"},
		runs: []exitRun{
			{[]string{"-V"}, ctl.ExitOK},
			{[]string{"-s", refused.Path, "drain", "10.0.0.1"}, ctl.ExitFailed},
			{[]string{"--no-such-option"}, ctl.ExitUsage},
			{[]string{"-s", filepath.Join(t.TempDir(), "missing.sock"), "status"}, ctl.ExitUnreachable},
			{[]string{"-s", denied.Path, "maint", "10.0.0.1"}, ctl.ExitDenied},
		},
	}
}

// TestExitStatus checks each command's EXIT STATUS section against the
// code: it lists exactly the statuses the code has, and the built command
// really exits with them (for the daemons: a bad option 2, an unreadable
// configuration 1, -V 0).
func TestExitStatus(t *testing.T) {
	dir := builtCommands(t)
	entry := regexp.MustCompile(`(?m)^\.TP\n\.B ([0-9]+)\n`)
	for cmd, page := range commands {
		t.Run(cmd, func(t *testing.T) {
			spec := exitSpecOf(t, cmd)
			sec := section(plain(readPage(t, page)), "EXIT STATUS")
			if sec == "" {
				t.Fatalf("%s: no EXIT STATUS section", page)
			}
			var listed []int
			for _, m := range entry.FindAllStringSubmatch(sec, -1) {
				n, _ := strconv.Atoi(m[1])
				listed = append(listed, n)
			}
			if !slices.Equal(listed, spec.codes) {
				t.Errorf("%s: EXIT STATUS lists %v, want %v (the code's)", page, listed, spec.codes)
			}
			body := text(sec)
			for _, w := range spec.words {
				if !strings.Contains(strings.ToLower(body), w) {
					t.Errorf("%s: EXIT STATUS does not mention %q", page, w)
				}
			}
			ran := map[int]bool{}
			for _, c := range spec.runs {
				_, stderr, err := run(t, lintTimeout, t.TempDir(), filepath.Join(dir, cmd), c.args...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					t.Fatalf("%s %v: %v", cmd, c.args, err)
				}
				if got != c.want {
					t.Errorf("%s %v exits %d, the page says %d\n%s", cmd, c.args, got, c.want, stderr)
				}
				ran[c.want] = true
			}
			for _, code := range spec.codes {
				if !ran[code] {
					t.Errorf("no run proves %s's exit status %d", cmd, code)
				}
			}
		})
	}
}
