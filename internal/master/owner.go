package master

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// owner is the single goroutine that holds the table and the IPVS handle.
type owner struct {
	m     *Master
	t     *table
	kv    ipvs.IPVS
	store Store

	pendingJoins   []pendingJoin
	pendingControl []pendingControl
	adminErr       error // the last admin-state save, nil when it worked
	nextResync     time.Time
	kernelErr      string

	// svcOwned: the virtual services this master created (ServiceStore),
	// loaded at the first ensureServices; svcRecorded once a list was
	// found or saved. svcNotes: what was last said about each service it
	// leaves alone.
	svcOwned    map[ipvs.ServiceKey]bool
	svcRecorded bool
	svcNotes    svcNotes
	// sysctlNoted: the IPVS sysctl advice already given (sysctl.go).
	sysctlNoted map[string]bool

	// appended: lines appended to the state file (Journal) since it was
	// last written whole; wholeNext: an append failed and may have left a
	// torn line, which only a whole write may follow. journalMin: appends
	// go on until they are as many as the list or this (tests set it low).
	appended   int
	wholeNext  bool
	journalMin int
}

type pendingJoin struct {
	sid   sessionID
	recs  []necp.ServiceRecord
	reply chan []necp.Status
	st    []necp.Status
	ids   [][]destID // per record, the destinations it offered
}

// maxBatch bounds how many queued events one pass takes before writing to
// IPVS, so that under a flood the weights still reach the kernel promptly.
const maxBatch = 512

func (m *Master) newOwner() (*owner, error) {
	t := newTable(m.cfg.Load(), m.log)
	t.obs = m.obs
	t.dryRun = m.opts.DryRun
	return &owner{m: m, t: t, kv: m.opts.IPVS, store: m.opts.Store, svcNotes: svcNotes{}, sysctlNoted: map[string]bool{},
		journalMin: 1024}, nil
}

// start ensures the virtual services and adopts the destinations an
// earlier run created. Errors here are fatal: without IPVS the master has
// no job (systemd restarts it).
func (o *owner) start(now time.Time) error {
	refs, err := o.store.Load()
	if err != nil {
		return fmt.Errorf("reading state: %w", err)
	}
	if err := o.ensureServices(refs); err != nil {
		return err
	}
	o.checkSysctls()
	if err := o.loadAdmin(); err != nil {
		return err
	}
	owned := make(map[destID]bool, len(refs))
	for _, r := range refs {
		owned[r] = true
	}
	kernel, err := o.readKernel()
	if err != nil {
		return err
	}
	if len(owned) == 0 {
		n := 0
		for _, ds := range kernel {
			n += len(ds)
		}
		if n > 0 {
			// Either another tool manages these, or the state file of an
			// earlier run was lost: then they are ours, but nothing can
			// prove it, and they will not be touched.
			o.m.log.Warn("the state file lists no destinations, but IPVS has some under the configured virtual services; they are treated as not feedbackd's and left alone",
				"destinations", n, "state_file", fmt.Sprint(o.store))
		}
	}
	o.t.adopt(kernel, owned, now)
	if svcs, err := o.kv.Services(); err == nil {
		have := map[ipvs.ServiceKey]bool{}
		for _, s := range svcs {
			have[s.ServiceKey] = true
		}
		o.t.pruneDormant(have)
	}
	o.t.resync(kernel, now)
	o.t.clean()
	// Written at once, even unchanged: a master that cannot record what it
	// creates must say so now, not accept agents and lose track of them.
	if err := o.saveWhole(); err != nil {
		return fmt.Errorf("cannot record owned destinations in the state file: %w", err)
	}
	o.t.recordedAll()
	o.nextResync = now.Add(o.t.cfg.RemovalInterval)
	o.publish()
	return nil
}

