package necp

import "net/netip"

// ServiceRecord is one entry of a START or STOP service list (§5.1).
type ServiceRecord struct {
	Protocol   uint8
	Forwarding Forwarding
	Port       uint16
	// Address is the realserver address. The zero netip.Addr (encoded as
	// 0.0.0.0) means "the TCP peer address of this connection", the normal
	// case.
	Address netip.Addr
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
