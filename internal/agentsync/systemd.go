package agentsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

// DefaultJobTimeout bounds the wait for one job's result. It is longer
// than systemd's own default start plus stop timeouts (90 s each; a
// restart is both), so that normally systemd's verdict arrives first and
// is the one reported.
const DefaultJobTimeout = 3 * time.Minute

// jobMode "replace": a start replaces a queued stop of the same unit (and
// the other way round) instead of failing, which is what a later decision
// should do to an earlier one.
const jobMode = "replace"

// Systemd is the Manager that talks to systemd over D-Bus.
type Systemd struct {
	conn       *dbus.Conn
	JobTimeout time.Duration
}

// NewSystemd connects to systemd: the system bus, or for root systemd's
// private socket when the bus is down (early boot, a broken dbus-daemon).
// Listing units works for anyone; starting and stopping them needs root
// (or a polkit rule for org.freedesktop.systemd1.manage-units).
func NewSystemd(ctx context.Context) (*Systemd, error) {
	conn, err := dbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd: %w", err)
	}
	// The job results come as JobRemoved signals on go-systemd's second
	// connection, not the one that queued the job. systemd broadcasts
	// its signals on the system bus only while some client is subscribed
	// (its D-Bus API documentation; a systemd maintainer calls waiting
	// for JobRemoved without subscribing a bug in systemd/systemd#22877).
	// Without this a result could go missing and every job would end in
	// DefaultJobTimeout. go-systemd's Subscribe also asks for unit change
	// signals; its dispatcher drops them, as nobody reads them here.
	if err := conn.Subscribe(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribing to systemd's job signals: %w", err)
	}
	return &Systemd{conn: conn, JobTimeout: DefaultJobTimeout}, nil
}

// Close closes the D-Bus connection.
func (s *Systemd) Close() { s.conn.Close() }

// ListInstances reports every loaded feedbackd-agent@*.service. A unit
// that is neither running nor referenced is not loaded and so not listed;
// Plan treats that like an inactive unit.
func (s *Systemd) ListInstances(ctx context.Context) ([]Running, error) {
	units, err := s.conn.ListUnitsByPatternsContext(ctx, []string{}, []string{UnitPattern})
	if err != nil {
		return nil, err
	}
	var rs []Running
	for _, u := range units {
		if r, ok := RunningFrom(u.Name, u.ActiveState); ok {
			rs = append(rs, r)
		}
	}
	return rs, nil
}

// RunningFrom describes an agent unit from systemd's ActiveState; ok is
// false when unitName is not an agent instance. "activating" counts as
// running: it covers a unit waiting in Restart= back-off
// (activating/auto-restart), which must be restarted when its file changes
// and stopped when its file goes, not started again. "deactivating" counts
// as not running: it is on its way to inactive.
func RunningFrom(unitName, activeState string) (r Running, ok bool) {
	name, ok := InstanceOf(unitName)
	if !ok {
		return Running{}, false
	}
	r = Running{Name: name, Unit: unitName, State: activeState}
	switch activeState {
	case "active", "reloading", "activating", "refreshing":
		r.Active = true
	case "failed":
		r.Failed = true
	}
	return r, true
}

func (s *Systemd) Start(ctx context.Context, unit string) error {
	return runJob(ctx, "start", unit, s.conn.StartUnitContext, s.JobTimeout)
}

func (s *Systemd) Restart(ctx context.Context, unit string) error {
	return runJob(ctx, "restart", unit, s.conn.RestartUnitContext, s.JobTimeout)
}

func (s *Systemd) Stop(ctx context.Context, unit string) error {
	return runJob(ctx, "stop", unit, s.conn.StopUnitContext, s.JobTimeout)
}

func (s *Systemd) ResetFailed(ctx context.Context, unit string) error {
	return s.conn.ResetFailedUnitContext(ctx, unit)
}

// jobFunc is the shape of go-systemd's Start/Restart/StopUnitContext.
type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// errJobTimeout marks a job whose result did not come in time.
var errJobTimeout = errors.New("no result in time; the job may still be running in systemd")

// runJob submits a job and waits for its result. The result channel has
// room for the one result: go-systemd sends it while holding the
// connection's job lock, so after a timeout, with nobody reading, an
// unbuffered channel would block every later job on the connection.
func runJob(ctx context.Context, verb, unit string, submit jobFunc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := make(chan string, 1)
	if _, err := submit(ctx, unit, jobMode, ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job %s (see journalctl -u %s)", verb, unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s %s: %w (waited %v)", verb, unit, errJobTimeout, timeout)
		}
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}
