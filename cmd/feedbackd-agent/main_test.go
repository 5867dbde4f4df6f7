package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
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

// -m shows the monitors of issue 19 too: http, tcp, loadavg and a
// combination, against local servers; and an exec command whose output is
// not a health value shows as unknown, with the output in the log.
func TestMeasureOnceNewMonitors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, "64\n")
	}))
	defer srv.Close()
	tcpAddr := testutil.ServeConns(t, func(c net.Conn) { c.Close() })
	conf := filepath.Join(t.TempDir(), "agent.conf")
	block := func(name string, port int, lines ...string) string {
		return fmt.Sprintf("[service]\nname = %s\nprotocol = tcp\nport = %d\nforwarding = DR\n%s\n", name, port, strings.Join(lines, "\n"))
	}
	os.WriteFile(conf, []byte("director = 127.0.0.1\n"+
		block("web", 80, "monitor = http", "url = "+srv.URL+"/health", "body-health = yes")+
		block("down", 81, "monitor = http", "url = "+srv.URL+"/down")+
		block("smtp", 25, "monitor = tcp", "connect = "+tcpAddr)+
		block("load", 82, "monitor = loadavg", "average = 5")+
		block("both", 83, "monitor = constant, http", "value = 30", "url = "+srv.URL+"/")), 0o644)
	code, out, errs := runAgent("-m", "-c", conf)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 5 {
			rows[f[0]] = f[3] + " " + f[4]
		}
	}
	for name, want := range map[string]string{"web": "http 64", "down": "http 0", "smtp": "tcp 100", "both": "constant,http 30"} {
		if rows[name] != want {
			t.Errorf("%s: %q, want %q\n%s", name, rows[name], want, out)
		}
	}
	if !strings.HasPrefix(rows["load"], "loadavg ") {
		t.Errorf("load: %q\n%s", rows["load"], out)
	}

	os.WriteFile(conf, []byte("director = 127.0.0.1\n"+
		block("junk", 80, "monitor = exec", "command = echo HTTP/1.1 503 Service Unavailable")), 0o644)
	code, out, errs = runAgent("-m", "-c", conf)
	if code != cli.ExitError || !strings.Contains(out, "unknown: command") || !strings.Contains(out, "not a health value") ||
		!strings.Contains(errs, "HTTP/1.1 503 Service Unavailable") {
		t.Fatalf("junk output: exit %d\n%s\n%s", code, out, errs)
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

// The agent runs with at most two Ps unless GOMAXPROCS says otherwise:
// on a realserver with many CPUs each P costs memory and buys nothing.
func TestAgentCapsProcs(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.conf")
	os.WriteFile(conf, []byte("director = 127.0.0.1\n[service]\nname = web\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 42\n"), 0o644)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		env  string
		want int
	}{{"", agentProcs}, {"8", 8}} {
		runtime.GOMAXPROCS(8)
		t.Setenv("GOMAXPROCS", tc.env)
		if code, out, errs := runAgent("-m", "-c", conf); code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS=%q in the environment, 8 Ps before the start: agent runs with %d, want %d", tc.env, got, tc.want)
		}
	}
}
