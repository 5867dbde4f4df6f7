package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl/ctltest"
)

var (
	now    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	status = &control.Status{
		Time: now,
		// Out of order, to show the table sorts.
		Destinations: []control.Destination{
			{VS: "smtp", Service: "TCP 192.0.2.10:25", Realserver: "10.0.0.11:25", State: "quiescing", Agent: "10.0.0.11:40312",
				Offers: 1, Health: 255, HealthAge: "2s", Target: 0, Weight: 0, Kernel: -1, Forwarding: "Route", Why: "agent STOPped"},
			{VS: "http", Service: "TCP 192.0.2.10:80", Realserver: "10.0.0.12:80", State: "active", Agent: "10.0.0.12:40313",
				Offers: 1, Health: 80, HealthAge: "400ms", Target: 80, Weight: 0, Kernel: 0, ActiveConn: 3, InactConn: 9,
				Forwarding: "Route", Admin: control.AdminDrain, Why: "admin drain"},
			{VS: "http", Service: "TCP 192.0.2.10:80", Realserver: "10.0.0.11:80", State: "active", Agent: "10.0.0.11:40312",
				Offers: 2, Health: 80, HealthAge: "1.2s", Target: 80, Weight: 80, Kernel: 80, ActiveConn: 12, InactConn: 30,
				Forwarding: "Route"},
			{VS: "http", Service: "TCP 192.0.2.10:80", Realserver: "10.0.0.9:80", State: "orphan",
				Health: -1, Target: 0, Weight: 0, Kernel: 17, Forwarding: "Masq", Admin: control.AdminMaint, Why: "no agent"},
		},
	}
	agents = []control.Agent{
		{Peer: "10.0.0.11:40312", Since: now.Add(-3*time.Hour - 2*time.Minute - 5500*time.Millisecond), Services: []control.Service{
			{Service: "tcp/80", Realserver: "10.0.0.11", Health: 80, Owns: 1, Offers: 1},
			{Service: "tcp/25", Realserver: "10.0.0.11", Health: -1, Owns: 0, Offers: 1},
		}},
		{Peer: "10.0.0.12:40313", Since: now.Add(-time.Minute)},
	}
	events = []control.Event{
		{Time: now.Add(-time.Minute), Level: "INFO", Message: "realserver joined", Attrs: map[string]string{"realserver": "10.0.0.12", "vs": "http"}},
		{Time: now.Add(-1500 * time.Millisecond), Level: "WARN", Message: "admin state set",
			Attrs: map[string]string{"reason": "admin drain", "uid": "0", "empty": ""}},
	}
)

// ctl runs feedbackctl with args against the socket and returns its
// exit status and output.
func ctl(t *testing.T, socket string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"--socket", socket}, args...),
		Env{Stdout: &out, Stderr: &errb, Now: func() time.Time { return now }, Loc: time.UTC})
	return code, out.String(), errb.String()
}

// master answers every command as a master with the canned state would.
func master(req control.Request) ctltest.Answer {
	r := control.Response{Version: control.Version, OK: true}
	switch req.Command {
	case control.CmdStatus:
		r.Status = status
	case control.CmdAgents:
		r.Agents = agents
	case control.CmdEvents:
		r.Events = events
	case control.CmdDrain:
		d := status.Destinations[1]
		r.Changed = []control.Destination{d}
	case control.CmdReady:
		// nothing to change: not drained
	default:
		return ctltest.Answer{Response: control.Response{Version: control.Version, Error: "unknown command " + req.Command}}
	}
	return ctltest.Answer{Response: r}
}

func TestStatusTable(t *testing.T) {
	srv := ctltest.Start(t, master)
	code, out, errs := ctl(t, srv.Path, "status")
	if code != ExitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := `VS    REALSERVER    STATE      AGENT            HEALTH   AGE    TARGET  WEIGHT  KERNEL  ACTIVE  INACTIVE  ADMIN  WHY
http  10.0.0.9:80   orphan     -                -        -      0       0       17      0       0         maint  no agent
http  10.0.0.11:80  active     10.0.0.11:40312  80       1.2s   80      80      80      12      30        ready  -
http  10.0.0.12:80  active     10.0.0.12:40313  80       400ms  80      0       0       3       9         drain  admin drain
smtp  10.0.0.11:25  quiescing  10.0.0.11:40312  unknown  2s     0       0       -       0       0         ready  agent STOPped
`
	if out != want {
		t.Errorf("status table:\n%s\nwant:\n%s", out, want)
	}
	if got := srv.Requests(); len(got) != 1 || got[0] != (control.Request{Version: control.Version, Command: "status"}) {
		t.Errorf("requests %+v", got)
	}
}

