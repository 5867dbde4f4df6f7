// Package agent is the engine of feedbackd-agent: it keeps one NECP
// connection open to feedbackd-master on the director, registers this
// realserver's services on it (INIT, START) and answers every KEEPALIVE with
// the health of each service.
//
// Health is never measured while the master waits. Each service's monitor
// samples on its own ticker for the whole life of Run (Sampler, in
// sampler.go) and a KEEPALIVE is answered at once from the cached values. The
// 2007 HOWTO warns that a slow exec program "holds up the agent", making the
// master believe the server is down; this design removes that failure mode
// (docs/necp-protocol.md §8, "when health is measured").
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Defaults for the zero values of Options (docs/necp-protocol.md §8).
const (
	DefaultBackoffMin  = 1 * time.Second
	DefaultBackoffMax  = 30 * time.Second
	DefaultStopTimeout = 2 * time.Second
	DefaultDialTimeout = 5 * time.Second
)

// Options are the agent's run-time dependencies and tunables that do not come
// from the configuration file.
type Options struct {
	// Logger receives the agent's log lines; nil discards them.
	Logger *slog.Logger
	// Dial opens the TCP connection to the master; nil means a net.Dialer
	// with a DefaultDialTimeout timeout on "tcp": an IPv6 literal or a name
	// with AAAA records reaches the master over IPv6 (Happy Eyeballs
	// between the families of a name's addresses).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// ProcRoot is handed to the monitors (cpuload reads ProcRoot/stat).
	ProcRoot string
	// OnState, if set, is called from the agent's goroutine when the agent
	// has registered with the master (after START_ACK, connected=true), when
	// it loses an established connection, and when a connection attempt
	// fails (connected=false), with a one-line summary. It must not block.
	OnState func(connected bool, summary string)
	// OnKeepalive, if set, is called from the agent's goroutine after each
	// KEEPALIVE_ACK has been written. It must not block.
	OnKeepalive func()
	// BackoffMin and BackoffMax bound the wait between connection attempts;
	// zero means DefaultBackoffMin and DefaultBackoffMax.
	BackoffMin, BackoffMax time.Duration
	// StopTimeout bounds the wait for STOP_ACK at shutdown; zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// OnSample, when set, is told of every finished sample of every
	// service (the agent's metrics). It runs on the sampler's goroutine
	// and must be cheap.
	OnSample func(service, monitor string, took time.Duration, health int, err error)
}

// Agent registers one realserver's services with one director and reports
// their health. An Agent is used once: build it with New, then call Run.
type Agent struct {
	directors     []string // host:port each; one session each
	retries       int      // connection-retries; 0 = never give up
	masterTimeout time.Duration
	secret        []byte // shared secret for a master that asks (nil: none)
	adminFile     string // local drain/maint file; "" = none
	opts          Options
	log           *slog.Logger
	services      []*service

	mu     sync.Mutex
	states map[string]string // each director's latest state line

	ran       atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// sleep waits d unless ctx ends first and reports whether the whole wait
	// elapsed. It is a field so that the back-off tests can record the
	// requested delays instead of waiting them out.
	sleep func(ctx context.Context, d time.Duration) bool
}

// service is one configured [service] with its monitor and sampler.
type service struct {
	cfg     config.Service
	mon     monitor.Monitor
	sampler *Sampler
	log     *slog.Logger
	// admin is the localadmin.State the admin file gives, read by every
	// session and agent-check listener, written by the admin watch.
	admin atomic.Int32
}

