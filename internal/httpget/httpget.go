// Package httpget makes one HTTP/1.1 request over a new connection, for a
// health check: it reads the status line and the headers, and the start
// of the body when asked to.
//
// Why not net/http: nothing else in the agent needs it, and net/http
// (its HTTP/2 half, MIME, multipart, cookies, proxies, gzip) was the
// largest part of the agent's executable. Linked, it spread the pages an
// idle agent touches over more of the file: 7.8 MB with it (and the
// metrics server's use of it), 6.3 MB without, and a resident set at rest
// of 5.57 MB against 4.96 MB (median, side by side, docs/benchmarks.md,
// "The agent without an HTTP stack"). A health check needs a
// small part of HTTP: one request, a status, a Location and a few bytes of
// body, on a connection of its own that is closed after.
//
// What it does not do, on purpose: keep connections, HTTP/2, proxies,
// cookies, compression, request bodies. A response's head may be at most
// Request.HeadMax bytes; a body is read only up to the limit asked for,
// and the rest is dropped with the connection.
package httpget

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Request is what to ask.
type Request struct {
	URL    *url.URL // http or https, with a host
	Method string   // GET or HEAD
	// Header lines sent after Host (for example User-Agent), without
	// CR LF; Host and Connection: close are always sent.
	Header []string
	// TLS is the configuration for https; nil is the system's roots and
	// Go's defaults. ServerName is filled from the URL when empty.
	TLS *tls.Config
	// HeadMax bounds the response's status line and headers together.
	HeadMax int
}

// Response is a response's head, and the connection to read its body from.
type Response struct {
	Code     int    // the status code
	Status   string // the code and its reason, as the server wrote them ("503 Service Unavailable")
	Location string // the Location header, "" without one
	// Took is the time from writing the request to the end of the head.
	Took time.Duration

	conn    net.Conn
	br      *bufio.Reader
	head    bool  // a response to HEAD: no body whatever the headers say
	length  int64 // Content-Length, -1 when none was given
	chunked bool
	stop    func() bool
}

// maxInterim bounds the 1xx responses (100 Continue, 103 Early Hints)
// skipped before the final one: a server that only ever sends those is
// not answering.
const maxInterim = 5

// Errors for a response that is not HTTP/1.x, or too large to be one.
var (
	ErrNotHTTP  = errors.New("the answer is not an HTTP/1.x response")
	ErrHeadSize = errors.New("the response's status line and headers are too long")
)

// Do connects to the URL's host, sends the request and reads the response's
// head. ctx bounds all of it and the reading of the body after: its
// deadline is the connection's, and its end closes the connection.
// Close the Response when done with it.
func Do(ctx context.Context, req Request) (*Response, error) {
	u := req.URL
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	// The context's end interrupts whatever the connection is doing,
	// the TLS handshake included; its deadline is also the connection's,
	// so that a read that is due to fail does so without this.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	r, err := exchange(ctx, conn, req)
	if err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The connection's deadline is the context's, and its timer
		// can fire a moment before the context's own: the same end.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, context.DeadlineExceeded
		}
		return nil, err
	}
	r.stop = stop
	return r, nil
}

