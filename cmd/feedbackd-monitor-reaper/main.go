// Command feedbackd-monitor-reaper runs one monitor command for
// feedbackd-agent and makes sure nothing it started outlives it; see
// internal/reaper. The agent starts it; it is not for people to run.
package main

import (
	"os"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/reaper"
)

func main() {
	if len(os.Args) < 2 {
		os.Stderr.WriteString(reaper.Name + ": started by feedbackd-agent for its monitor commands, not by hand\n")
		syscall.Exit(2)
	}
	syscall.Exit(reaper.Main(os.Args[1:]))
}
