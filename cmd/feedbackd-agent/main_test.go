package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
)

func runAgent(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, cli.Stdio{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestTestConfigOnHOWTOSample(t *testing.T) {
	// The HOWTO's sample parses unchanged; its literal "$DIP" and moduledir
	// only earn warnings.
	code, out, errs := runAgent("-t", "-c", "../../internal/config/testdata/howto-agent.conf")
	if code != 0 || !strings.Contains(out, "OK (2 services") || !strings.Contains(errs, "warning:") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

func TestBrokenConfigExitsOne(t *testing.T) {
	f := "../../internal/config/testdata/broken/agent-constant-101.conf"
	code, _, errs := runAgent("-t", "-c", f)
	if code != cli.ExitError || !strings.Contains(errs, f+":") || !strings.Contains(errs, ": value:") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}

// -m measures each service once and prints name, monitor and health; a
// failing monitor makes it exit 1 after printing the table.
func TestMeasureOnce(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.conf")
	os.WriteFile(conf, []byte(`director = 127.0.0.1
[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = constant.so
value = 42

[service]
name = mail
protocol = tcp
port = 25
forwarding = NAT
monitor = exec
command = echo 77%
`), 0o644)
	code, out, errs := runAgent("-m", "-c", conf)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"web", "constant", "42", "mail", "exec", "77"} {
		if !strings.Contains(out, want) {
			t.Errorf("measure output lacks %q:\n%s", want, out)
		}
	}
	os.WriteFile(conf, []byte(`director = 127.0.0.1
[service]
name = mail
protocol = tcp
port = 25
forwarding = NAT
monitor = exec
command = exit 3
`), 0o644)
	code, out, errs = runAgent("--measure", "-c", conf)
	if code != cli.ExitError || !strings.Contains(out+errs, "exit status 3") {
		t.Fatalf("failing monitor: exit %d\n%s\n%s", code, out, errs)
	}
}

// --instance NAME layers DIR/NAME.conf over the common file, as
// feedbackd-agent@NAME.service runs it.
func TestInstanceLayering(t *testing.T) {
	dir := t.TempDir()
	common := filepath.Join(dir, "agent.conf")
	os.WriteFile(common, []byte("director = 192.0.2.1\nmaster-timeout = 12\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "agent.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "agent.d", "web.conf"), []byte(`master-timeout = 20
[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = constant
value = 5
`), 0o644)
	code, out, errs := runAgent("-t", "-c", common, "--agent-dir", filepath.Join(dir, "agent.d"), "--instance", "web")
	if code != 0 || !strings.Contains(out, "OK (1 services, director 192.0.2.1:3262)") {
		t.Fatalf("code %d\n%s\n%s", code, out, errs)
	}
	// Without the common file the instance file must say everything.
	os.Remove(common)
	code, _, errs = runAgent("-t", "-c", common, "--agent-dir", filepath.Join(dir, "agent.d"), "--instance", "web")
	if code != cli.ExitError || !strings.Contains(errs, "director") {
		t.Fatalf("no common file, no director: code %d, %s", code, errs)
	}
	// An unknown instance names its missing file.
	code, _, errs = runAgent("-t", "--agent-dir", filepath.Join(dir, "agent.d"), "--instance", "nope")
	if code != cli.ExitError || !strings.Contains(errs, "nope.conf") {
		t.Fatalf("missing instance file: code %d, %s", code, errs)
	}
}
