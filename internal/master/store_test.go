package master

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// storePool is the destinations the store tests draw from: TCP and UDP,
// IPv4 and IPv6, and firewall-mark services of both families.
func storePool() []Ref {
	var pool []Ref
	for i := range 4 {
		rs4 := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		rs6 := netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i+1))
		pool = append(pool,
			Ref{Service: ipvs.ServiceKey{Protocol: 6, Address: netip.MustParseAddr("192.0.2.1"), Port: 80}, Dest: ipvs.DestKey{Address: rs4, Port: 80}},
			Ref{Service: ipvs.ServiceKey{Protocol: 17, Address: netip.MustParseAddr("192.0.2.1"), Port: 53}, Dest: ipvs.DestKey{Address: rs4, Port: 53}},
			Ref{Service: ipvs.ServiceKey{Protocol: 6, Address: netip.MustParseAddr("2001:db8::100"), Port: 443}, Dest: ipvs.DestKey{Address: rs6, Port: 443}},
			Ref{Service: ipvs.FWMarkKey(7, rs4), Dest: ipvs.DestKey{Address: rs4}},
			Ref{Service: ipvs.FWMarkKey(7, rs6), Dest: ipvs.DestKey{Address: rs6}},
		)
	}
	return pool
}

func sortedSet(m map[Ref]bool) []Ref {
	refs := make([]Ref, 0, len(m))
	for r := range m {
		refs = append(refs, r)
	}
	sortIDs(refs)
	return refs
}

// TestFileStoreAgainstAModel runs seeded random sequences of whole writes
// and appends against a set, and after each one checks that Load gives the
// set. After each append it also cuts the file at every byte inside what
// the append wrote, and pads the cut with zeros, as a crash can leave it:
// Load must then succeed and give the set before the append with a prefix
// of the append's lines applied, never anything else (a line cut inside
// an address could otherwise name another destination). A failure names
// the seed and the step; the steps before it are the shortest sequence
// that fails, since every step is checked.
func TestFileStoreAgainstAModel(t *testing.T) {
	pool := storePool()
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x5107e))
		dir := t.TempDir()
		f := FileStore{Path: filepath.Join(dir, "master.state")}
		model := map[Ref]bool{}
		if err := f.Save(nil); err != nil {
			t.Fatal(err)
		}
		for step := range 40 {
			fail := func(format string, a ...any) {
				t.Helper()
				data, _ := os.ReadFile(f.Path)
				t.Fatalf("seed %d, step %d: %s\nfile:\n%s", seed, step, fmt.Sprintf(format, a...), data)
			}
			if r.IntN(6) == 0 {
				model = map[Ref]bool{}
				for _, p := range pool {
					if r.IntN(2) == 0 {
						model[p] = true
					}
				}
				if err := f.Save(sortedSet(model)); err != nil {
					fail("Save: %v", err)
				}
			} else {
				var added, removed []Ref
				for range 1 + r.IntN(4) {
					p := pool[r.IntN(len(pool))]
					if r.IntN(2) == 0 {
						added = append(added, p)
					} else {
						removed = append(removed, p)
					}
				}
				before, _ := os.ReadFile(f.Path)
				// The states a crash may leave: removals first, then adds,
				// one line at a time.
				states := [][]Ref{sortedSet(model)}
				for _, p := range removed {
					delete(model, p)
					states = append(states, sortedSet(model))
				}
				for _, p := range added {
					model[p] = true
					states = append(states, sortedSet(model))
				}
				if err := f.Append(added, removed); err != nil {
					fail("Append: %v", err)
				}
				after, _ := os.ReadFile(f.Path)
				if !bytes.HasPrefix(after, before) {
					fail("Append rewrote what was there")
				}
				for n := len(before); n < len(after); n++ {
					for _, pad := range []int{0, 4096 - n%4096} {
						data := append(slices.Clone(after[:n]), make([]byte, pad)...)
						got, err := f.parse(data)
						if err != nil {
							fail("Load of the file cut at byte %d (+%d zeros): %v", n, pad, err)
						}
						if !slices.ContainsFunc(states, func(s []Ref) bool { return slices.Equal(s, got) }) {
							fail("Load of the file cut at byte %d (+%d zeros) = %v, not a prefix of the append's lines", n, pad, got)
						}
					}
				}
			}
			got, err := f.Load()
			if err != nil {
				fail("Load: %v", err)
			}
			if want := sortedSet(model); !slices.Equal(got, want) {
				fail("Load = %v, want %v", got, want)
			}
		}
	}
}

