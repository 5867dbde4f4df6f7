// Package master is feedbackd-master: it accepts agent connections, polls
// them with NECP KEEPALIVEs, and turns their health reports into IPVS
// weights.
//
// Shape: each agent connection starts on a goroutine of its own
// (session.go), which runs the handshake; once the agent is active, one
// poller goroutine (poller_linux.go) reads every connection, through
// io_uring or epoll, and runs every keepalive timer from one wheel
// (timerwheel.go). Sessions send events to one
// owner goroutine (this file), which alone holds the cluster table
// (table.go, pure decisions) and alone talks to IPVS. Events flow one way;
// nothing else mutates the table.
package master

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// Options are the master's outside connections, all injectable.
type Options struct {
	Logger *slog.Logger // nil = discard
	IPVS   ipvs.IPVS    // required
	Store  Store        // nil = in memory only
	// DryRun: IPVS is read but never written (the IPVS passed in is
	// expected to be a dry-run wrapper that logs what it would write); the
	// master then does not expect the kernel to reflect its changes.
	DryRun bool
	// OnReady is called once the virtual services are ensured and the
	// master is about to accept agents (systemd READY=1).
	OnReady func()
	// OnLoop is called from the owner goroutine's loop at least every
	// LoopEvery, so a hung owner stops calling it (systemd watchdog).
	OnLoop func()
	// LoopEvery bounds how long the owner loop sleeps; zero means 1 s. Set
	// it to a fraction of the watchdog interval.
	LoopEvery time.Duration
	// OnChange is called from the owner goroutine after a pass that changed
	// the table, with a one-line summary (systemd STATUS=).
	OnChange func(Summary)
	// Observer is told what the master does, for metrics; nil: nobody.
	Observer Observer
	// Sysctls is the root of /proc/sys, from which the master reads the
	// IPVS sysctls it warns about (sysctl.go); nil: not checked (no
	// kernel IPVS, or a test).
	Sysctls fs.FS
	// Poller chooses how the sessions' sockets are polled on Linux:
	// PollerAuto (io_uring where the kernel allows it, else epoll),
	// PollerEpoll or PollerIOURing (epoll still, with a warning, where it
	// is refused).
	Poller string
}

// Poller names, for Options.Poller and FEEDBACKD_POLLER.
const (
	PollerAuto    = ""
	PollerEpoll   = "epoll"
	PollerIOURing = "io_uring"
)

// CheckPoller says whether name is a way of polling Options.Poller
// accepts (FEEDBACKD_POLLER's values).
func CheckPoller(name string) error {
	switch name {
	case PollerAuto, PollerEpoll, PollerIOURing:
		return nil
	}
	return fmt.Errorf("poller %q: want %q, %q or none (io_uring where the kernel allows it)", name, PollerEpoll, PollerIOURing)
}

// defaultPoller is Options.Poller when none is given: PollerAuto, but the
// package's tests run once more with epoll (FEEDBACKD_TEST_POLLER, set by
// make unit), so that both ways of polling run every test.
var defaultPoller = PollerAuto

// Summary is a snapshot of the cluster for status lines.
type Summary struct {
	Agents      int       // live agent sessions
	Active      int       // destinations with a reporting agent
	Quiescing   int       // destinations at weight 0 awaiting removal, or orphans
	LastChange  time.Time // last weight or membership change
	KernelError string    // last IPVS write error, "" when the last pass succeeded
}

func (s Summary) String() string {
	str := fmt.Sprintf("%d agents, %d realservers active, %d quiescing", s.Agents, s.Active, s.Quiescing)
	if !s.LastChange.IsZero() {
		str += ", last change " + s.LastChange.Format(time.TimeOnly)
	}
	if s.KernelError != "" {
		str += ", IPVS error: " + s.KernelError
	}
	return str
}

// Master is one running master.
type Master struct {
	opts   Options
	log    *slog.Logger
	cfg    atomic.Pointer[config.Master]
	events chan event
	nextID atomic.Uint64

	mu       sync.Mutex
	sessions map[*session]struct{}
	perAddr  map[netip.Addr]int // open sessions per source address (under mu)
	summary  atomic.Pointer[Summary]
	refused  refusals // used by the accept goroutine only
	peerLogs peerLogs
	evlog    *eventLog // the latest lines per realserver (feedbackctl events)
	obs      Observer
	// poll runs the sessions past their handshake (nil: each stays on
	// its goroutine). Set by Run before the first accept.
	poll *poller
}

