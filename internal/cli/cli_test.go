package cli

import (
	"bytes"
	"strings"
	"testing"
)

func parse(args ...string) (Common, bool, int, string) {
	var c Common
	var extra bool
	f := NewFlags("prog")
	f.RegisterCommon(&c, "/etc/x.conf")
	f.Bool(&extra, "extra", "n", "dry-run")
	var errb bytes.Buffer
	code, ok := f.Parse(args, &errb, "summary")
	_ = ok
	return c, extra, code, errb.String()
}

// Both spellings of every HOWTO option work, as -x VALUE and --long=VALUE.
func TestSpellings(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "a.conf", "-t", "-d", "-n"},
		{"--conffile=a.conf", "--test-config", "--debug", "--dry-run"},
		{"--conffile", "a.conf", "-test-config", "-debug", "-n"},
	} {
		c, extra, code, errs := parse(args...)
		if code != ExitOK || errs != "" || c.ConfFile != "a.conf" || !c.Test || !c.Debug || !extra {
			t.Errorf("%v: %+v extra=%v code=%d err=%q", args, c, extra, code, errs)
		}
	}
	for _, h := range []string{"-h", "--help", "-u", "--usage"} {
		if c, _, _, _ := parse(h); !c.Help {
			t.Errorf("%s does not ask for help", h)
		}
	}
	for _, v := range []string{"-V", "--version"} {
		if c, _, _, _ := parse(v); !c.Version {
			t.Errorf("%s does not ask for the version", v)
		}
	}
	if c, _, _, _ := parse(); c.ConfFile != "/etc/x.conf" {
		t.Errorf("default conffile %q", c.ConfFile)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"stray"}, {"-c"}} {
		_, _, code, errs := parse(args...)
		if code != ExitUsage || !strings.Contains(errs, "Try 'prog --help'") {
			t.Errorf("%v: code %d, stderr %q; want %d and a hint", args, code, errs, ExitUsage)
		}
	}
}

func TestUsageListsEveryOption(t *testing.T) {
	var c Common
	f := NewFlags("prog")
	f.RegisterCommon(&c, "/etc/x.conf")
	var b bytes.Buffer
	f.Usage(&b, "summary")
	for _, want := range []string{"-c FILE, --conffile=FILE", "-t, --test-config", "-d, --debug", "-V, --version", "-h, --help, -u, --usage"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

// An unwritable logfile falls back to stderr with a warning instead of
// failing: under the units the file system is read-only.
func TestLoggerUnwritableLogfileFallsBack(t *testing.T) {
	var out, errb bytes.Buffer
	log, w, closeLog, err := Logger("prog", false, 0, "/nonexistent/dir/x.log", &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	log.Info("hello")
	if w != &errb || !strings.Contains(errb.String(), "cannot open logfile") || !strings.Contains(errb.String(), "msg=hello") {
		t.Fatalf("writer %v, stderr %q", w, errb.String())
	}
}

// --help starts with the version, the one -V prints.
func TestUsageStartsWithVersion(t *testing.T) {
	var c Common
	f := NewFlags("prog")
	f.RegisterCommon(&c, "/etc/x.conf")
	var help, version bytes.Buffer
	f.Usage(&help, "summary")
	PrintVersion(&version, "prog")
	if !strings.HasPrefix(help.String(), version.String()) {
		t.Errorf("--help does not start with %q:\n%s", version.String(), help.String())
	}
}

// A build the Makefile did not stamp (this test binary) still says which
// release it is, and that it is not exactly that release.
func TestVersionUnstamped(t *testing.T) {
	if Release == "" || strings.ContainsAny(Release, " \n") {
		t.Fatalf("Release %q: internal/cli/VERSION must hold one version", Release)
	}
	if !strings.HasPrefix(Version, Release+"+") {
		t.Errorf("Version %q, want %s+...", Version, Release)
	}
}
