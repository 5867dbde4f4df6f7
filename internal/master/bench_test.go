package master

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// BenchmarkOwnerPass is one owner-loop pass for one changed health report
// (table update, diff, write bookkeeping, tick, deadline) in a cluster of n
// realservers. Its cost must not grow with n: at 20 000 agents polled every
// 2 s there are 10 000 passes a second. Compare the n=1000 and n=20000
// figures (docs/benchmarks.md).
func BenchmarkOwnerPass(b *testing.B) {
	for _, n := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			tb := newTestTable()
			for i := 0; i < n; i++ {
				peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 4000)
				joinT(tb, sessionID(i+1), peer, []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}, t0)
			}
			for _, o := range tb.diff() {
				tb.applied(o, nil)
			}
			tb.clean()
			now := t0.Add(time.Second)
			hr := []necp.HealthRecord{{Protocol: necp.ProtoUDP, Port: 53}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				hr[0].Health = uint8(10 + (i/n)%2) // each round flips every session: always a change
				tb.health(sessionID(i%n+1), hr, now)
				tb.tick(now)
				tb.nextDeadline()
				for _, o := range tb.diff() {
					tb.applied(o, nil)
				}
				tb.clean()
				tb.counts()
			}
		})
	}
}