// New checks the options; nothing is touched until Run.
func New(cfg *config.Master, opts Options) (*Master, error) {
	if opts.IPVS == nil {
		return nil, errors.New("master: no IPVS implementation")
	}
	if err := config.SecretMissing(cfg.SecretFile, cfg.Secret); err != nil {
		return nil, err
	}
	if err := CheckPoller(opts.Poller); err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	if opts.Poller == PollerAuto {
		opts.Poller = defaultPoller
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Store == nil {
		opts.Store = &MemoryStore{}
	}
	if opts.LoopEvery <= 0 {
		opts.LoopEvery = time.Second
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	evlog := &eventLog{}
	m := &Master{
		opts:     opts,
		log:      slog.New(&eventHandler{next: opts.Logger.Handler(), log: evlog}),
		evlog:    evlog,
		obs:      opts.Observer,
		events:   make(chan event, 1024),
		sessions: map[*session]struct{}{},
		perAddr:  map[netip.Addr]int{},
	}
	cfg.FillLimits()
	m.cfg.Store(cfg)
	m.summary.Store(&Summary{})
	return m, nil
}

// Sessions returns the number of open agent connections, handshakes
// included (what max-sessions limits).
func (m *Master) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// Config returns the configuration in force.
func (m *Master) Config() *config.Master { return m.cfg.Load() }

// Summary returns the latest cluster summary.
func (m *Master) Summary() Summary { return *m.summary.Load() }

// Run ensures the configured virtual services, takes over the destinations
// an earlier run created, then accepts agents on ln until ctx is cancelled.
// On return the IPVS tables are left exactly as they are: the HOWTO's
// behaviour, so that a master restart does not disturb the weights.
func (m *Master) Run(ctx context.Context, ln net.Listener) error {
	o, err := m.newOwner()
	if err != nil {
		return err
	}
	if err := o.start(time.Now()); err != nil {
		return err
	}
	if m.opts.OnReady != nil {
		m.opts.OnReady()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ownerDone := make(chan struct{})
	go func() {
		defer close(ownerDone)
		o.run(ctx)
	}()

	var wg sync.WaitGroup
	if p, err := newPoller(m, &wg); err != nil {
		m.log.Warn("sessions stay on their own goroutines", "err", err)
	} else {
		m.poll = p
		go p.run(ctx)
		go p.forward(ctx)
		defer func() { <-p.done }()
	}
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- m.accept(ctx, ln, &wg) }()

	select {
	case <-ctx.Done():
	case err = <-acceptErr:
		cancel()
	}
	ln.Close()
	// Close every agent connection. Their sessions' goodbye events are not
	// acted on (the owner stops on ctx), so nothing is quiesced: agents of
	// a restarted master re-register and find their weights untouched.
	m.mu.Lock()
	for s := range m.sessions {
		s.closeConn() // the poller closes those it has itself
	}
	m.mu.Unlock()
	wg.Wait()
	<-ownerDone
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (m *Master) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: wait rather than spin or exit; one
				// flood of connections must not take the master down.
				m.log.Error("accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(backoff*2, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		peer := peerOf(c)
		cfg := m.cfg.Load()
		if !config.Allowed(cfg.Allow, peer.Addr()) {
			// Closed before a byte is read: a refused host never reaches
			// the protocol, let alone IPVS.
			c.Close()
			m.refused.note(m.log, m.obs, peer, "address not in allow", time.Now())
			continue
		}
		m.mu.Lock()
		reason := ""
		switch {
		case m.perAddr[peer.Addr()] >= cfg.MaxSessionsPerAddress:
			reason = "max-sessions-per-address reached"
		case len(m.sessions) >= cfg.MaxSessions:
			reason = "max-sessions reached"
		default:
			s := m.newSession(c, peer)
			m.sessions[s] = struct{}{}
			m.perAddr[peer.Addr()]++
			wg.Add(1)
			go m.serve(ctx, s, wg)
		}
		m.mu.Unlock()
		if reason != "" {
			c.Close()
			m.refused.note(m.log, m.obs, peer, reason, time.Now())
		}
	}
}

// serve runs one session; it is a method rather than a closure so that the
// session goroutine's base frame stays small (see session.loop).
func (m *Master) serve(ctx context.Context, s *session, wg *sync.WaitGroup) {
	if s.run(ctx) {
		return // the poller has it, and releases it when it ends
	}
	m.release(s)
	wg.Done()
}

// release forgets an ended session.
func (m *Master) release(s *session) {
	m.mu.Lock()
	delete(m.sessions, s)
	if m.perAddr[s.peer.Addr()]--; m.perAddr[s.peer.Addr()] <= 0 {
		delete(m.perAddr, s.peer.Addr())
	}
	m.mu.Unlock()
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Reload replaces the configuration: new virtual services are created,
// every session's services are matched again, and the weights recomputed.
// It returns once the owner has applied it.
func (m *Master) Reload(ctx context.Context, cfg *config.Master) error {
	// A secret-file whose secret could not be read would silently turn
	// authentication off: keep the running configuration instead.
	if err := config.SecretMissing(cfg.SecretFile, cfg.Secret); err != nil {
		return err
	}
	cfg.FillLimits()
	done := make(chan error, 1)
	select {
	case m.events <- reloadEvent{cfg: cfg, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
