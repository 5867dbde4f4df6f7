package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// TestShutdownLeavesNoMonitorProcess: the agent stops while every monitor
// is busy in processes it started, some of them detached (setsid); when Run
// has returned, none of them is left (issue 13, defect 12).
func TestShutdownLeavesNoMonitorProcess(t *testing.T) {
	for _, tool := range []string{"perl", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for this test: %v", tool, err)
		}
	}
	mark := fmt.Sprintf("feedbackd-shutdown-test-%d", os.Getpid())
	t.Cleanup(func() {
		for _, p := range testutil.MarkedProcs(mark) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	sleeper := fmt.Sprintf("sh -c 'sleep 1000; :' %s", mark)
	script := filepath.Join(t.TempDir(), "busy.pl")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(
		"sub get_health { system(q{setsid %[1]s >/dev/null 2>&1 &}); system(q{%[1]s}); 50 }\n", sleeper)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("192.0.2.1",
		config.Service{Name: "exec", Protocol: necp.ProtoTCP, Port: 80, Forwarding: necp.ForwardDR, Monitor: "exec",
			Params: map[string]string{"command": fmt.Sprintf("setsid %[1]s >/dev/null 2>&1 & %[1]s", sleeper), "timeout": "60"}},
		config.Service{Name: "perl", Protocol: necp.ProtoTCP, Port: 81, Forwarding: necp.ForwardDR, Monitor: "perl",
			Params: map[string]string{"file": script, "timeout": "60"}},
	)
	opts, _ := testOptions()
	// No master: the samplers run all the same, and the test is about them.
	opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		return nil, errors.New("no master in this test")
	}
	ra := startAgent(t, cfg, opts, nil)

	// Marked while both are busy: exec's reaper, its shell and two
	// sleepers; perl's two sleepers at least.
	deadline := time.Now().Add(10 * time.Second)
	for len(testutil.MarkedProcs(mark)) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the monitors did not start their processes: %v", testutil.MarkedProcs(mark))
		}
		time.Sleep(5 * time.Millisecond)
	}
	ra.cancel()
	if err := ra.wait(t, 15*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if left := testutil.MarkedProcs(mark); len(left) > 0 {
		t.Fatalf("%d monitor processes outlived the agent: %v", len(left), left)
	}
}