// ensureServices brings the configured virtual services to what their
// blocks say (services.go): it creates the absent ones, recording them
// first, updates those it created, and leaves the others alone, saying so
// once. refs are the destinations the state file lists, at start-up (nil
// on a reload): a master that never recorded its services takes as its
// own those that carry one of them and already match their block.
func (o *owner) ensureServices(refs []Ref) error {
	svcs, err := o.kv.Services()
	if err != nil {
		return fmt.Errorf("reading IPVS services: %w", err)
	}
	have := make(map[ipvs.ServiceKey]ipvs.Service, len(svcs))
	for _, s := range svcs {
		have[s.ServiceKey] = s
	}
	if o.svcOwned == nil {
		o.svcOwned = map[ipvs.ServiceKey]bool{}
		if ss, ok := o.store.(ServiceStore); ok {
			keys, found, err := ss.LoadServices()
			if err != nil {
				return fmt.Errorf("reading the list of created virtual services: %w", err)
			}
			for _, k := range keys {
				o.svcOwned[k] = true
			}
			o.svcRecorded = found
		}
	}
	var adoptable map[ipvs.ServiceKey]bool
	if !o.svcRecorded {
		adoptable = map[ipvs.ServiceKey]bool{}
		for _, r := range refs {
			adoptable[r.Service] = true
		}
	}
	plans, err := planServices(o.t.cfg.VirtualServices, have, o.svcOwned, adoptable)
	if err != nil {
		return err
	}
	// Record before creating, as for destinations: a crash between the
	// two leaves a recorded service that is missing, which the next start
	// creates, never an unrecorded one of ours that looks foreign.
	changed := !o.svcRecorded
	for k := range o.svcOwned {
		if _, ok := have[k]; !ok {
			delete(o.svcOwned, k) // deleted by hand: whoever recreates it owns it
			changed = true
		}
	}
	for _, p := range plans {
		if (p.action == svcCreate || p.adopt) && !o.svcOwned[p.want.ServiceKey] {
			o.svcOwned[p.want.ServiceKey] = true
			changed = true
		}
	}
	if changed {
		if err := o.saveServices(); err != nil {
			return err
		}
	}
	for _, p := range plans {
		key := p.want.ServiceKey
		log := o.m.log.With("vs", p.vs.Name, "service", key.String())
		switch p.action {
		case svcCreate:
			err := o.kv.AddService(p.want)
			if errors.Is(err, os.ErrExist) {
				// Someone created it since the read: it is theirs.
				delete(o.svcOwned, key)
				if err := o.saveServices(); err != nil {
					return err
				}
				log.Warn("virtual service was created by someone else meanwhile; it is left as it is")
				continue
			}
			if err != nil {
				return fmt.Errorf("creating virtual service %s (%s): %w", p.vs.Name, key, err)
			}
			delete(o.svcNotes, key)
			log.Info("virtual service created", "settings", ipvs.Settings(p.want))
		case svcUpdate:
			if err := o.kv.UpdateService(p.want); err != nil {
				return fmt.Errorf("updating virtual service %s (%s) to %s: %w", p.vs.Name, key, ipvs.Settings(p.want), err)
			}
			log.Info("virtual service updated to match the configuration",
				"old_settings", ipvs.Settings(p.have), "settings", ipvs.Settings(p.want))
		case svcKeep:
			if p.adopt {
				log.Info("virtual service taken as feedbackd's: it carries destinations feedbackd recorded and matches its block",
					"settings", ipvs.Settings(p.have))
			}
		case svcForeign:
			note := ipvs.Settings(p.have) + " | " + ipvs.Settings(p.want)
			if !o.svcNotes.first(key, note) {
				continue
			}
			if sameSettings(p.have, p.want) {
				log.Info("virtual service was made outside feedbackd; it is left as it is",
					"settings", ipvs.Settings(p.have))
			} else {
				log.Warn("virtual service was made outside feedbackd and differs from its block; it is left as it is",
					"settings", ipvs.Settings(p.have), "configured_settings", ipvs.Settings(p.want))
			}
		}
	}
	return nil
}

