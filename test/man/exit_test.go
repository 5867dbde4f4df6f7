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
)

// TestExitStatus checks each command's EXIT STATUS section against the
// code: it lists exactly the statuses of internal/cli, and the built
// command really exits with them (a bad option 2, an unreadable
// configuration 1, -V 0).
func TestExitStatus(t *testing.T) {
	ldflags := makeVars(t, "LDFLAGS")[0]
	dir := builtCommands(t, ldflags)
	entry := regexp.MustCompile(`(?m)^\.TP\n\.B ([0-9]+)\n`)
	for cmd, page := range commands {
		t.Run(cmd, func(t *testing.T) {
			sec := section(plain(readPage(t, page)), "EXIT STATUS")
			if sec == "" {
				t.Fatalf("%s: no EXIT STATUS section", page)
			}
			var listed []int
			for _, m := range entry.FindAllStringSubmatch(sec, -1) {
				n, _ := strconv.Atoi(m[1])
				listed = append(listed, n)
			}
			if want := []int{cli.ExitOK, cli.ExitError, cli.ExitUsage}; !slices.Equal(listed, want) {
				t.Errorf("%s: EXIT STATUS lists %v, want %v (internal/cli)", page, listed, want)
			}
			body := text(sec)
			for _, w := range []string{"bad command line", "configuration error"} {
				if !strings.Contains(strings.ToLower(body), w) {
					t.Errorf("%s: EXIT STATUS does not mention a %s", page, w)
				}
			}
			for _, c := range []struct {
				args []string
				want int
			}{
				{[]string{"-V"}, cli.ExitOK},
				{[]string{"--no-such-option"}, cli.ExitUsage},
				{[]string{"-t", "-c", filepath.Join(t.TempDir(), "missing.conf")}, cli.ExitError},
			} {
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
			}
		})
	}
}
