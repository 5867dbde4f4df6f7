package master

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// controlEvent carries one feedbackctl request to the owner.
type controlEvent struct {
	req   control.Request
	who   string // the caller, for the journal ("uid 0 (root)")
	reply chan control.Response
}

func (controlEvent) isEvent() {}

// Control answers one control request (the control socket's handler). who
// names the caller for the journal. Admin commands are answered after the
// owner pass that wrote IPVS and saved the admin state, so that when
// feedbackctl returns, ipvsadm already shows the change.
func (m *Master) Control(ctx context.Context, req control.Request, who string) control.Response {
	if req.Command == control.CmdEvents {
		// Kept outside the owner: the event log has its own lock.
		rs, err := netip.ParseAddr(req.Realserver)
		if err != nil {
			return failed(fmt.Errorf("events needs a realserver address: %v", err))
		}
		return control.Response{Version: control.Version, OK: true, Events: m.evlog.get(rs.Unmap().String())}
	}
	reply := make(chan control.Response, 1)
	select {
	case m.events <- controlEvent{req: req, who: who, reply: reply}:
	case <-ctx.Done():
		return failed(ctx.Err())
	}
	select {
	case r := <-reply:
		return r
	case <-ctx.Done():
		return failed(ctx.Err())
	}
}

func failed(err error) control.Response {
	return control.Response{Version: control.Version, Error: err.Error()}
}

// control handles a request in the owner goroutine; admin commands leave
// their answer pending until the end of the pass.
func (o *owner) control(ev controlEvent, now time.Time) {
	req := ev.req
	if req.Version > control.Version {
		ev.reply <- failed(fmt.Errorf("request schema version %d; this master knows %d", req.Version, control.Version))
		return
	}
	var rs netip.Addr
	if req.Realserver != "" {
		var err error
		if rs, err = netip.ParseAddr(req.Realserver); err != nil {
			ev.reply <- failed(fmt.Errorf("realserver %q is not an IP address", req.Realserver))
			return
		}
	}
	ok := control.Response{Version: control.Version, OK: true}
	switch req.Command {
	case control.CmdStatus:
		kernel, err := o.kernelIndex()
		if err != nil {
			ev.reply <- failed(err)
			return
		}
		ok.Status = &control.Status{Time: now, Destinations: o.t.status(kernel, req.VS, rs, now)}
		ev.reply <- ok
	case control.CmdAgents:
		ok.Agents = o.t.agents(now)
		ev.reply <- ok
	case control.CmdDrain, control.CmdMaint, control.CmdReady:
		if !rs.IsValid() {
			ev.reply <- failed(errors.New(req.Command + " needs a realserver address"))
			return
		}
		state := map[string]string{control.CmdDrain: AdminDrain, control.CmdMaint: AdminMaint, control.CmdReady: ""}[req.Command]
		ids, err := o.t.setAdmin(req.VS, rs, state, ev.who, now)
		if err != nil {
			ev.reply <- failed(err)
			return
		}
		o.pendingControl = append(o.pendingControl, pendingControl{ev: ev, ids: ids})
	default:
		ev.reply <- failed(fmt.Errorf("unknown command %q", req.Command))
	}
}

type pendingControl struct {
	ev  controlEvent
	ids []destID
}

// replyControl answers the admin commands of this pass, with the state of
// what they changed, or the error if the admin state could not be saved.
func (o *owner) replyControl(now time.Time) {
	if len(o.pendingControl) == 0 {
		return
	}
	kernel, kerr := o.kernelIndex()
	for _, p := range o.pendingControl {
		r := control.Response{Version: control.Version, OK: true}
		switch {
		case o.adminErr != nil:
			r = failed(fmt.Errorf("the admin state is in force but could not be saved, so a restart would lose it: %w", o.adminErr))
		case kerr != nil:
			r = failed(kerr)
		default:
			for _, d := range o.t.status(kernel, "", netip.Addr{}, now) {
				for _, id := range p.ids {
					if d.Service == id.Service.String() && d.Realserver == id.Dest.String() {
						r.Changed = append(r.Changed, d)
					}
				}
			}
		}
		p.ev.reply <- r
	}
	o.pendingControl = o.pendingControl[:0]
}

// kernelIndex reads the configured virtual services' destinations, by id.
func (o *owner) kernelIndex() (map[destID]ipvs.Destination, error) {
	kernel, err := o.readKernel()
	if err != nil {
		return nil, err
	}
	out := map[destID]ipvs.Destination{}
	for key, ds := range kernel {
		for _, d := range ds {
			out[destID{key, d.DestKey}] = d
		}
	}
	return out, nil
}

// saveAdmin writes the admin states when they changed.
func (o *owner) saveAdmin() {
	if !o.t.adminChanged {
		return
	}
	as, ok := o.store.(AdminStore)
	if !ok {
		o.t.adminChanged = false
		return
	}
	m := make(map[Ref]string, len(o.t.admin))
	for id, s := range o.t.admin {
		m[id] = s
	}
	if o.adminErr = as.SaveAdmin(m); o.adminErr != nil {
		o.m.log.Error("cannot save the admin states; they are in force but a restart would lose them",
			"err", o.adminErr, "file", fmt.Sprint(o.store))
		return
	}
	o.t.adminChanged = false
}

// loadAdmin reads the admin states at start-up.
func (o *owner) loadAdmin() error {
	as, ok := o.store.(AdminStore)
	if !ok {
		return nil
	}
	m, err := as.LoadAdmin()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading admin states: %w", err)
	}
	for r, s := range m {
		o.t.admin[r] = s
	}
	return nil
}
