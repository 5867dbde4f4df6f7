package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
	"github.com/lvs-feedbackd/feedbackd/internal/agentsync/fakesystemd"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
)

const (
	baseConf = "director = 192.0.2.1\n"
	goodConf = "[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 50\n"
	badConf  = "[service]\nname = x\nprotocol = tcp\nport = 99999\nforwarding = DR\nmonitor = cpuload\n"
)

// setup makes agent.conf and agent.d with the given files; it returns the
// common arguments for run.
func setup(t *testing.T, files map[string]string) (args []string, stateDir string) {
	root := t.TempDir()
	dir := filepath.Join(root, "agent.d")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(root, "agent.conf"), []byte(baseConf), 0o644)
	for n, c := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	stateDir = filepath.Join(root, "state")
	return []string{"-c", filepath.Join(root, "agent.conf"), "--dir", dir, "--state-dir", stateDir}, stateDir
}

func runSync(m agentsync.Manager, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	connect := func(context.Context) (agentsync.Manager, func(), error) {
		if m == nil {
			return nil, nil, errors.New("no systemd in this test")
		}
		return m, func() {}, nil
	}
	code := run(args, cli.Stdio{Stdout: &out, Stderr: &errb}, connect)
	return code, out.String(), errb.String()
}

func TestTestMode(t *testing.T) {
	args, _ := setup(t, map[string]string{"web.conf": goodConf, "bad.conf": badConf, "web.conf~": badConf})
	// nil manager: -t must not need systemd.
	code, out, errs := runSync(nil, append(args, "-t")...)
	if code != cli.ExitError {
		t.Errorf("exit %d, want 1 for an invalid file", code)
	}
	for _, want := range []string{"web.conf: OK (1 service, director 192.0.2.1:3262) as feedbackd-agent@web.service", "skipping web.conf~", "2 instance files", "1 valid, 1 invalid"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "bad.conf: configuration error:") || !strings.Contains(errs, "bad.conf:4: port: port 99999 out of range") {
		t.Errorf("stderr:\n%s", errs)
	}

	args, _ = setup(t, map[string]string{"web.conf": goodConf})
	if code, out, errs := runSync(nil, append(args, "--test-config")...); code != cli.ExitOK {
		t.Errorf("all valid: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runSync(nil, "-t", "--dir", filepath.Join(t.TempDir(), "missing")); code != cli.ExitError || !strings.Contains(errs, "missing") {
		t.Errorf("missing dir: exit %d, %s", code, errs)
	}
}

func TestDryRunAndRun(t *testing.T) {
	args, stateDir := setup(t, map[string]string{"web.conf": goodConf, "bad.conf": badConf})
	m := fakesystemd.New(nil)
	code, out, _ := runSync(m, append(args, "-n")...)
	if code != cli.ExitError || !strings.Contains(out, "start   feedbackd-agent@web.service") || !strings.Contains(out, "refuse  feedbackd-agent@bad.service") {
		t.Errorf("dry run: exit %d\n%s", code, out)
	}
	if len(m.Calls()) != 0 {
		t.Errorf("dry run called %q", m.Calls())
	}
	if _, err := os.Stat(stateDir); err == nil {
		t.Error("dry run wrote state")
	}

	// A refused file makes the run fail (systemctl status shows it), but
	// the valid one is started all the same.
	code, _, errs := runSync(m, args...)
	if code != cli.ExitError || m.State(agentsync.UnitFor("web")) != "active" {
		t.Errorf("run: exit %d, web %q\n%s", code, m.State(agentsync.UnitFor("web")), errs)
	}
	if !strings.Contains(errs, "msg=started unit=feedbackd-agent@web.service") || !strings.Contains(errs, "bad.conf:4: port:") {
		t.Errorf("log:\n%s", errs)
	}

	args, _ = setup(t, map[string]string{"web.conf": goodConf})
	if code, _, errs := runSync(fakesystemd.New(nil), args...); code != cli.ExitOK {
		t.Errorf("all good: exit %d\n%s", code, errs)
	}
	if code, _, errs := runSync(nil, args...); code != cli.ExitError || !strings.Contains(errs, "no systemd") {
		t.Errorf("no systemd: exit %d\n%s", code, errs)
	}
}

func TestUsage(t *testing.T) {
	if code, out, _ := runSync(nil, "-V"); code != 0 || !strings.HasPrefix(out, prog+" ") {
		t.Errorf("-V: %d %q", code, out)
	}
	if code, out, _ := runSync(nil, "--help"); code != 0 || !strings.Contains(out, "--dry-run") || !strings.Contains(out, "--state-dir") {
		t.Errorf("--help: %d %q", code, out)
	}
	if code, _, _ := runSync(nil, "--bogus"); code != cli.ExitUsage {
		t.Errorf("bad option: exit %d", code)
	}
}

// The real binary, as the path unit would run it, but with -t: that needs
// no systemd, so it runs anywhere.
func TestBinaryTestMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), prog)
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	args, _ := setup(t, map[string]string{"web.conf": goodConf, "bad.conf": badConf, ".bad.conf.swp": badConf})
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, append(args, "-t")...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\nstdout %s\nstderr %s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "web.conf: OK") || !strings.Contains(out.String(), "skipping .bad.conf.swp") ||
		!strings.Contains(errb.String(), "bad.conf:4: port:") {
		t.Errorf("stdout %s\nstderr %s", out.String(), errb.String())
	}

	// With the invalid file gone, it passes.
	os.Remove(filepath.Join(args[3], "bad.conf"))
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Errorf("valid files: %v\n%s", err, out)
	}
}
