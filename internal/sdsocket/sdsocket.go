// Package sdsocket takes the listening sockets systemd passes (socket
// activation). It is the master's alone: go-systemd's activation package
// links crypto/tls (for its TLS listeners), which the agent, importing
// internal/sd for sd_notify, would otherwise carry too (issue 20,
// docs/benchmarks.md "Agent idle memory").
package sdsocket

import (
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listeners returns the sockets systemd passed (socket activation:
// feedbackd-master.socket): the first TCP one for the agents, and the
// first unix one for the control socket (nil if none). Without a TCP
// socket from systemd it listens on addr itself. A socket from systemd
// outlives the daemon, so a restart loses no connection attempt.
func Listeners(addr string, log *slog.Logger) (agents, ctl net.Listener, err error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, nil, err
	}
	for _, l := range lns {
		if l == nil {
			continue
		}
		switch {
		case l.Addr().Network() == "unix" && ctl == nil:
			ctl = l
		case l.Addr().Network() != "unix" && agents == nil:
			agents = l
		default:
			continue
		}
		log.Debug("using socket passed by systemd", "addr", l.Addr().String())
	}
	if agents == nil {
		if agents, err = net.Listen("tcp", addr); err != nil {
			if ctl != nil {
				ctl.Close()
			}
			return nil, nil, err
		}
	}
	return agents, ctl, nil
}
