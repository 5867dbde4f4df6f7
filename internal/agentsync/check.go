package agentsync

import (
	"fmt"
	"io"
	"strings"
)

// CheckFiles is feedbackd-agent-sync -t: it checks every instance file
// against the base file as the agent would, reports each, and returns the
// exit status, 1 if any is invalid. It needs neither systemd nor root.
func CheckFiles(stdout, stderr io.Writer, prog, base, dir string) int {
	files, skipped, err := Scan(base, dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	for _, s := range skipped {
		fmt.Fprintf(stdout, "%s: skipping %s: %s\n", prog, s.Name, s.Reason)
	}
	seen := map[string]bool{}
	bad := 0
	for _, f := range files {
		if f.Err != nil {
			bad++
			fmt.Fprintf(stderr, "%s: %s: configuration error:\n%v\n", prog, f.Path, f.Err)
			continue
		}
		for _, w := range f.Warnings {
			if !seen[w] { // agent.conf's warnings come back with every file
				seen[w] = true
				fmt.Fprintf(stderr, "%s: warning: %s\n", prog, w)
			}
		}
		fmt.Fprintf(stdout, "%s: %s: OK (%s, director %s) as %s\n", prog, f.Path, plural(len(f.Config.Services), "service"), f.Config.Director, f.Unit)
	}
	fmt.Fprintf(stdout, "%s: %s in %s: %d valid, %d invalid\n", prog, plural(len(files), "instance file"), dir, len(files)-bad, bad)
	if bad > 0 {
		return 1
	}
	return 0
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(what, "s"))
}
