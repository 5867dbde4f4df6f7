package promtext

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/connserve"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// The server is tested over raw TCP: what a scraper, or anything else
// that connects, sends and reads byte for byte.

// exposition is what the tests' server serves, counting its calls.
type exposition struct{ calls atomic.Int64 }

func (e *exposition) write(w *Writer) {
	e.calls.Add(1)
	w.Family("test_up", "A test gauge.", "gauge")
	w.Sample("test_up", []Label{{"k", "v"}}, 1)
}

// body is what write writes, without counting a call.
func (e *exposition) body() string {
	var w Writer
	var other exposition
	other.write(&w)
	return string(w.Bytes())
}

// unwritten fails the test if a request made the server write the
// exposition: refused requests must not cost a scrape.
func (e *exposition) unwritten(t *testing.T) {
	t.Helper()
	if n := e.calls.Load(); n != 0 {
		t.Errorf("the exposition was written %d times", n)
	}
}

// testServer serves write on a port of 127.0.0.1 with the given changes
// to the server, until the test ends.
type testServer struct {
	s    *server
	addr string
}

func startServer(t *testing.T, write func(*Writer), tweak func(*server)) *testServer {
	t.Helper()
	s := newServer(write, slog.New(slog.DiscardHandler))
	if tweak != nil {
		tweak(s)
	}
	return &testServer{s: s, addr: testutil.StartServer(t, s.serve).Addr}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads c until the server closes it, failing on a reset or after
// 5 s; it returns what was read and how long it took.
func readAll(t *testing.T, c net.Conn) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the response: %v (read %q)", err, b)
	}
	return string(b), time.Since(start)
}

// exchange sends req on a new connection and returns all the server
// sends before it closes.
func exchange(t *testing.T, addr, req string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, _ := readAll(t, c)
	c.Close() // not at the test's end: the server lingers until the client closes
	return resp
}

type response struct {
	status  string
	headers []string // without Date
	body    string
}

// parseResponse splits a raw response; it checks the Date header, which
// changes, and leaves it out of headers.
func parseResponse(t *testing.T, raw string) response {
	t.Helper()
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatalf("no end of head in %q", raw)
	}
	lines := strings.Split(head, "\r\n")
	r := response{status: lines[0], body: body}
	dates := 0
	for _, l := range lines[1:] {
		if v, ok := strings.CutPrefix(l, "Date: "); ok {
			dates++
			d, err := time.Parse("Mon, 02 Jan 2006 15:04:05 GMT", v)
			if err != nil || time.Since(d).Abs() > time.Minute {
				t.Errorf("Date %q: %v", v, err)
			}
			continue
		}
		r.headers = append(r.headers, l)
	}
	if dates != 1 {
		t.Errorf("%d Date headers in %q", dates, raw)
	}
	return r
}

func checkResponse(t *testing.T, raw, status string, headers []string, body string) {
	t.Helper()
	r := parseResponse(t, raw)
	if r.status != status {
		t.Errorf("status %q, want %q", r.status, status)
	}
	if strings.Join(r.headers, "\n") != strings.Join(headers, "\n") {
		t.Errorf("headers\n%s\nwant\n%s", strings.Join(r.headers, "\n"), strings.Join(headers, "\n"))
	}
	if r.body != body {
		t.Errorf("body %q, want %q", r.body, body)
	}
}

func okHeaders(n int) []string {
	return []string{"Content-Type: " + ContentType, "Content-Length: " + strconv.Itoa(n), "Connection: close"}
}

func errorHeaders(body string, allow bool) []string {
	h := []string{"Content-Type: text/plain; charset=utf-8", "Content-Length: " + strconv.Itoa(len(body))}
	if allow {
		h = append(h, "Allow: GET, HEAD")
	}
	return append(h, "Connection: close")
}

