package agentcheck

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func TestReply(t *testing.T) {
	for _, c := range []struct {
		name string
		in   State
		want string
	}{
		{"ready with a health", State{Health: 75}, "ready 75%\n"},
		{"full health", State{Health: 100}, "ready 100%\n"},
		{"health 0 is weight 0, not the DRAIN admin state", State{Health: 0}, "ready 0%\n"},
		{"unknown keeps HAProxy's weight", State{Health: necp.HealthUnknown}, "ready #health unknown\n"},
		{"unknown with its reason", State{Health: necp.HealthUnknown, Reason: "exec: exit status 3"}, "ready #exec: exit status 3\n"},
		{"anything above 100 is unknown", State{Health: 101}, "ready #health unknown\n"},
		{"drain keeps announcing the weight", State{Health: 40, Admin: Drain, Reason: "drained on the realserver"}, "drain 40% #drained on the realserver\n"},
		{"maint", State{Health: 40, Admin: Maint}, "maint 40%\n"},
		{"maint with unknown health", State{Health: necp.HealthUnknown, Admin: Maint, Reason: "patching"}, "maint #patching\n"},
		{"a reason cannot end the line early", State{Health: 5, Reason: "line one\r\nline two\x00\tend"}, "ready 5% #line one line two end\n"},
		{"non-ASCII folds to a blank", State{Health: 5, Reason: "caf\u00e9 ok"}, "ready 5% #caf ok\n"},
		{"blank reason is left out", State{Health: 5, Reason: " \t "}, "ready 5%\n"},
	} {
		if got := Reply(c.in); got != c.want {
			t.Errorf("%s: Reply(%+v) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// TestReplyShape checks every line against what HAProxy 2.6's agent
// parser (tcpcheck_agent_expect_reply) accepts: one line, words from its
// vocabulary, a weight that starts with a digit and holds '%', never an
// operational word (see Reply), and a bounded description.
func TestReplyShape(t *testing.T) {
	long := strings.Repeat("x", 3*MaxReason)
	for h := 0; h <= 255; h++ {
		for _, a := range []Admin{Ready, Drain, Maint} {
			line := Reply(State{Health: uint8(h), Admin: a, Reason: long})
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || strings.ContainsAny(line, "\r\x00") {
				t.Fatalf("Reply(%d, %v) = %q: not one line", h, a, line)
			}
			words, desc, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " #")
			if len(desc) > MaxReason {
				t.Errorf("Reply(%d, %v): description of %d bytes, more than %d", h, a, len(desc), MaxReason)
			}
			f := strings.Fields(words)
			if f[0] != a.Word() {
				t.Errorf("Reply(%d, %v) = %q: first word is not %q", h, a, line, a.Word())
			}
			switch {
			case h <= 100 && (len(f) != 2 || f[1] != strconv.Itoa(h)+"%"):
				t.Errorf("Reply(%d, %v) = %q: want the weight %d%%", h, a, line, h)
			case h > 100 && len(f) != 1:
				t.Errorf("Reply(%d, %v) = %q: unknown health must send no weight", h, a, line)
			}
			for _, w := range f {
				switch strings.ToLower(w) {
				case "up", "down", "fail", "stopped":
					t.Errorf("Reply(%d, %v) = %q: sends the operational word %q", h, a, line, w)
				}
			}
		}
	}
}

func TestAdminWord(t *testing.T) {
	for a, w := range map[Admin]string{Ready: "ready", Drain: "drain", Maint: "maint", Admin(9): "ready"} {
		if a.Word() != w {
			t.Errorf("Admin(%d).Word() = %q, want %q", a, a.Word(), w)
		}
	}
}
