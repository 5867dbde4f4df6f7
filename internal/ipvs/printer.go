package ipvs

import (
	"fmt"
	"io"
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
		var buf []byte
		var more int
		for range kick {
			// Only the head is rendered: formatting the whole table to
			// show 60 lines of it made a join burst of 20 000 agents
			// allocate hundreds of megabytes.
			buf = append(buf[:0], "--- IPVS table (in-memory, --without-ipvs) ---\n"...)
			buf, more = mem.AppendTable(buf, maxLines)
			if more > 0 {
				buf = fmt.Appendf(buf, "  ... %d more lines\n", more)
			}
			w.Write(buf)
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
