package necp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// unhex turns a §9 byte string ("01 02 00 08 ...") into bytes.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var peer = netip.Addr{} // 0.0.0.0 on the wire: "use the TCP peer"

// golden holds every well-formed vector of §9 of the specification, copied
// byte for byte.
var golden = []struct {
	name string
	hex  string
	msg  Message
}{
	// Basic session.
	{"INIT", "01 02 00 08 00 00 00 01",
		Message{Version: 1, Type: TypeInit, Seq: 1}},
	{"INIT_ACK", "01 03 00 08 00 00 00 01",
		Message{Version: 1, Type: TypeInitAck, Seq: 1}},
	{"START", "01 06 00 14 00 00 00 02  00 01 00 00  06 03 00 50 00 00 00 00",
		Message{Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
			{Protocol: ProtoTCP, Forwarding: ForwardNAT, Port: 80, Address: peer},
		}}},
	{"START_ACK", "01 07 00 10 00 00 00 02  00 01 00 00  00 00 00 00",
		Message{Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{StatusAccepted}}},
	{"KEEPALIVE", "01 04 00 08 00 00 00 01",
		Message{Version: 1, Type: TypeKeepalive, Seq: 1}},
	{"KEEPALIVE_ACK", "01 05 00 10 00 00 00 01  00 01 00 00  06 4b 00 50",
		Message{Version: 1, Type: TypeKeepaliveAck, Seq: 1, Health: []HealthRecord{
			{Protocol: ProtoTCP, Health: 75, Port: 80},
		}}},
	{"STOP all", "01 08 00 0c 00 00 00 03  00 00 00 00",
		Message{Version: 1, Type: TypeStop, Seq: 3}},
	{"STOP_ACK", "01 09 00 08 00 00 00 03",
		Message{Version: 1, Type: TypeStopAck, Seq: 3}},

	// Further vectors.
	{"START 2 services", "01 06 00 1c 00 00 00 02  00 02 00 00  06 01 00 50 00 00 00 00  11 02 00 35 c0 00 02 0a",
		Message{Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
			{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: peer},
			{Protocol: ProtoUDP, Forwarding: ForwardTUN, Port: 53, Address: netip.MustParseAddr("192.0.2.10")},
		}}},
	{"START_ACK 2 statuses", "01 07 00 10 00 00 00 02  00 02 00 00  00 01 00 00",
		Message{Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{StatusAccepted, StatusNoMatch}}},
	{"KEEPALIVE_ACK 2 records", "01 05 00 14 00 00 00 07  00 02 00 00  06 64 00 50  11 ff 00 35",
		Message{Version: 1, Type: TypeKeepaliveAck, Seq: 7, Health: []HealthRecord{
			{Protocol: ProtoTCP, Health: 100, Port: 80},
			{Protocol: ProtoUDP, Health: HealthUnknown, Port: 53},
		}}},
	{"STOP one service", "01 08 00 14 00 00 00 04  00 01 00 00  11 02 00 35 00 00 00 00",
		Message{Version: 1, Type: TypeStop, Seq: 4, Services: []ServiceRecord{
			{Protocol: ProtoUDP, Forwarding: ForwardTUN, Port: 53, Address: peer},
		}}},
	{"NOOP", "01 01 00 08 00 00 00 09",
		Message{Version: 1, Type: TypeNoop, Seq: 9}},
}

// equal compares messages field by field; nil and empty slices are equal,
// because which one a decoder produces depends on what it reused.
func equal(a, b *Message) bool {
	return a.Version == b.Version && a.Type == b.Type && a.Seq == b.Seq &&
		slices.Equal(a.Services, b.Services) &&
		slices.Equal(a.Statuses, b.Statuses) &&
		slices.Equal(a.Health, b.Health) && a.Auth == b.Auth
}

// canonical returns what m must decode to after a round trip: version 0
// becomes Version, only the slice of m.Type survives, and 0.0.0.0 and
// IPv4-mapped addresses become what the decoder produces for them.
func canonical(m *Message) Message {
	c := Message{Version: m.Version, Type: m.Type, Seq: m.Seq}
	if c.Version == 0 {
		c.Version = Version
	}
	switch m.Type {
	case TypeStart, TypeStop:
		for _, s := range m.Services {
			s.Address = s.Address.Unmap()
			if s.Address == netip.IPv4Unspecified() {
				s.Address = netip.Addr{}
			}
			c.Services = append(c.Services, s)
		}
	case TypeStartAck:
		c.Statuses = slices.Clone(m.Statuses)
	case TypeKeepaliveAck:
		c.Health = slices.Clone(m.Health)
	case TypeInitAck, TypeAuth:
		c.Auth = m.Auth
	}
	return c
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range golden {
		want := unhex(t, g.hex)
		got, err := g.msg.MarshalBinary()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: MarshalBinary = % x, %v; want % x", g.name, got, err, want)
		}
		// Version 0 stands for Version.
		m := g.msg
		m.Version = 0
		got, err = m.AppendBinary([]byte("prefix"))
		if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("%s: AppendBinary with version 0 = % x, %v", g.name, got, err)
		}
	}
}

