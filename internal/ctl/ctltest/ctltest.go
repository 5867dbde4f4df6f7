// Package ctltest is a stand-in for the master's control socket, for
// tests of feedbackctl: a unix socket that reads one control.Request per
// connection, as the master does, and answers whatever the test says.
package ctltest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
)

// Answer is how the server replies to one request: Raw, when set, is
// written as it is (malformed answers, answers from a newer master);
// otherwise Response is encoded; Hangup closes without a word.
type Answer struct {
	Response control.Response
	Raw      []byte
	Hangup   bool
}

// Server is a fake control socket at Path.
type Server struct {
	Path string

	ln     net.Listener
	answer func(control.Request) Answer
	mu     sync.Mutex
	reqs   []control.Request
	wg     sync.WaitGroup
}

// maxSunPath is the room for a unix socket's path (sun_path, 108 bytes
// with its terminating NUL).
const maxSunPath = 107

// Start listens on a socket in a fresh temporary directory and answers
// each request with answer(request). The server stops when the test ends.
func Start(t testing.TB, answer func(control.Request) Answer) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	if len(path) > maxSunPath {
		t.Fatalf("socket path %s is longer than a unix socket allows (%d bytes); set TMPDIR shorter", path, maxSunPath)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Path: path, ln: ln, answer: answer}
	s.wg.Add(1)
	go s.serve(t)
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// Respond is an answer function that always gives resp.
func Respond(resp control.Response) func(control.Request) Answer {
	return func(control.Request) Answer { return Answer{Response: resp} }
}

func (s *Server) serve(t testing.TB) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			t.Errorf("ctltest: accept: %v", err)
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			// Every wait has a deadline: a client that never sends must
			// not hang the test's cleanup.
			c.SetDeadline(time.Now().Add(30 * time.Second))
			var req control.Request
			if err := json.NewDecoder(io.LimitReader(c, control.MaxRequest)).Decode(&req); err != nil {
				t.Errorf("ctltest: reading the request: %v", err)
				return
			}
			s.mu.Lock()
			s.reqs = append(s.reqs, req)
			s.mu.Unlock()
			a := s.answer(req)
			switch {
			case a.Hangup:
				return
			case a.Raw != nil:
				c.Write(a.Raw)
			default:
				if err := json.NewEncoder(c).Encode(a.Response); err != nil {
					t.Errorf("ctltest: writing the answer: %v", err)
				}
			}
		}()
	}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []control.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]control.Request(nil), s.reqs...)
}