func exchange(ctx context.Context, conn net.Conn, req Request) (*Response, error) {
	u := req.URL
	if u.Scheme == "https" {
		cfg := req.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		} else {
			cfg = cfg.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		// HTTP/1.1 is all this package speaks; say so in the handshake
		// rather than let a server pick h2.
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		conn = tc
	}
	var b strings.Builder
	b.WriteString(req.Method)
	b.WriteByte(' ')
	b.WriteString(u.RequestURI())
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(u.Host)
	b.WriteString("\r\n")
	for _, h := range req.Header {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	began := time.Now()
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	r := &Response{conn: conn, head: req.Method == "HEAD"}
	lim := &io.LimitedReader{R: conn, N: int64(req.HeadMax)}
	r.br = bufio.NewReaderSize(lim, 4<<10)
	for i := 0; ; i++ {
		if err := r.readHead(); err != nil {
			if lim.N <= 0 {
				err = fmt.Errorf("%w (more than %d bytes)", ErrHeadSize, req.HeadMax)
			}
			return nil, err
		}
		// 101 Switching Protocols is final, and not an answer to this.
		if r.Code >= 200 || r.Code == 101 {
			break
		}
		if i == maxInterim {
			return nil, fmt.Errorf("%w: only interim (1xx) responses", ErrNotHTTP)
		}
	}
	r.Took = time.Since(began)
	// The head is read: the body's reads are bounded by the caller's
	// limit and the deadline, not by HeadMax.
	lim.N = 1 << 62
	return r, nil
}

// readHead reads one status line and its headers.
func (r *Response) readHead() error {
	line, err := r.line()
	if err != nil {
		if errors.Is(err, io.EOF) {
			// The server closed without a full status line.
			return fmt.Errorf("%w (connection closed)", ErrNotHTTP)
		}
		return err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	proto, status, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || len(status) < 3 {
		return fmt.Errorf("%w: %.40q", ErrNotHTTP, line)
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 100 || code > 999 || (len(status) > 3 && status[3] != ' ') {
		return fmt.Errorf("%w: %.40q", ErrNotHTTP, line)
	}
	r.Code, r.Status = code, strings.TrimSpace(status)
	r.Location, r.length, r.chunked = "", -1, false
	for {
		line, err := r.line()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w (connection closed in the headers)", ErrNotHTTP)
			}
			return err
		}
		if line == "" {
			return nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			// A folded continuation line, obsolete; nothing this
			// package reads is folded.
			if line[0] == ' ' || line[0] == '\t' {
				continue
			}
			return fmt.Errorf("%w: header line %.40q", ErrNotHTTP, line)
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "location":
			r.Location = value
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("%w: Content-Length %.40q", ErrNotHTTP, value)
			}
			r.length = n
		case "transfer-encoding":
			// chunked is always the last coding when present.
			codings := strings.Split(value, ",")
			r.chunked = strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked")
		}
	}
}

// line reads one line of the head, without its CR LF.
func (r *Response) line() (string, error) {
	s, err := r.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// ReadBody returns up to max bytes of the body: fewer when the body is
// shorter. A body that ends before its stated length, or that is still
// coming when the context ends, is an error.
func (r *Response) ReadBody(max int) ([]byte, error) {
	if r.head || r.Code == 204 || r.Code == 304 || (r.Code >= 100 && r.Code < 200) {
		return nil, nil
	}
	var body io.Reader = r.br
	switch {
	case r.chunked:
		body = &chunkReader{br: r.br}
	case r.length >= 0:
		body = io.LimitReader(r.br, r.length)
	}
	b, err := io.ReadAll(io.LimitReader(body, int64(max)))
	if err != nil {
		return b, err
	}
	if !r.chunked && r.length > int64(len(b)) && len(b) < max {
		return b, fmt.Errorf("the body ended after %d of %d bytes: %w", len(b), r.length, io.ErrUnexpectedEOF)
	}
	return b, nil
}

// Close closes the connection; what the server still sends is dropped.
func (r *Response) Close() error {
	r.stop()
	return r.conn.Close()
}

// chunkReader decodes a chunked body (RFC 9112, 7.1), ignoring chunk
// extensions and trailers.
type chunkReader struct {
	br   *bufio.Reader
	left int64 // bytes left in the current chunk
	done bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return 0, unexpected(err)
		}
		size, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: chunk size %.20q", ErrNotHTTP, line)
		}
		if n == 0 {
			c.done = true
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		// The CR LF after the chunk's data.
		var end string
		if end, err = c.br.ReadString('\n'); err == nil && strings.TrimRight(end, "\r\n") != "" {
			err = fmt.Errorf("%w: no line end after a chunk", ErrNotHTTP)
		}
	}
	if err != nil {
		return n, unexpected(err)
	}
	return n, nil
}

// unexpected turns the end of the connection inside a body into an error.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
