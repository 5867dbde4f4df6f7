package master

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

var (
	vip6 = netip.MustParseAddr("2001:db8::80")
	rs6a = netip.MustParseAddr("2001:db8:1::11")
	rs6b = netip.MustParseAddr("2001:db8:1::12")
)

// reasons records the refusal reasons a table reports.
type reasons struct {
	noObserver
	got []string
}

func (r *reasons) Refused(reason string) { r.got = append(r.got, reason) }

// ipv6Config: port 80 has an IPv4 and an IPv6 virtual service, port 443
// only an IPv6 one, udp/53 only an IPv4 one.
func ipv6Config() *config.Master {
	cfg := testConfig()
	cfg.VirtualServices = []config.VirtualService{
		{Name: "http", Address: vip1, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
		{Name: "http6", Address: vip6, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
		{Name: "https6", Address: vip6, Protocol: necp.ProtoTCP, Port: 443, Scheduler: "wrr", MaxWeight: 100},
		{Name: "dns", Address: vip1, Protocol: necp.ProtoUDP, Port: 53, Scheduler: "rr", MaxWeight: 100},
	}
	return cfg
}

// TestIPv6Join: a realserver joins the virtual services of its own family
// only; one whose family no virtual service of its port has is refused
// with its own reason; IPv6 claims follow the claim rules with IPv6
// prefixes in allow; scoped IPv6 addresses never reach IPVS.
func TestIPv6Join(t *testing.T) {
	claim := func(proto uint8, port uint16, fwd necp.Forwarding, a netip.Addr) necp.ServiceRecord {
		r := rec(proto, port, fwd)
		r.Address = a
		return r
	}
	for _, c := range []struct {
		name   string
		trust  bool
		allow  string
		peer   netip.Addr
		recs   []necp.ServiceRecord
		want   []necp.Status
		reason []string
		ops    []string
	}{
		{"IPv6 peer joins the IPv6 services of its port", false, "any", rs6a,
			[]necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardDR), rec(necp.ProtoTCP, 443, necp.ForwardDR)},
			[]necp.Status{necp.StatusAccepted, necp.StatusAccepted}, nil,
			[]string{"add TCP [2001:db8::80]:80 -> [2001:db8:1::11]:80 w=0 Route", "add TCP [2001:db8::80]:443 -> [2001:db8:1::11]:443 w=0 Route"}},
		{"IPv4 peer joins the IPv4 service of a port with both", false, "any", rs1,
			[]necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardNAT)},
			[]necp.Status{necp.StatusAccepted}, nil,
			[]string{"add TCP 192.0.2.1:80 -> 10.0.0.11:80 w=0 Masq"}},
		{"IPv4 peer, IPv6-only port, tunnel, no mixed-family: family mismatch", false, "any", rs1,
			[]necp.ServiceRecord{rec(necp.ProtoTCP, 443, necp.ForwardTUN)},
			[]necp.Status{necp.StatusRefused}, []string{"address family mismatch"}, nil},
		{"IPv4 peer, IPv6-only port, DR: family mismatch", false, "any", rs1,
			[]necp.ServiceRecord{rec(necp.ProtoTCP, 443, necp.ForwardDR)},
			[]necp.Status{necp.StatusRefused}, []string{"address family mismatch"}, nil},
		{"IPv6 peer, port with both families, tunnel: its own family only", false, "any", rs6a,
			[]necp.ServiceRecord{rec(necp.ProtoTCP, 80, necp.ForwardTUN)},
			[]necp.Status{necp.StatusAccepted}, nil, []string{"add TCP [2001:db8::80]:80 -> [2001:db8:1::11]:80 w=0 Tunnel"}},
		{"IPv6 peer, IPv4-only port: family mismatch", false, "any", rs6a,
			[]necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardDR)},
			[]necp.Status{necp.StatusRefused}, []string{"address family mismatch"}, nil},
		{"IPv4-mapped peer is IPv4", false, "10.0.0.0/24", netip.AddrFrom16(rs1.As16()),
			[]necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardDR)},
			[]necp.Status{necp.StatusAccepted}, nil, []string{"add UDP 192.0.2.1:53 -> 10.0.0.11:53 w=0 Route"}},
		{"IPv6 claim not trusted", false, "any", rs6a,
			[]necp.ServiceRecord{claim(necp.ProtoTCP, 443, necp.ForwardDR, rs6b)},
			[]necp.Status{necp.StatusRefused}, []string{"address claim not trusted"}, nil},
		{"IPv6 claim trusted inside an IPv6 allow", true, "2001:db8:1::/64", rs6a,
			[]necp.ServiceRecord{claim(necp.ProtoTCP, 443, necp.ForwardDR, rs6b)},
			[]necp.Status{necp.StatusAccepted}, nil, []string{"add TCP [2001:db8::80]:443 -> [2001:db8:1::12]:443 w=0 Route"}},
		{"IPv6 claim outside allow", true, "2001:db8:1::11/128, 10.0.0.0/8", rs6a,
			[]necp.ServiceRecord{claim(necp.ProtoTCP, 443, necp.ForwardDR, rs6b)},
			[]necp.Status{necp.StatusRefused}, []string{"address not in allow"}, nil},
		{"IPv6 claim from an IPv4 session", true, "any", rs1,
			[]necp.ServiceRecord{claim(necp.ProtoTCP, 443, necp.ForwardDR, rs6b)},
			[]necp.Status{necp.StatusAccepted}, nil, []string{"add TCP [2001:db8::80]:443 -> [2001:db8:1::12]:443 w=0 Route"}},
		{"link-local claim", true, "any", rs6a,
			[]necp.ServiceRecord{claim(necp.ProtoTCP, 443, necp.ForwardDR, netip.MustParseAddr("fe80::1"))},
			[]necp.Status{necp.StatusRefused}, []string{"invalid address"}, nil},
		{"unknown extension version", true, "any", rs6a,
			[]necp.ServiceRecord{{Protocol: necp.ProtoTCP, Port: 443, Forwarding: necp.ForwardDR, Unsupported: 2}},
			[]necp.Status{necp.StatusRefused}, []string{"unsupported extension"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ipv6Config()
			allow, err := value.Networks(c.allow)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TrustAgentAddress, cfg.Allow = c.trust, allow
			tb := newTable(cfg, slog.New(slog.DiscardHandler))
			obs := &reasons{}
			tb.obs = obs
			if st := joinT(tb, 1, peer(c.peer), c.recs, t0); !slices.Equal(st, c.want) {
				t.Fatalf("statuses %v, want %v", st, c.want)
			}
			if !slices.Equal(obs.got, c.reason) {
				t.Errorf("reasons %q, want %q", obs.got, c.reason)
			}
			expectOps(t, tb, c.ops...)
		})
	}
}

