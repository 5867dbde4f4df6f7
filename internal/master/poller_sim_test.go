//go:build linux

package master

import (
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// What agents and the owner do to polled sessions, in a seeded random
// order: the interleavings the poller must survive with either way of
// polling (make unit runs this with io_uring and with epoll). An owner
// slow enough to park sessions makes reads and parking cross.
type pollAct struct {
	kind  int // actJoin ...
	agent int
	arg   int
}

const (
	actJoin    = iota // agent connects and joins (if not connected)
	actHangUp         // agent closes its connection
	actGarbage        // agent sends a frame no master accepts
	actKick           // the master closes the agent's session (as a reload's access policy does)
	actHealth         // agent reports a new health from now on
	actPause          // nothing happens for arg ms
	actKinds
)

func (a pollAct) String() string {
	name := [...]string{"join", "hang-up", "garbage", "kick", "health", "pause"}[a.kind]
	return fmt.Sprintf("%s(%d,%d)", name, a.agent, a.arg)
}

const pollSimAgents = 8

func pollScript(seed int64, n int) []pollAct {
	rng := rand.New(rand.NewSource(seed))
	acts := make([]pollAct, n)
	for i := range acts {
		acts[i] = pollAct{kind: rng.Intn(actKinds), agent: rng.Intn(pollSimAgents), arg: rng.Intn(30)}
	}
	return acts
}

// TestPollerInterleavings plays seeded scripts of joins, hang-ups, garbage,
// kicks and health changes against a master whose owner parks sessions.
// After each script:
//   - every agent still connected is polled (it answers more KEEPALIVEs)
//     and its weight settles on its last health (no report lost or
//     reordered through parking);
//   - every other agent's connection was closed by the master;
//   - once the master stops, every descriptor is back (/proc/self/fd).
//
// A failure is shrunk, by dropping steps while it still fails, to a short
// script, printed with its seed.
func TestPollerInterleavings(t *testing.T) {
	// FEEDBACKD_POLLSIM_SEEDS=N plays more seeds (a longer local run).
	seeds, steps := 6, 30
	if n, err := strconv.Atoi(os.Getenv("FEEDBACKD_POLLSIM_SEEDS")); err == nil && n > 0 {
		seeds = n
	} else if testing.Short() {
		seeds = 2
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		script := pollScript(seed, steps)
		if err := runPollScript(t, script); err != nil {
			t.Errorf("seed %d: %v\nscript: %v", seed, err, script)
			short := shrinkPollScript(t, script)
			t.Fatalf("seed %d shrunk to %d steps: %v\nfails with: %v", seed, len(short), short, runPollScript(t, short))
		}
	}
}

// shrinkPollScript drops one step at a time while the script still fails.
func shrinkPollScript(t *testing.T, script []pollAct) []pollAct {
	for i := 0; i < len(script); {
		try := append(append([]pollAct(nil), script[:i]...), script[i+1:]...)
		if runPollScript(t, try) != nil {
			script = try
			continue
		}
		i++
	}
	return script
}

func runPollScript(t *testing.T, script []pollAct) (err error) {
	// The runtime's own descriptors exist before counting.
	if ln, err := net.Listen("tcp4", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	before := openFDs(t)
	kv := ipvs.NewMemory(nil)
	var m *Master
	var addr string
	var stop func()
	// A test of its own, so that its cleanups (the master, the agents)
	// run before the descriptors are counted again.
	t.Run("", func(t *testing.T) {
		m, addr, stop = pollerMasterStop(t, slowIPVS{Memory: kv, delay: time.Millisecond}, 2)
		err = playPollScript(t, m, addr, kv, script)
		stop()
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := openFDs(t); n != before; n = openFDs(t) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d descriptors open after the master and agents stopped, %d before", n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func playPollScript(t *testing.T, m *Master, addr string, kv *ipvs.Memory, script []pollAct) error {
	agents := make([]*polledAgent, pollSimAgents)
	health := make([]int, pollSimAgents)
	var closed []*polledAgent // closed by the master: must see the end
	for _, act := range script {
		pa := agents[act.agent]
		switch act.kind {
		case actJoin:
			if pa != nil {
				continue
			}
			pa, err := joinAgent(t, addr, act.agent, false)
			if err != nil {
				return fmt.Errorf("%v: %v", act, err)
			}
			agents[act.agent], health[act.agent] = pa, 50
		case actHangUp, actGarbage, actKick:
			if pa == nil {
				continue
			}
			agents[act.agent] = nil
			switch act.kind {
			case actHangUp:
				pa.a.Close()
			case actGarbage:
				pa.a.SendRaw([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
				closed = append(closed, pa)
			case actKick:
				s := sessionFrom(m, act.agent)
				if s == nil {
					return fmt.Errorf("%v: no session for a joined agent", act)
				}
				s.kick("test")
				closed = append(closed, pa)
			}
		case actHealth:
			if pa == nil {
				continue
			}
			health[act.agent] = 10 + act.arg
			pa.a.SetHealth(uint8(health[act.agent]))
		case actPause:
			time.Sleep(time.Duration(act.arg) * time.Millisecond)
		}
	}
	for _, pa := range closed {
		if err := pa.a.WaitClosed(10 * time.Second); err != nil {
			return fmt.Errorf("an agent the master closed: %v", err)
		}
	}
	key := ipvs.ServiceKey{Protocol: uint16(necp.ProtoTCP), Address: netip.MustParseAddr("192.0.2.1"), Port: 80}
	for i, pa := range agents {
		if pa == nil {
			continue
		}
		if err := pa.a.WaitAnswered(pa.a.Answered()+3, 10*time.Second); err != nil {
			return fmt.Errorf("agent %d no longer polled: %v", i, err)
		}
		rs := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i)})
		deadline := time.Now().Add(10 * time.Second)
		for {
			w := -1
			ds, _ := kv.Destinations(key)
			for _, d := range ds {
				if d.Address == rs {
					w = d.Weight
				}
			}
			if w == health[i] {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("agent %d: weight %d, want its last health %d", i, w, health[i])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// sessionFrom finds the newest session from agent i's address.
func sessionFrom(m *Master, i int) *session {
	rs := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i)})
	m.mu.Lock()
	defer m.mu.Unlock()
	var found *session
	for s := range m.sessions {
		if s.peer.Addr() == rs && (found == nil || s.id > found.id) {
			found = s
		}
	}
	return found
}
