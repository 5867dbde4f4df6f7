package necp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrMalformed is wrapped by every error about bytes that break the framing
// rules of §4–§5, and by encoding errors for messages that could not be sent
// as a valid frame. The specification answers every such error the same way
// (log it, close the connection), so callers need one errors.Is test rather
// than one per cause; the wrapping message says what was wrong, for the log.
var ErrMalformed = errors.New("necp: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(nil)
}

// AppendBinary implements encoding.BinaryAppender: it appends m as one frame.
//
// Only the slice that belongs to m.Type is encoded, and a type this package
// does not know is sent as a bare header, since no payload layout is known for
// it. Field values (protocol, forwarding, health, status) are written as given:
// judging them is the receiver's business, and tests need to send bad ones.
// On error b is returned unchanged.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	// Check everything before appending, so that a failure leaves no half
	// frame in a buffer the caller may be batching writes into.
	n, err := m.payloadLen()
	if err != nil {
		return b, err
	}
	v := m.Version
	if v == 0 {
		v = Version
	}
	b = append(b, v, byte(m.Type))
	b = binary.BigEndian.AppendUint16(b, uint16(HeaderLen+n))
	b = binary.BigEndian.AppendUint32(b, m.Seq)

	switch m.Type {
	case TypeStart, TypeStop:
		b = appendListHeader(b, wireRecords(m.Services))
		for _, s := range m.Services {
			if s.extended() || s.Unsupported > 0 {
				b = appendExtended(b, s)
				continue
			}
			b = append(b, s.Protocol, byte(s.Forwarding))
			b = binary.BigEndian.AppendUint16(b, s.Port)
			var a [4]byte // the zero Addr goes out as 0.0.0.0: "use the peer"
			if s.Address.IsValid() {
				a = s.Address.Unmap().As4()
			}
			b = append(b, a[:]...)
		}
	case TypeStartAck:
		b = appendListHeader(b, len(m.Statuses))
		for _, s := range m.Statuses {
			b = append(b, byte(s))
		}
		pad, _ := listBytes(TypeStartAck, len(m.Statuses))
		b = append(b, make([]byte, pad-len(m.Statuses))...)
	case TypeKeepaliveAck:
		b = appendListHeader(b, len(m.Health))
		for _, h := range m.Health {
			b = append(b, h.Protocol, h.Health)
			b = binary.BigEndian.AppendUint16(b, h.Port)
		}
	case TypeInitAck, TypeAuth:
		if n == authPayloadLen {
			b = binary.BigEndian.AppendUint16(b, m.Auth.Method)
			b = append(b, 0, 0) // reserved
			b = append(b, m.Auth.Data[:]...)
		}
	}
	return b, nil
}

// payloadLen returns the size of m's payload, or an error if m cannot be
// encoded.
func (m *Message) payloadLen() (int, error) {
	var count int
	switch m.Type {
	case TypeStart, TypeStop:
		// IPv4-mapped IPv6 goes out as IPv4 (that is how a dual-stack
		// socket reports an IPv4 peer: the same address); real IPv6 as an
		// extended entry (§5.5).
		count = wireRecords(m.Services)
		for i, s := range m.Services {
			if s.extended() && s.Address.Zone() != "" {
				return 0, malformed("%v service %d: address %v has a zone, which NECP cannot carry", m.Type, i, s.Address)
			}
		}
	case TypeStartAck:
		count = len(m.Statuses)
	case TypeKeepaliveAck:
		count = len(m.Health)
	case TypeInitAck:
		if m.Auth.Method != 0 {
			return authPayloadLen, nil
		}
	case TypeAuth:
		if m.Auth.Method == 0 {
			return 0, malformed("AUTH without a method")
		}
		return authPayloadLen, nil
	}
	rec, ok := listBytes(m.Type, count)
	if !ok {
		return 0, nil
	}
	n := listHeaderLen + rec
	if HeaderLen+n > MaxMessageLen {
		return 0, malformed("%v with %d records needs %d bytes, above maximum %d", m.Type, count, HeaderLen+n, MaxMessageLen)
	}
	return n, nil
}

// WireRecords is the count field of the service list that carries svcs:
// extended entries (§5.5) take several records each.
func WireRecords(svcs []ServiceRecord) int { return wireRecords(svcs) }

func wireRecords(svcs []ServiceRecord) int {
	n := 0
	for _, s := range svcs {
		n += s.span()
	}
	return n
}

// appendExtended appends s, which has an IPv6 address, as a head record
// and its continuation records (§5.5).
func appendExtended(b []byte, s ServiceRecord) []byte {
	b = append(b, s.Protocol, byte(s.Forwarding|ForwardExtended))
	b = binary.BigEndian.AppendUint16(b, s.Port)
	if s.Unsupported > 0 {
		// Only tests and the fuzzer send one again: version 0, whose
		// continuations carry nothing, keeps its size and its answer.
		b = append(b, 0, 0, s.Unsupported-1, 0)
		for range s.Unsupported - 1 {
			b = append(b, 0, forwardContinuation, 0, 0, 0, 0, 0, 0)
		}
		return b
	}
	b = append(b, ExtVersion, FamilyIPv6, extIPv6Continuations, 0)
	var data [extIPv6Continuations * contDataLen]byte // zero padding at the end
	a := s.Address.As16()
	copy(data[:], a[:])
	for c := range slices.Chunk(data[:], contDataLen) {
		b = append(b, 0, forwardContinuation)
		b = append(b, c...)
	}
	return b
}

