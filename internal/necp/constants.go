// Package necp encodes and decodes NECP messages as feedbackd speaks them.
//
// The wire format is specified in docs/necp-protocol.md (the project's
// normative copy). Every number that the specification fixes lives in this
// one file, so that it can be corrected in one place should the original
// 2007 source ever turn up (see §10 of the specification).
package necp

// Protocol-wide numbers (§1, §4 of the specification).
const (
	// Version is the only protocol version this implementation speaks.
	Version uint8 = 1
	// DefaultPort is TCP 3262, IANA's "necp".
	DefaultPort = 3262
	// HeaderLen is the size of the common header: version, type, length, sequence.
	HeaderLen = 8
	// MaxMessageLen caps a frame, header included. Anything longer is a
	// protocol error: NECP messages are tens of bytes, and the cap bounds
	// what a hostile peer can make us allocate.
	MaxMessageLen = 4096
	// listHeaderLen is the count + reserved prefix of every list payload.
	listHeaderLen = 4
	// serviceRecordLen, healthRecordLen: fixed record sizes (§5.1, §5.3).
	serviceRecordLen = 8
	healthRecordLen  = 4
	// MaxServices is the largest record count that fits a START within
	// MaxMessageLen: (4096 - 8 - 4) / 8.
	MaxServices = (MaxMessageLen - HeaderLen - listHeaderLen) / serviceRecordLen
	// statusAlign: START_ACK status bytes are zero-padded to a multiple of
	// this, so that every payload keeps 4-byte alignment (§5.2).
	statusAlign = 4
)

// Implementation limits, not protocol numbers.
const (
	// maxRetainedPayload is the largest payload buffer a Reader keeps
	// between frames. Ordinary frames are a few dozen bytes; one unusually
	// large frame should not pin up to MaxMessageLen in each of the
	// master's thousands of Readers for the life of the connection.
	maxRetainedPayload = 256
)

// Type is the message type code (§3).
type Type uint8

// Message type codes (§3). Codes 10 to 63 are NECP exception messages,
// which this project does not implement; they are skipped on receipt.
// Codes 64 and above are this project's extensions (§5.4).
const (
	TypeNoop         Type = 1
	TypeInit         Type = 2
	TypeInitAck      Type = 3
	TypeKeepalive    Type = 4
	TypeKeepaliveAck Type = 5
	TypeStart        Type = 6
	TypeStartAck     Type = 7
	TypeStop         Type = 8
	TypeStopAck      Type = 9
	// TypeAuth carries the agent's proof of the shared secret, answering
	// the challenge in INIT_ACK (§5.4). An extension: the original NECP
	// had no message authentication.
	TypeAuth Type = 64
)

// Shared-secret authentication (§5.4).
const (
	// AuthHMACSHA256 is the only method: MAC = HMAC-SHA256(secret,
	// AuthContext || nonce).
	AuthHMACSHA256 uint16 = 1
	// AuthDataLen is the size of the nonce (INIT_ACK) and of the MAC
	// (AUTH): 32 bytes each.
	AuthDataLen = 32
	// authPayloadLen: u16 method, u16 reserved, 32 bytes of data.
	authPayloadLen = 4 + AuthDataLen
	// AuthContext prefixes the nonce in the MAC so that a MAC made for
	// NECP cannot be replayed to any other protocol using the same secret.
	AuthContext = "feedbackd NECP auth v1"
)

// IP protocol numbers carried in service and health records (§5.1).
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Forwarding is the LVS forwarding method an agent asks for (§5.1).
type Forwarding uint8

const (
	ForwardNone Forwarding = 0 // not given: invalid in START, ignored in STOP
	ForwardDR   Forwarding = 1 // direct routing, ipvsadm -g
	ForwardTUN  Forwarding = 2 // IP-in-IP tunnel, ipvsadm -i
	ForwardNAT  Forwarding = 3 // masquerading, ipvsadm -m
)

// Status is the per-service answer in a START_ACK (§5.2).
type Status uint8

const (
	StatusAccepted Status = 0 // added to at least one virtual service
	StatusNoMatch  Status = 1 // no [virtual-service] with this protocol and port
	StatusRefused  Status = 2 // bad forwarding code, address not allowed, ...
	// StatusContinued answers each continuation record of an extended
	// entry (§5.5). A master older than the extension answers them
	// StatusRefused (their forwarding byte is no method it knows), which is
	// how an agent tells it has no support for the extension.
	StatusContinued Status = 3
)

// Extended entries of a service list (§5.5): an address that does not fit
// the 4-byte field of §5.1 travels in continuation records after a head
// record. Every byte a master older than the extension sees in them is a
// forwarding code it refuses, so it answers "refused" instead of adding a
// realserver made of address bytes.
const (
	// ForwardExtended is set in the forwarding byte of a head record; the
	// low bits keep the forwarding method.
	ForwardExtended Forwarding = 0x80
	// forwardContinuation is the forwarding byte of a continuation record
	// (its protocol byte is 0, which no virtual service has).
	forwardContinuation = 0xff
	// contDataLen: the port and address fields of a continuation record
	// carry data, 6 bytes each.
	contDataLen = 6
	// ExtVersion is the only version of the extension this implementation
	// reads; an entry of another version is answered "refused" with its
	// continuations "continued", so a newer agent can tell "understood,
	// not supported" from "not understood".
	ExtVersion uint8 = 1
	// FamilyIPv6 is the IANA address family number of IPv6 (1 is IPv4,
	// which never needs an extended entry).
	FamilyIPv6 uint8 = 2
	// extIPv6Continuations: 16 address bytes in 6-byte pieces, the last
	// padded with 2 zero bytes.
	extIPv6Continuations = 3
)

// Health values (§5.3, §6).
const (
	HealthMax     uint8 = 100
	HealthUnknown uint8 = 255 // the monitor failed; the master leaves the weight alone
)
