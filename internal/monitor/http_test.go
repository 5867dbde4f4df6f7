package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// newTestHTTP builds an http monitor from keys given as "key=value" and
// returns it with its log.
func newTestHTTP(t *testing.T, url string, kv ...string) (*httpMon, *testutil.SyncBuffer) {
	t.Helper()
	params := map[string]string{"url": url}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		params[k] = v
	}
	var buf testutil.SyncBuffer
	m, err := New("http", params, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.(*httpMon), &buf
}

// measureCtx bounds a Measure that is expected to end by itself, so that
// a monitor ignoring its own timeout shows as an error, not a hung test.
func measureCtx(t *testing.T, m Monitor) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	h, err := m.Measure(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Measure ran into the test's 30 s deadline: %v", err)
	}
	t.Logf("Measure took %v", time.Since(began))
	return h, err
}

func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   int
	}{
		{200, 100}, {204, 100}, {299, 100},
		{301, 0}, {304, 0}, {404, 0}, {500, 0}, {503, 0},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			m, log := newTestHTTP(t, srv.URL+"/health")
			h, err := measureCtx(t, m)
			if err != nil || h != tc.want {
				t.Fatalf("status %d: got %d, %v; want %d", tc.status, h, err, tc.want)
			}
			if tc.want == 0 && !strings.Contains(log.String(), fmt.Sprintf("status %d", tc.status)) {
				t.Errorf("the status is not logged:\n%s", log)
			}
		})
	}
}

func TestHTTPMethodAndHeaders(t *testing.T) {
	var method, ua atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method.Store(r.Method)
		ua.Store(r.UserAgent())
	}))
	defer srv.Close()
	for _, want := range []string{"GET", "HEAD"} {
		m, _ := newTestHTTP(t, srv.URL, "method="+strings.ToLower(want))
		if h, err := measureCtx(t, m); err != nil || h != 100 {
			t.Fatalf("%s: %d, %v", want, h, err)
		}
		if got := method.Load(); got != want {
			t.Errorf("server saw %v, want %s", got, want)
		}
	}
	if ua.Load() != "feedbackd-agent" {
		t.Errorf("User-Agent %q", ua.Load())
	}
}

func TestHTTPRedirects(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/one", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/two", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/one", http.StatusMovedPermanently) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	// To another server, by an absolute URL; and with a status that is
	// not a redirect a client follows, though it has a Location.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/multiple", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/ok")
		w.WriteHeader(http.StatusMultipleChoices)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		path, redirects string
		want            int
	}{
		{"/ok", "", 100},
		{"/one", "", 0}, // not followed by default
		{"/one", "0", 0},
		{"/one", "1", 100},
		{"/two", "1", 0},
		{"/two", "2", 100},
		{"/loop", "10", 0},
		{"/away", "1", 100},
		{"/multiple", "1", 0},
	} {
		t.Run(tc.path+"/"+tc.redirects, func(t *testing.T) {
			var kv []string
			if tc.redirects != "" {
				kv = append(kv, "max-redirects="+tc.redirects)
			}
			m, log := newTestHTTP(t, srv.URL+tc.path, kv...)
			h, err := measureCtx(t, m)
			if err != nil || h != tc.want {
				t.Fatalf("got %d, %v; want %d", h, err, tc.want)
			}
			if tc.want == 0 && !strings.Contains(log.String(), "max-redirects") {
				t.Errorf("the log does not say the redirect was not followed:\n%s", log)
			}
		})
	}
}

// A server that does not answer costs one timeout and gives 0, with the
// reason logged.
func TestHTTPSlowServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	m, log := newTestHTTP(t, srv.URL, "timeout=0.2")
	h, err := measureCtx(t, m)
	if err != nil || h != 0 {
		t.Fatalf("got %d, %v; want 0", h, err)
	}
	if !strings.Contains(log.String(), "no response within 200ms") {
		t.Errorf("log:\n%s", log)
	}
}