func appendListHeader(b []byte, count int) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(count))
	return append(b, 0, 0) // reserved
}

// listBytes returns the number of bytes that follow the count field of a
// list payload of type t holding count records, and false if t carries no
// list.
func listBytes(t Type, count int) (int, bool) {
	switch t {
	case TypeStart, TypeStop:
		return count * serviceRecordLen, true
	case TypeStartAck:
		return (count + statusAlign - 1) / statusAlign * statusAlign, true
	case TypeKeepaliveAck:
		return count * healthRecordLen, true
	}
	return 0, false
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. b must be exactly
// one frame, header included.
//
// A version other than Version is not an error: it is left in m.Version for
// the caller to log, as §4 asks. A type this package does not know is not an
// error either (§3 says skip it and keep the connection): m gets the type and
// sequence number and empty slices. m's slices are reused, so decoding into
// the same Message again does not allocate once they have grown. On error m
// is left unchanged.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderLen {
		return malformed("%d bytes, shorter than the %d-byte header", len(b), HeaderLen)
	}
	n, err := frameLen(b[:HeaderLen])
	if err != nil {
		return err
	}
	if n != len(b) {
		return malformed("header length %d, frame has %d bytes", n, len(b))
	}
	return m.decode(b[:HeaderLen], b[HeaderLen:])
}

// frameLen returns the length field of header h after checking it against
// the limits of §4. It is separate from decode so that a Reader can reject a
// frame before reading (and allocating room for) its payload.
func frameLen(h []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(h[2:]))
	switch {
	case n < HeaderLen:
		return 0, malformed("length %d below header size %d", n, HeaderLen)
	case n > MaxMessageLen:
		return 0, malformed("length %d above maximum %d", n, MaxMessageLen)
	}
	return n, nil
}

// decode fills m from header h and payload p, whose length already agrees
// with the header.
func (m *Message) decode(h, p []byte) error {
	t := Type(h[1])
	count := 0
	if _, list := listBytes(t, 0); list {
		if len(p) < listHeaderLen {
			return malformed("%v payload of %d bytes has no room for the %d-byte count", t, len(p), listHeaderLen)
		}
		count = int(binary.BigEndian.Uint16(p))
		p = p[listHeaderLen:]
		if need, _ := listBytes(t, count); len(p) != need {
			return malformed("%v count %d needs %d record bytes, have %d", t, count, need, len(p))
		}
		if t == TypeStart || t == TypeStop {
			if err := checkExtended(t, p); err != nil {
				return err
			}
		}
	} else if t == TypeInitAck || t == TypeAuth {
		// INIT_ACK: empty, or a challenge; AUTH: always the MAC.
		if !(len(p) == authPayloadLen || t == TypeInitAck && len(p) == 0) {
			return malformed("%v payload of %d bytes (want %d)", t, len(p), authPayloadLen)
		}
		if len(p) != 0 && binary.BigEndian.Uint16(p) == 0 {
			return malformed("%v with authentication method 0", t)
		}
	} else if t.known() && len(p) != 0 {
		return malformed("%v takes no payload, have %d bytes", t, len(p))
	}

	// Everything is checked; from here on nothing can fail.
	m.Version = h[0]
	m.Type = t
	m.Seq = binary.BigEndian.Uint32(h[4:])
	m.Services = m.Services[:0]
	m.Statuses = m.Statuses[:0]
	m.Health = m.Health[:0]
	m.Auth = Auth{}

	switch t {
	case TypeInitAck, TypeAuth:
		if len(p) == authPayloadLen {
			m.Auth.Method = binary.BigEndian.Uint16(p)
			m.Auth.Data = [AuthDataLen]byte(p[4:])
		}
	case TypeStart, TypeStop:
		m.Services = slices.Grow(m.Services, count)
		for len(p) > 0 {
			r := p[:serviceRecordLen]
			if Forwarding(r[1])&ForwardExtended != 0 && r[1] != forwardContinuation {
				// Checked by checkExtended before anything was changed.
				n := 1 + int(r[6])
				m.Services = append(m.Services, decodeExtended(p[:n*serviceRecordLen]))
				p = p[n*serviceRecordLen:]
				continue
			}
			// A continuation record with no head record before it is left
			// as it is: its forwarding code is no method, so the master
			// refuses it like any other bad code (§5.1).
			var addr netip.Addr // 0.0.0.0 means "use the peer": the zero Addr says so
			if a := [4]byte(r[4:8]); a != [4]byte{} {
				addr = netip.AddrFrom4(a)
			}
			m.Services = append(m.Services, ServiceRecord{
				Protocol:   r[0],
				Forwarding: Forwarding(r[1]),
				Port:       binary.BigEndian.Uint16(r[2:]),
				Address:    addr,
			})
			p = p[serviceRecordLen:]
		}
	case TypeStartAck:
		m.Statuses = slices.Grow(m.Statuses, count)
		for _, s := range p[:count] { // the padding is reserved: ignored
			m.Statuses = append(m.Statuses, Status(s))
		}
	case TypeKeepaliveAck:
		m.Health = slices.Grow(m.Health, count)
		for r := range slices.Chunk(p, healthRecordLen) {
			m.Health = append(m.Health, HealthRecord{
				Protocol: r[0],
				Health:   r[1],
				Port:     binary.BigEndian.Uint16(r[2:]),
			})
		}
	}
	return nil
}

