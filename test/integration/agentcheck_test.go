package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback address nobody listens on just now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// agentCheck asks addr as HAProxy's agent-check does: connect, read the
// line, and see the agent close.
func agentCheck(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// A real agent process answers HAProxy's agent-check from the same
// samples it reports to the master: the IPVS weight and the agent-check
// weight follow the monitor together.
func TestAgentCheckFollowsTheSameSamples(t *testing.T) {
	c := startCluster(t, masterConfig())
	healthFile := filepath.Join(t.TempDir(), "health")
	os.WriteFile(healthFile, []byte("30\n"), 0o644)
	listen := freePort(t)
	a := startAgent(t, c, "rs", fmt.Sprintf("monitor = exec\ncommand = cat %s\ninterval = 0.05\nagent-check-listen = %s", healthFile, listen))
	waitOutput(t, a, "answering HAProxy agent-check", 10*time.Second)

	for _, h := range []int{30, 80, 0} {
		os.WriteFile(healthFile, []byte(fmt.Sprintf("%d\n", h)), 0o644)
		c.waitWeight("127.0.0.1", h, 10*time.Second)
		want := fmt.Sprintf("ready %d%%\n", h)
		var got string
		for deadline := time.Now().Add(5 * time.Second); got != want; time.Sleep(10 * time.Millisecond) {
			var err error
			if got, err = agentCheck(listen); err != nil {
				t.Fatalf("agent-check: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent-check answered %q, want %q", got, want)
			}
		}
	}
	// A monitor that fails: the master keeps the weight, and so does
	// HAProxy, which gets no weight word, only the reason.
	os.WriteFile(healthFile, []byte("junk\n"), 0o644)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := agentCheck(listen)
		if err != nil {
			t.Fatalf("agent-check: %v", err)
		}
		if got == "ready #health unknown: monitor failed\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent-check answered %q for a failing monitor, want \"ready #health unknown: monitor failed\"", got)
		}
	}
	if w := c.weights()["127.0.0.1"]; w != 0 {
		t.Fatalf("weight %d after unknown health, want the last one (0) kept", w)
	}
}

// An agent that cannot listen where it was told exits 1 and says why,
// instead of running while HAProxy gets no answers.
func TestAgentCheckPortInUse(t *testing.T) {
	c := startCluster(t, masterConfig())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a := startAgent(t, c, "rs", constant(50)+"\nagent-check-listen = "+busy.Addr().String())
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running with its agent-check port in use")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if out := a.out.String(); !strings.Contains(out, `service \"web\": agent-check-listen`) && !strings.Contains(out, `service "web": agent-check-listen`) {
		t.Errorf("the agent's output does not name the service and key:\n%s", out)
	}
}