func TestGoldenDecode(t *testing.T) {
	var reused Message // decoded into again and again, to show slices are reset
	for _, g := range golden {
		b := unhex(t, g.hex)
		var fresh Message
		if err := fresh.UnmarshalBinary(b); err != nil || !equal(&fresh, &g.msg) {
			t.Errorf("%s: UnmarshalBinary = %+v, %v; want %+v", g.name, fresh, err, g.msg)
		}
		if err := reused.UnmarshalBinary(b); err != nil || !equal(&reused, &g.msg) {
			t.Errorf("%s: UnmarshalBinary into used Message = %+v, %v; want %+v", g.name, reused, err, g.msg)
		}
	}
}

// TestDecodeLenient covers inputs that look odd but that the specification
// says to accept.
func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Message
	}{
		{"version mismatch is left to the caller", "07 02 00 08 00 00 00 01",
			Message{Version: 7, Type: TypeInit, Seq: 1}},
		{"version 0", "00 04 00 08 00 00 00 02",
			Message{Version: 0, Type: TypeKeepalive, Seq: 2}},
		{"unknown type 0", "01 00 00 08 ff ff ff ff",
			Message{Version: 1, Type: 0, Seq: 0xffffffff}},
		{"unknown type 10 with payload skipped", "01 0a 00 0d 00 00 00 05  01 02 03 04 05",
			Message{Version: 1, Type: 10, Seq: 5}},
		{"unknown type 255", "01 ff 00 0c 00 00 00 05  00 09 00 00",
			Message{Version: 1, Type: 255, Seq: 5}},
		{"reserved field ignored", "01 05 00 10 00 00 00 01  00 01 ab cd  06 4b 00 50",
			Message{Version: 1, Type: TypeKeepaliveAck, Seq: 1, Health: []HealthRecord{{ProtoTCP, 75, 80}}}},
		{"START_ACK padding ignored", "01 07 00 10 00 00 00 02  00 02 00 00  00 02 ee ff",
			Message{Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{StatusAccepted, StatusRefused}}},
		{"START_ACK count 4 needs no padding", "01 07 00 10 00 00 00 02  00 04 00 00  00 01 02 09",
			Message{Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{0, 1, 2, 9}}},
		{"START_ACK count 0", "01 07 00 0c 00 00 00 02  00 00 00 00",
			Message{Version: 1, Type: TypeStartAck, Seq: 2}},
		{"KEEPALIVE_ACK count 0", "01 05 00 0c 00 00 00 02  00 00 00 00",
			Message{Version: 1, Type: TypeKeepaliveAck, Seq: 2}},
		{"out-of-range values are the master's business", "01 06 00 14 00 00 00 02  00 01 00 00  01 09 ff ff ff ff ff ff",
			Message{Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
				{Protocol: 1, Forwarding: 9, Port: 65535, Address: netip.MustParseAddr("255.255.255.255")},
			}}},
	}
	for _, tt := range tests {
		// Start from a Message full of stale data of every kind.
		m := Message{
			Services: []ServiceRecord{{Port: 1}},
			Statuses: []Status{StatusRefused},
			Health:   []HealthRecord{{Port: 2}},
		}
		if err := m.UnmarshalBinary(unhex(t, tt.hex)); err != nil || !equal(&m, &tt.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, m, err, tt.want)
		}
	}
}

