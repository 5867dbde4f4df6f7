package necptest_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
	"github.com/lvs-feedbackd/feedbackd/internal/necptest"
)

var (
	vip    = netip.MustParseAddr("192.0.2.1")
	webKey = ipvs.ServiceKey{Protocol: uint16(necp.ProtoTCP), Address: vip, Port: 80}
)

// realMaster runs internal/master on loopback with the in-memory IPVS
// table, until the test ends, and returns its address and table.
func realMaster(t *testing.T, secret []byte) (string, *ipvs.Memory) {
	t.Helper()
	cfg := &config.Master{
		File:              "test",
		KeepaliveInterval: 20 * time.Millisecond,
		KeepaliveTimeout:  100 * time.Millisecond,
		KeepaliveRetries:  1,
		RemovalInterval:   time.Minute,
		Secret:            secret,
		VirtualServices: []config.VirtualService{
			{Name: "web", Address: vip, Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100},
		},
	}
	kv := ipvs.NewMemory(nil)
	ready := make(chan struct{})
	m, err := master.New(cfg, master.Options{IPVS: kv, OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("master: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("master ended before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("master not ready within 10 s")
	}
	return ln.Addr().String(), kv
}

// waitWeight waits until rs has weight w under the web service.
func waitWeight(t *testing.T, kv *ipvs.Memory, rs string, w int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s at weight %d", rs, w), func() bool {
		ds, _ := kv.Destinations(webKey)
		for _, d := range ds {
			if d.Address.String() == rs {
				return d.Weight == w
			}
		}
		return false
	})
}

// serving dials the real master from local, joins with web, and serves
// health h until the table shows it.
func serving(t *testing.T, addr string, kv *ipvs.Memory, local string, secret []byte, h uint8) *necptest.Agent {
	t.Helper()
	a := necptest.DialAgent(t, addr, necptest.AgentOptions{Local: netip.MustParseAddr(local), Secret: secret})
	if err := a.Join(web); err != nil {
		t.Fatal(err)
	}
	a.SetHealth(h)
	a.Serve()
	waitWeight(t, kv, local, int(h))
	return a
}

// The Agent against the real master: join from its own loopback address,
// health followed, silence quiesces the realserver, STOP is acknowledged.
func TestAgentWithRealMaster(t *testing.T) {
	addr, kv := realMaster(t, nil)
	a := serving(t, addr, kv, "127.0.0.2", nil, 30)
	a.SetHealth(70)
	waitWeight(t, kv, "127.0.0.2", 70)

	// Silent: the master retries, gives up, quiesces and closes.
	a.SetSilent(true)
	waitWeight(t, kv, "127.0.0.2", 0)
	if err := a.WaitClosed(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	b := serving(t, addr, kv, "127.0.0.3", nil, 55)
	if err := b.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	waitWeight(t, kv, "127.0.0.3", 0)
}

func TestAgentAuthWithRealMaster(t *testing.T) {
	secret := []byte("a secret long enough for the master")
	addr, kv := realMaster(t, secret)

	serving(t, addr, kv, "127.0.0.4", secret, 40)

	bad := necptest.DialAgent(t, addr, necptest.AgentOptions{Local: netip.MustParseAddr("127.0.0.5"), Secret: []byte("not the secret at all, but long")})
	if err := bad.Join(web); err == nil {
		t.Fatal("the master accepted a wrong secret")
	}
	if err := bad.WaitClosed(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ds, _ := kv.Destinations(webKey)
	if len(ds) != 1 {
		t.Fatalf("%d destinations after the refusal, want the good agent's only", len(ds))
	}
}
