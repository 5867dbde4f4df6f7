package httpget

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// serve answers each connection with reply, written as it is, and sends
// the request head it read on the returned channel.
func serve(t *testing.T, reply string) (*url.URL, <-chan string) {
	t.Helper()
	heads := make(chan string, 16)
	addr := testutil.ServeConns(t, func(c net.Conn) {
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			var head strings.Builder
			for {
				l, err := br.ReadString('\n')
				head.WriteString(l)
				if err != nil || l == "\r\n" {
					break
				}
			}
			heads <- head.String()
			io.WriteString(c, reply)
		}()
	})
	u, _ := url.Parse("http://" + addr + "/health?x=1")
	return u, heads
}

func get(t *testing.T, u *url.URL, method string) (*Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	r, err := Do(ctx, Request{URL: u, Method: method, Header: []string{"User-Agent: test"}, HeadMax: 1024})
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

// The request is exactly what a health check should send: one request,
// the Host, the caller's headers, and that the connection closes after.
func TestRequestBytes(t *testing.T) {
	u, heads := serve(t, "HTTP/1.1 200 OK\r\n\r\n")
	if _, err := get(t, u, "HEAD"); err != nil {
		t.Fatal(err)
	}
	want := "HEAD /health?x=1 HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
	if got := <-heads; got != want {
		t.Errorf("server read %q, want %q", got, want)
	}
}

func TestResponses(t *testing.T) {
	for _, tc := range []struct {
		name, reply, method string
		code                int
		status, location    string
		body                string // what ReadBody(8) returns
		bodyErr             bool
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n55\n", "GET", 200, "200 OK", "", "55\n", false},
		{"http/1.0, until close", "HTTP/1.0 200 OK\r\n\r\n42", "GET", 200, "200 OK", "", "42", false},
		{"no reason", "HTTP/1.1 503\r\n\r\n", "GET", 503, "503", "", "", false},
		{"bare LF", "HTTP/1.1 204 No Content\nX: y\n\n", "GET", 204, "204 No Content", "", "", false},
		{"location", "HTTP/1.1 302 Found\r\nlocation:  /next \r\nContent-Length: 0\r\n\r\n", "GET", 302, "302 Found", "/next", "", false},
		{"interim skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n7", "GET", 200, "200 OK", "", "7", false},
		{"body cut at the limit", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789abcdefghij", "GET", 200, "200 OK", "", "01234567", false},
		{"body shorter than stated", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12", "GET", 200, "200 OK", "", "12", true},
		{"length bounds the body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n12345", "GET", 200, "200 OK", "", "12", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\n98\r\n1\r\n\n\r\n0\r\nTrailer: x\r\n\r\n", "GET", 200, "200 OK", "", "98\n", false},
		{"chunked beyond the limit", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n6\r\n012345\r\n6\r\n6789ab\r\n0\r\n\r\n", "GET", 200, "200 OK", "", "01234567", false},
		{"chunked, bad size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "GET", 200, "200 OK", "", "", true},
		{"chunked, cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n12", "GET", 200, "200 OK", "", "12", true},
		{"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", 200, "200 OK", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := serve(t, tc.reply)
			r, err := get(t, u, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tc.code || r.Status != tc.status || r.Location != tc.location {
				t.Errorf("got %d %q location %q, want %d %q %q", r.Code, r.Status, r.Location, tc.code, tc.status, tc.location)
			}
			b, err := r.ReadBody(8)
			if string(b) != tc.body || (err != nil) != tc.bodyErr {
				t.Errorf("body %q, %v; want %q, error %v", b, err, tc.body, tc.bodyErr)
			}
		})
	}
}

// What is not an HTTP/1.x response is an error, whatever it is.
func TestNotHTTP(t *testing.T) {
	for _, tc := range []struct{ name, reply string }{
		{"ssh", "SSH-2.0-OpenSSH_9.2\r\n"},
		{"binary", "\x00\x01\x02\xff\xfe garbage\r\n\r\n"},
		{"closed at once", ""},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"short code", "HTTP/1.1 20 OK\r\n\r\n"},
		{"code and text run together", "HTTP/1.1 200OK\r\n\r\n"},
		{"closed in the headers", "HTTP/1.1 200 OK\r\nServer: x\r\n"},
		{"header without a colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
		{"only interim", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := serve(t, tc.reply)
			if r, err := get(t, u, "GET"); !errors.Is(err, ErrNotHTTP) {
				t.Fatalf("got %+v, %v; want ErrNotHTTP", r, err)
			}
		})
	}
}

// A head longer than HeadMax is refused, however it is cut into lines.
func TestHeadTooLong(t *testing.T) {
	for _, reply := range []string{
		"HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 100) + "\r\n",
		"HTTP/1.1 200 " + strings.Repeat("O", 5000) + "\r\n\r\n",
	} {
		u, _ := serve(t, reply)
		if _, err := get(t, u, "GET"); !errors.Is(err, ErrHeadSize) {
			t.Fatalf("err = %v, want ErrHeadSize", err)
		}
	}
	// And just below it, accepted.
	u, _ := serve(t, "HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Pad: 0123456789\r\n", 40)+"\r\n")
	if _, err := get(t, u, "GET"); err != nil {
		t.Fatal(err)
	}
}

// The context bounds everything: a server that never answers, and one
// that stops in the middle of a body.
func TestContextBounds(t *testing.T) {
	// Headers and a bit of the promised body, then silence.
	addr := testutil.ServeConns(t, func(c net.Conn) {
		go io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n12")
	})
	u, _ := url.Parse("http://" + addr + "/")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	r, err := Do(ctx, Request{URL: u, Method: "GET", HeadMax: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ReadBody(1000); err == nil {
		t.Fatal("a body that stops coming is read without an error")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("took %v with a 200 ms context", took)
	}

	// Cancelled while waiting for the head: the error is the context's.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	u, _ = url.Parse("http://" + silent.Addr().String() + "/")
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := Do(ctx, Request{URL: u, Method: "GET", HeadMax: 1024})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do still waits for a head 10 s after its context was cancelled")
	}

	// Past its deadline: the error is the context's too, whichever of the
	// connection's deadline and the context's timer fires first.
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := Do(ctx, Request{URL: u, Method: "GET", HeadMax: 1024})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	}
}

// Whatever a hostile server sends, Do and ReadBody end, within their
// limits, and never panic.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n55\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n98\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 302 x\r\nLocation: /\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		client, server := net.Pipe()
		go func() {
			go io.Copy(io.Discard, server)
			io.WriteString(server, reply)
			server.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		u, _ := url.Parse("http://x/")
		r, err := exchange(ctx, client, Request{URL: u, Method: "GET", HeadMax: 512})
		if err != nil {
			client.Close()
			return
		}
		r.stop = func() bool { return true }
		b, _ := r.ReadBody(64)
		if len(b) > 64 {
			t.Fatalf("ReadBody(64) returned %d bytes", len(b))
		}
		r.Close()
	})
}
