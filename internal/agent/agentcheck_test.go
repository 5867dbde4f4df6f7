package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agentcheck"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// The agent-check answer comes from the sample the KEEPALIVE_ACK carries:
// the constant's value as a weight, and a slow exec monitor's unknown
// (stale or not yet sampled) health at once, with the reason, instead of
// waiting for the command.
func TestAgentCheckAnswersFromTheSamples(t *testing.T) {
	fm := newFakeMaster(t)
	opts, _ := testOptions()
	slow := config.Service{
		Name: "slow", Protocol: necp.ProtoTCP, Port: 8080, Forwarding: necp.ForwardDR, Monitor: "exec",
		Params: map[string]string{"command": "sleep 5; echo 50", "interval": "50ms"},
	}
	cfg := testConfig(fm.addr(), constService("http", necp.ProtoTCP, 80, necp.ForwardDR, 75), slow)
	ra := startAgent(t, cfg, opts, nil)
	if ra.a.AgentCheck("nosuch") != nil {
		t.Error("AgentCheck of an unknown service is not nil")
	}
	httpState, slowState := ra.a.AgentCheck("http"), ra.a.AgentCheck("slow")

	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	seq := uint32(0)
	mc.keepaliveUntil(&seq, func(m necp.Message) bool { return m.Health[0].Health == 75 })
	if got := httpState(); got != (agentcheck.State{Health: 75, Admin: agentcheck.Ready}) {
		t.Errorf("http: %+v, want health 75, ready", got)
	}
	for i := 0; i < 5; i++ {
		begin := time.Now()
		st := slowState()
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("the slow service's state took %s", d)
		}
		if st.Health != necp.HealthUnknown || !strings.HasPrefix(st.Reason, "health unknown: ") || st.Admin != agentcheck.Ready {
			t.Errorf("slow: %+v, want unknown with a reason, ready", st)
		}
		if line := agentcheck.Reply(st); !strings.HasPrefix(line, "ready #") {
			t.Errorf("slow: line %q sends a weight for an unknown health", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
