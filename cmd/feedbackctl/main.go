// Command feedbackctl asks the running feedbackd-master, over its local
// control socket, for the state of every realserver and why it has its
// weight, and sets admin states (drain, maint, ready). The work is in
// internal/ctl; see feedbackctl(8).
package main

import (
	"os"

	"github.com/lvs-feedbackd/feedbackd/internal/ctl"
)

func main() { os.Exit(ctl.Main()) }
