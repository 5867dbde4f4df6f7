package promtext

// The /metrics server is the package's own, not net/http's. Linking
// net/http made the agent's executable 7.8 MB instead of 6.3 MB and its
// idle resident set 5.57 MB instead of 4.96 MB (median, side by side,
// with the http monitor's client replaced as well; docs/benchmarks.md):
// net/http's types and code spread the pages an idle agent touches over
// more of the executable.
// A Prometheus scrape needs little of HTTP, so this is all there is:
//
//   - HTTP/1.0 and 1.1, one request per connection: every response says
//     Connection: close and the connection is closed after it (no
//     keep-alive; one scrape every 15 s does not need it);
//   - GET and HEAD of /metrics (the query string ignored); any other path
//     is 404, any other method 405; a request body is never read;
//   - no gzip, no chunked encoding, no TLS, no other path.
//
// What bounds it: the request head (request line and headers, 8 KB at
// most) must arrive within 10 s of the connection, the response be
// written within 10 s, and at most 8 connections are served at once;
// more are closed as soon as they are accepted.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/connserve"
)

// Limits of the metrics server.
const (
	// maxHead is the most a request line and its headers may take,
	// terminating empty line included; Prometheus sends about 300 bytes.
	maxHead = 8 << 10
	// maxConns is the most connections served at once. A scraper needs
	// one; a flood of idle connections holds at most this many sockets
	// and head buffers, each for at most headTimeout.
	maxConns = 8
	// maxDiscard is how much the server reads, after answering, of what
	// the client sent beyond the head (a body), so that closing with
	// unread input does not reset the connection under the answer.
	maxDiscard = 64 << 10
)

// Timeouts of one connection; the tests shorten them.
var (
	// headTimeout bounds the time from accept to the head's end, as
	// net/http's ReadHeaderTimeout did.
	headTimeout = 10 * time.Second
	// writeTimeout bounds writing the response.
	writeTimeout = 10 * time.Second
	// lingerTimeout bounds reading what the client still sends after the
	// response, until it closes.
	lingerTimeout = time.Second
)

// Serve serves what write writes at /metrics on addr (metrics-listen)
// until ctx is done, and returns the address it listens on; nothing when
// addr is empty. write is called once per GET or HEAD of /metrics, from
// up to 8 goroutines at once (maxConns). Failing to listen is an error for
// the caller to stop on: an operator who asked for metrics and gets none
// would only find out from an alert that never fires.
func Serve(ctx context.Context, addr string, write func(*Writer), log *slog.Logger) (net.Addr, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics-listen: %w", err)
	}
	s := newServer(write, log)
	go s.serve(ctx, ln)
	log.Info("metrics served", "listen", ln.Addr().String(), "path", "/metrics")
	return ln.Addr(), nil
}

type server struct {
	write func(*Writer)
	loop  *connserve.Loop

	headTimeout, writeTimeout, lingerTimeout time.Duration
}

func newServer(write func(*Writer), log *slog.Logger) *server {
	return &server{
		write: write, loop: connserve.New("metrics", maxConns, log),
		headTimeout: headTimeout, writeTimeout: writeTimeout, lingerTimeout: lingerTimeout,
	}
}

// serve accepts on ln until ctx is done, then closes ln and every
// connection still open. It returns when ln is closed.
func (s *server) serve(ctx context.Context, ln net.Listener) {
	s.loop.Serve(ctx, ln, s.conn)
}

// conn answers the one request of c; the loop closes it after.
func (s *server) conn(c net.Conn) {
	if c.SetReadDeadline(time.Now().Add(s.headTimeout)) != nil {
		return
	}
	req, status := readHead(c)
	var hdr, body []byte
	switch {
	case status < 0:
		return
	case status != 0:
		hdr, body = errorResponse(status)
	case req.path != "/metrics":
		hdr, body = errorResponse(404)
	case req.method != "GET" && req.method != "HEAD":
		hdr, body = errorResponse(405)
	default:
		var w Writer
		s.write(&w)
		body = w.Bytes()
		hdr = responseHead(200, ContentType, len(body), "")
		if req.method == "HEAD" {
			body = nil
		}
	}
	if c.SetWriteDeadline(time.Now().Add(s.writeTimeout)) != nil {
		return
	}
	bufs := net.Buffers{hdr, body}
	if _, err := bufs.WriteTo(c); err != nil {
		return
	}
	// Half-close, then read what the client still sends until it
	// closes: closing a socket with unread input makes the kernel send a
	// reset, which can destroy the answer before the client reads it.
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	if c.SetReadDeadline(time.Now().Add(s.lingerTimeout)) != nil {
		return
	}
	buf := make([]byte, 512)
	for n := 0; n < maxDiscard; {
		m, err := c.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

// request is what the server looks at in a request.
type request struct{ method, path string }

// readHead reads c up to the end of the request head and parses it.
// status is 0 for a request to answer; otherwise the request is refused
// with it: 400 for a malformed head (as soon as its first line shows it
// is not HTTP/1.x, so that a client speaking another protocol is not kept
// waiting), 431 for one over maxHead, and -1, which means no answer but
// the connection's close, when the client closed or timed out before the
// head's end.
func readHead(c net.Conn) (request, int) {
	// Prometheus' head fits the first buffer; it grows up to maxHead.
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxHead {
				return request{}, 431
			}
			grown := make([]byte, len(buf), min(2*cap(buf), maxHead))
			copy(grown, buf)
			buf = grown
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := headEnd(buf); end >= 0 {
			return parseHead(buf[:end])
		}
		// The request line, whole or not yet, already wrong: answer now.
		line, _, whole := bytes.Cut(buf, []byte("\n"))
		if whole {
			if _, _, ok := parseRequestLine(bytes.TrimSuffix(line, []byte("\r"))); !ok {
				return request{}, 400
			}
		} else if !requestLinePrefixOK(line) {
			return request{}, 400
		}
		if err != nil {
			return request{}, -1
		}
	}
}

// headEnd is the length of the head in b, up to and including its empty
// line, or -1 when b does not hold it all. Lines end in CRLF or, as
// RFC 9112 lets a server accept, LF alone.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// requestLinePrefixOK says whether line, the beginning of a request
// line, may still become a valid one: printable ASCII and spaces, a
// method of token characters first.
func requestLinePrefixOK(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte("\r"))
	method := true
	for _, b := range line {
		switch {
		case b == ' ':
			method = false
		case b < 0x21 || b > 0x7e:
			return false
		case method && !isToken(b):
			return false
		}
	}
	return true
}