// saveServices writes the list of created virtual services, when the
// store keeps one.
func (o *owner) saveServices() error {
	ss, ok := o.store.(ServiceStore)
	if !ok {
		o.svcRecorded = true
		return nil
	}
	keys := make([]ipvs.ServiceKey, 0, len(o.svcOwned))
	for k := range o.svcOwned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b ipvs.ServiceKey) int { return cmpID(destID{Service: a}, destID{Service: b}) })
	if err := ss.SaveServices(keys); err != nil {
		return fmt.Errorf("cannot record created virtual services: %w", err)
	}
	o.svcRecorded = true
	return nil
}

// readKernel reads the destinations of the configured virtual services.
func (o *owner) readKernel() (map[ipvs.ServiceKey][]ipvs.Destination, error) {
	out := map[ipvs.ServiceKey][]ipvs.Destination{}
	for i := range o.t.cfg.VirtualServices {
		key := vsKey(&o.t.cfg.VirtualServices[i])
		ds, err := o.kv.Destinations(key)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading destinations of %s: %w", key, err)
		}
		out[key] = ds
	}
	return out, nil
}

func (o *owner) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		o.arm(timer, time.Now())
		select {
		case <-ctx.Done():
			o.stop()
			return
		case ev := <-o.m.events:
			now := time.Now()
			o.handle(ev, now)
		drain:
			for n := 1; n < maxBatch; n++ {
				select {
				case ev := <-o.m.events:
					o.handle(ev, now)
				default:
					break drain
				}
			}
		case <-timer.C:
		}
		o.pass(time.Now())
		if o.m.opts.OnLoop != nil {
			o.m.opts.OnLoop()
		}
	}
}

// stop records what changed last, and leaves the list written whole,
// without appended changes: the shortest file to read at the next start,
// and one an older master (0.6.0 and earlier) can read too.
func (o *owner) stop() {
	if o.appended > 0 || o.wholeNext {
		o.wholeNext, o.t.ownedChanged = true, true
	}
	o.saveIfChanged()
}

// pass does the work that follows a batch of events (or a timer): timers,
// ownership recorded before anything is added to the kernel, the IPVS
// writes, START answers, the status line. It takes the time as an argument
// so that the simulation test (sim_test.go) drives the real owner on a
// virtual clock.
func (o *owner) pass(now time.Time) {
	o.timers(now)
	o.saveIfChanged()
	o.apply()
	o.saveIfChanged()
	o.saveAdmin()
	if o.t.gaveUp && !o.t.ownedChanged {
		// The state file is writable again: what was given up while it
		// was not is offered again (recorded, then added, next pass).
		o.t.gaveUp = false
		o.t.reoffer(now)
	}
	o.replyJoins(now)
	// A START refused just now gives up its destinations: record that at
	// once, so that a crash cannot leave them listed as this master's.
	o.saveIfChanged()
	o.replyControl(now)
	o.publish()
}

// arm sets the timer to the earliest of: the table's next deadline, the
// next resync, and LoopEvery from now (so OnLoop runs at least that often).
func (o *owner) arm(timer *time.Timer, now time.Time) {
	next := now.Add(o.m.opts.LoopEvery)
	if d, ok := o.t.nextDeadline(); ok && d.Before(next) {
		next = d
	}
	if o.nextResync.Before(next) {
		next = o.nextResync
	}
	timer.Reset(max(next.Sub(now), 0))
}

func (o *owner) handle(ev event, now time.Time) {
	switch ev := ev.(type) {
	case joinEvent:
		st, ids := o.t.join(ev, now)
		o.pendingJoins = append(o.pendingJoins, pendingJoin{ev.sid, ev.recs, ev.reply, st, ids})
	case healthEvent:
		o.t.health(ev.sid, ev.recs, now)
	case stopEvent:
		o.t.stop(ev.sid, ev.recs, "agent sent STOP", now)
	case goneEvent:
		o.t.gone(ev.sid, ev.reason, now)
	case reloadEvent:
		err := o.reload(ev.cfg, now)
		o.m.obs.Reloaded(err)
		ev.done <- err
	case controlEvent:
		o.control(ev, now)
	}
}

