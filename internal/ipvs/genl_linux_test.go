//go:build linux

package ipvs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// One SET_DEST request, byte by byte from include/uapi/linux/ip_vs.h and
// linux/netlink.h (little-endian host): what appendDestRequest must send.
func TestDestRequestGolden(t *testing.T) {
	op := DestOp{OpUpdate, svcKey, Destination{
		DestKey: rs1, Weight: 300, Forwarding: ForwardRoute, UpperThreshold: 7, LowerThreshold: 3,
	}}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden bytes are little-endian") // the decode test below still runs
	}
	want := strings.Join([]string{
		"8c000000", "2a00", "0500", "07000000", "00000000", // nlmsghdr: len 140 (16+4+48+72), family 42, REQUEST|ACK, seq 7, pid 0
		"06010000",         // genlmsghdr: SET_DEST, version 1
		"30000100",         // CMD_ATTR_SERVICE, 48 bytes (4 + 8+8+20+8)
		"0600010002000000", //   SVC_ATTR_AF = AF_INET, padded
		"0600020006000000", //   SVC_ATTR_PROTOCOL = 6
		"140003000a000001000000000000000000000000", //   SVC_ATTR_ADDR = 10.0.0.1 (nf_inet_addr)
		"0600040000500000",                         //   SVC_ATTR_PORT = 80, big-endian
		"48000200",                                 // CMD_ATTR_DEST, 72 bytes (4 + 20+8 + 4×8 + 8)
		"140001000a000002000000000000000000000000", //   DEST_ATTR_ADDR = 10.0.0.2
		"0600020000500000",                         //   DEST_ATTR_PORT = 80
		"0800030003000000",                         //   FWD_METHOD = 3 (route)
		"080004002c010000",                         //   WEIGHT = 300
		"0800050007000000",                         //   U_THRESH = 7
		"0800060003000000",                         //   L_THRESH = 3
		"06000b0002000000",                         //   DEST_ATTR_ADDR_FAMILY = AF_INET
	}, "")
	got := hex.EncodeToString(appendDestRequest(nil, 42, 7, unix.NLM_F_ACK, op))
	if got != want {
		t.Errorf("SET_DEST request\n got %s\nwant %s", got, want)
	}
}

// Every field goes out as the kernel reads it, for every kind, family and
// key: checked by the fake kernel's decoder, which is written from the
// kernel's attribute layout, not from the encoder.
func TestDestRequestDecodes(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::10")
	cases := []DestOp{
		{OpAdd, svcKey, Destination{DestKey: rs1, Weight: 65535, Forwarding: ForwardMasq}},
		{OpUpdate, svcKey, Destination{DestKey: rs1, Weight: 0, Forwarding: ForwardTunnel, UpperThreshold: 100, LowerThreshold: 10}},
		{OpDelete, svcKey, Destination{DestKey: rs1}},
		{OpAdd, ServiceKey{Protocol: ProtoUDP, Address: v6, Port: 53}, Destination{DestKey: DestKey{Address: netip.MustParseAddr("2001:db8::1"), Port: 5353}, Weight: 9, Forwarding: ForwardRoute}},
		{OpAdd, FWMarkKey(77, netip.Addr{}), Destination{DestKey: DestKey{Address: netip.MustParseAddr("192.0.2.9")}, Weight: 1, Forwarding: ForwardRoute}},
		{OpUpdate, FWMarkKey(78, v6), Destination{DestKey: DestKey{Address: v6}, Weight: 2, Forwarding: ForwardTunnel}},
		// A mixed family, which moby/ipvs cannot express: IPv6 realserver
		// of an IPv4 service, over a tunnel.
		{OpAdd, svcKey, Destination{DestKey: DestKey{Address: v6, Port: 80}, Weight: 5, Forwarding: ForwardTunnel}},
	}
	for _, op := range cases {
		b := appendDestRequest(nil, 42, 1, 0, op)
		m, err := decodeRequest(b)
		if err != nil {
			t.Errorf("%v %s %s: %v", op.Kind, op.Service, op.Dest.DestKey, err)
			continue
		}
		want := op
		if op.Kind == OpDelete {
			want.Dest = Destination{DestKey: op.Dest.DestKey}
		}
		if m.op != want || m.family != 42 || m.seq != 1 || m.ack {
			t.Errorf("decoded %+v, want %+v", m, want)
		}
	}
}

