// Package sd is the daemons' side of the systemd service protocol:
// readiness, status text, reload and stop notifications, and the watchdog,
// all through github.com/coreos/go-systemd/v22/daemon. Outside systemd
// (no NOTIFY_SOCKET) every call is a cheap no-op.
package sd

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages. It is safe for concurrent use.
type Notifier struct {
	send func(state string) (bool, error)
	log  *slog.Logger

	// The watchdog interval systemd expects pings within (WatchdogSec=),
	// or 0 when the watchdog is off.
	watchdog time.Duration

	// mu guards the fields below and is held while a status is sent, so
	// that the order of the sends is the order of the lastStatus updates:
	// otherwise a status computed before a reload (with its old error
	// note) could reach systemd after the one computed after it, and stay
	// there, since an equal status is never sent again. A datagram to the
	// notify socket does not block for long.
	mu         sync.Mutex
	lastPing   time.Time
	lastStatus string
	statusAt   time.Time
}

// New reads the watchdog settings from the environment. The environment is
// never unset: go-systemd's unsetEnv=true would make every later WATCHDOG=1
// go nowhere.
func New(log *slog.Logger) *Notifier {
	n := &Notifier{
		send: func(state string) (bool, error) { return daemon.SdNotify(false, state) },
		log:  log,
	}
	if d, err := daemon.SdWatchdogEnabled(false); err != nil {
		log.Warn("ignoring malformed watchdog settings", "err", err)
	} else {
		n.watchdog = d
	}
	return n
}

func (n *Notifier) notify(lines ...string) {
	if _, err := n.send(strings.Join(lines, "\n")); err != nil {
		// A broken notify socket must not take the daemon down; systemd
		// will notice the missing READY or watchdog ping by itself.
		n.log.Warn("sd_notify failed", "err", err, "state", lines[0])
	}
}

// Ready reports that start-up (or a reload) is complete, with a status line.
func (n *Notifier) Ready(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastStatus, n.statusAt = status, time.Now()
	n.notify(daemon.SdNotifyReady, "STATUS="+status)
}

// Reloading reports the start of a reload (SIGHUP). systemd 252 has no
// Type=notify-reload, but it does honour RELOADING=1 with MONOTONIC_USEC
// under Type=notify, so `systemctl reload` waits for the following READY=1.
func (n *Notifier) Reloading() {
	n.notify(daemon.SdNotifyReloading, strings.TrimSpace(daemon.SdNotifyMonotonicUsec()), "STATUS=reloading configuration")
}

// Stopping reports that the daemon is shutting down.
func (n *Notifier) Stopping() { n.notify(daemon.SdNotifyStopping, "STATUS=stopping") }

// Status sets the one-line status shown by `systemctl status`. A status
// equal to the last one is not sent again, and changes are sent at most
// once per minGap, so a busy master does not flood PID 1.
func (n *Notifier) Status(status string, minGap time.Duration) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if status == n.lastStatus || now.Sub(n.statusAt) < minGap {
		return
	}
	n.lastStatus, n.statusAt = status, now
	n.notify("STATUS=" + status)
}

// WatchdogInterval is WatchdogSec= as systemd passed it, 0 when off.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// Alive is called by the daemon's work loop each time it makes progress; it
// sends WATCHDOG=1 when half the watchdog interval has passed since the
// last ping. Pinging from the work loop rather than from a free-running
// ticker is the point: a hung loop stops pinging and systemd restarts it.
func (n *Notifier) Alive(now time.Time) {
	if n.watchdog <= 0 {
		return
	}
	n.mu.Lock()
	due := now.Sub(n.lastPing) >= n.watchdog/2
	if due {
		n.lastPing = now
	}
	n.mu.Unlock()
	if due {
		n.notify(daemon.SdNotifyWatchdog)
	}
}

// StoppingWhenDone sends STOPPING=1 as soon as ctx is done (the daemon's
// stop signal). The returned function, deferred by the daemon, waits for
// that message when shutdown has begun, so the process never exits before
// systemd has heard it.
func (n *Notifier) StoppingWhenDone(ctx context.Context) (wait func()) {
	sent := make(chan struct{})
	go func() {
		<-ctx.Done()
		n.Stopping()
		close(sent)
	}()
	return func() {
		if ctx.Err() != nil {
			<-sent
		}
	}
}