// New validates cfg and builds one monitor and one Sampler per service.
// Errors name the service (and its file:line when known). The monitors are
// released when Run returns, or by Close if Run is never called.
func New(cfg *config.Agent, opts Options) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("agent: no configuration")
	}
	directors := cfg.Directors
	if len(directors) == 0 && cfg.Director != "" {
		directors = []string{cfg.Director}
	}
	if len(directors) == 0 {
		return nil, errors.New("agent: no director configured")
	}
	if err := checkServices(cfg.Services); err != nil {
		return nil, err
	}
	if err := config.SecretMissing(cfg.SecretFile, cfg.Secret); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = logging.Discard()
	}
	a := &Agent{
		states:        map[string]string{},
		directors:     make([]string, 0, len(directors)),
		retries:       max(cfg.ConnectionRetries, 0),
		masterTimeout: cfg.MasterTimeout,
		secret:        cfg.Secret,
		adminFile:     cfg.AdminFile,
		opts:          opts,
		log:           log,
		sleep:         sleepCtx,
	}
	for _, d := range directors {
		a.directors = append(a.directors, directorAddr(d))
	}
	if a.masterTimeout <= 0 {
		a.masterTimeout = config.DefaultMasterTimeout
	}
	if a.opts.BackoffMin <= 0 {
		a.opts.BackoffMin = DefaultBackoffMin
	}
	if a.opts.BackoffMax <= 0 {
		a.opts.BackoffMax = DefaultBackoffMax
	}
	a.opts.BackoffMax = max(a.opts.BackoffMax, a.opts.BackoffMin)
	if a.opts.StopTimeout <= 0 {
		a.opts.StopTimeout = DefaultStopTimeout
	}
	if a.opts.Dial == nil {
		d := &net.Dialer{Timeout: DefaultDialTimeout}
		a.opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	for _, sc := range cfg.Services {
		svcLog := log.With("service", sc.Name)
		m, err := newMonitor(sc, opts, svcLog)
		if err != nil {
			a.Close()
			return nil, err
		}
		smp := NewSampler(m, monitor.Interval(sc.Params), svcLog)
		if opts.OnSample != nil {
			name, mon := sc.Name, m.Name()
			smp.onSample = func(took time.Duration, h int, err error) { opts.OnSample(name, mon, took, h, err) }
		}
		a.services = append(a.services, &service{cfg: sc, mon: m, sampler: smp, log: svcLog})
	}
	return a, nil
}

// checkServices rejects service lists the master could not make sense of.
// The master matches health records by (protocol, port), so two services
// with the same pair would be indistinguishable on the wire.
func checkServices(svcs []config.Service) error {
	if len(svcs) == 0 {
		return errors.New("agent: no [service] configured, nothing to report to the master")
	}
	if len(svcs) > necp.MaxServices {
		return fmt.Errorf("agent: %d services configured, a START can carry at most %d", len(svcs), necp.MaxServices)
	}
	type key struct {
		proto uint8
		port  uint16
	}
	seen := make(map[key]string, len(svcs))
	for _, sc := range svcs {
		k := key{sc.Protocol, sc.Port}
		if other, dup := seen[k]; dup {
			return fmt.Errorf("agent: service %q%s: %s/%d is already used by service %q; the master could not tell their health apart",
				sc.Name, where(sc), necp.ProtocolName(sc.Protocol), sc.Port, other)
		}
		seen[k] = sc.Name
	}
	return nil
}

func newMonitor(sc config.Service, opts Options, log *slog.Logger) (monitor.Monitor, error) {
	m, err := monitor.New(sc.Monitor, sc.Params, monitor.Options{ProcRoot: opts.ProcRoot, Logger: log})
	if err != nil {
		// monitor.New's errors already start with "monitor KIND:".
		return nil, fmt.Errorf("service %q%s: %w", sc.Name, where(sc), err)
	}
	return m, nil
}

// where formats a service's origin as " (file:line)" for error messages.
func where(sc config.Service) string {
	switch {
	case sc.File != "" && sc.Line > 0:
		return fmt.Sprintf(" (%s:%d)", sc.File, sc.Line)
	case sc.File != "":
		return fmt.Sprintf(" (%s)", sc.File)
	}
	return ""
}

// directorAddr adds NECP's port when the configuration gave a bare host.
// config.LoadAgent already does this; repeating it keeps hand-built configs
// (tests, other callers) working.
func directorAddr(d string) string {
	if _, _, err := net.SplitHostPort(d); err == nil {
		return d
	}
	return net.JoinHostPort(d, strconv.Itoa(necp.DefaultPort))
}