// GET and HEAD of /metrics: 200, the exact headers, the body (none for
// HEAD, with the same Content-Length), and the connection closed after.
func TestServeGetAndHead(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil)
	want := e.body()
	for _, req := range []string{
		"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4\r\n\r\n",
		"GET /metrics?name[]=up HTTP/1.1\r\nHost: x\r\n\r\n", // the query ignored
		"GET /metrics HTTP/1.0\r\n\r\n",                      // no Host needed
		"GET /metrics HTTP/1.1\nHost: x\n\n",                 // bare LF
		"GET http://x:9262/metrics HTTP/1.1\r\nHost: x:9262\r\n\r\n",
		// A body is not read: not taken for a second request either.
		"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	} {
		checkResponse(t, exchange(t, ts.addr, req), "HTTP/1.1 200 OK", okHeaders(len(want)), want)
	}
	calls := e.calls.Load()
	checkResponse(t, exchange(t, ts.addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 200 OK", okHeaders(len(want)), "")
	if e.calls.Load() != calls+1 {
		t.Error("HEAD did not write the exposition, so its Content-Length cannot be GET's")
	}
}

// Any other path: 404, and the exposition not written.
func TestServeNotFound(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil)
	const body = "404 Not Found\n"
	for _, path := range []string{"/", "/metrics/", "/metricsx", "/Metrics", "/metrics%2f", "/favicon.ico"} {
		for _, m := range []string{"GET", "HEAD", "POST"} {
			raw := exchange(t, ts.addr, m+" "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			checkResponse(t, raw, "HTTP/1.1 404 Not Found", errorHeaders(body, false), body)
		}
	}
	e.unwritten(t)
}

// Another method on /metrics: 405 with Allow, even with a body the
// server does not read (it must not reset the connection under the
// answer).
func TestServeMethodNotAllowed(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil)
	const body = "405 Method Not Allowed\n"
	for _, req := range []string{
		"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("a", 2000),
		"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /metrics?x HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"get /metrics HTTP/1.1\r\nHost: x\r\n\r\n", // methods are case-sensitive
	} {
		checkResponse(t, exchange(t, ts.addr, req), "HTTP/1.1 405 Method Not Allowed", errorHeaders(body, true), body)
	}
	e.unwritten(t)
}

// Not HTTP/1.x, or a malformed head: 400 and close, as soon as the
// request line shows it (a client speaking another protocol, which
// waits for the server to speak, is not kept for the head's deadline).
func TestServeBadRequest(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil) // the head deadline: 10 s
	const body = "400 Bad Request\n"
	for _, req := range []string{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
		"\x00\x01\x02\x03",
		"\xff\xfe GET /metrics",
		"GET /metrics HTTP/1.1\x00\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /metrics HTTP/1.10\r\nHost: x\r\n\r\n",
		"GET /metrics http/1.1\r\nHost: x\r\n\r\n",
		"GET /metrics\r\n\r\n", // HTTP/0.9
		"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n\r\n", // 1.1 without Host
		"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: b\r\n folded\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\r\n\r\n",
		"\r\n\r\n",
	} {
		c := dial(t, ts.addr)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		raw, took := readAll(t, c)
		c.Close()
		if took > 2*time.Second {
			t.Errorf("%q: answered after %v", req, took)
		}
		if !strings.HasPrefix(raw, "HTTP/1.1 400 ") {
			t.Errorf("%q: answered %q", req, raw)
			continue
		}
		checkResponse(t, raw, "HTTP/1.1 400 Bad Request", errorHeaders(body, false), body)
	}
	e.unwritten(t)
}