// timers runs removal checks and the periodic resync. A removal check
// reads the kernel's active-connection counts, which only IPVS knows.
func (o *owner) timers(now time.Time) {
	if due := o.t.tick(now); len(due) > 0 {
		counts := map[destID]int{}
		for _, key := range uniqueServices(due) {
			ds, err := o.kv.Destinations(key)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				o.m.log.Error("reading active connections failed", "service", key.String(), "err", err)
				continue
			}
			for _, d := range ds {
				counts[destID{key, d.DestKey}] = d.ActiveConns
			}
		}
		for _, id := range due {
			o.t.removalChecked(id, counts[id], now)
		}
	}
	if !now.Before(o.nextResync) {
		o.nextResync = now.Add(o.t.cfg.RemovalInterval)
		if kernel, err := o.readKernel(); err != nil {
			o.m.log.Error("resync failed", "err", err)
		} else {
			o.t.resync(kernel, now)
		}
	}
}

func uniqueServices(ids []destID) []ipvs.ServiceKey {
	var out []ipvs.ServiceKey
	seen := map[ipvs.ServiceKey]bool{}
	for _, id := range ids {
		if !seen[id.Service] {
			seen[id.Service] = true
			out = append(out, id.Service)
		}
	}
	return out
}

// apply writes the table's diff to IPVS, all of it in one batch (a
// kernel table sends it a window of requests per system call; see
// ipvs.Batcher), then takes each write's result in order.
func (o *owner) apply() {
	o.kernelErr = ""
	diff := o.t.diff()
	if len(diff) == 0 {
		o.t.clean()
		return
	}
	ops := make([]ipvs.DestOp, len(diff))
	for i, op := range diff {
		ops[i] = ipvs.DestOp{Kind: op.kind, Service: op.id.Service, Dest: op.dest}
	}
	began := time.Now()
	errs := ipvs.ApplyDestinations(o.kv, ops)
	// The batch's time shared out: what one write cost on average.
	took := time.Since(began) / time.Duration(len(ops))
	for i, op := range diff {
		err := errs[i]
		if op.kind == ipvs.OpDelete && errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		o.m.obs.IPVSWrite(op.kind.String(), took, err)
		if op.kind == ipvs.OpAdd && errors.Is(err, os.ErrExist) {
			// Another tool's destination: not a failure to retry, and
			// applied says so (disown, WARN with REASON). EEXIST is not
			// turned into an update.
		} else if err != nil {
			o.kernelErr = err.Error()
			o.m.log.Error("IPVS write failed; will retry", "op", op.kind.String(), "vs", op.id.Service.String(),
				"realserver", op.id.Dest.Address.String(), "weight", op.dest.Weight, "err", err)
		} else {
			o.m.log.Debug("IPVS written", "op", op.kind.String(), "vs", op.id.Service.String(),
				"realserver", op.id.Dest.Address.String(), "weight", op.dest.Weight,
				"forwarding", op.dest.Forwarding.String())
		}
		o.t.applied(op, err)
	}
	o.t.clean()
}

// saveIfChanged writes the state file when the set of owned destinations
// changed. When it cannot, new destinations are given up rather than added
// unrecorded; removed ones stay listed, which is harmless.
func (o *owner) saveIfChanged() {
	if !o.t.ownedChanged {
		return
	}
	wrote, err := o.record()
	if wrote || err != nil {
		o.m.obs.StateSaved(err)
	}
	if err != nil {
		n := o.t.unrecordable()
		for range n {
			o.m.obs.Refused("state file not writable")
		}
		o.m.log.Error("cannot record owned destinations in the state file; new realservers are refused until it can",
			"err", err, "refused", n, "reason", "state file not writable")
		return
	}
	o.t.recordedAll()
}