// Filters reach the master as the request's fields; options go before or
// after the command; the address is sent in its canonical form.
func TestRequests(t *testing.T) {
	srv := ctltest.Start(t, master)
	for _, c := range []struct {
		args []string
		want control.Request
	}{
		{[]string{"status", "--vs", "http", "10.0.0.11"}, control.Request{Command: "status", VS: "http", Realserver: "10.0.0.11"}},
		{[]string{"--vs=http", "status"}, control.Request{Command: "status", VS: "http"}},
		{[]string{"status", "::ffff:10.0.0.11", "--json"}, control.Request{Command: "status", Realserver: "10.0.0.11"}},
		{[]string{"status", "2001:DB8:0:0::1"}, control.Request{Command: "status", Realserver: "2001:db8::1"}},
		{[]string{"agents"}, control.Request{Command: "agents"}},
		{[]string{"agents", "10.0.0.12"}, control.Request{Command: "agents", Realserver: "10.0.0.12"}},
		{[]string{"events", "10.0.0.12"}, control.Request{Command: "events", Realserver: "10.0.0.12"}},
		{[]string{"drain", "10.0.0.12"}, control.Request{Command: "drain", Realserver: "10.0.0.12"}},
		{[]string{"drain", "10.0.0.12", "http"}, control.Request{Command: "drain", Realserver: "10.0.0.12", VS: "http"}},
		{[]string{"-j", "ready", "--", "10.0.0.12", "http"}, control.Request{Command: "ready", Realserver: "10.0.0.12", VS: "http"}},
	} {
		n := len(srv.Requests())
		if code, _, errs := ctl(t, srv.Path, c.args...); code != ExitOK {
			t.Errorf("%v: exit %d, %s", c.args, code, errs)
			continue
		}
		c.want.Version = control.Version
		if got := srv.Requests(); len(got) != n+1 || got[n] != c.want {
			t.Errorf("%v: sent %+v, want %+v", c.args, got[n:], c.want)
		}
	}
}

// --json prints the master's answer, one object on one line, which
// decodes to what the master sent, with the documented field names.
func TestJSON(t *testing.T) {
	srv := ctltest.Start(t, master)
	for _, cmd := range [][]string{{"status"}, {"agents"}, {"events", "10.0.0.12"}, {"drain", "10.0.0.12"}} {
		code, out, errs := ctl(t, srv.Path, append([]string{"--json"}, cmd...)...)
		if code != ExitOK || errs != "" {
			t.Fatalf("%v: exit %d, %s", cmd, code, errs)
		}
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("%v: want one line, got %q", cmd, out)
		}
		var got control.Response
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		want := master(control.Request{Command: cmd[0]}).Response
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v: printed %+v\nwant %+v", cmd, got, want)
		}
		if !strings.HasPrefix(out, `{"version":1,"ok":true,`) {
			t.Errorf("%v: does not start with the schema version: %s", cmd, out)
		}
	}
	_, out, _ := ctl(t, srv.Path, "status", "--json")
	for _, key := range []string{`"time":"2026-03-01T12:00:00Z"`, `"destinations":[`, `"health_age":"1.2s"`, `"kernel":-1`,
		`"active_conn":12`, `"inact_conn":30`, `"admin":"drain"`, `"why":"admin drain"`, `"forwarding":"Masq"`, `"health":-1`} {
		if !strings.Contains(out, key) {
			t.Errorf("status --json lacks %s:\n%s", key, out)
		}
	}
}