// The pipeline against a fake kernel: errors reach the right writes,
// across windows, with the right number of system calls.
func TestGenlWriterAttribution(t *testing.T) {
	fk := newFakeKernel(svcKey)
	w := newGenlWriter(fk, 42)
	var ops []DestOp
	want := map[int]syscall.Errno{}
	dest := func(i int) Destination {
		return Destination{DestKey: DestKey{Address: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: 80}, Weight: i % 100, Forwarding: ForwardRoute}
	}
	for i := range 150 {
		ops = append(ops, DestOp{OpAdd, svcKey, dest(i)})
	}
	ops = append(ops, DestOp{OpAdd, svcKey, dest(3)}) // already there
	want[len(ops)-1] = syscall.EEXIST
	for i := range 150 {
		d := dest(i)
		d.Weight++
		ops = append(ops, DestOp{OpUpdate, svcKey, d})
	}
	ops = append(ops, DestOp{OpUpdate, svcKey, dest(999)}) // not there
	want[len(ops)-1] = syscall.ENOENT
	other := ServiceKey{Protocol: ProtoTCP, Address: vip, Port: 443}
	ops = append(ops, DestOp{OpAdd, other, dest(1)}) // no such service
	want[len(ops)-1] = syscall.ESRCH
	for i := range 10 {
		ops = append(ops, DestOp{OpDelete, svcKey, dest(i)})
	}
	errs := make([]error, len(ops))
	w.apply(ops, errs)
	for i, err := range errs {
		if e, ok := want[i]; ok {
			if !errors.Is(err, e) {
				t.Errorf("op %d (%v %s): %v, want %v", i, ops[i].Kind, ops[i].Dest.DestKey, err, e)
			}
		} else if err != nil {
			t.Errorf("op %d (%v %s): %v", i, ops[i].Kind, ops[i].Dest.DestKey, err)
		}
	}
	if len(fk.dests) != 140 {
		t.Errorf("%d destinations, want 140", len(fk.dests))
	}
	for i := 10; i < 150; i++ {
		d := dest(i)
		if got := fk.dests[destID{svcKey, d.DestKey}]; got.Weight != d.Weight+1 {
			t.Errorf("%s: weight %d, want %d", d.DestKey, got.Weight, d.Weight+1)
		}
	}
	windows := (len(ops) + genlWindow - 1) / genlWindow
	if fk.sends != windows || fk.recvs != windows+len(want) {
		t.Errorf("%d writes: %d sends, %d receives; want %d and %d (one per window, plus one per failure)",
			len(ops), fk.sends, fk.recvs, windows, windows+len(want))
	}

	// Writes refused before sending are skipped, and a window of nothing
	// sends nothing.
	fk.sends = 0
	errs = []error{ErrInvalid, ErrInvalid}
	w.apply([]DestOp{{OpAdd, svcKey, dest(500)}, {OpAdd, svcKey, dest(501)}}, errs)
	if fk.sends != 0 || len(fk.dests) != 140 {
		t.Errorf("refused writes sent: %d sends, %d destinations", fk.sends, len(fk.dests))
	}
}

// Answers that never come, or come late: the window's unanswered writes
// are reported as unknown (so they are retried), and a late answer is not
// taken for a later window's.
func TestGenlWriterLostAnswers(t *testing.T) {
	fk := newFakeKernel(svcKey)
	w := newGenlWriter(fk, 42)
	w.seq = math.MaxUint32 - 3 // sequence numbers wrap inside the batch
	ops := make([]DestOp, genlWindow+10)
	for i := range ops {
		ops[i] = DestOp{OpAdd, svcKey, Destination{DestKey: DestKey{Address: netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), Port: 80}, Forwarding: ForwardRoute}}
	}
	ops[1].Service.Port = 8080 // fails: its answer comes, but late
	fk.holdFirst = true
	errs := make([]error, len(ops))
	w.apply(ops, errs)
	for i, err := range errs {
		switch {
		case i < genlWindow:
			if !errors.Is(err, errUnknownOutcome) || !errors.Is(err, syscall.EAGAIN) {
				t.Errorf("op %d of the unanswered window: %v", i, err)
			}
		case err != nil:
			t.Errorf("op %d of the next window (after the late answers): %v", i, err)
		}
	}

	// A failed send fails its window, and only that.
	fk.sendErr = syscall.EPERM
	errs = make([]error, 2)
	w.apply(ops[:2], errs)
	if !errors.Is(errs[0], syscall.EPERM) || !errors.Is(errs[1], syscall.EPERM) {
		t.Errorf("send failure: %v", errs)
	}
}