// A head over maxHead is refused with 431 and the connection closed,
// whether its end comes after the limit or not at all; one just under is
// served.
func TestServeHeadLimit(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil)
	const line = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
	pad := func(total int) string { // a header making the head total bytes
		return "X-Pad: " + strings.Repeat("a", total-len(line)-len("X-Pad: \r\n\r\n")) + "\r\n\r\n"
	}
	const limit = 8 << 10 // what the package documents, not maxHead
	want := e.body()
	checkResponse(t, exchange(t, ts.addr, line+pad(limit)), "HTTP/1.1 200 OK", okHeaders(len(want)), want)
	const body = "431 Request Header Fields Too Large\n"
	for _, req := range []string{
		line + pad(limit+1),
		line + "X-Pad: " + strings.Repeat("a", 2*limit), // and no end
		"GET /" + strings.Repeat("a", limit) + " HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		raw := exchange(t, ts.addr, req)
		checkResponse(t, raw, "HTTP/1.1 431 Request Header Fields Too Large", errorHeaders(body, false), body)
	}
}

// After answering, the server half-closes and reads what the client still
// sends (a body it did not want) before it closes, rather than closing on
// unread input, which makes the kernel reset the connection and can
// destroy the answer before the client reads it.
func TestServeDrain(t *testing.T) {
	var e exposition
	ts := startServer(t, e.write, nil)
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
	raw, _ := readAll(t, c) // the server's end of the stream: its half-close
	const body = "405 Method Not Allowed\n"
	checkResponse(t, raw, "HTTP/1.1 405 Method Not Allowed", errorHeaders(body, true), body)
	// The body, after the answer: read, not refused by a closed socket
	// (whose reset would fail the writes after the first).
	for i := range 5 {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatalf("write %d of the body after the answer: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A client that sends nothing, half a head, or a head one byte at a time
// is closed without an answer once the head's deadline (for the whole
// head, not for each read) has passed.
func TestServeHeadDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	var e exposition
	ts := startServer(t, e.write, func(s *server) { s.headTimeout = deadline })
	for _, name := range []string{"nothing", "half a head", "a trickle"} {
		c := dial(t, ts.addr)
		start := time.Now()
		switch name {
		case "half a head":
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
		case "a trickle":
			go func() {
				for _, b := range []byte("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaa") {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(deadline / 10)
				}
			}()
		}
		raw, _ := readAll(t, c)
		took := time.Since(start)
		if raw != "" {
			t.Errorf("%s: answered %q", name, raw)
		}
		if took < deadline-50*time.Millisecond || took > deadline+700*time.Millisecond {
			t.Errorf("%s: closed after %v, want about %v", name, took, deadline)
		}
	}
}

// dialSmallBuffer connects with a receive buffer the kernel's smallest,
// set before the connection so that the window stays small: a response
// not read then fills it and the server's send buffer, and the server's
// write blocks.
func dialSmallBuffer(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that asks and does not read is closed once the response's
// write deadline has passed: its connection's slot is free again.
func TestServeWriteDeadline(t *testing.T) {
	big := func(w *Writer) { w.b = make([]byte, 16<<20) } // more than the socket buffers hold
	ts := startServer(t, big, func(s *server) {
		s.writeTimeout = 300 * time.Millisecond
		s.lingerTimeout = time.Hour // only the write deadline can free the slot
		s.loop = connserve.New("metrics", 1, nil)
	})
	stuck := dialSmallBuffer(t, ts.addr)
	io.WriteString(stuck, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the stuck client to hold the only slot", time.Second, func() bool { return ts.s.loop.Busy() == 1 })
	waitFor(t, "the slot freed by the write deadline", 2*time.Second, func() bool { return ts.s.loop.Busy() == 0 })
	// Its connection was closed: reading hits its end (or a reset, the
	// server having left most of the response unsent).
	stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, stuck)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stuck client's connection: %v", err)
	}
}

// At most maxConns connections are served at once: more are closed at
// once, without an answer, and a scrape is served again as soon as the
// idle ones reach their head deadline.
func TestServeConcurrencyCap(t *testing.T) {
	const deadline = 400 * time.Millisecond
	var e exposition
	ts := startServer(t, e.write, func(s *server) { s.headTimeout = deadline })
	idle := make([]net.Conn, maxConns)
	for i := range idle {
		idle[i] = dial(t, ts.addr)
	}
	waitFor(t, "every idle connection accepted", time.Second, func() bool { return ts.s.loop.Busy() == maxConns })
	for range 3 {
		c := dial(t, ts.addr)
		raw, took := readAll(t, c)
		if raw != "" || took > deadline/2 {
			t.Errorf("a connection over the cap: read %q, closed after %v", raw, took)
		}
	}
	start := time.Now()
	want := e.body()
	waitFor(t, "a scrape served again", 3*time.Second, func() bool {
		c := dial(t, ts.addr)
		defer c.Close()
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		// Refused: closed at once, reset if the request arrived unread.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		raw := string(b)
		if raw == "" && (err == nil || errors.Is(err, syscall.ECONNRESET)) {
			return false
		}
		if err != nil {
			t.Fatalf("a scrape: %v", err)
		}
		checkResponse(t, raw, "HTTP/1.1 200 OK", okHeaders(len(want)), want)
		return true
	})
	if took := time.Since(start); took < deadline/2 {
		t.Errorf("a scrape was served after %v, before the idle connections' deadline", took)
	}
	for _, c := range idle {
		if raw, _ := readAll(t, c); raw != "" {
			t.Errorf("an idle connection was answered %q", raw)
		}
	}
}

// When ctx is done the listener is closed, so are the connections in
// flight (one waiting for its head, one whose response is not read), and
// every goroutine the server started returns.
func TestServeCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	big := func(w *Writer) { w.b = make([]byte, 16<<20) }
	s := newServer(big, slog.New(slog.DiscardHandler))
	srv := testutil.StartServer(t, s.serve)
	addr := srv.Addr
	waiting := dial(t, addr)
	writing := dialSmallBuffer(t, addr)
	io.WriteString(writing, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "two connections in flight", time.Second, func() bool { return s.loop.Busy() == 2 })
	time.Sleep(50 * time.Millisecond) // the second's write under way
	if !srv.Stop(time.Second) {
		t.Fatal("the accepting loop did not return")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts")
	}
	if raw, took := readAll(t, waiting); raw != "" || took > time.Second {
		t.Errorf("the waiting connection: read %q, closed after %v", raw, took)
	}
	writing.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, writing); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the writing connection was not closed: %v", err)
	}
	waitFor(t, "the server's goroutines to return", 2*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}