func TestAgentsEventsChanged(t *testing.T) {
	srv := ctltest.Start(t, master)
	_, out, _ := ctl(t, srv.Path, "agents")
	want := `AGENT            SINCE                UP      SERVICES
10.0.0.11:40312  2026-03-01 08:57:54  3h2m5s  tcp/80 10.0.0.11 health 80 owns 1 offers 1; tcp/25 10.0.0.11 health - owns 0 offers 1
10.0.0.12:40313  2026-03-01 11:59:00  1m0s    -
`
	if out != want {
		t.Errorf("agents:\n%s\nwant:\n%s", out, want)
	}
	// Filtered here too, whether or not the master does.
	_, out, _ = ctl(t, srv.Path, "agents", "10.0.0.11")
	if !strings.Contains(out, "10.0.0.11:40312") || strings.Contains(out, "10.0.0.12:40313") {
		t.Errorf("agents 10.0.0.11:\n%s", out)
	}
	_, out, _ = ctl(t, srv.Path, "agents", "10.0.0.99")
	if out != "no agents (realserver 10.0.0.99)\n" {
		t.Errorf("agents 10.0.0.99:\n%s", out)
	}
	_, out, _ = ctl(t, srv.Path, "--json", "agents", "10.0.0.11")
	var r control.Response
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Agents) != 1 || r.Agents[0].Peer != "10.0.0.11:40312" {
		t.Errorf("--json agents 10.0.0.11: %v\n%s", err, out)
	}
	_, out, _ = ctl(t, srv.Path, "events", "10.0.0.12")
	want = `2026-03-01 11:59:00.000 INFO realserver joined realserver=10.0.0.12 vs=http
2026-03-01 11:59:58.500 WARN admin state set empty="" reason="admin drain" uid=0
`
	if out != want {
		t.Errorf("events:\n%s\nwant:\n%s", out, want)
	}
	_, out, _ = ctl(t, srv.Path, "drain", "10.0.0.12")
	if !strings.HasPrefix(out, "drain 10.0.0.12: 1 destination changed\nVS ") ||
		!strings.Contains(out, "\nhttp  10.0.0.12:80  active  10.0.0.12:40313  80      400ms  80      0       0       3       9         drain  admin drain\n") {
		t.Errorf("drain:\n%s", out)
	}
	_, out, _ = ctl(t, srv.Path, "ready", "10.0.0.12", "http")
	if out != "ready 10.0.0.12 in http: nothing changed\n" {
		t.Errorf("ready:\n%s", out)
	}
}

func TestEmptyAnswers(t *testing.T) {
	srv := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, OK: true}))
	for args, want := range map[string]string{
		"status":                    "no destinations\n",
		"status --vs http 10.0.0.1": "no destinations (virtual service http, realserver 10.0.0.1)\n",
		"agents":                    "no agents\n",
		"events 10.0.0.1":           "no events of 10.0.0.1\n",
	} {
		if code, out, _ := ctl(t, srv.Path, strings.Fields(args)...); code != ExitOK || out != want {
			t.Errorf("%s: exit %d, %q; want %q", args, code, out, want)
		}
	}
}

