package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/localadmin"
)

// AdminPoll is how often the admin file is read. A drain or maint written
// there reaches every director at its next KEEPALIVE after that, and
// HAProxy at its next agent-check.
const AdminPoll = time.Second

// adminWatch keeps the services' admin states in step with the admin
// file. What it read last is kept, so a change of the file is noticed and
// logged once, and a file that stops parsing leaves the states as they
// were instead of releasing a drained service by accident.
type adminWatch struct {
	a       *Agent
	path    string
	lastRaw []byte
	lastErr string
}

// poll reads the file once and applies it.
func (w *adminWatch) poll() {
	data, err := os.ReadFile(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil // no file: every service ready
	}
	if err != nil {
		w.fail(err)
		return
	}
	if w.lastRaw != nil && string(data) == string(w.lastRaw) && w.lastErr == "" {
		return
	}
	f, err := localadmin.Parse(w.path, data)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastRaw, w.lastErr = append(data[:0:0], data...), ""
	for _, s := range w.a.services {
		st := f.Of(s.cfg.Name)
		old := localadmin.State(s.admin.Swap(int32(st)))
		if old == st {
			continue
		}
		// Health reporting goes on underneath: the line says what the
		// service would report, so that the operator knows what "ready"
		// will bring back.
		h, why := s.sampler.Reading(time.Now())
		args := []any{"admin", st.String(), "old_admin", old.String(), "admin_file", w.path}
		if why == "" {
			args = append(args, "health", int(h))
		} else {
			args = append(args, "health", "unknown: "+why)
		}
		s.log.Info("admin state changed by the admin file", args...)
	}
}

// fail logs a read or parse error once per distinct error; the states stay.
func (w *adminWatch) fail(err error) {
	if err.Error() == w.lastErr {
		return
	}
	w.lastErr = err.Error()
	w.lastRaw = nil
	w.a.log.Error("admin file not applied; the admin states stay as they were", "admin_file", w.path, "err", err)
}

// run polls until ctx ends.
func (w *adminWatch) run(ctx context.Context) {
	t := time.NewTicker(AdminPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}

// admin is a service's current admin state.
func (s *service) adminState() localadmin.State { return localadmin.State(s.admin.Load()) }