// parseHead parses a whole head: the request line, then header lines up
// to the empty one.
func parseHead(head []byte) (request, int) {
	var lines [][]byte
	for len(head) > 0 {
		line, rest, _ := bytes.Cut(head, []byte("\n"))
		lines = append(lines, bytes.TrimSuffix(line, []byte("\r")))
		head = rest
	}
	r, minor, ok := parseRequestLine(lines[0])
	if !ok {
		return request{}, 400
	}
	hosts := 0
	for _, l := range lines[1 : len(lines)-1] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || !allToken(name) || !fieldValueOK(value) {
			return request{}, 400 // obsolete line folding included
		}
		if bytes.EqualFold(name, []byte("Host")) {
			hosts++
		}
	}
	// RFC 9112 3.2: a server responds 400 to an HTTP/1.1 request without
	// Host, or with more than one.
	if hosts > 1 || (hosts == 0 && minor != '0') {
		return request{}, 400
	}
	return r, 0
}

// parseRequestLine parses method SP request-target SP HTTP-version
// (single spaces), for HTTP/1.x only; minor is the version's last digit.
// The request's path is the target's, without the query.
func parseRequestLine(line []byte) (r request, minor byte, ok bool) {
	parts := bytes.Split(line, []byte(" "))
	if len(parts) != 3 || len(parts[0]) == 0 || !requestLinePrefixOK(line) {
		return request{}, 0, false
	}
	method, target, version := parts[0], parts[1], parts[2]
	if len(version) != 8 || !bytes.HasPrefix(version, []byte("HTTP/1.")) || version[7] < '0' || version[7] > '9' {
		return request{}, 0, false
	}
	// absolute-form (through a proxy): the path is what follows the
	// authority.
	for _, scheme := range []string{"http://", "https://"} {
		if len(target) > len(scheme) && bytes.EqualFold(target[:len(scheme)], []byte(scheme)) {
			_, path, ok := bytes.Cut(target[len(scheme):], []byte("/"))
			target = append([]byte("/"), path...)
			if !ok {
				target = []byte("/")
			}
		}
	}
	path, _, _ := bytes.Cut(target, []byte("?"))
	if len(path) == 0 || (path[0] != '/' && string(target) != "*") { // "*": OPTIONS *, a 404
		return request{}, 0, false
	}
	return request{method: string(method), path: string(path)}, version[7], true
}

// isToken says whether b may be in a token (RFC 9110 5.6.2).
func isToken(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return b < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func allToken(s []byte) bool {
	for _, b := range s {
		if !isToken(b) {
			return false
		}
	}
	return true
}

// fieldValueOK says whether v is a field value: visible characters,
// spaces, tabs and obs-text, no other control character.
func fieldValueOK(v []byte) bool {
	for _, b := range v {
		if (b < 0x20 && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// reason is the reason phrase of a status the server sends.
func reason(status int) string {
	switch status {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 431:
		return "Request Header Fields Too Large"
	}
	return ""
}

// errorResponse is the head and body of an error response.
func errorResponse(status int) (hdr, body []byte) {
	body = []byte(strconv.Itoa(status) + " " + reason(status) + "\n")
	allow := ""
	if status == 405 {
		allow = "GET, HEAD"
	}
	return responseHead(status, "text/plain; charset=utf-8", len(body), allow), body
}

// responseHead is a response's status line and headers, and the empty
// line after them.
func responseHead(status int, contentType string, length int, allow string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, reason(status)...)
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 GMT")
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(length), 10)
	if allow != "" {
		b = append(b, "\r\nAllow: "...)
		b = append(b, allow...)
	}
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	return b
}