// Each exit status of the page, from the outcome that gives it.
func TestExitStatuses(t *testing.T) {
	refused := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Error: "no realserver 10.0.0.99 in http"}))
	denied := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Denied: true,
		Error: "uid 1000 may not drain: only root and the group feedbackd"}))
	deniedBare := ctltest.Start(t, ctltest.Respond(control.Response{Version: control.Version, Denied: true}))
	hangup := ctltest.Start(t, func(control.Request) ctltest.Answer { return ctltest.Answer{Hangup: true} })
	newer := ctltest.Start(t, func(control.Request) ctltest.Answer {
		return ctltest.Answer{Raw: []byte(`{"version":2,"ok":true}` + "\n")}
	})
	garbage := ctltest.Start(t, func(control.Request) ctltest.Answer { return ctltest.Answer{Raw: []byte("<html>\n")} })
	ok := ctltest.Start(t, master)

	// A socket file nobody listens on any more (a master that died).
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket should remain: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(plain, nil, 0o644)

	for _, c := range []struct {
		name   string
		socket string
		args   []string
		code   int
		stderr string
	}{
		{"ok", ok.Path, []string{"status"}, ExitOK, ""},
		{"version", ok.Path, []string{"-V"}, ExitOK, ""},
		{"help", ok.Path, []string{"--help"}, ExitOK, ""},
		{"refused", refused.Path, []string{"drain", "10.0.0.99", "http"}, ExitFailed, "feedbackctl: feedbackd-master: no realserver 10.0.0.99 in http\n"},
		{"refused --json", refused.Path, []string{"--json", "status"}, ExitFailed, "feedbackctl: feedbackd-master: no realserver 10.0.0.99 in http\n"},
		{"hangup", hangup.Path, []string{"status"}, ExitFailed, "feedbackctl: reading the master's answer: EOF\n"},
		{"newer", newer.Path, []string{"status"}, ExitFailed, "feedbackctl: the master answers with schema version 2; this feedbackctl knows 1\n"},
		{"garbage", garbage.Path, []string{"status"}, ExitFailed, "feedbackctl: reading the master's answer: invalid character '<'"},
		{"no command", ok.Path, nil, ExitUsage, "feedbackctl: no command (one of status, agents, events, drain, maint, ready)\nTry 'feedbackctl --help'.\n"},
		{"unknown command", ok.Path, []string{"stats"}, ExitUsage, "unknown command \"stats\""},
		{"bad option", ok.Path, []string{"status", "--bogus"}, ExitUsage, "flag provided but not defined: -bogus"},
		{"socket without path", ok.Path, []string{"status", "--socket"}, ExitUsage, "flag needs an argument: -socket"},
		{"events without RS", ok.Path, []string{"events"}, ExitUsage, "feedbackctl events RS: missing RS"},
		{"drain without RS", ok.Path, []string{"drain"}, ExitUsage, "missing RS"},
		{"too many", ok.Path, []string{"drain", "10.0.0.1", "http", "smtp"}, ExitUsage, "unexpected argument \"smtp\""},
		{"status two RS", ok.Path, []string{"status", "10.0.0.1", "10.0.0.2"}, ExitUsage, "unexpected argument \"10.0.0.2\""},
		{"not an address", ok.Path, []string{"drain", "web1"}, ExitUsage, "RS \"web1\" is not an IP address"},
		{"address with port", ok.Path, []string{"status", "10.0.0.1:80"}, ExitUsage, "is not an IP address"},
		{"--vs on drain", ok.Path, []string{"drain", "--vs", "http", "10.0.0.1"}, ExitUsage, "drain takes the virtual service as its second argument"},
		{"--vs on events", ok.Path, []string{"events", "10.0.0.1", "--vs=http"}, ExitUsage, "--vs is for status only"},
		{"missing socket", filepath.Join(t.TempDir(), "none.sock"), []string{"status"}, ExitUnreachable, "no such file or directory\nfeedbackctl: is feedbackd-master running"},
		{"stale socket", stale, []string{"drain", "10.0.0.1"}, ExitUnreachable, "connection refused"},
		{"not a socket", plain, []string{"status"}, ExitUnreachable, "connection refused"},
		{"denied", denied.Path, []string{"maint", "10.0.0.1"}, ExitDenied, "feedbackctl: feedbackd-master: permission denied: uid 1000 may not drain: only root and the group feedbackd\n"},
		{"denied without a message", deniedBare.Path, []string{"maint", "10.0.0.1"}, ExitDenied, "feedbackctl: feedbackd-master: permission denied: refused, without saying why\n"},
	} {
		code, out, errs := ctl(t, c.socket, c.args...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\nstdout %q\nstderr %q", c.name, code, c.code, out, errs)
		}
		if c.stderr == "" && errs != "" || !strings.Contains(errs, c.stderr) {
			t.Errorf("%s: stderr %q, want %q", c.name, errs, c.stderr)
		}
		if code != ExitOK && out != "" {
			t.Errorf("%s: exit %d with output on stdout: %q", c.name, code, out)
		}
	}
	// Bad command lines never reach the master.
	if n := len(ok.Requests()); n != 1 {
		t.Errorf("the master got %d requests, want 1 (the ok case)", n)
	}
}

// A connect refused by the socket's permissions is exit 4, not "no
// master": built by hand, since the tests may run as root, whom no mode
// keeps out.
func TestClassifyDialPermission(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}, ExitDenied},
		{&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}, ExitUnreachable},
		{&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ExitUnreachable},
		{&net.OpError{Op: "read", Net: "unix", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, ExitFailed},
		{&control.Error{Msg: "x", Denied: true}, ExitDenied},
		{&control.Error{Msg: "x"}, ExitFailed},
		{errors.New("anything else"), ExitFailed},
	} {
		wrapped := errors.Join(errors.New("context"), c.err)
		if got := classify(wrapped); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := ctl(t, "/nonexistent", "--help")
	if code != ExitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"Usage: feedbackctl [OPTION]... COMMAND [ARGUMENT]...\n", "status [--vs NAME] [RS]",
		"drain RS [VS]", "-s PATH, --socket=PATH", "-j, --json", "--vs=NAME", "-V, --version", "-h, --help, -u, --usage",
		"3 cannot reach the master, 4 permission denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	for _, c := range commands {
		if !strings.Contains(out, "\n  "+c.name+" ") {
			t.Errorf("--help does not list the command %s", c.name)
		}
	}
	_, v, _ := ctl(t, "/nonexistent", "-V")
	if !strings.HasPrefix(out, v) || !strings.HasPrefix(v, "feedbackctl ") {
		t.Errorf("-V %q; --help starts %q", v, out[:40])
	}
}

// Every command of the protocol is one of feedbackctl's.
func TestEveryCommand(t *testing.T) {
	for _, name := range []string{control.CmdStatus, control.CmdAgents, control.CmdEvents, control.CmdDrain, control.CmdMaint, control.CmdReady} {
		if _, ok := lookup(name); !ok {
			t.Errorf("no command %s", name)
		}
	}
}
