package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
)

func runMaster(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, cli.Stdio{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestTestConfigOnHOWTOSample(t *testing.T) {
	code, out, errs := runMaster("-t", "-c", "../../internal/config/testdata/howto-master.conf")
	if code != 0 || !strings.Contains(out, "OK (1 virtual services)") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

// A broken file: exit 1, file:line: key on stderr, nothing started.
func TestBrokenConfigExitsOne(t *testing.T) {
	f := "../../internal/config/testdata/broken/master-bad-scheduler.conf"
	code, _, errs := runMaster("--test-config", "--conffile="+f)
	if code != cli.ExitError || !strings.Contains(errs, f+":7: scheduler:") {
		t.Fatalf("code %d, stderr %q; want 1 and %s:7: scheduler:", code, errs, f)
	}
	// The same without -t: still refused before anything starts.
	code, _, errs = runMaster("--without-ipvs", "-c", f)
	if code != cli.ExitError || !strings.Contains(errs, ":7: scheduler:") {
		t.Fatalf("without -t: code %d, stderr %q", code, errs)
	}
}

// A FEEDBACKD_POLLER the master does not know: exit 1 naming it, with -t
// too; a known one passes -t.
func TestBadPollerExitsOne(t *testing.T) {
	conf := "../../internal/config/testdata/howto-master.conf"
	t.Setenv("FEEDBACKD_POLLER", "kqueue")
	for _, args := range [][]string{{"-t", "-c", conf}, {"--without-ipvs", "-c", conf}} {
		code, _, errs := runMaster(args...)
		if code != cli.ExitError || !strings.Contains(errs, `FEEDBACKD_POLLER: poller "kqueue"`) {
			t.Fatalf("%v: code %d, stderr %q; want 1 naming FEEDBACKD_POLLER", args, code, errs)
		}
	}
	t.Setenv("FEEDBACKD_POLLER", "epoll")
	if code, _, errs := runMaster("-t", "-c", conf); code != 0 {
		t.Fatalf("FEEDBACKD_POLLER=epoll: code %d, stderr %q", code, errs)
	}
}

func TestVersionHelpUsage(t *testing.T) {
	if code, out, _ := runMaster("-V"); code != 0 || !strings.HasPrefix(out, "feedbackd-master ") {
		t.Fatalf("-V: %d %q", code, out)
	}
	code, out, _ := runMaster("--usage")
	if code != 0 {
		t.Fatalf("--usage exit %d", code)
	}
	for _, opt := range []string{"--dry-run", "--without-ipvs", "--listen=ADDR", "--state-file=FILE", "--conffile=FILE"} {
		if !strings.Contains(out, opt) {
			t.Errorf("usage lacks %s", opt)
		}
	}
	if code, _, _ := runMaster("--frobnicate"); code != cli.ExitUsage {
		t.Fatalf("unknown option: exit %d, want %d", code, cli.ExitUsage)
	}
}
