//go:build linux

package ipvs

// The project's own netlink piece: destination writes (IPVS_CMD_NEW_DEST,
// SET_DEST, DEL_DEST), pipelined. moby/ipvs stays the library for
// everything else (services, reads, the configuration); it cannot do this
// because each of its calls sends one request and blocks until that
// request's answer, and because it never sends a destination's address
// family, which the kernel needs for an IPv6 realserver of an IPv4 service
// (tunnel forwarding only).
//
// How a batch goes (genlWriter.apply):
//
//   - Up to genlWindow requests are encoded back to back into one buffer
//     and sent with one sendmsg. The kernel handles every message of that
//     buffer in order, synchronously, inside the sendmsg (netlink_rcv_skb
//     under genl's mutex), so when sendmsg returns all of them are done.
//   - Only the last request of the window asks for an acknowledgement
//     (NLM_F_ACK). A request without it gets an answer only when it fails
//     (netlink_rcv_skb acknowledges on error whatever the flags), and that
//     answer carries its sequence number, so every failure is attributed to
//     its destination. The acknowledgement of the last request comes after
//     every earlier answer, so once it is read the window is complete: a
//     request with no answer succeeded.
//   - genlWindow bounds what the kernel can queue to us at once (at most one
//     error answer per request, each well under 2 KiB of socket-buffer
//     charge) far below a netlink socket's default receive buffer (about
//     208 KiB), so the kernel never has to drop an answer (ENOBUFS).
//
// If the answers still cannot be read (a receive timeout, ENOBUFS), the
// requests of that window without an answer get errUnknownOutcome: the
// caller retries them, like any failed write.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Values of include/uapi/linux/ip_vs.h and linux/netlink.h used here.
const (
	ipvsGenlVersion = 1

	ipvsCmdNewDest = 5
	ipvsCmdSetDest = 6
	ipvsCmdDelDest = 7

	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2

	ipvsSvcAttrAF       = 1
	ipvsSvcAttrProtocol = 2
	ipvsSvcAttrAddr     = 3
	ipvsSvcAttrPort     = 4
	ipvsSvcAttrFWMark   = 5

	ipvsDestAttrAddr      = 1
	ipvsDestAttrPort      = 2
	ipvsDestAttrFwdMethod = 3
	ipvsDestAttrWeight    = 4
	ipvsDestAttrUThresh   = 5
	ipvsDestAttrLThresh   = 6
	ipvsDestAttrAF        = 11

	nlmsgHdrLen   = 16
	genlHdrLen    = 4
	nlaHdrLen     = 4
	nlmsgErrorLen = 4 + nlmsgHdrLen // struct nlmsgerr: error, then the request's header
)

// genlWindow is the number of requests sent per sendmsg; see the package
// comment above for why it is bounded.
const genlWindow = 64

// genlReceiveTimeout bounds the wait for a window's answers. The kernel
// answers inside the sendmsg, so this only guards against the impossible.
const genlReceiveTimeout = 5 * time.Second

// errUnknownOutcome: the request was sent, but no answer saying whether it
// succeeded could be read.
var errUnknownOutcome = errors.New("sent, but the kernel's answer could not be read")

// nlTransport is a connected generic-netlink socket: send one buffer, read
// one datagram. The kernel's socket implements it; tests use a fake kernel.
type nlTransport interface {
	send(b []byte) error
	recv(b []byte) (int, error)
	close() error
}

// genlWriter sends destination writes to the IPVS family, a window at a
// time. It is not safe for concurrent use (Kernel's worker owns it).
type genlWriter struct {
	conn   nlTransport
	family uint16 // the IPVS family's id (generic netlink assigns it at runtime)
	seq    uint32
	out    []byte
	in     []byte
	// index[i] is the op of the window's i-th request.
	index []int
}

func newGenlWriter(conn nlTransport, family uint16) *genlWriter {
	return &genlWriter{conn: conn, family: family, in: make([]byte, 64<<10)}
}

