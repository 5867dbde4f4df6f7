package monitor

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer ln.Close()
	closedLn, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := closedLn.Addr().String()
	closedLn.Close()

	var log testutil.SyncBuffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&log, nil))}
	m, err := New("tcp", map[string]string{"connect": open, "timeout": "1"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := measureCtx(t, m); err != nil || h != 100 {
		t.Fatalf("open port: %d, %v", h, err)
	}
	m, _ = New("tcp", map[string]string{"connect": closed}, opts)
	if h, err := measureCtx(t, m); err != nil || h != 0 || !strings.Contains(log.String(), "refused") {
		t.Fatalf("closed port: %d, %v; log:\n%s", h, err, log.String())
	}
}

// A connection that is neither accepted nor refused (a firewall dropping
// SYNs) ends at the timeout, as health 0.
func TestTCPTimeout(t *testing.T) {
	var log testutil.SyncBuffer
	m, err := newTCP(map[string]string{"connect": "192.0.2.1:80", "timeout": "0.1"}, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if h, err := measureCtx(t, m); err != nil || h != 0 || !strings.Contains(log.String(), "no connection within 100ms") {
		t.Fatalf("got %d, %v; log:\n%s", h, err, log.String())
	}
	// Shutting down is not a failed check.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Measure(ctx); err == nil {
		t.Fatal("canceled Measure reported a health")
	}
}

func TestTCPKeys(t *testing.T) {
	for _, p := range []map[string]string{
		{},
		{"connect": "127.0.0.1"},
		{"connect": "127.0.0.1:0"},
		{"connect": "::1"},
		{"connect": "127.0.0.1:80", "timeout": "0.01"},
	} {
		if _, err := New("tcp", p, Options{}); err == nil {
			t.Errorf("New(tcp, %v) accepted", p)
		}
	}
}