// Close releases the monitors. Run calls it on return; call it directly only
// when an Agent is built but never run. It is safe to call more than once.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		for _, s := range a.services {
			if err := s.mon.Close(); err != nil {
				errs = append(errs, fmt.Errorf("service %q: closing monitor: %w", s.cfg.Name, err))
			}
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// Run starts the samplers and keeps a registered connection to the master
// until ctx is cancelled. On cancellation it sends STOP (count 0: all
// services) if it is registered, waits at most StopTimeout for STOP_ACK,
// closes the connection and returns nil. It returns an error only when
// connection-retries is N > 0 and N consecutive connection attempts failed,
// or when called a second time.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called more than once")
	}
	defer a.Close()

	// The samplers live as long as Run, not as long as a connection: a
	// reconnecting agent then has fresh values for its very first
	// KEEPALIVE_ACK, and cpuload keeps its baseline across reconnections.
	sctx, stopSamplers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, s := range a.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sampler.Run(sctx)
		}()
	}
	// The admin file is read before the first connection, so that a
	// service left drained or in maintenance stays so across a restart
	// from the very first KEEPALIVE_ACK and agent-check answer.
	if a.adminFile != "" {
		w := &adminWatch{a: a, path: a.adminFile}
		w.poll()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(sctx)
		}()
	}
	// Waiting for the samplers before Close keeps a Measure in flight from
	// racing with its monitor's Close. Monitors honour ctx (exec kills its
	// command), so this wait is short.
	defer func() {
		stopSamplers()
		wg.Wait()
	}()

	a.log.Debug("agent starting", "directors", len(a.directors), "services", len(a.services),
		"master_timeout", a.masterTimeout, "connection_retries", a.retries)
	// One connection loop per director, each with its own back-off,
	// timers and handshake, all answering from the same samples: a slow or
	// dead director never delays the answers to another. The agent gives
	// up (with connection-retries) only when every director has.
	errs := make([]error, len(a.directors))
	var lw sync.WaitGroup
	for i, d := range a.directors {
		lw.Add(1)
		go func() {
			defer lw.Done()
			errs[i] = a.loop(ctx, d)
		}()
	}
	lw.Wait()
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}

// loop is the connection loop: connect, serve until the connection is lost,
// back off, repeat.
func (a *Agent) loop(ctx context.Context, director string) error {
	b := backoff{lo: a.opts.BackoffMin, hi: a.opts.BackoffMax}
	failures := 0
	var lastImmediate time.Time
	for {
		s, err := a.connect(ctx, director)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			a.log.Warn("connection to master failed", "director", director, "attempt", failures, "err", err)
			if a.retries > 0 && failures >= a.retries {
				a.state(director, false, fmt.Sprintf("gave up on director %s after %d failed attempts: %v", director, failures, err))
				return fmt.Errorf("agent: giving up after %d failed connection attempts to director %s: %w", failures, director, err)
			}
			delay := b.next()
			a.state(director, false, fmt.Sprintf("cannot reach director %s (%v); retrying in %s", director, err, delay.Round(time.Millisecond)))
			if !a.sleep(ctx, delay) {
				return nil
			}
			continue
		}

		failures = 0
		b.reset()
		reason := s.serve(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// The HOWTO: on losing the master the agent "will immediately close
		// the current connection to the master and reconnect". Immediately
		// matters: a restarted master gives its agents only
		// (1 + keepalive-retries) × keepalive-timeout to come back before it
		// quiesces them. So after a session that worked (it answered a
		// KEEPALIVE) the agent redials at once, but at most once per
		// BackoffMin, so that a master that keeps dropping connections is
		// not hammered in a tight loop.
		if s.answered > 0 && time.Since(lastImmediate) >= a.opts.BackoffMin {
			lastImmediate = time.Now()
			a.state(director, false, fmt.Sprintf("lost director %s: %s; reconnecting", director, reason))
			continue
		}
		delay := b.next()
		a.state(director, false, fmt.Sprintf("lost director %s: %s; reconnecting in %s", director, reason, delay.Round(time.Millisecond)))
		if !a.sleep(ctx, delay) {
			return nil
		}
	}
}

// state records one director's state and reports all of them: with
// several directors the status line names each.
func (a *Agent) state(director string, connected bool, summary string) {
	if a.opts.OnState == nil {
		return
	}
	a.mu.Lock()
	a.states[director] = summary
	line := summary
	if len(a.directors) > 1 {
		parts := make([]string, 0, len(a.directors))
		for _, d := range a.directors {
			if st, ok := a.states[d]; ok {
				parts = append(parts, st)
			}
		}
		line = strings.Join(parts, "; ")
	}
	a.mu.Unlock()
	a.opts.OnState(connected, line)
}

// sleepCtx waits d, or less if ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