// TestIPv6NativeBeatsClaim: the realserver's own IPv6 session owns its
// destination over a session that only claims the address.
func TestIPv6NativeBeatsClaim(t *testing.T) {
	cfg := ipv6Config()
	cfg.TrustAgentAddress = true
	tb := newTable(cfg, slog.New(slog.DiscardHandler))
	r := rec(necp.ProtoTCP, 443, necp.ForwardDR)
	joinT(tb, 1, peer(rs6a), []necp.ServiceRecord{r}, t0) // native
	r.Address = rs6a
	joinT(tb, 2, peer(rs1), []necp.ServiceRecord{r}, t0) // newer, but a claim
	e := tb.entries[id(vip6, necp.ProtoTCP, 443, rs6a)]
	if e == nil || e.owner != 1 {
		t.Fatalf("entry %+v: want owned by the native session 1", e)
	}
}

// TestMixedFamily: with mixed-family = yes a virtual service takes tunnel
// realservers of the other family too (and never others); a reload that
// takes the key away, or makes the service's forwarding DR, withdraws
// them: the entry goes out of the table as for any withdrawn offer.
func TestMixedFamily(t *testing.T) {
	cfg := ipv6Config()
	cfg.VirtualServices[3].MixedFamily = true // dns, udp/53, IPv4
	cfg.VirtualServices[2].MixedFamily = true // https6, tcp/443, IPv6
	tb := newTable(cfg, slog.New(slog.DiscardHandler))
	obs := &reasons{}
	tb.obs = obs
	st := joinT(tb, 1, peer(rs6a), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardTUN)}, t0)
	st = append(st, joinT(tb, 2, peer(rs1), []necp.ServiceRecord{rec(necp.ProtoTCP, 443, necp.ForwardTUN)}, t0)...)
	st = append(st, joinT(tb, 3, peer(rs6b), []necp.ServiceRecord{rec(necp.ProtoUDP, 53, necp.ForwardDR)}, t0)...)
	if want := []necp.Status{necp.StatusAccepted, necp.StatusAccepted, necp.StatusRefused}; !slices.Equal(st, want) {
		t.Fatalf("statuses %v, want %v", st, want)
	}
	if want := []string{"address family mismatch"}; !slices.Equal(obs.got, want) {
		t.Errorf("reasons %q, want %q", obs.got, want)
	}
	expectOps(t, tb, "add TCP [2001:db8::80]:443 -> 10.0.0.11:443 w=0 Tunnel", "add UDP 192.0.2.1:53 -> [2001:db8:1::11]:53 w=0 Tunnel")

	dns := id(vip1, necp.ProtoUDP, 53, rs6a)
	https := id(vip6, necp.ProtoTCP, 443, rs1)
	for _, c := range []struct {
		name   string
		change func(*config.Master)
		gone   destID
	}{
		{"mixed-family removed", func(c *config.Master) { c.VirtualServices[3].MixedFamily = false }, dns},
		{"forwarding = DR", func(c *config.Master) { c.VirtualServices[2].Forwarding = necp.ForwardDR }, https},
	} {
		next := ipv6Config()
		next.VirtualServices[3].MixedFamily = true
		next.VirtualServices[2].MixedFamily = true
		c.change(next)
		tb.cfg = next
		tb.rematch(nil, t0)
		if offered := tb.sessions[1].offers.has(dns); offered == (c.gone == dns) {
			t.Errorf("%s: dns offer still there: %v", c.name, offered)
		}
		if offered := tb.sessions[2].offers.has(https); offered == (c.gone == https) {
			t.Errorf("%s: https offer still there: %v", c.name, offered)
		}
		if e := tb.entries[c.gone]; e != nil && e.owner != 0 && e.state == stateActive {
			t.Errorf("%s: entry still active: %+v", c.name, e)
		}
	}
}
