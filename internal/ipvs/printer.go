package ipvs

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Printer returns a function that prints mem's table to w soon after it is
// called: the only way to see what a --without-ipvs master does. Bursts of
// writes (a thousand agents joining) are coalesced into one print per
// 200 ms, and a large table is cut short, so printing never costs more
// than the work itself. Use it with Observe.
func Printer(mem *Memory, w io.Writer) func() {
	const maxLines = 60
	kick := make(chan struct{}, 1)
	go func() {
		for range kick {
			lines := strings.SplitAfter(mem.String(), "\n")
			if len(lines) > maxLines {
				more := len(lines) - maxLines
				lines = append(lines[:maxLines], fmt.Sprintf("  ... %d more lines\n", more))
			}
			fmt.Fprintf(w, "--- IPVS table (in-memory, --without-ipvs) ---\n%s", strings.Join(lines, ""))
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return func() {
		select {
		case kick <- struct{}{}:
		default: // a print is already pending; it will show this write too
		}
	}
}