// Kernel wraps each error as the single calls do.
func TestKernelApplyDestinations(t *testing.T) {
	fk := newFakeKernel(svcKey)
	k := startKernel(&mobyipvs.Handle{}, newGenlWriter(fk, 42), slog.New(slog.DiscardHandler))
	defer k.Close()
	d := Destination{DestKey: rs1, Weight: 5, Forwarding: ForwardRoute}
	mustNoErr(t, k.AddDestination(svcKey, d))
	errs := k.ApplyDestinations([]DestOp{
		{OpAdd, svcKey, d},
		{OpUpdate, svcKey, Destination{DestKey: rs1, Weight: MaxWeight + 1}},
		{OpUpdate, svcKey, Destination{DestKey: rs1, Weight: 7, Forwarding: ForwardRoute}},
		{OpDelete, svcKey, Destination{DestKey: DestKey{Address: vip, Port: 81}}},
	})
	if !errors.Is(errs[0], ErrExist) || !strings.Contains(errs[0].Error(), "add destination 10.0.0.2:80 to TCP 10.0.0.1:80") {
		t.Errorf("add of an existing destination: %v", errs[0])
	}
	if !errors.Is(errs[1], ErrInvalid) {
		t.Errorf("invalid weight: %v", errs[1])
	}
	if errs[2] != nil || fk.dests[destID{svcKey, rs1}].Weight != 7 {
		t.Errorf("update: %v, %+v", errs[2], fk.dests[destID{svcKey, rs1}])
	}
	if !errors.Is(errs[3], ErrNotExist) || !strings.Contains(errs[3].Error(), "delete destination 10.0.0.1:81 of TCP 10.0.0.1:80") {
		t.Errorf("delete of a missing destination: %v", errs[3])
	}
}

// fakeKernel answers IPVS destination requests as the kernel does: in
// order, one datagram per answer, an answer only on failure or when asked
// for (NLM_F_ACK); an empty queue reads as the receive timeout (EAGAIN).
type fakeKernel struct {
	services  map[ServiceKey]bool
	dests     map[destID]Destination
	queue     [][]byte
	held      [][]byte
	holdFirst bool // keep the first window's answers until the next send
	sendErr   error
	sends     int
	recvs     int
}

type destID struct {
	svc ServiceKey
	key DestKey
}

func newFakeKernel(svcs ...ServiceKey) *fakeKernel {
	fk := &fakeKernel{services: map[ServiceKey]bool{}, dests: map[destID]Destination{}}
	for _, s := range svcs {
		fk.services[s] = true
	}
	return fk
}

func (fk *fakeKernel) close() error { return nil }

func (fk *fakeKernel) send(b []byte) error {
	if fk.sendErr != nil {
		return fk.sendErr
	}
	fk.sends++
	fk.queue = append(fk.queue, fk.held...) // late answers come first
	fk.held = nil
	var answers [][]byte
	for len(b) > 0 {
		l := int(binary.NativeEndian.Uint32(b))
		m, err := decodeRequest(b[:l])
		if err != nil {
			return fmt.Errorf("fake kernel: %v", err)
		}
		errno := fk.do(m.op)
		if errno != 0 || m.ack {
			a := binary.NativeEndian.AppendUint32(nil, nlmsgHdrLen+nlmsgErrorLen)
			a = binary.NativeEndian.AppendUint16(a, unix.NLMSG_ERROR)
			a = binary.NativeEndian.AppendUint16(a, 0)
			a = binary.NativeEndian.AppendUint32(a, m.seq)
			a = binary.NativeEndian.AppendUint32(a, 1234)
			a = binary.NativeEndian.AppendUint32(a, uint32(-int32(errno)))
			a = append(a, b[:nlmsgHdrLen]...)
			answers = append(answers, a)
		}
		b = b[l:]
	}
	if fk.holdFirst {
		fk.holdFirst = false
		fk.held = answers
		return nil
	}
	fk.queue = append(fk.queue, answers...)
	return nil
}

