package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agentcheck"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// The admin file drains or puts in maintenance one service or all: the
// master sees health 0 for it, HAProxy drain or maint with the measured
// weight underneath; a broken file changes nothing; and a new agent
// reading the same file starts drained, from its first KEEPALIVE_ACK.
func TestAdminFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fm := newFakeMaster(t)
	opts, logs := testOptions()
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardDR, 75), constService("dns", necp.ProtoUDP, 53, necp.ForwardDR, 40))
	cfg.AdminFile = path
	ra := startAgent(t, cfg, opts, nil)
	httpState := ra.a.AgentCheck("http")
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	seq := uint32(0)
	health := func(h, d uint8) func(necp.Message) bool {
		return func(m necp.Message) bool { return m.Health[0].Health == h && m.Health[1].Health == d }
	}
	// No file: every service ready.
	mc.keepaliveUntil(&seq, health(75, 40))

	write("http drain\n")
	mc.keepaliveUntil(&seq, health(0, 40))
	if got := httpState(); got.Admin != agentcheck.Drain || got.Health != 75 {
		t.Errorf("drained http: agent-check %+v, want drain with the measured 75", got)
	}
	// The line comes just after the state a reply can already carry (the
	// watch swaps the state, then reads the health it logs): wait for it.
	drainLogged := func() bool {
		_, ok := logs.logLine("admin state changed by the admin file", "service=http", "admin=drain", "old_admin=ready", "health=75")
		return ok
	}
	for deadline := time.Now().Add(2 * time.Second); !drainLogged() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !drainLogged() {
		t.Errorf("no log line for the drain within 2 s:\n%s", logs)
	}

	write("* maint # patching\n")
	mc.keepaliveUntil(&seq, health(0, 0))
	if got := httpState(); got.Admin != agentcheck.Maint {
		t.Errorf("http under '* maint': agent-check %+v, want maint", got)
	}

	// A typo keeps what was in force, and says so once.
	write("* maitn\n")
	time.Sleep(3 * AdminPoll)
	mc.keepaliveUntil(&seq, health(0, 0))
	if got := httpState(); got.Admin != agentcheck.Maint {
		t.Errorf("after a broken file: agent-check %+v, want maint kept", got)
	}
	if _, ok := logs.logLine("admin file not applied", "unknown state"); !ok {
		t.Errorf("no log line for the broken file:\n%s", logs)
	}

	write("dns drain\n")
	mc.keepaliveUntil(&seq, health(75, 0))

	// A restarted agent (a new one, same file) is drained from its first
	// answer: the state is the file's, not the process's.
	fm2 := newFakeMaster(t)
	cfg2 := testConfig(fm2.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardDR, 75), constService("dns", necp.ProtoUDP, 53, necp.ForwardDR, 40))
	cfg2.AdminFile = path
	opts2, _ := testOptions()
	startAgent(t, cfg2, opts2, nil)
	mc2 := fm2.accept(2 * time.Second)
	mc2.handshake(nil)
	seq2 := uint32(0)
	first := mc2.keepaliveUntil(&seq2, func(m necp.Message) bool { return m.Health[0].Health != necp.HealthUnknown })
	if first.Health[1].Health != 0 {
		t.Errorf("restarted agent's first known answer reports dns %d, want 0 (drained)", first.Health[1].Health)
	}

	os.Remove(path)
	mc.keepaliveUntil(&seq, health(75, 40))
	if got := httpState(); got.Admin != agentcheck.Ready {
		t.Errorf("no file: agent-check %+v, want ready", got)
	}
}
