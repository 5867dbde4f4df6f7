package necp

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

var claim6 = netip.MustParseAddr("2001:db8::10")

// extendedWant is what each vector of testdata/extended-vectors.txt decodes
// to; nil means malformed (the connection is closed).
var extendedWant = map[string]*Message{
	"START ipv6 claim": {Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
		{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: claim6}}},
	"START peer and ipv6 claim": {Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
		{Protocol: ProtoTCP, Forwarding: ForwardNAT, Port: 80, Address: peer},
		{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: claim6}}},
	"START_ACK new master": {Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{
		StatusAccepted, StatusAccepted, StatusContinued, StatusContinued, StatusContinued}},
	"START_ACK old master": {Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{
		StatusAccepted, StatusRefused, StatusRefused, StatusRefused, StatusRefused}},
	"START extension version 2": {Version: 1, Type: TypeStart, Seq: 2, Services: []ServiceRecord{
		{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Unsupported: 2}}},
	"START_ACK extension version 2": {Version: 1, Type: TypeStartAck, Seq: 2, Statuses: []Status{
		StatusRefused, StatusContinued}},
	"STOP ipv6 claim": {Version: 1, Type: TypeStop, Seq: 4, Services: []ServiceRecord{
		{Protocol: ProtoUDP, Forwarding: ForwardTUN, Port: 53, Address: claim6}}},
	"malformed missing continuation": nil,
	"malformed not a continuation":   nil,
	"malformed ipv4-mapped":          nil,
}

type vector struct{ name, hex string }

func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/extended-vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hex, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("vector line without a name: %q", line)
		}
		vs = append(vs, vector{name, strings.TrimSpace(hex)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestExtendedVectors: every vector decodes as the table says, re-encodes
// to the same bytes, and is printed in §9 of the specification.
func TestExtendedVectors(t *testing.T) {
	spec, err := os.ReadFile("../../docs/necp-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(spec)), " ")
	vs := readVectors(t)
	if len(vs) != len(extendedWant) {
		t.Errorf("%d vectors in the file, %d in the table", len(vs), len(extendedWant))
	}
	for _, v := range vs {
		want, ok := extendedWant[v.name]
		if !ok {
			t.Errorf("%s: not in the table", v.name)
			continue
		}
		b := unhex(t, v.hex)
		if !strings.Contains(flat, strings.Join(strings.Fields(v.hex), " ")) {
			t.Errorf("%s: not in docs/necp-protocol.md §9", v.name)
		}
		var m Message
		err := m.UnmarshalBinary(b)
		if want == nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %v, want ErrMalformed", v.name, err)
			}
			continue
		}
		if err != nil || !equal(&m, want) {
			t.Errorf("%s: decoded %+v, %v; want %+v", v.name, m, err, *want)
			continue
		}
		if slices.ContainsFunc(want.Services, func(r ServiceRecord) bool { return r.Unsupported > 0 }) {
			continue // its bytes are not kept, so it cannot be sent again as it came
		}
		enc, err := want.MarshalBinary()
		if err != nil || !slices.Equal(enc, b) {
			t.Errorf("%s: encoded % x, %v; want % x", v.name, enc, err, b)
		}
	}
}

// v1Statuses answers a START the way a master that predates §5.5 does: it
// reads plain 8-byte records only and refuses any forwarding code other
// than DR, TUN and NAT (§5.1), before looking at protocol, port or address.
// accepted lists the records it could have accepted.
func v1Statuses(b []byte) (accepted []int, refused int) {
	p := b[HeaderLen+listHeaderLen:]
	for i := 0; len(p) > 0; i, p = i+1, p[serviceRecordLen:] {
		switch Forwarding(p[1]) {
		case ForwardDR, ForwardTUN, ForwardNAT:
			accepted = append(accepted, i)
		default:
			refused++
		}
	}
	return accepted, refused
}

// TestExtendedOldMaster: an old master can take nothing from an extended
// entry but a refusal, and the agent recognises that refusal.
func TestExtendedOldMaster(t *testing.T) {
	for _, a := range []string{"2001:db8::10", "::1", "fe80::1", "2001:6:1:2:3:4:5:80"} {
		m := Message{Type: TypeStart, Seq: 2, Services: []ServiceRecord{
			{Protocol: ProtoTCP, Forwarding: ForwardNAT, Port: 80},
			{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: netip.MustParseAddr(a)},
		}}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		acc, refused := v1Statuses(b)
		if !slices.Equal(acc, []int{0}) || refused != 1+extIPv6Continuations {
			t.Errorf("%s: an old master could accept records %v and refuses %d", a, acc, refused)
		}
		old := []Status{StatusAccepted, StatusRefused, StatusRefused, StatusRefused, StatusRefused}
		st, unsupported := EntryStatuses(m.Services, old)
		if !unsupported || !slices.Equal(st, []Status{StatusAccepted, StatusRefused}) {
			t.Errorf("%s: old master's answer read as %v, unsupported %v", a, st, unsupported)
		}
	}
}

// TestExtendedNewMaster: a new master's answer maps back to the entries,
// and an old agent's START needs no expansion at all.
func TestExtendedNewMaster(t *testing.T) {
	recs := []ServiceRecord{
		{Protocol: ProtoTCP, Forwarding: ForwardNAT, Port: 80},
		{Protocol: ProtoTCP, Forwarding: ForwardDR, Port: 80, Address: claim6},
		{Protocol: ProtoUDP, Forwarding: ForwardDR, Port: 53, Unsupported: 2},
	}
	wire := AckStatuses(recs, []Status{StatusAccepted, StatusNoMatch, StatusRefused})
	want := []Status{StatusAccepted, StatusNoMatch, StatusContinued, StatusContinued, StatusContinued, StatusRefused, StatusContinued}
	if !slices.Equal(wire, want) {
		t.Fatalf("AckStatuses = %v, want %v", wire, want)
	}
	st, unsupported := EntryStatuses(recs, wire)
	if unsupported || !slices.Equal(st, []Status{StatusAccepted, StatusNoMatch, StatusRefused}) {
		t.Errorf("EntryStatuses = %v, %v", st, unsupported)
	}
	if st, _ := EntryStatuses(recs, wire[:4]); len(st) != 1 {
		t.Errorf("a short answer gives %v, want the first entry only", st)
	}
	plain := recs[:1]
	in := []Status{StatusAccepted}
	if got := AckStatuses(plain, in); &got[0] != &in[0] {
		t.Error("a START without extended entries should be answered with its own statuses")
	}
}