func (fk *fakeKernel) recv(b []byte) (int, error) {
	fk.recvs++
	if len(fk.queue) == 0 {
		return 0, syscall.EAGAIN
	}
	n := copy(b, fk.queue[0])
	fk.queue = fk.queue[1:]
	return n, nil
}

func (fk *fakeKernel) do(op DestOp) syscall.Errno {
	if !fk.services[op.Service] {
		return syscall.ESRCH
	}
	id := destID{op.Service, op.Dest.DestKey}
	_, there := fk.dests[id]
	switch op.Kind {
	case OpAdd:
		if there {
			return syscall.EEXIST
		}
		fk.dests[id] = op.Dest
	case OpUpdate:
		if !there {
			return syscall.ENOENT
		}
		fk.dests[id] = op.Dest
	case OpDelete:
		if !there {
			return syscall.ENOENT
		}
		delete(fk.dests, id)
	}
	return 0
}

type decoded struct {
	op     DestOp
	family uint16
	seq    uint32
	ack    bool
}

// decodeRequest reads one request as the kernel's ip_vs_genl_set_cmd
// would: the IPVS attribute numbers and layouts, independently of the
// encoder.
func decodeRequest(b []byte) (decoded, error) {
	var m decoded
	if len(b) < nlmsgHdrLen+genlHdrLen || int(binary.NativeEndian.Uint32(b)) != len(b) {
		return m, errors.New("bad length")
	}
	m.family = binary.NativeEndian.Uint16(b[4:])
	flags := binary.NativeEndian.Uint16(b[6:])
	if flags&unix.NLM_F_REQUEST == 0 {
		return m, errors.New("not a request")
	}
	m.ack = flags&unix.NLM_F_ACK != 0
	m.seq = binary.NativeEndian.Uint32(b[8:])
	switch b[16] {
	case 5:
		m.op.Kind = OpAdd
	case 6:
		m.op.Kind = OpUpdate
	case 7:
		m.op.Kind = OpDelete
	default:
		return m, fmt.Errorf("command %d", b[16])
	}
	if b[17] != 1 {
		return m, fmt.Errorf("genl version %d", b[17])
	}
	top := attrs(b[20:])
	svc, dst := attrs(top[1]), attrs(top[2])
	addr := func(v []byte, af uint16) netip.Addr {
		if af == unix.AF_INET {
			return netip.AddrFrom4([4]byte(v[:4]))
		}
		return netip.AddrFrom16([16]byte(v[:16]))
	}
	saf := binary.NativeEndian.Uint16(svc[1])
	if mark, ok := svc[5]; ok {
		fam := netip.IPv4Unspecified()
		if saf == unix.AF_INET6 {
			fam = netip.IPv6Unspecified()
		}
		m.op.Service = FWMarkKey(binary.NativeEndian.Uint32(mark), fam)
	} else {
		m.op.Service = ServiceKey{
			Protocol: binary.NativeEndian.Uint16(svc[2]),
			Address:  addr(svc[3], saf),
			Port:     binary.BigEndian.Uint16(svc[4]),
		}
	}
	daf := saf
	if v, ok := dst[11]; ok {
		daf = binary.NativeEndian.Uint16(v)
	}
	d := &m.op.Dest
	d.Address = addr(dst[1], daf)
	d.Port = binary.BigEndian.Uint16(dst[2])
	if m.op.Kind != OpDelete {
		for _, a := range []int{3, 4, 5, 6} {
			if len(dst[a]) != 4 {
				return m, fmt.Errorf("full destination needs attribute %d", a)
			}
		}
		d.Forwarding = Forwarding(binary.NativeEndian.Uint32(dst[3]))
		d.Weight = int(binary.NativeEndian.Uint32(dst[4]))
		d.UpperThreshold = binary.NativeEndian.Uint32(dst[5])
		d.LowerThreshold = binary.NativeEndian.Uint32(dst[6])
	}
	return m, nil
}

// attrs splits netlink attributes by type.
func attrs(b []byte) map[int][]byte {
	out := map[int][]byte{}
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			break
		}
		out[int(binary.NativeEndian.Uint16(b[2:]))] = b[4:l]
		b = b[min((l+3)&^3, len(b)):]
	}
	return out
}
