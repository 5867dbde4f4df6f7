package necp_test

import (
	"bytes"
	"fmt"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func Example() {
	// An agent answers KEEPALIVE 7 with the health of its two services.
	var conn bytes.Buffer
	ack := necp.Message{Type: necp.TypeKeepaliveAck, Seq: 7, Health: []necp.HealthRecord{
		{Protocol: necp.ProtoTCP, Health: 100, Port: 80},
		{Protocol: necp.ProtoUDP, Health: necp.HealthUnknown, Port: 53},
	}}
	if err := necp.WriteMessage(&conn, &ack); err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", conn.Bytes())

	// The master reads it back.
	r := necp.NewReader(&conn)
	var m necp.Message
	if err := r.ReadMessage(&m); err != nil {
		panic(err)
	}
	for _, h := range m.Health {
		fmt.Println(m.Type, m.Seq, necp.ProtocolName(h.Protocol), h.Port, h.Health)
	}
	// Output:
	// 01 05 00 14 00 00 00 07 00 02 00 00 06 64 00 50 11 ff 00 35
	// KEEPALIVE_ACK 7 tcp 80 100
	// KEEPALIVE_ACK 7 udp 53 255
}
