package master

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

func kernelService(t *testing.T, kv *ipvs.Memory, key ipvs.ServiceKey) ipvs.Service {
	t.Helper()
	svcs, err := kv.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.ServiceKey == key {
			return s
		}
	}
	t.Fatalf("service %s not in the kernel:\n%s", key, kv)
	return ipvs.Service{}
}

// A service the master created is updated to match its block on a
// reload and after a restart; the list of created services survives the
// restart.
func TestServiceCreatedThenUpdated(t *testing.T) {
	r := newRig(t, httpOnly())
	key := svc(vip1, necp.ProtoTCP, 80)
	if s := kernelService(t, r.kv, key); s.Flags&ipvs.FlagPersistent != 0 {
		t.Fatalf("created persistent: %+v", s)
	}
	if keys, found, _ := r.store.LoadServices(); !found || len(keys) != 1 || keys[0] != key {
		t.Fatalf("recorded services %v (found %v), want [%s]", keys, found, key)
	}
	cfg := httpOnly()
	cfg.VirtualServices[0].PersistenceTimeout, cfg.VirtualServices[0].PersistenceNetmask = 600, 24
	r.reload(cfg)
	if s := kernelService(t, r.kv, key); s.Flags&ipvs.FlagPersistent == 0 || s.Timeout != 600 || s.Netmask != 0xffffff00 {
		t.Fatalf("not updated on reload: %+v\n%s", s, r.logs)
	}
	if !strings.Contains(r.logs.String(), "virtual service updated to match the configuration") {
		t.Errorf("update not logged:\n%s", r.logs)
	}
	// A restart with the block changed again: still the master's.
	cfg = httpOnly()
	cfg.VirtualServices[0].Scheduler = "wlc"
	r.restart(cfg)
	if s := kernelService(t, r.kv, key); s.Scheduler != "wlc" || s.Flags&ipvs.FlagPersistent != 0 {
		t.Fatalf("not updated after restart: %+v\n%s", s, r.logs)
	}
}

// A service someone else created is never changed, and the master says
// so once: not again at a reload or a restart of the same configuration,
// again when the configuration changes what it would want.
func TestForeignServiceSaidOnce(t *testing.T) {
	kv := ipvs.NewMemory(nil)
	key := svc(vip1, necp.ProtoTCP, 80)
	foreign := ipvs.Service{ServiceKey: key, Scheduler: "sh", Flags: ipvs.FlagPersistent, Timeout: 60}
	if err := kv.AddService(foreign); err != nil {
		t.Fatal(err)
	}
	r := &ownerRig{t: t, kv: kv, store: &flakyStore{}, logs: &syncBuffer{}, now: t0, kicks: map[sessionID]string{}}
	r.restart(httpOnly())
	const msg = "virtual service was made outside feedbackd and differs from its block"
	count := func() int { return strings.Count(r.logs.String(), msg) }
	if count() != 1 {
		t.Fatalf("start: %d warnings, want 1:\n%s", count(), r.logs)
	}
	for range 3 {
		r.reload(httpOnly())
	}
	if count() != 1 {
		t.Fatalf("after 3 reloads: %d warnings, want 1:\n%s", count(), r.logs)
	}
	cfg := httpOnly()
	cfg.VirtualServices[0].PersistenceTimeout = 300
	r.reload(cfg)
	if count() != 2 {
		t.Fatalf("after a reload that changes the block: %d warnings, want 2:\n%s", count(), r.logs)
	}
	s := kernelService(t, kv, key)
	if s.Scheduler != "sh" || s.Timeout != 60 {
		t.Errorf("foreign service changed: %+v", s)
	}
	// Its destinations are still the master's to manage.
	if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
		t.Fatalf("START under a foreign service: %v\n%s", st, r.logs)
	}
	r.health(1, 80, 50)
	r.expectWeight(rs1, 50)
}

// An upgrade from a master that did not record its services: one that
// carries a recorded destination and matches its block becomes the
// master's; one that does not match stays foreign.
func TestServiceAdoptedOnUpgrade(t *testing.T) {
	r := newRig(t, httpOnly())
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 80)
	r.store.svcs, r.store.svcsSeen = nil, false // the file of 0.6 had no list
	r.restart(httpOnly())
	key := svc(vip1, necp.ProtoTCP, 80)
	if keys, found, _ := r.store.LoadServices(); !found || len(keys) != 1 || keys[0] != key {
		t.Fatalf("not adopted: recorded %v, found %v\n%s", keys, found, r.logs)
	}
}

