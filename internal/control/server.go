package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Peer is who is on the other end of a control connection, from the
// kernel (SO_PEERCRED), not from anything the client says.
type Peer struct {
	UID, GID, PID int
	Groups        []int // supplementary groups, from /proc/PID/status
}

func (p Peer) String() string {
	s := "uid " + strconv.Itoa(p.UID)
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		s += " (" + u.Username + ")"
	}
	return s + " pid " + strconv.Itoa(p.PID)
}

// InGroup reports whether the peer has gid as its primary or a
// supplementary group.
func (p Peer) InGroup(gid int) bool {
	if p.GID == gid {
		return true
	}
	for _, g := range p.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Mutating says whether a command changes state (and needs MayChange).
func Mutating(cmd string) bool {
	return cmd == CmdDrain || cmd == CmdMaint || cmd == CmdReady
}

// Server answers control requests on a unix socket.
type Server struct {
	// Handle answers one request; who names the caller for the journal.
	Handle func(ctx context.Context, req Request, who string) Response
	// MayChange says whether a peer may run mutating commands; everyone
	// may read.
	MayChange func(Peer) bool
	Log       *slog.Logger
}

// Serve accepts connections on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.Log.Error("control socket: accept failed", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(ctx, c)
		}()
	}
}

func (s *Server) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	// A client that connects and says nothing must not hold a goroutine.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	peer, err := peerOf(c)
	if err != nil {
		s.Log.Warn("control socket: cannot tell who connected; closing", "err", err)
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, MaxRequest)).Decode(&req); err != nil {
		s.answer(c, Response{Version: Version, Error: "malformed request: " + err.Error()})
		return
	}
	if Mutating(req.Command) && !s.MayChange(peer) {
		s.Log.Warn("control request refused: not allowed to change state", "command", req.Command,
			"realserver", req.Realserver, "by", peer.String(), "reason", "permission denied")
		s.answer(c, Response{Version: Version, Denied: true,
			Error: fmt.Sprintf("permission denied: %s may read the status but not change it (root or the control-group may)", peer)})
		return
	}
	s.answer(c, s.Handle(ctx, req, peer.String()))
}

func (s *Server) answer(c net.Conn, r Response) {
	if err := json.NewEncoder(c).Encode(r); err != nil {
		s.Log.Debug("control socket: answer not delivered", "err", err)
	}
}

// peerOf reads the peer's credentials from the kernel.
func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("not a unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, cerr
	}
	p := Peer{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
	// The supplementary groups from the kernel (SO_PEERGROUPS): the
	// packaged master runs with ProtectProc=invisible and cannot read the
	// caller's /proc/PID/status, which is only the fallback.
	var gerr error
	if err := raw.Control(func(fd uintptr) { p.Groups, gerr = peerGroups(int(fd)) }); err != nil || gerr != nil {
		p.Groups = procGroups(p.PID)
	}
	return p, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13): the peer's supplementary
// groups as they were when it connected.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == unix.ERANGE && int(n/4) > len(buf) {
			buf = make([]uint32, n/4)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		gs := make([]int, 0, n/4)
		for _, g := range buf[:n/4] {
			gs = append(gs, int(g))
		}
		return gs, nil
	}
}

// procGroups reads a process's supplementary groups; SO_PEERCRED carries
// only the primary one. A process gone by now has none.
func procGroups(pid int) []int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var gs []int
			for _, f := range strings.Fields(rest) {
				if g, err := strconv.Atoi(f); err == nil {
					gs = append(gs, g)
				}
			}
			return gs
		}
	}
	return nil
}

// Listen opens the control socket at path itself, for a master started
// without systemd: a stale socket from an earlier run is replaced, and the
// socket is world-connectable (0666) since the server checks every
// caller's credentials before it changes anything.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
