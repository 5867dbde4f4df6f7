package master

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// ctl sends one control request through the owner, as the socket does.
func (r *ownerRig) ctl(cmd, rs, vs string) control.Response {
	r.t.Helper()
	reply := make(chan control.Response, 1)
	r.o.handle(controlEvent{req: control.Request{Version: control.Version, Command: cmd, Realserver: rs, VS: vs},
		who: "uid 0 (test)", reply: reply}, r.now)
	r.pass()
	select {
	case resp := <-reply:
		return resp
	default:
		r.t.Fatalf("%s %s: no answer after a pass", cmd, rs)
	}
	return control.Response{}
}

func TestDrainSurvivesReportsRestartsAndReloads(t *testing.T) {
	r := newRig(t, httpOnly())
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 80)
	r.expectWeight(rs1, 80)
	if resp := r.ctl(control.CmdDrain, rs1.String(), ""); !resp.OK || len(resp.Changed) != 1 || resp.Changed[0].Kernel != 0 {
		t.Fatalf("drain: %+v", resp)
	}
	r.expectWeight(rs1, 0)
	r.health(1, 80, 90)
	r.advance(time.Minute) // resyncs, removal checks: a drained one is never deleted
	r.expectWeight(rs1, 0)
	r.reload(httpOnly())
	r.restart(httpOnly())
	r.join(2, peer(rs1), nil, http80)
	r.health(2, 80, 70)
	r.advance(time.Minute)
	r.expectWeight(rs1, 0)
	st := r.ctl(control.CmdStatus, "", "").Status
	if len(st.Destinations) != 1 || st.Destinations[0].Admin != "drain" || st.Destinations[0].Why != "admin drain" ||
		st.Destinations[0].Target != 70 {
		t.Fatalf("status: %+v", st.Destinations)
	}
	r.ctl(control.CmdReady, rs1.String(), "http")
	r.expectWeight(rs1, 70)
	// Its agent gone while drained: quiesced, but not deleted.
	r.ctl(control.CmdDrain, rs1.String(), "")
	r.gone(2, "agent closed the connection")
	r.advance(2 * time.Minute)
	r.expectWeight(rs1, 0)
}

func TestMaintRemovesAtZeroConnectionsAndKeepsOut(t *testing.T) {
	r := newRig(t, httpOnly())
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 80)
	key := svc(vip1, necp.ProtoTCP, 80)
	r.kv.SetConns(key, ipvs.DestKey{Address: rs1, Port: 80}, 3, 0)
	r.ctl(control.CmdMaint, rs1.String(), "")
	r.advance(10 * time.Second)
	r.expectWeight(rs1, 0) // connections still active: kept at 0
	r.kv.SetConns(key, ipvs.DestKey{Address: rs1, Port: 80}, 0, 0)
	r.advance(time.Minute)
	r.expectWeight(rs1, -1) // deleted
	r.health(1, 80, 85)
	r.restart(httpOnly())
	if st := r.join(2, peer(rs1), nil, http80); st[0] != necp.StatusAccepted {
		t.Fatalf("START of a realserver in maint: %v", st)
	}
	r.health(2, 80, 85)
	r.advance(time.Minute)
	r.expectWeight(rs1, -1)
	d := r.ctl(control.CmdStatus, rs1.String(), "").Status.Destinations
	if len(d) != 1 || d[0].Admin != "maint" || !strings.Contains(d[0].Why, "kept out") || d[0].Kernel != -1 {
		t.Fatalf("status of a realserver in maint: %+v", d)
	}
	r.ctl(control.CmdReady, rs1.String(), "")
	r.expectWeight(rs1, 85)
}

func TestControlErrors(t *testing.T) {
	r := newRig(t, httpOnly())
	for _, c := range []struct{ cmd, rs, vs, want string }{
		{control.CmdDrain, "10.0.0.99", "", "not managed"},
		{control.CmdDrain, "nonsense", "", "not an IP address"},
		{control.CmdDrain, "", "", "needs a realserver"},
		{control.CmdMaint, rs1.String(), "nosuch", "no virtual service"},
		{"reboot", "", "", "unknown command"},
	} {
		if resp := r.ctl(c.cmd, c.rs, c.vs); resp.OK || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s %s %s: %+v, want an error with %q", c.cmd, c.rs, c.vs, resp, c.want)
		}
	}
}

func TestEventsAndAgents(t *testing.T) {
	r := newRig(t, httpOnly())
	r.join(1, peer(rs1), nil, http80)
	r.health(1, 80, 60)
	m := r.o.m
	evs := m.Control(context.Background(), control.Request{Command: control.CmdEvents, Realserver: rs1.String()}, "test").Events
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Message)
	}
	if got := strings.Join(msgs, "|"); !strings.Contains(got, "realserver joined") || !strings.Contains(got, "weight changed") {
		t.Fatalf("events of %v: %q", rs1, got)
	}
	a := r.ctl(control.CmdAgents, "", "").Agents
	if len(a) != 1 || a[0].Peer != peer(rs1).String() || len(a[0].Services) != 1 ||
		a[0].Services[0].Health != 60 || a[0].Services[0].Owns != 1 {
		t.Fatalf("agents: %+v", a)
	}
}