// forwarding = NAT on the block overrides the agents' DR, and the
// disagreement is logged once per session and destination, not at every
// reload.
func TestForwardingOverride(t *testing.T) {
	cfg := httpOnly()
	cfg.VirtualServices[0].Forwarding = necp.ForwardNAT
	r := newRig(t, cfg)
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 70)
	ds, _ := r.kv.Destinations(svc(vip1, necp.ProtoTCP, 80))
	if len(ds) != 1 || ds[0].Forwarding != ipvs.ForwardMasq {
		t.Fatalf("destinations %+v, want one with Masq", ds)
	}
	const msg = "agent's forwarding method overridden"
	for range 3 {
		c := *cfg
		r.reload(&c)
	}
	if n := strings.Count(r.logs.String(), msg); n != 1 {
		t.Errorf("%d override warnings, want 1:\n%s", n, r.logs)
	}
	// An agent that asks for NAT draws no warning.
	r.join(2, peer(rs3), nil, rec(necp.ProtoTCP, 80, necp.ForwardNAT))
	if n := strings.Count(r.logs.String(), msg); n != 1 {
		t.Errorf("%d override warnings after an agreeing agent, want 1", n)
	}
}

// A firewall-mark service is fed by the agents' services with its
// protocol and agent-port; its realservers are added with port 0 and
// weighed by that service's health.
func TestFWMarkService(t *testing.T) {
	cfg := httpOnly()
	cfg.VirtualServices = append(cfg.VirtualServices, config.VirtualService{
		Name: "marked", Protocol: necp.ProtoTCP, FWMark: 5, AgentPort: 80, Scheduler: "wrr", MaxWeight: 10})
	r := newRig(t, cfg)
	mark := ipvs.FWMarkKey(5, netipZero)
	if s := kernelService(t, r.kv, mark); s.Scheduler != "wrr" {
		t.Fatalf("mark service %+v", s)
	}
	if st := r.join(1, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
		t.Fatalf("START: %v", st)
	}
	r.health(1, 80, 60)
	ds, _ := r.kv.Destinations(mark)
	if len(ds) != 1 || ds[0].Address != rs1 || ds[0].Port != 0 || ds[0].Weight != 6 || ds[0].Forwarding != ipvs.ForwardRoute {
		t.Fatalf("mark destinations %+v, want %s:0 weight 6 Route\n%s", ds, rs1, r.kv)
	}
	r.expectWeight(rs1, 60) // the address service on tcp/80 as well
	// Recorded, so a restart takes it back.
	refs, _ := r.store.Load()
	found := false
	for _, ref := range refs {
		found = found || ref == (destID{mark, ipvs.DestKey{Address: rs1}})
	}
	if !found {
		t.Errorf("mark destination not recorded: %v", refs)
	}
	r.stop(1)
	r.health(1, 80, 60) // after STOP: ignored
	if ds, _ := r.kv.Destinations(mark); len(ds) != 1 || ds[0].Weight != 0 {
		t.Errorf("after STOP: %+v, want weight 0", ds)
	}
}

// The sysctl warnings come once per master lifetime, whatever the
// reloads, and the quiescent-template one only with a persistent service.
func TestSysctlWarnedOnce(t *testing.T) {
	root := fstest.MapFS{
		"net/ipv4/vs/expire_nodest_conn":        {Data: []byte("0\n")},
		"net/ipv4/vs/expire_quiescent_template": {Data: []byte("0\n")},
	}
	r := &ownerRig{t: t, kv: ipvs.NewMemory(nil), store: &flakyStore{}, logs: &syncBuffer{}, now: t0,
		kicks: map[sessionID]string{}, sysctls: root}
	r.restart(httpOnly())
	count := func(name string) int {
		return strings.Count(r.logs.String(), "IPVS sysctl works against quiescing\" sysctl="+name)
	}
	if count("net.ipv4.vs.expire_nodest_conn") != 1 || count("net.ipv4.vs.expire_quiescent_template") != 0 {
		t.Fatalf("start:\n%s", r.logs)
	}
	cfg := httpOnly()
	cfg.VirtualServices[0].PersistenceTimeout = 60
	for range 2 {
		c := *cfg
		c.VirtualServices = append([]config.VirtualService(nil), cfg.VirtualServices...)
		r.reload(&c)
	}
	if count("net.ipv4.vs.expire_nodest_conn") != 1 || count("net.ipv4.vs.expire_quiescent_template") != 1 {
		t.Fatalf("after reloads with a persistent service:\n%s", r.logs)
	}
	if !strings.Contains(r.logs.String(), "sysctl -w net.ipv4.vs.expire_quiescent_template=1") {
		t.Errorf("the fix is not in the warning:\n%s", r.logs)
	}
}
