package control

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, mayChange func(Peer) bool) (path string, seen *[]string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "control.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var who []string
	srv := &Server{
		Handle: func(_ context.Context, req Request, w string) Response {
			who = append(who, w)
			return Response{Version: Version, OK: true, Status: &Status{}}
		},
		MayChange: mayChange,
		Log:       slog.New(slog.DiscardHandler),
	}
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path, &who
}

// The server learns who called from the kernel: the uid it reports is this
// test's own, whatever the request says.
func TestServerPeerAndPermissions(t *testing.T) {
	path, who := serve(t, func(p Peer) bool { return p.UID == os.Getuid() && p.PID == os.Getpid() })
	if _, err := Do(context.Background(), path, Request{Command: CmdStatus}); err != nil {
		t.Fatal(err)
	}
	if _, err := Do(context.Background(), path, Request{Command: CmdDrain, Realserver: "10.0.0.1"}); err != nil {
		t.Fatalf("a permitted change: %v", err)
	}
	if len(*who) != 2 || !strings.HasPrefix((*who)[1], "uid ") {
		t.Fatalf("handler saw callers %q", *who)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode %v (%v), want 0666", fi.Mode(), err)
	}

	denied, who2 := serve(t, func(Peer) bool { return false })
	if _, err := Do(context.Background(), denied, Request{Command: CmdStatus}); err != nil {
		t.Fatalf("reading needs no permission: %v", err)
	}
	for _, cmd := range []string{CmdDrain, CmdMaint, CmdReady} {
		_, err := Do(context.Background(), denied, Request{Command: cmd, Realserver: "10.0.0.1"})
		if !IsDenied(err) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s without permission: %v", cmd, err)
		}
	}
	if len(*who2) != 1 {
		t.Fatalf("refused changes reached the handler: %q", *who2)
	}
}

func TestServerMalformedAndUnreachable(t *testing.T) {
	path, who := serve(t, func(Peer) bool { return true })
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("{not json\n"))
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil || r.OK || !strings.Contains(r.Error, "malformed request") {
		t.Fatalf("malformed request answered %+v (%v)", r, err)
	}
	c.Close()
	if len(*who) != 0 {
		t.Fatalf("a malformed request reached the handler")
	}
	if _, err := Do(context.Background(), filepath.Join(t.TempDir(), "nothing.sock"), Request{Command: CmdStatus}); err == nil ||
		!strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("no socket: %v", err)
	}
}

// The supplementary groups come from the kernel (SO_PEERGROUPS), so they
// are right even where /proc/PID/status cannot be read (the packaged
// master runs with ProtectProc=invisible).
func TestServerPeerGroupsFromKernel(t *testing.T) {
	got := make(chan []int, 1)
	path, _ := serve(t, func(p Peer) bool { got <- p.Groups; return true })
	if _, err := Do(context.Background(), path, Request{Command: CmdDrain, Realserver: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.Getgroups()
	g := <-got
	slices.Sort(g)
	slices.Sort(want)
	if !slices.Equal(g, want) {
		t.Fatalf("peer groups %v, want this process's %v", g, want)
	}
}

func TestPeerGroupsDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("unix", path); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.(*net.UnixConn).SyscallConn()
	var gs []int
	var gerr error
	raw.Control(func(fd uintptr) { gs, gerr = peerGroups(int(fd)) })
	want, _ := os.Getgroups()
	slices.Sort(gs)
	slices.Sort(want)
	if gerr != nil || !slices.Equal(gs, want) {
		t.Fatalf("SO_PEERGROUPS: %v %v, want %v", gs, gerr, want)
	}
}
