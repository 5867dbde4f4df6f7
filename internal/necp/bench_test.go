package necp

import "testing"

// The master reads one KEEPALIVE_ACK and writes one KEEPALIVE per agent
// every keepalive-interval, for up to 20 000 agents: these are its hot paths.

func BenchmarkReadKeepaliveAck(b *testing.B) {
	frame := unhex(b, golden[10].hex) // two health records, 20 bytes
	r := NewReader(&loopReader{frame: frame})
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := r.ReadMessage(&m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendKeepalive(b *testing.B) {
	m := Message{Type: TypeKeepalive, Seq: 1}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
		m.Seq++
	}
}

func BenchmarkAppendKeepaliveAck(b *testing.B) {
	m := golden[10].msg
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