// A body that trickles past the timeout with body-health ends the same way.
func TestHTTPSlowBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	m, log := newTestHTTP(t, srv.URL, "timeout=0.2", "body-health=yes")
	h, err := measureCtx(t, m)
	if err != nil || h != 0 {
		t.Fatalf("got %d, %v; want 0", h, err)
	}
	if !strings.Contains(log.String(), "reading the body") {
		t.Errorf("log:\n%s", log)
	}
}

func TestHTTPResponseTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
	}))
	defer srv.Close()
	// Slower than response-time: 1, busy but answering.
	m, _ := newTestHTTP(t, srv.URL, "response-time=0.1")
	if h, err := measureCtx(t, m); err != nil || h != 1 {
		t.Fatalf("got %d, %v; want 1", h, err)
	}
	for _, tc := range []struct {
		took, slow time.Duration
		want       int
	}{
		{0, time.Second, 100},
		{250 * time.Millisecond, time.Second, 75},
		{500 * time.Millisecond, time.Second, 50},
		{995 * time.Millisecond, time.Second, 1},
		{time.Second, time.Second, 1},
		{time.Hour, time.Second, 1},
	} {
		if got := timeHealth(tc.took, tc.slow); got != tc.want {
			t.Errorf("timeHealth(%v, %v) = %d, want %d", tc.took, tc.slow, got, tc.want)
		}
	}
}

func TestHTTPBodyHealth(t *testing.T) {
	for _, tc := range []struct {
		status  int
		body    string
		want    int
		unknown bool
	}{
		{200, "87.5\n", 88, false},
		{200, "42%", 42, false},
		{200, "70\nqueue 12\n", 70, false},
		{503, "100\n", 0, false}, // the status decides first
		{200, "HTTP/1.1 503 Service Unavailable", 0, true},
		{200, "1e9", 0, true},
		{200, "", 0, true},
		{200, "<html>ok</html>", 0, true},
		{200, strings.Repeat("x", 10<<20) + "\n50\n", 0, true}, // a 10 MB first line, cut at 4 KiB
	} {
		t.Run(fmt.Sprintf("%d %.20q", tc.status, tc.body), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			m, log := newTestHTTP(t, srv.URL, "body-health=yes")
			h, err := measureCtx(t, m)
			if tc.unknown {
				if !errors.Is(err, errNotHealth) {
					t.Fatalf("got %d, %v; want not a health value", h, err)
				}
				if !strings.Contains(log.String(), "body=") {
					t.Errorf("the body is not logged:\n%s", log)
				}
				return
			}
			if err != nil || h != tc.want {
				t.Fatalf("got %d, %v; want %d", h, err, tc.want)
			}
		})
	}
}

// A huge body is never read beyond what the health needs: the server's
// writes fail once the monitor has hung up, long before it has sent it all.
func TestHTTPHugeBody(t *testing.T) {
	const chunk, total = 64 << 10, 1 << 30
	for _, body := range []string{"no", "yes"} {
		t.Run("body-health="+body, func(t *testing.T) {
			var written atomic.Int64
			done := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				buf := []byte("55\n" + strings.Repeat("x", chunk-3))
				for written.Load() < total {
					n, err := w.Write(buf)
					written.Add(int64(n))
					if err != nil {
						return
					}
					buf = []byte(strings.Repeat("x", chunk))
				}
			}))
			defer srv.Close()
			m, _ := newTestHTTP(t, srv.URL, "body-health="+body)
			want := 100
			if body == "yes" {
				want = 55
			}
			if h, err := measureCtx(t, m); err != nil || h != want {
				t.Fatalf("got %d, %v; want %d", h, err, want)
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the server is still writing 30 s after the check")
			}
			t.Logf("the server wrote %d bytes before the monitor hung up", written.Load())
			if written.Load() >= total {
				t.Fatalf("the whole %d-byte body was sent: the monitor read it all", total)
			}
		})
	}
}

