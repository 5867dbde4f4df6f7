// Package fakesystemd is an in-memory agentsync.Manager for tests: units
// change state as systemd would make them, every call is recorded, and
// chosen calls fail.
package fakesystemd

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
)

// Manager is the fake. The zero value has no units.
type Manager struct {
	mu    sync.Mutex
	units map[string]string // unit -> ActiveState
	calls []string
	fail  map[string]error // "start UNIT" -> error
	// ListErr, when set, is returned by ListInstances.
	ListErr error
	// Hook, when set, is called with "VERB UNIT" after each call to
	// Start, Restart, Stop or ResetFailed has taken effect: a test's way
	// to change the files while a run is under way, without timing.
	Hook func(call string)
}

// New returns a fake with units in the given ActiveStates.
func New(units map[string]string) *Manager {
	m := &Manager{units: map[string]string{}, fail: map[string]error{}}
	for u, s := range units {
		m.units[u] = s
	}
	return m
}

// Fail makes the call "VERB UNIT" (verb start, restart, stop or
// reset-failed) return err, leaving the unit as it was.
func (m *Manager) Fail(verb, unit string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail == nil {
		m.fail = map[string]error{}
	}
	m.fail[verb+" "+unit] = err
}

// Calls returns the calls made so far, as "VERB UNIT", in order.
func (m *Manager) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// State returns a unit's ActiveState, "" when it is not loaded.
func (m *Manager) State(unit string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.units[unit]
}

func (m *Manager) ListInstances(ctx context.Context) ([]agentsync.Running, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ListErr != nil {
		return nil, m.ListErr
	}
	var rs []agentsync.Running
	for u, s := range m.units {
		if r, ok := agentsync.RunningFrom(u, s); ok {
			rs = append(rs, r)
		}
	}
	// systemd's order is its own; sorted here so tests are deterministic.
	slices.SortFunc(rs, func(a, b agentsync.Running) int { return cmp.Compare(a.Unit, b.Unit) })
	return rs, nil
}

func (m *Manager) do(ctx context.Context, verb, unit, to string) error {
	err := m.apply(ctx, verb, unit, to)
	if m.Hook != nil {
		m.Hook(verb + " " + unit)
	}
	return err
}

func (m *Manager) apply(ctx context.Context, verb, unit, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, verb+" "+unit)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.fail[verb+" "+unit]; err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	if m.units == nil {
		m.units = map[string]string{}
	}
	if to != "" {
		m.units[unit] = to
	}
	return nil
}

func (m *Manager) Start(ctx context.Context, unit string) error {
	return m.do(ctx, "start", unit, "active")
}

func (m *Manager) Restart(ctx context.Context, unit string) error {
	return m.do(ctx, "restart", unit, "active")
}

func (m *Manager) Stop(ctx context.Context, unit string) error {
	return m.do(ctx, "stop", unit, "inactive")
}

// ResetFailed turns a failed unit inactive, as systemd does.
func (m *Manager) ResetFailed(ctx context.Context, unit string) error {
	m.mu.Lock()
	to := ""
	if m.units[unit] == "failed" {
		to = "inactive"
	}
	m.mu.Unlock()
	return m.do(ctx, "reset-failed", unit, to)
}
