package ipvs

import (
	"fmt"
	"slices"
	"sync"
)

// Memory is an in-memory IPVS table for unit tests and for running the
// master without touching the kernel (--without-ipvs). It is safe for
// concurrent use.
//
// It copies the kernel's behaviour where the master can observe it, so that
// code tested against Memory does not meet surprises on a real director:
//
//   - adding an existing service or destination fails with ErrExist;
//     updating a missing service, updating or deleting a missing
//     destination (or touching a missing service)
//     fails with ErrNotExist;
//   - Destinations of a missing service returns no destinations and no
//     error, as the kernel's dump does;
//   - reported services carry FlagHashed, and a zero Netmask reads back as
//     the kernel default (see NormalizeService);
//   - destinations are listed in insertion order, services in a stable
//     sorted order;
//   - counters (ActiveConns, InactiveConns) are not written by
//     AddDestination or UpdateDestination, only by SetConns;
//   - invalid requests fail with ErrInvalid before changing anything, with
//     the same checks the Kernel implementation applies.
type Memory struct {
	onChange func(table string)

	mu        sync.Mutex
	svcs      map[ServiceKey]*memService
	writes    int
	failWrite []error
	failRead  []error
}

type memService struct {
	svc   Service
	dests []Destination
	// pos indexes dests: a --without-ipvs master at 20 000 agents spent
	// more time searching this fake's lists than in its own work.
	pos map[DestKey]int
}

// NewMemory returns an empty table. If onChange is not nil it is called
// after every successful write (AddService, UpdateService, AddDestination,
// UpdateDestination, DeleteDestination) with the whole new table rendered
// by Format, so that --without-ipvs runs show what the kernel would hold.
// It is called without Memory's lock held, so it may read the table; with
// concurrent writers the calls may arrive out of order, but each string is
// a consistent state.
func NewMemory(onChange func(table string)) *Memory {
	return &Memory{onChange: onChange, svcs: map[ServiceKey]*memService{}}
}

// Services returns copies of all services, sorted by protocol, address and
// port, each with FlagHashed set.
func (m *Memory) Services() ([]Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected(&m.failRead); err != nil {
		return nil, err
	}
	return m.servicesLocked(), nil
}

func (m *Memory) servicesLocked() []Service {
	out := make([]Service, 0, len(m.svcs))
	for _, s := range m.svcs {
		out = append(out, s.svc)
	}
	sortServices(out)
	return out
}

// AddService creates a virtual service.
func (m *Memory) AddService(s Service) error {
	n, err := NormalizeService(s)
	if err != nil {
		return err
	}
	n.Flags |= FlagHashed
	return m.write(func() error {
		if _, ok := m.svcs[n.ServiceKey]; ok {
			return fmt.Errorf("ipvs: add service %s: %w", n.ServiceKey, ErrExist)
		}
		m.svcs[n.ServiceKey] = &memService{svc: n}
		return nil
	})
}

// UpdateService replaces scheduler, flags, timeout and netmask of an
// existing service, keeping its destinations, as the kernel's SET_SERVICE.
func (m *Memory) UpdateService(s Service) error {
	n, err := NormalizeService(s)
	if err != nil {
		return err
	}
	n.Flags |= FlagHashed
	return m.write(func() error {
		ms, ok := m.svcs[n.ServiceKey]
		if !ok {
			return fmt.Errorf("ipvs: update service %s: %w", n.ServiceKey, ErrNotExist)
		}
		ms.svc = n
		return nil
	})
}

// Destinations returns a copy of the service's destinations in insertion
// order. A missing service has none, without error, as in the kernel.
func (m *Memory) Destinations(svc ServiceKey) ([]Destination, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected(&m.failRead); err != nil {
		return nil, err
	}
	if s, ok := m.svcs[svc]; ok {
		return slices.Clone(s.dests), nil
	}
	return nil, nil
}

// AddDestination adds d to svc with zero connection counters.
func (m *Memory) AddDestination(svc ServiceKey, d Destination) error {
	if err := CheckDestination(svc, d); err != nil {
		return err
	}
	d.ActiveConns, d.InactiveConns = 0, 0
	return m.write(func() error {
		s, ok := m.svcs[svc]
		if !ok {
			return fmt.Errorf("ipvs: add destination %s: service %s: %w", d.DestKey, svc, ErrNotExist)
		}
		if s.index(d.DestKey) >= 0 {
			return fmt.Errorf("ipvs: add destination %s to %s: %w", d.DestKey, svc, ErrExist)
		}
		if s.pos == nil {
			s.pos = map[DestKey]int{}
		}
		s.pos[d.DestKey] = len(s.dests)
		s.dests = append(s.dests, d)
		return nil
	})
}