// A server that does not speak HTTP is a failed check.
func TestHTTPGarbage(t *testing.T) {
	for _, reply := range []string{"SSH-2.0-OpenSSH_9.2\r\n", "\x00\x01\x02\xff\xfe garbage\r\n\r\n", ""} {
		t.Run(fmt.Sprintf("%.10q", reply), func(t *testing.T) {
			addr := testutil.ServeConns(t, func(c net.Conn) {
				c.Write([]byte(reply))
				c.Close()
			})
			m, log := newTestHTTP(t, "http://"+addr+"/")
			if h, err := measureCtx(t, m); err != nil || h != 0 {
				t.Fatalf("got %d, %v; want 0", h, err)
			}
			if !strings.Contains(log.String(), "http check failed") {
				t.Errorf("log:\n%s", log)
			}
		})
	}
	// And a closed port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	m, log := newTestHTTP(t, "http://"+addr+"/")
	if h, err := measureCtx(t, m); err != nil || h != 0 || !strings.Contains(log.String(), "refused") {
		t.Fatalf("closed port: got %d, %v; log:\n%s", h, err, log)
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// The refused handshake below is expected; keep it out of the output.
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	// With the system's roots, the test server's certificate is refused:
	// a failed check.
	m, log := newTestHTTP(t, srv.URL)
	if h, err := measureCtx(t, m); err != nil || h != 0 || !strings.Contains(log.String(), "certificate") {
		t.Fatalf("untrusted certificate: got %d, %v; log:\n%s", h, err, log)
	}
	// Trusting it, as the system's roots would trust a real one, the
	// check passes over TLS.
	m, _ = newTestHTTP(t, srv.URL)
	m.tls = srv.Client().Transport.(*http.Transport).TLSClientConfig
	if h, err := measureCtx(t, m); err != nil || h != 100 {
		t.Fatalf("trusted certificate: got %d, %v", h, err)
	}
}

func TestHTTPCanceled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	m, _ := newTestHTTP(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := m.Measure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled (shutting down is not a failed check)", err)
	}
}

func TestHTTPKeysTogether(t *testing.T) {
	for _, tc := range []struct {
		kv      []string
		key, in string
	}{
		{[]string{"response-time=5"}, "response-time", "not shorter than timeout"},
		{[]string{"response-time=2", "timeout=1"}, "response-time", "not shorter than timeout"},
		{[]string{"body-health=yes", "method=HEAD"}, "body-health", "HEAD"},
	} {
		params := map[string]string{"url": "http://127.0.0.1/"}
		for _, s := range tc.kv {
			k, v, _ := strings.Cut(s, "=")
			params[k] = v
		}
		k, _ := Parse("http")
		key, err := k.CheckKeys(params)
		if key != tc.key || err == nil || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("%v: CheckKeys = %q, %v; want %q, %q", tc.kv, key, err, tc.key, tc.in)
		}
		if _, err := New("http", params, Options{}); err == nil || !strings.Contains(err.Error(), tc.key+": ") {
			t.Errorf("%v: New = %v, want an error naming %s", tc.kv, err, tc.key)
		}
	}
}

// An http sample starts no goroutine and allocates little: net/http's
// client started three per request, and each goroutine started maps pages
// of the executable's function table again after the agent has unmapped
// them (docs/benchmarks.md, "The agent without an HTTP stack"). The
// server answers in its accept loop, so that every goroutine counted is
// the monitor's.
func TestHTTPSampleIsLight(t *testing.T) {
	addr := testutil.ServeConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		for head := ""; !strings.Contains(head, "\r\n\r\n"); {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			head += string(buf[:n])
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n88\n")
	})
	m, _ := newTestHTTP(t, "http://"+addr+"/health", "body-health=yes")
	if h, err := measureCtx(t, m); err != nil || h != 88 {
		t.Fatalf("got %d, %v", h, err)
	}
	checkSampleCost(t, m, 20, 88, 16<<10)
}
