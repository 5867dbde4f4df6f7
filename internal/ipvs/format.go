package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// formatHeader replaces ipvsadm's "IP Virtual Server version 1.2.1
// (size=4096)": we know neither, and the same text renders the kernel's
// table, the in-memory one and a dry run.
const formatHeader = "IP Virtual Server table (feedbackd)\n" +
	"Prot LocalAddress:Port Scheduler Flags\n" +
	"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"

// Format renders services and their destinations like `ipvsadm -Ln`, so
// that operators can compare it with the real thing at a glance. Services
// are sorted by protocol, address and port; destinations keep the order of
// dests[key] (the table's order). Services missing from svcs are not shown.
// Every line ends in a newline and carries no trailing blanks.
func Format(svcs []Service, dests map[ServiceKey][]Destination) string {
	b, _ := AppendFormat(nil, svcs, dests, 0)
	return string(b)
}

// AppendFormat appends Format's text to b, stopping after maxLines lines
// (0: no limit; the 3 header lines always); more is the number of lines
// left out. A destination line allocates nothing: the --without-ipvs
// printer renders the head of a 20 000-destination table after every pass
// of a join burst, and a string per line made it most of that burst's
// garbage.
func AppendFormat(b []byte, svcs []Service, dests map[ServiceKey][]Destination, maxLines int) (out []byte, more int) {
	svcs = slices.Clone(svcs)
	sortServices(svcs)
	lines := strings.Count(formatHeader, "\n")
	room := func() bool {
		if maxLines > 0 && lines >= maxLines {
			more++
			return false
		}
		lines++
		return true
	}
	b = append(b, formatHeader...)
	for _, s := range svcs {
		if room() {
			if s.FWMark != 0 {
				// ipvsadm: "FWM  5 wrr", with " IPv6" for that family.
				fam := ""
				if s.Address.Is6() {
					fam = " IPv6"
				}
				b = fmt.Appendf(b, "FWM  %d%s %s\n", s.FWMark, fam, Settings(s))
			} else {
				b = fmt.Appendf(b, "%s  %s %s\n", protoName(s.Protocol),
					netip.AddrPortFrom(s.Address, s.Port), Settings(s))
			}
		}
		for _, d := range dests[s.ServiceKey] {
			if room() {
				b = appendDest(b, d)
			}
		}
	}
	return b, more
}

// appendDest appends ipvsadm's own destination layout,
// "  -> %-28s %-7s %-6d %-10u %-10u", without the trailing blanks.
func appendDest(b []byte, d Destination) []byte {
	pad := func(b []byte, start, width int) []byte {
		for len(b)-start < width {
			b = append(b, ' ')
		}
		return b
	}
	b = append(b, "  -> "...)
	at := len(b)
	b = pad(netip.AddrPortFrom(d.Address, d.Port).AppendTo(b), at, 28)
	b = append(b, ' ')
	at = len(b)
	b = pad(append(b, d.Forwarding.String()...), at, 7)
	b = append(b, ' ')
	at = len(b)
	b = pad(strconv.AppendInt(b, int64(d.Weight), 10), at, 6)
	b = append(b, ' ')
	at = len(b)
	b = pad(strconv.AppendInt(b, int64(d.ActiveConns), 10), at, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(d.InactiveConns), 10)
	return append(b, '\n')
}

// Dump reads the whole table through x and formats it.
func Dump(x IPVS) (string, error) {
	svcs, err := x.Services()
	if err != nil {
		return "", fmt.Errorf("ipvs: dump: %w", err)
	}
	dests := make(map[ServiceKey][]Destination, len(svcs))
	for _, s := range svcs {
		ds, err := x.Destinations(s.ServiceKey)
		if err != nil {
			return "", fmt.Errorf("ipvs: dump: %w", err)
		}
		dests[s.ServiceKey] = ds
	}
	return Format(svcs, dests), nil
}

// sortServices gives services a stable order independent of the kernel's
// hash order and of Go's map order.
func sortServices(svcs []Service) {
	slices.SortFunc(svcs, func(a, b Service) int {
		return cmp.Or(
			cmp.Compare(a.FWMark, b.FWMark), // address/port services (0) first, as ipvsadm
			cmp.Compare(a.Protocol, b.Protocol),
			a.Address.Compare(b.Address),
			cmp.Compare(a.Port, b.Port),
		)
	})
}

func protoName(p uint16) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto%d", p)
}

// Settings renders scheduler and flags of s as Format shows them after
// the address, "wrr persistent 600 mask 255.255.255.0", for log lines.
func Settings(s Service) string { return s.Scheduler + flagText(s) }

// flagText follows ipvsadm: " persistent <timeout>" with " mask <mask>" if
// the netmask is not the default, " ops" for one-packet scheduling. Other
// flags, FlagHashed apart, are shown as hex rather than hidden.
func flagText(s Service) string {
	var b strings.Builder
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " persistent %d", s.Timeout)
		if s.Address.Is4() && s.Netmask != 0xffffffff && s.Netmask != 0 {
			m := s.Netmask
			fmt.Fprintf(&b, " mask %s", netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}))
		}
		if s.Address.Is6() && s.Netmask != 128 && s.Netmask != 0 {
			fmt.Fprintf(&b, " mask %d", s.Netmask)
		}
	}
	if s.Flags&FlagOnePacket != 0 {
		b.WriteString(" ops")
	}
	known := FlagPersistent | FlagHashed | FlagOnePacket
	if names := SchedFlagNames(s.Scheduler, s.Flags); len(names) > 0 {
		b.WriteString(" (" + strings.Join(names, ",") + ")")
		known |= FlagSched1 | FlagSched2 | FlagSched3
	}
	if rest := s.Flags &^ known; rest != 0 {
		fmt.Fprintf(&b, " flags %#x", rest)
	}
	return b.String()
}

// schedFlags names IP_VS_SVC_F_SCHED1..3 per scheduler, as ipvsadm -b
// spells them; only sh and mh give them a meaning.
var schedFlags = []struct {
	sched, name string
	flag        uint32
}{
	{"sh", "sh-fallback", FlagSched1},
	{"sh", "sh-port", FlagSched2},
	{"mh", "mh-fallback", FlagSched1},
	{"mh", "mh-port", FlagSched2},
}

// SchedFlag returns the flag a scheduler flag name stands for, and the
// scheduler it belongs to; ok is false for an unknown name.
func SchedFlag(name string) (flag uint32, sched string, ok bool) {
	for _, f := range schedFlags {
		if f.name == name {
			return f.flag, f.sched, true
		}
	}
	return 0, "", false
}

// SchedFlagNames lists the names of the scheduler flags set in flags that
// scheduler sched knows, in ipvsadm's order; nil when there are none.
func SchedFlagNames(sched string, flags uint32) []string {
	var out []string
	for _, f := range schedFlags {
		if f.sched == sched && flags&f.flag != 0 {
			out = append(out, f.name)
		}
	}
	return out
}
