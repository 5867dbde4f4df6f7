package integration

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

var (
	vip6    = netip.MustParseAddr("2001:db8::80")
	web6Key = ipvs.ServiceKey{Protocol: 6, Address: vip6, Port: 80}
	claim6  = netip.MustParseAddr("2001:db8:1::10")
)

// dualConfig has tcp/80 on an IPv4 and on an IPv6 VIP.
func dualConfig() *config.Master {
	cfg := masterConfig()
	cfg.VirtualServices = append(cfg.VirtualServices,
		config.VirtualService{Name: "web6", Address: vip6, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100})
	return cfg
}

func (c *cluster) weight6(rs string) (int, bool) {
	ds, _ := c.kv.Destinations(web6Key)
	for _, d := range ds {
		if d.Address.String() == rs {
			return d.Weight, true
		}
	}
	return 0, false
}

func (c *cluster) waitWeight6(rs string, want int) {
	c.t.Helper()
	c.waitFor("weight of "+rs+" under the IPv6 VIP", 10*time.Second, func() bool {
		w, ok := c.weight6(rs)
		return ok && w == want
	})
}

// TestIPv6AgentOverIPv6: the real agent reaches a master listening on ::1
// with director = [::1]:PORT and registers its IPv6 peer address with a
// plain record (address 0): it joins the IPv6 VIP of its port, and the
// IPv4 VIP of the same port leaves it out.
func TestIPv6AgentOverIPv6(t *testing.T) {
	c := &cluster{t: t, kv: ipvs.NewMemory(nil), store: &master.MemoryStore{}, logs: &testutil.SyncBuffer{}}
	c.start(dualConfig(), "[::1]:0")
	t.Cleanup(c.stop)
	if !strings.HasPrefix(c.addr, "[::1]:") {
		t.Fatalf("listening on %s", c.addr)
	}
	a := startAgent(t, c, "v6", constant(70))
	c.waitWeight6("::1", 70)
	waitOutput(t, a, "service accepted by master", 5*time.Second)
	if len(c.weights()) != 0 {
		t.Errorf("an IPv6 realserver under the IPv4 VIP:\n%s", c.table())
	}
	if s := c.table(); !strings.Contains(s, "TCP  [2001:db8::80]:80 wrr") || !strings.Contains(s, "  -> [::1]:80") {
		t.Errorf("table does not show the IPv6 service as ipvsadm does:\n%s", s)
	}
}

// TestIPv6ClaimOverIPv4Session: a new agent claims an IPv6 address
// (extended entry, necp-protocol.md §5.5) over an IPv4 connection; the
// master trusts it inside an IPv6 allow prefix.
func TestIPv6ClaimOverIPv4Session(t *testing.T) {
	cfg := dualConfig()
	cfg.TrustAgentAddress = true
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/64")}
	c := startCluster(t, cfg)
	a := startAgent(t, c, "claim", "address = "+claim6.String()+"\n"+constant(60))
	c.waitWeight6(claim6.String(), 60)
	waitOutput(t, a, "service accepted by master", 5*time.Second)
}

// TestIPv6ClaimWithOldMaster: a master that predates §5.5 refuses every
// record of the extended entry; the agent says why instead of guessing.
func TestIPv6ClaimWithOldMaster(t *testing.T) {
	m := necptest.StartMaster(t, necptest.MasterOptions{PreExtension: true})
	c := &cluster{t: t, addr: m.Addr()}
	a := startAgent(t, c, "claim", "address = "+claim6.String()+"\n"+constant(60))
	ac, err := m.Accept(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, start, err := ac.Handshake(nil); err != nil || len(start.Services) != 1 || start.Services[0].Address != claim6 {
		t.Fatalf("handshake: %v, START %+v", err, start)
	}
	waitOutput(t, a, "the master does not support IPv6 address claims", 5*time.Second)
	waitOutput(t, a, "master refused service", 5*time.Second)
}

// TestOldAgentOnNewMaster: an agent that knows nothing of §5.5 sends plain
// records and gets one status per record, none of them "continued".
func TestOldAgentOnNewMaster(t *testing.T) {
	c := startCluster(t, dualConfig())
	r := dialRaw(t, c, "127.0.0.9")
	if _, err := r.Init(); err != nil {
		t.Fatal(err)
	}
	start := necp.Message{Type: necp.TypeStart, Seq: 2, Services: []necp.ServiceRecord{webNAT, {Protocol: necp.ProtoTCP, Forwarding: necp.ForwardDR, Port: 81}}}
	b, err := start.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 12+8*2 {
		t.Fatalf("a plain START is %d bytes", len(b))
	}
	if err := r.SendRaw(b); err != nil {
		t.Fatal(err)
	}
	ack, err := r.Await(necp.TypeStartAck, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := []necp.Status{necp.StatusAccepted, necp.StatusNoMatch}; len(ack.Statuses) != 2 || ack.Statuses[0] != want[0] || ack.Statuses[1] != want[1] {
		t.Fatalf("START_ACK %v, want %v", ack.Statuses, want)
	}
	c.waitFor("127.0.0.9 in the IPv4 service", 5*time.Second, func() bool { _, ok := c.weights()["127.0.0.9"]; return ok })
}