// TestFileStoreAppendsInPlace: an append adds to the file, without the
// temporary file and rename of a whole write; it needs the file to exist,
// so that a file removed under a running master is written whole again.
func TestFileStoreAppendsInPlace(t *testing.T) {
	pool := storePool()
	f := FileStore{Path: filepath.Join(t.TempDir(), "master.state")}
	if err := f.Append(pool[:1], nil); !os.IsNotExist(err) {
		t.Fatalf("Append to a missing file: %v, want ENOENT", err)
	}
	if err := f.Save(pool[:2]); err != nil {
		t.Fatal(err)
	}
	ino := func() uint64 {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	first := ino()
	if err := f.Append(pool[2:3], pool[:1]); err != nil {
		t.Fatal(err)
	}
	if ino() != first {
		t.Fatal("Append replaced the file")
	}
	data, _ := os.ReadFile(f.Path)
	want := "- " + formatRef(pool[0]) + "\n+ " + formatRef(pool[2]) + "\n"
	if !strings.HasSuffix(string(data), want) {
		t.Fatalf("file ends\n%s\nwant\n%s", data, want)
	}
	if got, _ := f.Load(); !slices.Equal(got, sortedSet(map[Ref]bool{pool[1]: true, pool[2]: true})) {
		t.Fatalf("Load = %v", got)
	}
	if err := f.Save(pool[1:3]); err != nil {
		t.Fatal(err)
	}
	if ino() == first {
		t.Fatal("Save wrote in place, not through a temporary file")
	}
}

// stateFileOf is a state file holding data.
func stateFileOf(t *testing.T, data string) FileStore {
	f := FileStore{Path: filepath.Join(t.TempDir(), "master.state")}
	if err := os.WriteFile(f.Path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFileStoreHandWritten: a list written by hand (the master stopped)
// is read whole, also without a newline at the end: only an appended line
// can be torn.
func TestFileStoreHandWritten(t *testing.T) {
	f := stateFileOf(t, "tcp 192.0.2.1:80 10.0.0.1:80\ntcp 192.0.2.1:80 10.0.0.2:80")
	got, err := f.Load()
	if err != nil || len(got) != 2 {
		t.Fatalf("Load = %v, %v; want both lines", got, err)
	}
}

// TestFileStoreBadLine: a line that is not a destination, followed by
// others, is damage the master must not guess around: Load names the
// file and the line.
func TestFileStoreBadLine(t *testing.T) {
	f := stateFileOf(t, "tcp 192.0.2.1:80 10.0.0.1:80\n+ tcp 192.0.2.1:80 10.0.0.\n+ tcp 192.0.2.1:80 10.0.0.2:80\n")
	_, err := f.Load()
	if err == nil || !strings.Contains(err.Error(), f.Path+":2:") {
		t.Fatalf("Load: %v, want an error naming %s:2", err, f.Path)
	}
}

// TestOwnerAppendsThenWritesWhole drives the owner with a real state file:
// joins and removals are appended in place; a restart, a failed write,
// appends outnumbering the list, and a clean stop each write it whole; and
// after every step the file lists exactly what the master owns.
func TestOwnerAppendsThenWritesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.state")
	r := newRigWith(t, httpOnly(), &flakyStore{file: &FileStore{Path: path}})
	ino := func() uint64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	lines := func(prefix string) int {
		data, _ := os.ReadFile(path)
		return strings.Count("\n"+string(data), "\n"+prefix)
	}
	same := func(step string) {
		t.Helper()
		got, err := r.store.Load()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if want := r.o.t.owned(); !slices.Equal(got, want) {
			data, _ := os.ReadFile(path)
			t.Fatalf("%s: the file lists %v, the master owns %v\n%s", step, got, want, data)
		}
	}
	rs := []netip.Addr{rs1, rs2, rs3, netip.MustParseAddr("10.0.0.14")}

	whole := ino()
	for i, a := range rs[:3] {
		if st := r.join(sessionID(i+1), peer(a), nil, http80); st[0] != necp.StatusAccepted {
			t.Fatalf("START of %v: %v", a, st)
		}
		same("join")
	}
	if ino() != whole || lines("+ ") != 3 {
		t.Fatalf("three joins: inode %d (was %d), %d appended lines, want the same file and 3", ino(), whole, lines("+ "))
	}

	r.gone(1, "agent closed the connection")
	r.advance(time.Minute) // quiesced, then removed at 0 connections
	if r.weight(rs1) != -1 {
		t.Fatalf("rs1 still in IPVS at %d", r.weight(rs1))
	}
	same("removal")
	if ino() != whole || lines("- ") != 1 {
		t.Fatalf("removal: inode %d (was %d), %d removal lines, want the same file and 1", ino(), whole, lines("- "))
	}

	// A crash and start: the list is read back and written whole.
	r.restart(httpOnly())
	same("restart")
	if ino() == whole || lines("+ ")+lines("- ") != 0 {
		t.Fatal("start did not write the list whole")
	}
	whole = ino()
	r.join(2, peer(rs2), nil, http80) // their agents come back
	r.join(3, peer(rs3), nil, http80)
	if ino() != whole || lines("+ ") != 0 {
		t.Fatal("agents taking back adopted destinations changed the file")
	}

	// Appends go on until they are as many as the list, then one
	// whole write.
	r.o.journalMin = 0
	r.join(4, peer(rs[3]), nil, http80)
	same("join after restart")
	if ino() != whole {
		t.Fatal("first change after start not appended")
	}
	r.join(5, peer(rs1), nil, http80)
	same("second join")
	r.join(6, peer(rs1), nil, http80) // same destination: nothing to record
	r.gone(5, "agent closed the connection")
	r.gone(6, "agent closed the connection")
	r.advance(time.Minute)
	same("appends as many as the list")
	if ino() != whole || r.o.appended != 3 || len(r.o.t.owned()) != 3 {
		t.Fatalf("%d appended lines on a list of %d", r.o.appended, len(r.o.t.owned()))
	}
	r.join(9, peer(rs1), nil, http80) // 3 < 4: appended
	same("one more join")
	if ino() != whole || r.o.appended != 4 {
		t.Fatalf("join: %d appended lines, same file %v", r.o.appended, ino() == whole)
	}
	r.gone(9, "agent closed the connection")
	r.advance(time.Minute) // 4 appended ≥ 3 owned: written whole
	same("appends outnumber the list")
	if ino() == whole || lines("+ ")+lines("- ") != 0 {
		t.Fatalf("%d appended lines on a list of %d and no whole write", r.o.appended, len(r.o.t.owned()))
	}
	whole = ino()

	// A failed append may leave a torn line: the next write is whole.
	r.o.journalMin = 1024
	r.store.err = syscall.ENOSPC
	if st := r.join(7, peer(rs1), nil, http80); st[0] != necp.StatusRefused {
		t.Fatalf("START while the state file cannot be written: %v", st)
	}
	r.store.err = nil
	r.join(8, peer(rs1), nil, http80)
	same("after a failed write")
	if ino() == whole {
		t.Fatal("an append followed a failed append")
	}
	whole = ino()
	r.gone(8, "agent closed the connection")
	r.advance(time.Minute)
	same("removal after the failure")
	if ino() != whole || lines("- ") != 1 {
		t.Fatal("the removal after the whole write was not appended")
	}

	// A clean stop writes it whole.
	r.o.stop()
	same("stop")
	if ino() == whole || lines("+ ")+lines("- ") != 0 {
		t.Fatal("a clean stop left appended lines")
	}
}

// TestTouchedBoundedWhileStateFileFails: while the state file cannot be
// written, agents retry and are refused again and again; what the owner
// keeps for the next append must not grow with every attempt (the next
// write is whole anyway).
func TestTouchedBoundedWhileStateFileFails(t *testing.T) {
	r := newRig(t, httpOnly())
	r.store.err = syscall.ENOSPC
	for i := range 200 {
		if st := r.join(sessionID(i+1), peer(rs1), nil, http80); st[0] != necp.StatusRefused {
			t.Fatalf("START %d while the state file cannot be written: %v", i, st)
		}
		r.gone(sessionID(i+1), "agent closed the connection")
	}
	if n := len(r.o.t.touched); n > 2 {
		t.Fatalf("%d touched destinations kept after 200 refused STARTs", n)
	}
	r.store.err = nil
	if st := r.join(1000, peer(rs1), nil, http80); st[0] != necp.StatusAccepted || !r.recorded(rs1) {
		t.Fatalf("START once the file can be written: %v, recorded %v", st, r.recorded(rs1))
	}
}
