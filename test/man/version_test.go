package man

// One release version, kept in internal/cli/VERSION: the man pages' .TH
// lines carry it, the Makefile derives the build's version from it, -V and
// --help print that version, and it is one that dpkg (and rpm, where
// installed) accept and sort after the release and before the next one.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
)

func TestTitleCarriesRelease(t *testing.T) {
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(cli.Release) {
		t.Fatalf("internal/cli/VERSION holds %q; want MAJOR.MINOR.PATCH", cli.Release)
	}
	want := "lvs-feedbackd " + cli.Release
	for _, p := range pages(t) {
		base := filepath.Base(p)
		for line := range strings.SplitSeq(readPage(t, base), "\n") {
			if !strings.HasPrefix(line, ".TH ") {
				continue
			}
			if th := thArgs(line); len(th) < 4 || th[3] != want {
				t.Errorf("%s: .TH source %q, want %q (internal/cli/VERSION)", base, th[3:], want)
			}
			break
		}
	}
}

// makeVars asks make for the values of some of the Makefile's variables,
// as a run of make in a clean environment would compute them.
func makeVars(t *testing.T, names ...string) []string {
	t.Helper()
	var rule strings.Builder
	rule.WriteString(`print-vars: ; @printf '%s\n'`)
	for _, n := range names {
		fmt.Fprintf(&rule, " '$(%s)'", n)
	}
	cmd := []string{"env"}
	// Under "make test" these come from the calling make; a fresh make
	// must compute them itself.
	for _, v := range []string{"VERSION", "PKG_VERSION", "RELEASE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"} {
		cmd = append(cmd, "-u", v)
	}
	cmd = append(cmd, "make", "--no-print-directory", "-s", "--eval", rule.String(), "print-vars")
	out, stderr, err := run(t, goRunTimeout, repoRoot, cmd[0], cmd[1:]...)
	if err != nil {
		t.Fatalf("make: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("make printed %q for %v", out, names)
	}
	return lines
}

// nextPatch is the release after r, e.g. 0.6.1 after 0.6.0.
func nextPatch(t *testing.T, r string) string {
	i := strings.LastIndexByte(r, '.')
	n, err := strconv.Atoi(r[i+1:])
	if err != nil {
		t.Fatalf("release %q: %v", r, err)
	}
	return r[:i+1] + strconv.Itoa(n+1)
}

// dpkgLess reports whether dpkg sorts package version a before b (both
// with the package release -1, as nfpm writes them).
func dpkgLess(t *testing.T, a, b string) bool {
	t.Helper()
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Fatalf("dpkg is not on PATH (a Debian machine has it): %v", err)
	}
	_, stderr, err := run(t, lintTimeout, ".", dpkg, "--compare-versions", a+"-1", "lt", b+"-1")
	if stderr != "" {
		t.Fatalf("dpkg --compare-versions %s-1 lt %s-1: %s", a, b, stderr)
	}
	return err == nil
}

// rpmCmp returns rpm's comparison of a and b (-1, 0, 1), and false when
// rpm is not installed (make package-check installs it).
func rpmCmp(t *testing.T, a, b string) (int, bool) {
	t.Helper()
	rpm, err := exec.LookPath("rpm")
	if err != nil {
		return 0, false
	}
	out, stderr, err := run(t, lintTimeout, ".", rpm, "--eval", fmt.Sprintf(`%%{lua: print(rpm.vercmp("%s", "%s"))}`, a, b))
	n, cerr := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || cerr != nil {
		t.Fatalf("rpm vercmp %s %s: %v %q %s", a, b, err, out, stderr)
	}
	return n, true
}

// TestVersionScheme checks that the versions the Makefile gives snapshots
// sort as its comment says, for dpkg and (where installed) rpm: after the
// release, before the next, newer commits later.
func TestVersionScheme(t *testing.T) {
	r := cli.Release
	ordered := []string{
		r,
		r + "+git20261124.3.gda21cea",
		r + "+git20261124.3.gda21cea.dirty",
		r + "+git20261124.12.g0123abc",
		r + "+git20261201.1.gfffffff",
		nextPatch(t, r),
	}
	for i := 0; i+1 < len(ordered); i++ {
		a, b := ordered[i], ordered[i+1]
		if !dpkgLess(t, a, b) {
			t.Errorf("dpkg does not sort %s before %s", a, b)
		}
		if c, ok := rpmCmp(t, a, b); ok && c != -1 {
			t.Errorf("rpm sorts %s against %s as %d, want -1", a, b, c)
		}
	}
	if _, ok := rpmCmp(t, r, r); !ok {
		t.Log("rpm is not installed: only dpkg's order was checked (make package-check installs rpm)")
	}
}