// Serve: nothing for an empty address, a listening error named after the
// option, one log line when serving and none for bad requests.
func TestServe(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var e exposition
	if addr, err := Serve(t.Context(), "", e.write, log); addr != nil || err != nil {
		t.Errorf("empty address: %v %v", addr, err)
	}
	addr, err := Serve(t.Context(), "127.0.0.1:0", e.write, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(t.Context(), addr.String(), e.write, log); err == nil || !strings.HasPrefix(err.Error(), "metrics-listen: ") {
		t.Errorf("listening on a port in use: %v", err)
	}
	want := e.body()
	checkResponse(t, exchange(t, addr.String(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 200 OK", okHeaders(len(want)), want)
	exchange(t, addr.String(), "SSH-2.0-x\r\n")
	exchange(t, addr.String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `msg="metrics served" listen=`+addr.String()) {
		t.Errorf("logs:\n%s", logs)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Whatever a client sends, the head's parser answers 0 (a request to
// serve, with a method and a path) or 400, and never panics.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD http://h/metrics?x HTTP/1.0\n\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b)
		if end < 0 {
			requestLinePrefixOK(b)
			return
		}
		r, status := parseHead(b[:end])
		switch status {
		case 400:
		case 0:
			if r.method == "" || r.path == "" || (r.path[0] != '/' && r.path != "*") {
				t.Fatalf("accepted %q as method %q path %q", b[:end], r.method, r.path)
			}
		default:
			t.Fatalf("status %d for %q", status, b[:end])
		}
	})
}
