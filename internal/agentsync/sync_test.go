package agentsync_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
	"github.com/lvs-feedbackd/feedbackd/internal/agentsync/fakesystemd"
)

const (
	baseConf = "director = 192.0.2.1\n"
	// badConf is invalid at line 4 (the port).
	badConf = "[service]\nname = x\nprotocol = tcp\nport = 99999\nforwarding = DR\nmonitor = cpuload\n"
)

// service returns a valid instance file body offering port.
func service(port string) string {
	return "[service]\nname = www\nprotocol = tcp\nport = " + port + "\nforwarding = DR\nmonitor = constant\nvalue = 50\n"
}

// host is a realserver in a temporary directory: agent.conf, agent.d and
// the state directory, with a fake systemd.
type host struct {
	t                   *testing.T
	base, dir, stateDir string
	m                   *fakesystemd.Manager
	logs                bytes.Buffer
}

func newHost(t *testing.T) *host {
	root := t.TempDir()
	h := &host{t: t, base: filepath.Join(root, "agent.conf"), dir: filepath.Join(root, "agent.d"),
		stateDir: filepath.Join(root, "run"), m: fakesystemd.New(nil)}
	os.Mkdir(h.dir, 0o755)
	h.write("agent.conf", baseConf)
	return h
}

// write writes name in agent.d, or agent.conf itself.
func (h *host) write(name, content string) {
	p := filepath.Join(h.dir, name)
	if name == "agent.conf" {
		p = h.base
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// sync runs once and returns the calls it made to systemd.
func (h *host) sync(dry bool, out *bytes.Buffer) ([]string, agentsync.Summary, error) {
	before := len(h.m.Calls())
	h.logs.Reset()
	sum, err := agentsync.Sync(context.Background(), h.m, agentsync.Options{
		Base: h.base, Dir: h.dir, StateDir: h.stateDir, DryRun: dry, Out: out, Log: textLogger(&h.logs),
	})
	return h.m.Calls()[before:], sum, err
}

func (h *host) expect(what string, want ...string) agentsync.Summary {
	h.t.Helper()
	calls, sum, err := h.sync(false, nil)
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
	if !slices.Equal(calls, want) {
		h.t.Fatalf("%s: calls\n got %q\nwant %q\nlog:\n%s", what, calls, want, h.logs.String())
	}
	return sum
}

// The story end to end, through the files: add, change, change the
// common file, break, fix, remove.
func TestSyncLifecycle(t *testing.T) {
	h := newHost(t)
	web, mail := agentsync.UnitFor("web"), agentsync.UnitFor("mail")
	h.write("web.conf", service("80"))
	h.write("web.conf~", service("80")) // editor backup: never an instance
	h.write("example.conf.sample", service("80"))
	h.expect("new file", "start "+web)
	h.expect("nothing changed")

	h.write("mail.conf", service("25"))
	h.expect("second file", "start "+mail)

	h.write("web.conf", service("8080"))
	h.expect("web.conf changed", "restart "+web)

	h.write("agent.conf", baseConf+"master-timeout = 60\n")
	h.expect("agent.conf changed: every instance restarts", "restart "+mail, "restart "+web)

	h.write("web.conf", badConf)
	sum := h.expect("web.conf broken: refused, left running")
	if sum.Refused != 1 || sum.OK() || h.m.State(web) != "active" {
		t.Fatalf("broken file: %+v, web %s", sum, h.m.State(web))
	}
	if !strings.Contains(h.logs.String(), "web.conf:4: port: port 99999 out of range") {
		t.Errorf("refusal does not quote the config error:\n%s", h.logs.String())
	}

	h.write("web.conf", service("8080"))
	h.expect("fixed back to what runs: no restart")
	h.write("web.conf", service("8081"))
	h.expect("fixed to something new", "restart "+web)

	os.Remove(filepath.Join(h.dir, "web.conf"))
	h.expect("web.conf removed", "stop "+web)
	h.expect("stays stopped")

	// The name comes back: started, not adopted (its record was dropped).
	h.write("web.conf", service("80"))
	h.expect("web.conf back", "start "+web)
}

// A change made while a run is working would be lost (systemd merges the
// path unit's trigger into the run in progress), so the run looks again.
func TestSyncPicksUpChangesMadeDuringTheRun(t *testing.T) {
	h := newHost(t)
	web, mail := agentsync.UnitFor("web"), agentsync.UnitFor("mail")
	h.write("web.conf", service("80"))
	h.m.Hook = func(call string) {
		if call == "start "+web {
			h.write("web.conf", service("8080"))
			h.write("mail.conf", service("25"))
		}
	}
	h.expect("changed while starting", "start "+web, "start "+mail, "restart "+web)
	if !strings.Contains(h.logs.String(), "going again") {
		t.Errorf("log:\n%s", h.logs.String())
	}
	h.m.Hook = nil
	h.expect("settled")

	// Something that never stops rewriting: bounded, then left to the
	// next run.
	port := 1000
	h.write("web.conf", service(strconv.Itoa(port)))
	h.m.Hook = func(string) {
		port++
		h.write("web.conf", service(strconv.Itoa(port)))
	}
	h.expect("storm", "restart "+web, "restart "+web, "restart "+web)
	if !strings.Contains(h.logs.String(), "files keep changing") {
		t.Errorf("log:\n%s", h.logs.String())
	}
}

// A file refused at first and fixed during the run does not count as
// refused in the end.
func TestSyncRefusalFixedDuringTheRun(t *testing.T) {
	h := newHost(t)
	a := agentsync.UnitFor("a")
	h.write("a.conf", service("80"))
	h.write("b.conf", badConf)
	h.m.Hook = func(call string) {
		if call == "start "+a {
			h.write("b.conf", service("81"))
		}
	}
	sum := h.expect("b fixed meanwhile", "start "+a, "start "+agentsync.UnitFor("b"))
	if !sum.OK() || sum.Done != 2 {
		t.Errorf("summary %+v", sum)
	}
}

func TestSyncAdoptsAndRetries(t *testing.T) {
	h := newHost(t)
	web := agentsync.UnitFor("web")
	h.write("web.conf", service("80"))
	h.m = fakesystemd.New(map[string]string{web: "active"}) // started by hand
	h.expect("hand-started: adopted, no restart")
	if !strings.Contains(h.logs.String(), "msg=adopted") {
		t.Errorf("log:\n%s", h.logs.String())
	}
	h.expect("adopted: now up to date")

	// The agent died (a broken monitor script); the operator fixes the
	// script, not the file, and something in agent.d changes.
	h.m = fakesystemd.New(map[string]string{web: "failed"})
	h.expect("failed: retried after reset", "reset-failed "+web, "start "+web)
}

func TestSyncFailureIsReportedAndOthersGoOn(t *testing.T) {
	h := newHost(t)
	a, b := agentsync.UnitFor("a"), agentsync.UnitFor("b")
	h.write("a.conf", service("80"))
	h.write("b.conf", service("81"))
	h.m.Fail("start", a, errors.New("job failed"))
	sum := h.expect("a fails", "start "+a, "start "+b)
	if sum.Failed != 1 || sum.Done != 1 || sum.OK() {
		t.Errorf("summary %+v", sum)
	}
	// Not recorded: tried again next time, b is left alone.
	h.expect("retry", "start "+a)
}

func TestSyncCorruptStateAdopts(t *testing.T) {
	h := newHost(t)
	web := agentsync.UnitFor("web")
	h.write("web.conf", service("80"))
	h.expect("start", "start "+web)
	os.WriteFile(filepath.Join(h.stateDir, "state.json"), []byte("{garbage"), 0o644)
	h.expect("corrupt state: adopted, not restarted")
	if !strings.Contains(h.logs.String(), "level=WARN") || !strings.Contains(h.logs.String(), "state ignored") {
		t.Errorf("no warning:\n%s", h.logs.String())
	}
	h.expect("state rewritten: quiet again")
	if strings.Contains(h.logs.String(), "WARN") {
		t.Errorf("warning repeated:\n%s", h.logs.String())
	}
}

func TestSyncDryRunChangesNothing(t *testing.T) {
	h := newHost(t)
	gone := agentsync.UnitFor("gone")
	h.m = fakesystemd.New(map[string]string{gone: "active"})
	h.write("web.conf", service("80"))
	h.write("bad.conf", badConf)
	var out bytes.Buffer
	calls, sum, err := h.sync(true, &out)
	if err != nil || len(calls) != 0 || sum.Refused != 1 {
		t.Fatalf("dry run: calls %q, %+v, %v", calls, sum, err)
	}
	for _, want := range []string{
		"refuse  feedbackd-agent@bad.service: invalid configuration",
		"bad.conf:4: port:",
		"stop    feedbackd-agent@gone.service: its file is gone",
		"start   feedbackd-agent@web.service: not running",
		"2 instance files, 3 actions",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(h.stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created the state dir: %v", err)
	}
}

func TestSyncRefusesToGuessWithoutTheDirectory(t *testing.T) {
	h := newHost(t)
	h.m = fakesystemd.New(map[string]string{agentsync.UnitFor("web"): "active"})
	os.Remove(h.dir)
	calls, _, err := h.sync(false, nil)
	if err == nil || len(calls) != 0 {
		t.Fatalf("missing agent.d: calls %q, err %v; want an error and no stop", calls, err)
	}
	h.m.ListErr = errors.New("bus gone")
	os.Mkdir(h.dir, 0o755)
	if _, _, err := h.sync(false, nil); err == nil || !strings.Contains(err.Error(), "bus gone") {
		t.Fatalf("list error: %v", err)
	}
}

func TestScan(t *testing.T) {
	h := newHost(t)
	h.write("web.conf", service("80"))
	h.write("web-frontend.conf", service("81"))
	h.write("bad.conf", badConf)
	h.write("my web.conf", service("82"))
	h.write(".web.conf.swp", "x")
	h.write("web.conf.dpkg-old", "x")
	os.Mkdir(filepath.Join(h.dir, "dir.conf"), 0o755)
	files, skipped, err := agentsync.Scan(h.base, h.dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.Name] = "ok"
		if f.Err != nil {
			got[f.Name] = f.Err.Error()
		}
	}
	want := map[string]string{"web": "ok", "web-frontend": "ok", "bad": "bad.conf:4: port", "my web": "not allowed", "dir": "not a regular file"}
	for n, w := range want {
		if !strings.Contains(got[n], w) {
			t.Errorf("%s: %q, want %q", n, got[n], w)
		}
	}
	if len(files) != len(want) || len(skipped) != 2 {
		t.Errorf("files %v, skipped %v", got, skipped)
	}

	hashes := func() map[string]string {
		fs, _, _ := agentsync.Scan(h.base, h.dir)
		m := map[string]string{}
		for _, f := range fs {
			m[f.Name] = f.Hash
		}
		return m
	}
	before := hashes()
	h.write("web.conf", service("8080"))
	after := hashes()
	if after["web"] == before["web"] || after["web-frontend"] != before["web-frontend"] {
		t.Errorf("own file changed: %v -> %v", before, after)
	}
	h.write("agent.conf", baseConf+"\n")
	again := hashes()
	if again["web"] == after["web"] || again["web-frontend"] == after["web-frontend"] {
		t.Errorf("agent.conf changed but not every hash: %v -> %v", after, again)
	}
}

// Like feedbackd-agent --instance: without agent.conf, the instance file
// must say everything itself.
func TestScanWithoutBaseFile(t *testing.T) {
	h := newHost(t)
	os.Remove(h.base)
	h.write("full.conf", baseConf+service("80"))
	h.write("partial.conf", service("81"))
	files, _, err := agentsync.Scan(h.base, h.dir)
	if err != nil || len(files) != 2 {
		t.Fatal(files, err)
	}
	if files[0].Name != "full" || files[0].Err != nil {
		t.Errorf("full.conf: %v", files[0].Err)
	}
	if files[1].Name != "partial" || files[1].Err == nil || !strings.Contains(files[1].Err.Error(), "director") {
		t.Errorf("partial.conf: %v", files[1].Err)
	}
}