// TestVersionOnePlace builds feedbackd-master as the Makefile does and
// checks that -V and --help print the Makefile's VERSION, that the
// packages get the same one, and that it is the release in
// internal/cli/VERSION, bare or with the snapshot suffix.
func TestVersionOnePlace(t *testing.T) {
	mk := makeInfo(t)
	release, version, pkgVersion := mk.release, mk.version, mk.pkgVersion
	if release != cli.Release {
		t.Errorf("make's RELEASE is %q, internal/cli/VERSION %q", release, cli.Release)
	}
	snapshot := regexp.MustCompile(`^` + regexp.QuoteMeta(cli.Release) +
		`(\+git[0-9]{8}\.[0-9]+\.g[0-9a-f]{7,}(\.dirty)?|\+unknown)?$`)
	if !snapshot.MatchString(version) {
		t.Errorf("make's VERSION %q is neither %s nor %s+gitYYYYMMDD.N.gHASH[.dirty]", version, cli.Release, cli.Release)
	}
	if pkgVersion != version {
		t.Errorf("the packages get PKG_VERSION %q, the binaries VERSION %q", pkgVersion, version)
	}
	if version != cli.Release {
		if !dpkgLess(t, cli.Release, version) || !dpkgLess(t, version, nextPatch(t, cli.Release)) {
			t.Errorf("dpkg does not sort %s between %s and %s", version, cli.Release, nextPatch(t, cli.Release))
		}
	}

	bin := filepath.Join(builtCommands(t), "feedbackd-master")
	want := "feedbackd-master " + version + "\n"
	out, stderr, err := run(t, lintTimeout, ".", bin, "-V")
	if err != nil || out != want {
		t.Errorf("feedbackd-master -V: %q %v %s, want %q (is the -X path in LDFLAGS still cli.Version?)", out, err, stderr, want)
	}
	out, stderr, err = run(t, lintTimeout, ".", bin, "--help")
	if err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("feedbackd-master --help does not start with %q: %v %s\n%s", want, err, stderr, out)
	}
}

// makeInfo is what make says about the version, asked once for all the
// tests of this package, so that they agree even if a commit lands while
// they run.
type makeInfoT struct{ release, version, pkgVersion, ldflags string }

var makeOnce struct {
	sync.Once
	v []string
}

func makeInfo(t *testing.T) makeInfoT {
	t.Helper()
	makeOnce.Do(func() { makeOnce.v = makeVars(t, "RELEASE", "VERSION", "PKG_VERSION", "LDFLAGS") })
	if len(makeOnce.v) != 4 {
		t.Fatal("make's variables could not be read (see the first test that asked)")
	}
	v := makeOnce.v
	return makeInfoT{v[0], v[1], v[2], v[3]}
}

// built holds the commands built once for all tests of this package.
var built struct {
	sync.Once
	dir string
	err error
}

// builtCommands builds every command of cmd/ with the Makefile's -ldflags
// (see TestVersionOnePlace) into a directory shared by the package's
// tests, once, and returns the directory.
func builtCommands(t *testing.T) string {
	t.Helper()
	ldflags := makeInfo(t).ldflags
	built.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("go not found on PATH: %v", err)
			return
		}
		dir, err := os.MkdirTemp("", "feedbackd-man-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		for cmd := range commands {
			if _, stderr, err := run(t, goRunTimeout, repoRoot, goCmd, "build", "-trimpath", "-ldflags", ldflags,
				"-o", filepath.Join(dir, cmd), "./cmd/"+cmd); err != nil {
				built.err = fmt.Errorf("go build ./cmd/%s: %v\n%s", cmd, err, stderr)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
