package master

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
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

// wholeOnly hides a store's Append, so the owner writes the list whole at
// every change, as it did before the state file took appends.
type wholeOnly struct{ Store }

// BenchmarkStateFileJoinBurst records a join burst of 20 000 realservers
// in the state file, 20 joins per owner pass (1 000 passes), on the
// machine's real disk: written whole at every pass against appended (with
// the whole writes appends still lead to). Each iteration is one burst;
// ms/pass and kB/pass are what a pass of the burst costs on average.
func BenchmarkStateFileJoinBurst(b *testing.B) {
	const n, perPass = 20000, 20
	for _, mode := range []string{"whole", "append"} {
		b.Run(mode, func(b *testing.B) {
			var written int64
			for range b.N {
				b.StopTimer()
				path := filepath.Join(b.TempDir(), "master.state")
				var store Store = FileStore{Path: path}
				if mode == "whole" {
					store = wholeOnly{store}
				}
				m, err := New(testConfig(), Options{IPVS: ipvs.NewMemory(nil), Store: store, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				o, _ := m.newOwner()
				if err := o.start(t0); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for i := range n {
					peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 4000)
					o.t.join(joinEvent{sid: sessionID(i + 1), peer: peer, recs: []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardNAT)}}, t0)
					if (i+1)%perPass == 0 {
						before := stat(b, path)
						o.saveIfChanged()
						if o.t.ownedChanged {
							b.Fatal("state file not written")
						}
						after := stat(b, path)
						if os.SameFile(before, after) {
							written += after.Size() - before.Size() // appended
						} else {
							written += after.Size() // written whole
						}
					}
				}
			}
			passes := float64(b.N) * n / perPass
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/passes, "ms/pass")
			b.ReportMetric(float64(written)/1000/passes, "kB/pass")
		})
	}
}

func stat(b *testing.B, path string) os.FileInfo {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st
}