// record writes the changes to the owned set: appended when the store can
// (Journal), whole at start, after a failed append, and once the appended
// lines are as many as the list, so that the file's size and the time to read
// it stay within about twice the list's, and the cost of a pass that adds
// a few destinations does not grow with all the others. wrote is false
// when the set came back to what the file lists: nothing to write.
func (o *owner) record() (wrote bool, err error) {
	defer func() {
		if err != nil {
			// The next write is whole: a failed append may have left a
			// torn line, and the changes need not be kept until then
			// (while a disk stays full, agents retrying would grow them
			// without bound).
			o.wholeNext = true
			o.t.resetTouched()
		}
	}()
	j, ok := o.store.(Journal)
	if !ok || o.wholeNext || o.appended >= max(o.journalMin, len(o.t.entries)+len(o.t.dormant)) {
		return true, o.saveWhole()
	}
	added, removed := o.t.ownedDelta()
	if len(added)+len(removed) == 0 {
		return false, nil
	}
	if err := j.Append(added, removed); err != nil {
		return true, err
	}
	o.appended += len(added) + len(removed)
	return true, nil
}

func (o *owner) saveWhole() error {
	if err := o.store.Save(o.t.owned()); err != nil {
		return err
	}
	o.appended, o.wholeNext = 0, false
	return nil
}

// replyJoins answers START only after the destinations are recorded in
// the state file and in IPVS, so an agent that sees "accepted" is really
// there: a record whose destinations could not be recorded or written, or
// turned out to be another tool's, is answered "refused".
func (o *owner) replyJoins(now time.Time) {
	for _, p := range o.pendingJoins {
		si := o.t.sessions[p.sid]
		for i, ids := range p.ids {
			if p.st[i] != necp.StatusAccepted {
				continue
			}
			ok := false
			for _, id := range ids {
				e := o.t.entries[id]
				// In maint an entry is kept out of IPVS on purpose: the
				// agent is still accepted, and reports go on underneath.
				if _, offered := si.offerOf(id); offered && e != nil && e.recorded &&
					(e.inKernel || o.t.admin[id] == AdminMaint) {
					ok = true
				}
			}
			if !ok {
				// Refused means refused: the record and its offers go, so
				// that neither a write retried later nor a reload adds what
				// the agent was told is out.
				p.st[i] = necp.StatusRefused
				if si != nil {
					for _, id := range ids {
						if _, offered := si.offerOf(id); offered {
							o.t.withdrawOffer(si, p.sid, id, "could not be recorded or added to IPVS", now)
						}
					}
					if i < len(p.recs) {
						o.t.unstart(si, p.sid, p.recs[i], "could not be recorded or added to IPVS", now)
					}
				}
			}
		}
		p.reply <- p.st // buffered: never blocks
	}
	o.pendingJoins = o.pendingJoins[:0]
}

func (o *owner) publish() {
	agents, active, quiescing := o.t.counts()
	s := Summary{Agents: agents, Active: active, Quiescing: quiescing, LastChange: o.t.lastChange, KernelError: o.kernelErr}
	if *o.m.summary.Load() == s {
		return // the common case: a health report that changed nothing
	}
	o.m.summary.Store(&s)
	if o.m.opts.OnChange != nil {
		o.m.opts.OnChange(s)
	}
}

// reload swaps the configuration: timers and max-weights take effect at
// once, new virtual services are created, every session's services are
// matched again, and a full resync follows.
func (o *owner) reload(cfg *config.Master, now time.Time) error {
	old := o.t.cfg
	o.t.cfg = cfg
	if err := o.ensureServices(nil); err != nil {
		o.t.cfg = old
		return err
	}
	o.checkSysctls()
	kernel, err := o.readKernel()
	if err != nil {
		// Refused whole, not half applied: without a read of the new
		// virtual services the master cannot tell its own destinations
		// from another tool's, and would disown what it created. The
		// services ensureServices may have created are harmless.
		o.t.cfg = old
		return fmt.Errorf("configuration not applied: %w", err)
	}
	o.m.cfg.Store(cfg)
	o.t.rematch(kernel, now)
	o.t.resync(kernel, now)
	o.nextResync = now.Add(cfg.RemovalInterval)
	o.m.log.Info("configuration reloaded", "file", cfg.File, "virtual_services", len(cfg.VirtualServices))
	return nil
}
