package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// runAsAgentEnv makes the test binary run as feedbackd-agent, so that a
// test can kill a real agent process.
const runAsAgentEnv = "FEEDBACKD_AGENT_TEST_RUN_AS_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(runAsAgentEnv) == "1" {
		os.Exit(run(os.Args[1:], cli.DefaultStdio()))
	}
	os.Exit(m.Run())
}

// TestKilledAgentLeavesNoMonitorProcess: an agent killed with SIGKILL,
// which cannot clean up, while its monitors are busy in processes they
// started (some detached with setsid): the monitors' processes die with it
// (issue 13, defect 12). Under systemd the unit's cgroup is killed too;
// this is the agent run by hand, or under another supervisor.
func TestKilledAgentLeavesNoMonitorProcess(t *testing.T) {
	for _, tool := range []string{"perl", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for this test: %v", tool, err)
		}
	}
	mark := fmt.Sprintf("feedbackd-killed-agent-test-%d", os.Getpid())
	t.Cleanup(func() {
		for _, p := range testutil.MarkedProcs(mark) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	dir := t.TempDir()
	sleeper := fmt.Sprintf("sh -c 'sleep 1000; :' %s", mark)
	script := filepath.Join(dir, "busy.pl")
	os.WriteFile(script, []byte(fmt.Sprintf(
		"sub get_health { system(q{setsid %[1]s >/dev/null 2>&1 &}); system(q{%[1]s}); 50 }\n", sleeper)), 0o644)
	conf := filepath.Join(dir, "agent.conf")
	// Port 1 on loopback refuses: the agent retries while its samplers run.
	os.WriteFile(conf, []byte(fmt.Sprintf(`director = 127.0.0.1:1
[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = exec
command = setsid %[1]s >/dev/null 2>&1 & %[1]s
timeout = 60

[service]
name = script
protocol = tcp
port = 81
forwarding = DR
monitor = perl
file = %[2]s
timeout = 60
`, sleeper, script)), 0o644)

	cmd := exec.Command(os.Args[0], "-d", "-c", conf)
	cmd.Env = append(os.Environ(), runAsAgentEnv+"=1")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Both monitors busy: exec's reaper, its shell and two sleepers;
	// perl's two sleepers at least.
	deadline := time.Now().Add(10 * time.Second)
	for len(testutil.MarkedProcs(mark)) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the monitors did not start their processes: %v\n%s", testutil.MarkedProcs(mark), out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not die of SIGKILL")
	}
	// The kernel tells each reaper that the agent died (PDEATHSIG); they
	// clean up on their own, so this waits, with a deadline.
	deadline = time.Now().Add(10 * time.Second)
	for {
		left := testutil.MarkedProcs(mark)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d monitor processes outlived the agent: %v", len(left), left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
