package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

// netTimeout is the "timeout" of the http and tcp monitors. Its floor is
// MinTimeout like exec's: one key, one meaning and one floor across the
// monitors, as a combination gives it to each of them.
var netTimeout = KeySpec{Name: "timeout", Type: TypeDuration, Help: "seconds a check may take before the service counts as down (default 5)", Min: MinTimeout, MinWhy: whyTimeout}

var tcpConnect = KeySpec{Name: "connect", Type: TypeEndpoint, Required: true, Help: "HOST:PORT to connect to; health 100 when the connection is accepted within timeout, else 0"}

func init() {
	register(Kind{Name: "tcp",
		Keys: []KeySpec{tcpConnect, netTimeout},
		build: func(params map[string]string, _ Options, log *slog.Logger) (Monitor, error) {
			return newTCP(params, log)
		},
	})
}

// tcpMon connects to a port and closes the connection at once: health 100
// when the connection is accepted within the timeout, 0 when it is
// refused, unreachable or too slow. A failure is the measurement (the
// service does not accept connections), not an unknown health: leaving
// the weight alone would keep sending clients to a closed port.
type tcpMon struct {
	addr     string
	timeout  time.Duration
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	complain *ratelog.Logger
}

func newTCP(params map[string]string, log *slog.Logger) (*tcpMon, error) {
	addr, err := value.Services{}.Endpoint(params["connect"])
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	timeout, err := netTimeout.duration(params, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return &tcpMon{addr: addr, timeout: timeout, dial: d.DialContext, complain: newRateLog(log.With("connect", addr))}, nil
}

func (t *tcpMon) Name() string { return "tcp" }
func (t *tcpMon) Close() error { return nil }

func (t *tcpMon) Measure(ctx context.Context) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	c, err := t.dial(dctx, "tcp", t.addr)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		why := err.Error()
		if dctx.Err() != nil {
			why = fmt.Sprintf("no connection within %s", t.timeout)
		}
		t.complain.Warn("service down: connection failed; health 0", "why", strings.TrimSpace(why))
		return 0, nil
	}
	c.Close()
	return 100, nil
}
