package monitor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/httpget"
	"github.com/lvs-feedbackd/feedbackd/internal/ratelog"
	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

// Limits of one http check. The body is read only for body-health, and
// then only its start: the health is its first line.
const (
	httpBodyMax   = 4 << 10
	httpHeaderMax = 64 << 10
	// httpMaxRedirects is the ceiling of max-redirects: a health URL that
	// needs more hops than this is misconfigured, or a loop.
	httpMaxRedirects = 10
)

var (
	httpURL    = KeySpec{Name: "url", Type: TypeURL, Required: true, Help: "http:// or https:// URL to check; health 100 for a 2xx status, else 0"}
	httpMethod = KeySpec{Name: "method", Type: TypeChoice, Choices: []string{"GET", "HEAD"}, Help: "GET or HEAD (default GET)"}
	// maxRedirects defaults to 0: a health endpoint that redirects (to a
	// login page, to https) says nothing about the service, and its 3xx
	// counts as a failed check unless the operator asks to follow.
	httpRedirects = KeySpec{Name: "max-redirects", Type: TypeCount, Max: httpMaxRedirects, Help: "redirects followed (default 0: a 3xx status is a failed check)"}
	httpSlow      = KeySpec{Name: "response-time", Type: TypeDuration, Help: "response time at which the health falls to 1; faster responses scale from 100 (default: none, the time does not count)", Min: MinInterval, MinWhy: "shorter, no response could be fast enough"}
	httpBody      = KeySpec{Name: "body-health", Type: TypeBool, Help: "the first line of the body is a health value, as an exec command prints it (default no)"}
)

func init() {
	register(Kind{Name: "http",
		Keys: []KeySpec{httpURL, httpMethod, httpRedirects, httpSlow, httpBody, netTimeout},
		build: func(params map[string]string, _ Options, log *slog.Logger) (Monitor, error) {
			return newHTTP(params, log)
		},
		check: func(params map[string]string) (string, error) {
			_, key, err := httpConfig(params)
			return key, err
		},
	})
}

// httpMon checks a URL. The mapping from a response to a health:
//
//   - no response (refused, timed out, TLS refused, not HTTP): 0;
//   - a status other than 2xx, 3xx included unless redirects are followed: 0;
//   - a 2xx status: 100, then lowered by response-time and body-health
//     when they are set: the lowest of the three applies.
//
// A failed check is a measurement of 0, not an unknown health: the master
// leaves the weight alone on unknown, which would keep sending clients to
// a server that answers 503. Only a body-health body that is not a health
// value is unknown, as an exec command's output would be. Each failure's
// reason is logged at a bounded rate.
//
// The request goes out over a new connection for every check, as a client
// would open one, so that a check also proves the server still accepts
// connections, and no connection is held between samples. It goes
// straight to the server: HTTP_PROXY in the agent's environment does not
// route it elsewhere. internal/httpget says why it is not net/http.
type httpMon struct {
	cfg      httpSettings
	tls      *tls.Config // nil: the system's roots (tests trust their own)
	complain *ratelog.Logger
}

type httpSettings struct {
	url       *url.URL
	method    string
	redirects int
	slow      time.Duration // 0: the response time does not count
	body      bool
	timeout   time.Duration
}

// httpConfig reads the keys, and checks how they go together. An error
// about one key's value already names it (key is then ""): the config
// reader has reported it before this runs. An error about two keys
// together names the one to blame in key.
func httpConfig(params map[string]string) (s httpSettings, key string, err error) {
	if s.url, err = value.HTTPURL(params["url"]); err != nil {
		return s, "", fmt.Errorf("url: %w", err)
	}
	if s.method, err = httpMethod.choice(params, "GET"); err != nil {
		return s, "", err
	}
	if s.redirects, err = httpRedirects.count(params, 0); err != nil {
		return s, "", err
	}
	if s.slow, err = httpSlow.duration(params, 0); err != nil {
		return s, "", err
	}
	if s.body, err = httpBody.boolean(params, false); err != nil {
		return s, "", err
	}
	if s.timeout, err = netTimeout.duration(params, DefaultTimeout); err != nil {
		return s, "", err
	}
	if s.slow >= s.timeout {
		return s, "response-time", fmt.Errorf("%v is not shorter than timeout (%v): a response that slow is already a failed check", s.slow, s.timeout)
	}
	if s.body && s.method == "HEAD" {
		return s, "body-health", errors.New("a HEAD response has no body (use method = GET)")
	}
	return s, "", nil
}

