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
		b = appendListHeader(b, len(m.Services))
		for _, s := range m.Services {
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
		count = len(m.Services)
		for i, s := range m.Services {
			// IPv4-mapped IPv6 is accepted because that is how a
			// dual-stack socket reports an IPv4 peer; it is the same
			// address on the wire.
			if s.Address.IsValid() && !s.Address.Unmap().Is4() {
				return 0, malformed("%v service %d: address %v is not IPv4", m.Type, i, s.Address)
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
		for r := range slices.Chunk(p, serviceRecordLen) {
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