// UpdateDestination replaces forwarding, weight and thresholds of an
// existing destination; its connection counters stay.
func (m *Memory) UpdateDestination(svc ServiceKey, d Destination) error {
	if err := CheckDestination(svc, d); err != nil {
		return err
	}
	return m.write(func() error {
		s, i, err := m.find(svc, d.DestKey)
		if err != nil {
			return fmt.Errorf("ipvs: update destination %s of %s: %w", d.DestKey, svc, err)
		}
		d.ActiveConns, d.InactiveConns = s.dests[i].ActiveConns, s.dests[i].InactiveConns
		s.dests[i] = d
		return nil
	})
}

// DeleteDestination removes a destination, keeping the others' order.
func (m *Memory) DeleteDestination(svc ServiceKey, k DestKey) error {
	return m.write(func() error {
		s, i, err := m.find(svc, k)
		if err != nil {
			return fmt.Errorf("ipvs: delete destination %s of %s: %w", k, svc, err)
		}
		s.dests = slices.Delete(s.dests, i, i+1)
		delete(s.pos, k)
		for j := i; j < len(s.dests); j++ {
			s.pos[s.dests[j].DestKey] = j
		}
		return nil
	})
}

// Close does nothing; Memory stays usable, which lets a test inspect the
// table after the code under test has closed it.
func (m *Memory) Close() error { return nil }

// SetConns sets the connection counters of a destination, standing in for
// clients of a real director (the master drains a destination only when its
// counters reach zero). It is not a write in the sense of Writes and does
// not call onChange: the kernel's counters change without any write either.
func (m *Memory) SetConns(svc ServiceKey, k DestKey, active, inactive int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, i, err := m.find(svc, k)
	if err != nil {
		return fmt.Errorf("ipvs: set connections of %s of %s: %w", k, svc, err)
	}
	s.dests[i].ActiveConns, s.dests[i].InactiveConns = active, inactive
	return nil
}

// Writes counts successful AddService, UpdateService, AddDestination,
// UpdateDestination and DeleteDestination calls, so tests can assert that a pass with nothing
// to change wrote nothing.
func (m *Memory) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// Snapshot returns a deep copy of the table: every service (also those
// without destinations) with its destinations in table order.
func (m *Memory) Snapshot() map[ServiceKey][]Destination {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[ServiceKey][]Destination, len(m.svcs))
	for k, s := range m.svcs {
		out[k] = slices.Clone(s.dests)
	}
	return out
}

// String renders the table with Format.
func (m *Memory) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.formatLocked()
}

// FailNext makes the next write call (AddService, UpdateService,
// AddDestination, UpdateDestination or DeleteDestination) return err unchanged without
// touching the table. Calls queue: two FailNext fail the next two writes.
// A failed write does not count in Writes and does not call onChange.
func (m *Memory) FailNext(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failWrite = append(m.failWrite, err)
}

// FailNextRead is FailNext for the next Services or Destinations call.
func (m *Memory) FailNextRead(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failRead = append(m.failRead, err)
}

// injected pops the first queued failure, if any. Called with mu held.
func (m *Memory) injected(q *[]error) error {
	if len(*q) == 0 {
		return nil
	}
	err := (*q)[0]
	*q = (*q)[1:]
	return err
}

// write runs f under the lock and, if it succeeded, counts it and reports
// the new table to onChange after unlocking: the callback may want to read
// the table, and must not be able to deadlock on it.
func (m *Memory) write(f func() error) error {
	m.mu.Lock()
	if err := m.injected(&m.failWrite); err != nil {
		m.mu.Unlock()
		return err
	}
	if err := f(); err != nil {
		m.mu.Unlock()
		return err
	}
	m.writes++
	var table string
	if m.onChange != nil {
		table = m.formatLocked()
	}
	m.mu.Unlock()
	if m.onChange != nil {
		m.onChange(table)
	}
	return nil
}

func (m *Memory) find(svc ServiceKey, k DestKey) (*memService, int, error) {
	s, ok := m.svcs[svc]
	if !ok {
		return nil, -1, fmt.Errorf("service %s: %w", svc, ErrNotExist)
	}
	i := s.index(k)
	if i < 0 {
		return nil, -1, ErrNotExist
	}
	return s, i, nil
}

func (m *Memory) formatLocked() string {
	b, _ := m.appendLocked(nil, 0)
	return string(b)
}

// AppendTable appends the table's text (Format) to b, at most maxLines
// lines of it (0: all), and says how many lines were left out.
func (m *Memory) AppendTable(b []byte, maxLines int) ([]byte, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendLocked(b, maxLines)
}

func (m *Memory) appendLocked(b []byte, maxLines int) ([]byte, int) {
	dests := make(map[ServiceKey][]Destination, len(m.svcs))
	for k, s := range m.svcs {
		dests[k] = s.dests
	}
	return AppendFormat(b, m.servicesLocked(), dests, maxLines)
}

func (s *memService) index(k DestKey) int {
	if i, ok := s.pos[k]; ok {
		return i
	}
	return -1
}