func newHTTP(params map[string]string, log *slog.Logger) (*httpMon, error) {
	s, key, err := httpConfig(params)
	if err != nil {
		if key != "" {
			err = fmt.Errorf("%s: %w", key, err)
		}
		return nil, err
	}
	return &httpMon{cfg: s, complain: newRateLog(log.With("url", s.url.String()))}, nil
}

func (h *httpMon) Name() string { return "http" }

func (h *httpMon) Close() error { return nil }

func (h *httpMon) Measure(ctx context.Context) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
	defer cancel()
	resp, err := h.follow(rctx)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		why := err.Error()
		if rctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			why = fmt.Sprintf("no response within %s", h.cfg.timeout)
		}
		h.complain.Warn("http check failed; health 0", "why", why)
		return 0, nil
	}
	defer resp.Close()
	return h.judge(ctx, resp)
}

// follow asks for the URL, and follows up to max-redirects redirects: a
// 301, 302, 303, 307 or 308 with a Location, resolved against the URL
// that answered it. The method stays the same (GET or HEAD either way).
// The last response is returned open: the 3xx itself when there are more
// redirects than allowed.
func (h *httpMon) follow(ctx context.Context) (*httpget.Response, error) {
	u := h.cfg.url
	for hops := 0; ; hops++ {
		resp, err := httpget.Do(ctx, httpget.Request{URL: u, Method: h.cfg.method,
			Header: []string{"User-Agent: feedbackd-agent"}, TLS: h.tls, HeadMax: httpHeaderMax})
		if err != nil {
			return nil, err
		}
		if hops == h.cfg.redirects || resp.Location == "" || !redirect(resp.Code) {
			return resp, nil
		}
		resp.Close()
		next, err := u.Parse(resp.Location)
		if err != nil {
			return nil, fmt.Errorf("redirect %d to %q: %w", hops+1, resp.Location, err)
		}
		if next.Scheme != "http" && next.Scheme != "https" {
			return nil, fmt.Errorf("redirect %d to %s: not http or https", hops+1, next.Redacted())
		}
		next.Fragment, next.RawFragment = "", ""
		u = next
	}
}

// redirect is whether a status code is one a client follows.
func redirect(code int) bool {
	switch code {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

// judge maps a response to a health (see httpMon), the response time
// being the time from sending the request to the end of its head.
func (h *httpMon) judge(ctx context.Context, resp *httpget.Response) (int, error) {
	if resp.Code < 200 || resp.Code > 299 {
		why := "status " + resp.Status
		if resp.Location != "" && resp.Code >= 300 && resp.Code < 400 {
			why += fmt.Sprintf(" to %s (max-redirects = %d)", resp.Location, h.cfg.redirects)
		}
		h.complain.Warn("http check failed; health 0", "why", why)
		return 0, nil
	}
	health := 100
	if h.cfg.slow > 0 {
		health = min(health, timeHealth(resp.Took, h.cfg.slow))
	}
	if h.cfg.body {
		// At most httpBodyMax bytes are read, whatever the server sends;
		// the rest is dropped with the connection.
		b, err := resp.ReadBody(httpBodyMax)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err != nil {
			// A body slower than the timeout ends here too (the
			// connection's deadline is the request's).
			h.complain.Warn("http check failed; health 0", "why", fmt.Sprintf("reading the body: %v (timeout %s)", err, h.cfg.timeout))
			return 0, nil
		}
		bh, err := readHealth(b, false)
		if err != nil {
			h.complain.Warn("http body is not a health value; health unknown",
				"body", quoteHead(b, 200), "why", err)
			return 0, fmt.Errorf("%s: body is %w", h.cfg.url.Redacted(), err)
		}
		health = min(health, bh)
	}
	return health, nil
}

// timeHealth maps a response time to a health: 100 for an instant answer,
// falling linearly to 1 at slow and staying there (slow but answering is
// busy, not out of service, as with the load monitors).
func timeHealth(took, slow time.Duration) int {
	return max(busyFloor, clampHealth(100*(1-took.Seconds()/slow.Seconds())))
}