// apply carries out ops in order and sets errs[i] for each op that failed.
// An op whose errs[i] is already set (refused before sending) is skipped.
// The errors are the kernel's (syscall.Errno), errUnknownOutcome, or the
// send's.
func (w *genlWriter) apply(ops []DestOp, errs []error) {
	next := 0
	for next < len(ops) {
		w.out = w.out[:0]
		w.index = w.index[:0]
		first, last := w.seq+1, 0
		for ; next < len(ops) && len(w.index) < genlWindow; next++ {
			if errs[next] != nil {
				continue
			}
			w.seq++
			last = len(w.out)
			w.out = appendDestRequest(w.out, w.family, w.seq, 0, ops[next])
			w.index = append(w.index, next)
		}
		if len(w.index) == 0 {
			return
		}
		// The last request asks for the acknowledgement that closes the
		// window. Its flags are at bytes 6..7 of its header.
		binary.NativeEndian.PutUint16(w.out[last+6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		w.window(first, errs)
	}
}

// window sends the encoded requests (sequence numbers first..first+n-1)
// and reads answers until the last one's.
func (w *genlWriter) window(first uint32, errs []error) {
	n := uint32(len(w.index))
	if err := w.conn.send(w.out); err != nil {
		for _, i := range w.index {
			errs[i] = err
		}
		return
	}
	answered := make([]bool, n)
	for {
		m, err := w.conn.recv(w.in)
		if err != nil {
			// Without the closing acknowledgement, a request without an
			// answer may or may not have been carried out.
			for k, i := range w.index {
				if !answered[k] {
					errs[i] = fmt.Errorf("%w (%w)", errUnknownOutcome, err)
				}
			}
			return
		}
		done := false
		for b := w.in[:m]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			k := seq - first // wraps for a stale answer: then k >= n
			if typ == unix.NLMSG_ERROR && l >= nlmsgHdrLen+4 && k < n {
				answered[k] = true
				if code := int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:])); code != 0 {
					errs[w.index[k]] = syscall.Errno(-code)
				}
				if k == n-1 {
					done = true
				}
			}
			b = b[min(nlaAlign(l), len(b)):]
		}
		if done {
			return
		}
	}
}

// appendDestRequest encodes one destination write as a generic-netlink
// message to the IPVS family, as ipvsadm's libipvs does, plus the
// destination's address family. flags adds to NLM_F_REQUEST.
func appendDestRequest(b []byte, family uint16, seq uint32, flags uint16, op DestOp) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set at the end
	b = binary.NativeEndian.AppendUint16(b, family)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel's
	cmd := uint8(ipvsCmdSetDest)
	switch op.Kind {
	case OpAdd:
		cmd = ipvsCmdNewDest
	case OpDelete:
		cmd = ipvsCmdDelDest
	}
	b = append(b, cmd, ipvsGenlVersion, 0, 0)

	// The service, by its key only (the kernel looks at nothing else for
	// a destination request).
	svc := len(b)
	b = appendAttr(b, ipvsCmdAttrService, nil)
	s := op.Service
	b = appendU16(b, ipvsSvcAttrAF, addrFamily(s.Address))
	if s.FWMark != 0 {
		b = appendU32(b, ipvsSvcAttrFWMark, s.FWMark)
	} else {
		b = appendU16(b, ipvsSvcAttrProtocol, s.Protocol)
		b = appendAttr(b, ipvsSvcAttrAddr, inetAddr(s.Address))
		b = appendAttr(b, ipvsSvcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))
	}
	b = endNest(b, svc)

	dst := len(b)
	b = appendAttr(b, ipvsCmdAttrDest, nil)
	d := op.Dest
	b = appendAttr(b, ipvsDestAttrAddr, inetAddr(d.Address))
	b = appendAttr(b, ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))
	if op.Kind != OpDelete {
		// SET_DEST replaces the whole destination: all four are required.
		b = appendU32(b, ipvsDestAttrFwdMethod, uint32(d.Forwarding)&0x7)
		b = appendU32(b, ipvsDestAttrWeight, uint32(d.Weight))
		b = appendU32(b, ipvsDestAttrUThresh, d.UpperThreshold)
		b = appendU32(b, ipvsDestAttrLThresh, d.LowerThreshold)
	}
	b = appendU16(b, ipvsDestAttrAF, addrFamily(d.Address))
	b = endNest(b, dst)

	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func nlaAlign(n int) int { return (n + 3) &^ 3 }

// appendAttr appends an attribute with payload v, padded to 4 bytes. With
// a nil v it opens a nest, which endNest closes.
func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func endNest(b []byte, at int) []byte {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
	return b
}

func appendU16(b []byte, typ, v uint16) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint16(nil, v))
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// inetAddr is the kernel's union nf_inet_addr: 16 bytes, an IPv4 address
// in the first 4 (as ipvsadm sends it).
func inetAddr(a netip.Addr) []byte {
	var u [16]byte
	if a.Is4() {
		v := a.As4()
		copy(u[:], v[:])
	} else {
		u = a.As16()
	}
	return u[:]
}