// malformed holds inputs that the decoder must reject; the first three are
// the malformed vectors of §9.
var malformedInputs = []struct {
	name string
	hex  string
}{
	{"§9 length below 8", "01 02 00 07 00 00 00 01"},
	{"§9 length above the cap", "01 05 10 01 00 00 00 01"},
	{"§9 count disagrees with length", "01 05 00 10 00 00 00 01  00 02 00 00  06 4b 00 50"},

	{"empty", ""},
	{"truncated header", "01 02 00 08 00"},
	{"length 0", "01 02 00 00 00 00 00 01"},
	{"length 0xffff", "01 05 ff ff 00 00 00 01"},
	{"frame shorter than its length", "01 05 00 10 00 00 00 01  00 01 00 00"},
	{"frame longer than its length", "01 02 00 08 00 00 00 01  00"},
	{"unknown type, frame shorter than its length", "01 0a 00 10 00 00 00 01"},
	{"unknown type, frame longer than its length", "01 0a 00 08 00 00 00 01  00 00 00 00"},
	{"frame longer than its length, valid with the extra bytes", "01 05 00 10 00 00 00 07  00 02 00 00  06 64 00 50  11 ff 00 35"},

	{"INIT with trailing bytes", "01 02 00 0c 00 00 00 01  00 00 00 00"},
	{"INIT_ACK with trailing byte", "01 03 00 09 00 00 00 01  00"},
	{"KEEPALIVE with trailing bytes", "01 04 00 0c 00 00 00 01  00 01 00 00"},
	{"STOP_ACK with trailing bytes", "01 09 00 0c 00 00 00 01  00 00 00 00"},
	{"NOOP with trailing byte", "01 01 00 09 00 00 00 01  00"},

	{"START without list header", "01 06 00 08 00 00 00 02"},
	{"START with half a list header", "01 06 00 0a 00 00 00 02  00 01"},
	{"START count 2, one record", "01 06 00 14 00 00 00 02  00 02 00 00  06 03 00 50 00 00 00 00"},
	{"START count 1, two records", "01 06 00 1c 00 00 00 02  00 01 00 00  06 01 00 50 00 00 00 00  11 02 00 35 c0 00 02 0a"},
	{"START count 1, partial record", "01 06 00 10 00 00 00 02  00 01 00 00  06 03 00 50"},
	{"START count 0 with a record", "01 06 00 14 00 00 00 02  00 00 00 00  06 03 00 50 00 00 00 00"},
	{"STOP without list header", "01 08 00 08 00 00 00 03"},
	{"STOP count 0 with a record", "01 08 00 14 00 00 00 03  00 00 00 00  11 02 00 35 00 00 00 00"},
	{"STOP count 2, one record", "01 08 00 14 00 00 00 03  00 02 00 00  11 02 00 35 00 00 00 00"},

	{"START_ACK without list header", "01 07 00 08 00 00 00 02"},
	{"START_ACK count 3, unpadded (15 bytes)", "01 07 00 0f 00 00 00 02  00 03 00 00  00 01 02"},
	{"START_ACK count 1, extra padding word", "01 07 00 14 00 00 00 02  00 01 00 00  00 00 00 00  00 00 00 00"},
	{"START_ACK count 5, room for 4", "01 07 00 10 00 00 00 02  00 05 00 00  00 00 00 00"},
	{"START_ACK count 0 with padding", "01 07 00 10 00 00 00 02  00 00 00 00  00 00 00 00"},

	{"KEEPALIVE_ACK without list header", "01 05 00 08 00 00 00 01"},
	{"KEEPALIVE_ACK count 1, no record", "01 05 00 0c 00 00 00 01  00 01 00 00"},
	{"KEEPALIVE_ACK count 1, two records", "01 05 00 14 00 00 00 01  00 01 00 00  06 64 00 50  11 ff 00 35"},
	{"KEEPALIVE_ACK count 1, partial record", "01 05 00 0e 00 00 00 01  00 01 00 00  06 64"},
}

func TestDecodeMalformed(t *testing.T) {
	for _, tt := range malformedInputs {
		b := unhex(t, tt.hex)
		m := golden[2].msg // a START: must come out untouched
		m.Services = slices.Clone(m.Services)
		err := m.UnmarshalBinary(b)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: UnmarshalBinary(% x) = %v, want ErrMalformed", tt.name, b, err)
			continue
		}
		if !equal(&m, &golden[2].msg) {
			t.Errorf("%s: failed UnmarshalBinary changed the message to %+v", tt.name, m)
		}
		t.Logf("%s: %v", tt.name, err)
	}

	// The cap vector of §9 with the whole 4097 bytes present.
	b := append(unhex(t, "01 05 10 01 00 00 00 01"), make([]byte, 4097-8)...)
	var m Message
	if err := m.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("4097-byte frame: %v, want ErrMalformed", err)
	}
}

