package agent

import (
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// BenchmarkKeepaliveRoundTrip measures one KEEPALIVE from the master to the
// agent's KEEPALIVE_ACK over loopback TCP: the agent's whole reply path
// (read, sampler lookup for every service, encode, write) plus two loopback
// hops. Eight services, the most the 2003 mailing-list post mentions.
func BenchmarkKeepaliveRoundTrip(b *testing.B) {
	fm := newFakeMaster(b)
	cfg := testConfig(fm.addr())
	for i := range 8 {
		cfg.Services = append(cfg.Services, constService("svc", necp.ProtoTCP, uint16(8000+i), necp.ForwardDR, 50))
	}
	// Per-keepalive lines are VDEBUG; log at the HOWTO's production level.
	opts := Options{Logger: logging.New(logging.Options{Level: logging.LevelWarn, Writer: &syncBuffer{}})}
	startAgent(b, cfg, opts, nil)
	mc := fm.accept(2 * time.Second)
	mc.handshake(nil)
	seq := uint32(0)
	mc.keepaliveUntil(&seq, allKnown)

	ka, err := (&necp.Message{Type: necp.TypeKeepalive}).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	var ack necp.Message
	mc.c.SetDeadline(time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq++
		ka[4], ka[5], ka[6], ka[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		if _, err := mc.c.Write(ka); err != nil {
			b.Fatal(err)
		}
		if err := mc.r.ReadMessage(&ack); err != nil {
			b.Fatal(err)
		}
		if ack.Type != necp.TypeKeepaliveAck || ack.Seq != seq || len(ack.Health) != 8 {
			b.Fatalf("bad answer %v seq %d (want %d) with %d records", ack.Type, ack.Seq, seq, len(ack.Health))
		}
	}
}
