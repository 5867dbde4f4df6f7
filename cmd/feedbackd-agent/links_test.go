package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent links no HTTP stack: net/http (and what comes with it) was
// most of its executable, and spread the pages an idle agent touches over
// more of it (internal/httpget, internal/promtext, docs/benchmarks.md).
// Its http monitor and its metrics endpoint use code of the project's own.
func TestAgentLinksNoHTTPStack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps gave %d packages: %q", len(deps), deps)
	}
	for _, p := range deps {
		if p == "net/http" || strings.HasPrefix(p, "net/http/") || strings.HasPrefix(p, "golang.org/x/net/http") ||
			strings.HasPrefix(p, "github.com/prometheus/") {
			t.Errorf("the agent links %s", p)
		}
	}
}