// checkExtended checks the framing of the extended entries in the service
// records p (§5.5): each head record must be followed by as many
// continuation records as it announces, and a known entry must be well
// formed. Anything else is a protocol error, like any count that does not
// explain the bytes.
func checkExtended(t Type, p []byte) error {
	for i := 0; i < len(p); {
		r := p[i : i+serviceRecordLen]
		i += serviceRecordLen
		if Forwarding(r[1])&ForwardExtended == 0 || r[1] == forwardContinuation {
			continue
		}
		n := int(r[6])
		if len(p)-i < n*serviceRecordLen {
			return malformed("%v extended entry announces %d continuation records, %d follow", t, n, (len(p)-i)/serviceRecordLen)
		}
		for c := range n {
			if cr := p[i+c*serviceRecordLen:]; cr[0] != 0 || cr[1] != forwardContinuation {
				return malformed("%v extended entry: record %d of %d is not a continuation record", t, c+1, n)
			}
		}
		if r[4] == ExtVersion && r[5] == FamilyIPv6 {
			if n != extIPv6Continuations {
				return malformed("%v extended IPv6 entry with %d continuation records (want %d)", t, n, extIPv6Continuations)
			}
			if a := extIPv6Addr(p[i : i+n*serviceRecordLen]); a.Is4In6() {
				return malformed("%v extended entry carries the IPv4-mapped address %v (IPv4 goes in a plain record)", t, a)
			}
		}
		i += n * serviceRecordLen
	}
	return nil
}

// decodeExtended reads one extended entry, head record and continuations,
// already checked by checkExtended.
func decodeExtended(p []byte) ServiceRecord {
	r := ServiceRecord{
		Protocol:   p[0],
		Forwarding: Forwarding(p[1]) &^ ForwardExtended,
		Port:       binary.BigEndian.Uint16(p[2:]),
	}
	if p[4] != ExtVersion || p[5] != FamilyIPv6 {
		// Understood as an entry, not readable: answered "refused", and
		// each continuation "continued" (§5.5).
		r.Unsupported = uint8(len(p) / serviceRecordLen)
		return r
	}
	// :: is kept as it is (the master reads it as "use the peer", like
	// 0.0.0.0), so that the entry re-encodes to the same bytes.
	r.Address = extIPv6Addr(p[serviceRecordLen:])
	return r
}

// extIPv6Addr gathers the 16 address bytes from continuation records.
func extIPv6Addr(cont []byte) netip.Addr {
	var data [extIPv6Continuations * contDataLen]byte
	for c := range extIPv6Continuations {
		copy(data[c*contDataLen:], cont[c*serviceRecordLen+2:(c+1)*serviceRecordLen])
	}
	return netip.AddrFrom16([16]byte(data[:16]))
}

// AckStatuses turns the master's answer for each START entry into the
// status list of the START_ACK, which has one status per wire record
// (§5.2): each continuation record of an extended entry is answered
// StatusContinued. Without extended entries st is returned as it is.
func AckStatuses(recs []ServiceRecord, st []Status) []Status {
	if wireRecords(recs) == len(recs) {
		return st
	}
	out := make([]Status, 0, wireRecords(recs))
	for i, r := range recs {
		s := StatusRefused
		if i < len(st) {
			s = st[i]
		}
		out = append(out, s)
		for range r.span() - 1 {
			out = append(out, StatusContinued)
		}
	}
	return out
}

// EntryStatuses is the agent's side of AckStatuses: it maps the START_ACK's
// wire statuses back to the entries sent. unsupported reports that a
// continuation record was answered with something other than
// StatusContinued, as a master older than §5.5 does: such entries are
// refused. Entries the list does not reach are left out, so a short answer
// gives a shorter result.
func EntryStatuses(sent []ServiceRecord, wire []Status) (st []Status, unsupported bool) {
	st = make([]Status, 0, len(sent))
	k := 0
	for _, r := range sent {
		n := r.span()
		if k+n > len(wire) {
			break
		}
		s := wire[k]
		for _, c := range wire[k+1 : k+n] {
			if c != StatusContinued {
				s, unsupported = StatusRefused, true
			}
		}
		st = append(st, s)
		k += n
	}
	return st, unsupported
}
