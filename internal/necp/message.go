package necp

import "net/netip"

// ServiceRecord is one entry of a START or STOP service list (§5.1).
type ServiceRecord struct {
	Protocol   uint8
	Forwarding Forwarding
	Port       uint16
	// Address is the realserver address. The zero netip.Addr (encoded as
	// 0.0.0.0) means "the TCP peer address of this connection", the normal
	// case. An IPv6 address is sent as an extended entry (§5.5); an
	// IPv4-mapped one is sent as the IPv4 address it maps.
	Address netip.Addr
	// Unsupported is set by the decoder for an extended entry it cannot
	// read (another extension version or address family): the number of
	// records the entry took on the wire, so that the START_ACK can answer
	// each. Address is then the zero Addr, and the entry must be refused.
	Unsupported uint8
}

// span is the number of wire records r takes.
func (r ServiceRecord) span() int {
	switch {
	case r.Unsupported > 0:
		return int(r.Unsupported)
	case r.extended():
		return 1 + extIPv6Continuations
	}
	return 1
}

// extended reports whether r is sent as an extended entry (§5.5).
func (r ServiceRecord) extended() bool {
	return r.Address.Is6() && !r.Address.Is4In6()
}

// HealthRecord is one entry of a KEEPALIVE_ACK health list (§5.3).
type HealthRecord struct {
	Protocol uint8
	Health   uint8 // 0..100, or HealthUnknown
	Port     uint16
}

// Auth is the payload of AUTH and the optional one of INIT_ACK (§5.4):
// in INIT_ACK, Data is the master's nonce; in AUTH, the agent's MAC.
// Method 0 means absent (an INIT_ACK without a challenge).
type Auth struct {
	Method uint16
	Data   [AuthDataLen]byte
}

// Message is one decoded NECP message. Only the field that belongs to Type
// is meaningful: Services for START and STOP, Statuses for START_ACK, Health
// for KEEPALIVE_ACK, Auth for INIT_ACK and AUTH.
type Message struct {
	// Version as received. Zero on encode means Version.
	Version  uint8
	Type     Type
	Seq      uint32
	Services []ServiceRecord
	Statuses []Status
	Health   []HealthRecord
	Auth     Auth
}