// TestErrorText pins the two messages quoted in the package's brief, so that
// logs say what is wrong.
func TestErrorText(t *testing.T) {
	var m Message
	for _, tt := range []struct{ hex, want string }{
		{"01 02 00 07 00 00 00 01", "necp: malformed message: length 7 below header size 8"},
		{"01 06 00 14 00 00 00 02  00 02 00 00  06 03 00 50 00 00 00 00",
			"necp: malformed message: START count 2 needs 16 record bytes, have 8"},
	} {
		if err := m.UnmarshalBinary(unhex(t, tt.hex)); err == nil || err.Error() != tt.want {
			t.Errorf("% s: got %v, want %q", tt.hex, err, tt.want)
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	ok := []Message{
		{Type: TypeStart, Services: make([]ServiceRecord, MaxServices)},
		{Type: TypeStop, Services: make([]ServiceRecord, MaxServices)},
		{Type: TypeStartAck, Statuses: make([]Status, 4084)},
		{Type: TypeKeepaliveAck, Health: make([]HealthRecord, 1021)},
	}
	for _, m := range ok {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Errorf("%v at its limit: %v", m.Type, err)
			continue
		}
		if len(b) > MaxMessageLen {
			t.Errorf("%v at its limit: %d bytes", m.Type, len(b))
		}
		var d Message
		if err := d.UnmarshalBinary(b); err != nil {
			t.Errorf("%v at its limit does not decode: %v", m.Type, err)
		}
	}

	tooBig := []Message{
		{Type: TypeStart, Services: make([]ServiceRecord, MaxServices+1)},
		{Type: TypeStop, Services: make([]ServiceRecord, MaxServices+1)},
		{Type: TypeStartAck, Statuses: make([]Status, 4085)},
		{Type: TypeKeepaliveAck, Health: make([]HealthRecord, 1022)},
		{Type: TypeKeepaliveAck, Health: make([]HealthRecord, 70000)}, // count overflows u16
	}
	for _, m := range tooBig {
		b, err := m.AppendBinary([]byte{0xaa})
		if !errors.Is(err, ErrMalformed) || !bytes.Equal(b, []byte{0xaa}) {
			t.Errorf("%v with too many records: % .8x, %v; want b unchanged and ErrMalformed", m.Type, b, err)
		}
	}
}

func TestEncodeAddress(t *testing.T) {
	enc := func(a netip.Addr) ([]byte, error) {
		m := Message{Type: TypeStart, Services: []ServiceRecord{{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: a}}}
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		return b[len(b)-4:], nil
	}
	for _, tt := range []struct {
		addr netip.Addr
		want string
	}{
		{netip.Addr{}, "00000000"},
		{netip.IPv4Unspecified(), "00000000"},
		{netip.MustParseAddr("192.0.2.10"), "c000020a"},
		{netip.MustParseAddr("::ffff:192.0.2.10"), "c000020a"},
	} {
		got, err := enc(tt.addr)
		if err != nil || hex.EncodeToString(got) != tt.want {
			t.Errorf("address %v: %x, %v; want %s", tt.addr, got, err, tt.want)
		}
	}
	for _, a := range []string{"fe80::1%eth0"} {
		if _, err := enc(netip.MustParseAddr(a)); !errors.Is(err, ErrMalformed) {
			t.Errorf("address %v: %v, want ErrMalformed", a, err)
		}
	}
}

func TestEncodeIgnoresOtherSlices(t *testing.T) {
	all := Message{
		Services: []ServiceRecord{{Port: 1}},
		Statuses: []Status{1},
		Health:   []HealthRecord{{Port: 2}},
	}
	for _, tc := range []struct {
		typ  Type
		size int
	}{
		{TypeInit, 8}, {TypeStopAck, 8}, {TypeStart, 20}, {TypeStartAck, 16}, {TypeKeepaliveAck, 16},
		{0, 8}, {42, 8}, // unknown types go out as a bare header
	} {
		m := all
		m.Type = tc.typ
		b, err := m.MarshalBinary()
		if err != nil || len(b) != tc.size {
			t.Errorf("%v: %d bytes, %v; want %d", tc.typ, len(b), err, tc.size)
		}
	}
}

// randomMessage returns a message of any type, known or not, with random
// records; counts are mostly small, as on a real wire, sometimes at the limit.
func randomMessage(r *rand.Rand) Message {
	m := Message{
		Version: uint8(r.IntN(3)),
		Type:    Type(r.IntN(12)),
		Seq:     r.Uint32(),
	}
	count := func(limit int) int {
		if r.IntN(20) == 0 {
			return limit
		}
		return r.IntN(12)
	}
	// Fill the slices of every kind, so that encoding must pick the right one.
	for range count(MaxServices) {
		s := ServiceRecord{
			Protocol:   uint8(r.Uint32()),
			Forwarding: Forwarding(r.IntN(5)),
			Port:       uint16(r.Uint32()),
		}
		switch r.IntN(4) {
		case 0: // zero Addr: use the peer
		case 1:
			s.Address = netip.IPv4Unspecified()
		default:
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], r.Uint32())
			s.Address = netip.AddrFrom4(a)
			if r.IntN(2) == 0 {
				s.Address = netip.AddrFrom16(s.Address.As16()) // IPv4-mapped
			}
		}
		m.Services = append(m.Services, s)
	}
	for range count(4084) {
		m.Statuses = append(m.Statuses, Status(r.Uint32()))
	}
	for range count(1021) {
		m.Health = append(m.Health, HealthRecord{Protocol: uint8(r.Uint32()), Health: uint8(r.Uint32()), Port: uint16(r.Uint32())})
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3262, 2007))
	var buf []byte
	var got Message
	for i := range 20000 {
		m := randomMessage(r)
		var err error
		buf, err = m.AppendBinary(buf[:0])
		if err != nil {
			t.Fatalf("#%d: encoding %+v: %v", i, m, err)
		}
		if n := int(buf[2])<<8 | int(buf[3]); n != len(buf) || n > MaxMessageLen {
			t.Fatalf("#%d: %v frame of %d bytes says length %d", i, m.Type, len(buf), n)
		}
		if err := got.UnmarshalBinary(buf); err != nil {
			t.Fatalf("#%d: decoding % x: %v", i, buf, err)
		}
		if want := canonical(&m); !equal(&got, &want) {
			t.Fatalf("#%d: round trip of %v gave\n%+v\nwant\n%+v", i, m.Type, got, want)
		}
	}
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestWriteMessage(t *testing.T) {
	for _, g := range golden {
		var w countingWriter
		if err := WriteMessage(&w, &g.msg); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if w.writes != 1 || !bytes.Equal(w.Bytes(), unhex(t, g.hex)) {
			t.Errorf("%s: %d writes of % x", g.name, w.writes, w.Bytes())
		}
	}
	var w countingWriter
	bad := Message{Type: TypeStart, Services: []ServiceRecord{{Address: netip.MustParseAddr("fe80::1%eth0")}}}
	if err := WriteMessage(&w, &bad); !errors.Is(err, ErrMalformed) || w.writes != 0 {
		t.Errorf("unencodable message: %v after %d writes", err, w.writes)
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{TypeNoop.String(), "NOOP"},
		{TypeInit.String(), "INIT"},
		{TypeInitAck.String(), "INIT_ACK"},
		{TypeKeepalive.String(), "KEEPALIVE"},
		{TypeKeepaliveAck.String(), "KEEPALIVE_ACK"},
		{TypeStart.String(), "START"},
		{TypeStartAck.String(), "START_ACK"},
		{TypeStop.String(), "STOP"},
		{TypeStopAck.String(), "STOP_ACK"},
		{Type(0).String(), "Type(0)"},
		{Type(42).String(), "Type(42)"},
		{Type(255).String(), "Type(255)"},
		{ForwardNone.String(), "none"},
		{ForwardDR.String(), "DR"},
		{ForwardTUN.String(), "TUN"},
		{ForwardNAT.String(), "NAT"},
		{Forwarding(9).String(), "Forwarding(9)"},
		{StatusAccepted.String(), "accepted"},
		{StatusNoMatch.String(), "no match"},
		{StatusRefused.String(), "refused"},
		{StatusContinued.String(), "continued"},
		{Status(4).String(), "Status(4)"},
		{ProtocolName(ProtoTCP), "tcp"},
		{ProtocolName(ProtoUDP), "udp"},
		{ProtocolName(132), "proto(132)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]Forwarding{"DR": ForwardDR, "dr": ForwardDR, "Tun": ForwardTUN, "nat": ForwardNAT, "NAT": ForwardNAT} {
		if f, err := ParseForwarding(s); f != want || err != nil {
			t.Errorf("ParseForwarding(%q) = %v, %v; want %v", s, f, err, want)
		}
	}
	for _, s := range []string{"", "none", "NONE", "masq", "DR ", "Forwarding(1)", "1"} {
		if f, err := ParseForwarding(s); err == nil {
			t.Errorf("ParseForwarding(%q) = %v, want an error", s, f)
		}
	}
	for s, want := range map[string]uint8{"tcp": ProtoTCP, "TCP": ProtoTCP, "udp": ProtoUDP, "Udp": ProtoUDP} {
		if p, err := ParseProtocol(s); p != want || err != nil {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v", s, p, err, want)
		}
	}
	for _, s := range []string{"", "sctp", "6", "tcp ", "proto(6)"} {
		if p, err := ParseProtocol(s); err == nil {
			t.Errorf("ParseProtocol(%q) = %v, want an error", s, p)
		}
	}
}
