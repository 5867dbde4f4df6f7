package sd

import (
	"log/slog"
	"net"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listener returns the first stream socket systemd passed (socket
// activation: feedbackd-master.socket), or listens on addr itself when
// there is none. A socket from systemd outlives the daemon, so a restart
// loses no connection attempt.
func Listener(addr string, log *slog.Logger) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, err
	}
	for _, l := range lns {
		if l != nil {
			log.Debug("using socket passed by systemd", "addr", l.Addr().String())
			return l, nil
		}
	}
	return net.Listen("tcp", addr)
}

// LoopEvery is how often a loop that feeds the watchdog must turn at
// least: often enough that pings at half the watchdog interval are never
// late, and at least once a second for the status line.
func LoopEvery(watchdog time.Duration) time.Duration {
	if watchdog > 0 && watchdog/4 < time.Second {
		return watchdog / 4
	}
	return time.Second
}
