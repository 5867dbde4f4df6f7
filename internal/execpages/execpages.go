// Package execpages takes a long-lived process's own executable pages out
// of its resident set once it no longer needs them.
//
// A Go program touches much of its executable once, at the start: the
// runtime and every package's initialisation, flags, the configuration.
// Those pages then stay mapped, and counted in its RSS, for as long as it
// runs, though an idle feedbackd-agent runs a small part of its code
// again. Drop unmaps the ones that are the page cache's own: they stay in
// the page cache, shared with every other process running the file, where
// the kernel frees them first when memory runs short (an unmapped clean
// page costs nothing to drop), and a page the process touches again is
// mapped back from the cache by a minor fault. Measured in
// docs/benchmarks.md, "The executable's pages".
//
// A long-lived process (Own with shape) also has its executable's
// mappings split so that such a fault maps back the pages it uses at
// rest, not 64 KB around each; see Pages.Drop, and "The executable's
// pages, one by one" in docs/benchmarks.md.
//
// Only the standard library is below it, so that the monitor reaper can
// use it too.
package execpages

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// mapping is one mapping of an smaps file, with what Drop needs to know.
type mapping struct {
	Start, End uint64
	Perms      string // as in smaps: "r-xp"
	Dev        uint64 // as stat(2) gives it
	Ino        uint64
	RssKB      int64 // resident
	AnonKB     int64 // resident pages that are the process's own copies
}

// droppable says whether MADV_DONTNEED on m only unmaps pages that the
// page cache still holds. That is so for a private mapping of the file
// that is not writable and holds no page of its own: every page in it is
// the file's, and comes back from the cache, unchanged, at the next touch.
// A mapping made read-only after it was written (a PIE's relocations,
// a debugger's breakpoint) holds copies that MADV_DONTNEED would throw
// away, and its Anonymous count keeps it out. A writable one could be
// written between our reading smaps and the call, so it is never taken.
// A copy made after Own read smaps (a debugger attached later) is found
// page by page at each Drop, in the page map (copyEntry).
func (m mapping) droppable(dev, ino uint64) bool {
	return m.Dev == dev && m.Ino == ino && len(m.Perms) == 4 &&
		m.Perms[1] == '-' && m.Perms[3] == 'p' && m.AnonKB == 0
}

// parse reads the mappings of an smaps file. A header it cannot read is an
// error, because the fields after it would be counted for the mapping
// before; other lines it does not know are passed over, without a copy:
// the agent reads its smaps every 30 s, and a string for each of its
// thousand lines was garbage enough to show in its memory.
func parse(r io.Reader) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		name, _, _ := bytes.Cut(line, []byte(" "))
		switch {
		case len(line) == 0:
		case bytes.Equal(name, rssField), bytes.Equal(name, anonField):
			kb, ok := kbOf(line[len(name):])
			if !ok || len(out) == 0 {
				return nil, fmt.Errorf("smaps: %q", line)
			}
			if bytes.Equal(name, rssField) {
				out[len(out)-1].RssKB = kb
			} else {
				out[len(out)-1].AnonKB = kb
			}
		case bytes.HasSuffix(name, []byte(":")): // another field of the mapping
		default:
			m, err := header(strings.Fields(string(line)))
			if err != nil {
				return nil, fmt.Errorf("smaps: header %q: %v", line, err)
			}
			// Until its Anonymous line says otherwise, a mapping
			// counts as holding copies: a kernel that leaves the line
			// out never has a mapping dropped.
			m.AnonKB = -1
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

var rssField, anonField = []byte("Rss:"), []byte("Anonymous:")

// kbOf reads the "   N kB" after a field's name.
func kbOf(rest []byte) (int64, bool) {
	num, _, _ := bytes.Cut(bytes.TrimSpace(rest), []byte(" "))
	if len(num) == 0 || len(num) > 15 {
		return 0, false
	}
	var kb int64
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, false
		}
		kb = kb*10 + int64(c-'0')
	}
	return kb, true
}

// header reads "start-end perms offset major:minor inode [path]".
func header(f []string) (mapping, error) {
	var m mapping
	if len(f) < 5 {
		return m, fmt.Errorf("%d fields", len(f))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	major, minor, ok2 := strings.Cut(f[3], ":")
	if !ok || !ok2 {
		return m, fmt.Errorf("no range or device")
	}
	var bad error
	num := func(s string, base int) uint64 {
		v, err := strconv.ParseUint(s, base, 64)
		if err != nil {
			bad = err
		}
		return v
	}
	m.Start, m.End, m.Ino = num(lo, 16), num(hi, 16), num(f[4], 10)
	m.Dev = mkdev(num(major, 16), num(minor, 16))
	if bad != nil {
		return m, bad
	}
	if m.End < m.Start {
		return m, fmt.Errorf("range ends before it starts")
	}
	m.Perms = f[1]
	return m, nil
}

// mkdev builds a dev_t as stat(2) returns it from the major and minor
// numbers smaps prints (glibc's encoding; the syscall package has none).
func mkdev(major, minor uint64) uint64 {
	return (major&0xfffff000)<<32 | (major&0xfff)<<8 |
		(minor&0xffffff00)<<12 | minor&0xff
}

// Pages is this process's executable mappings that Drop may unmap
// (droppable), found once: a Go program never maps its executable again,
// so the addresses hold for its life.
type Pages struct {
	spans []span
	state []uint8 // one per page of spans, in order: the bits below
	buf   []byte  // pagemap entries, read a chunk at a time
	shape bool
	drops int
	areas int   // mappings (VMAs) the spans are in, after shaping
	stop  error // why shaping stopped, if it did
}

type span struct{ start, end uintptr }

// Per page of Pages.state.
const (
	resident uint8 = 1 << iota // mapped at this drop
	ownCopy                    // the process's own copy: never dropped
	hot                        // touched while alone: in a run of such pages
	probe                      // alone until the next drop says whether it is hot
	marked                     // carries VM_DONTDUMP (see shapeAreas)
	wanted                     // is to carry it, in shapeAreas
)

// Bits of a /proc/PID/pagemap entry (the kernel's
// Documentation/admin-guide/mm/pagemap.rst). An unprivileged reader gets
// them with the frame number zeroed, which is all Drop needs.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61 // a page of the file, or shared anonymous
)

// copyEntry says whether a pagemap entry is a page of the process's own in
// a private mapping of the file: a breakpoint a debugger wrote, say. It is
// anonymous, in memory or swapped out (or being migrated), and
// MADV_DONTNEED would throw it away. A page of the file being migrated
// shows as swapped too, with the file bit: that one may go.
func copyEntry(e uint64) bool {
	return e&(pmPresent|pmSwapped) != 0 && e&pmFile == 0
}

// maxShaped bounds shaping: each page becomes a mapping of its own at the
// first drop, and the kernel limits a process's mappings
// (vm.max_map_count, 65 530 by default). The agent has about 1 550 pages.
const maxShaped = 8192

// Own finds this process's droppable executable mappings. With shape,
// each Drop also gives the pages the process touches at rest mappings of
// their own (see Drop), so that what it maps back is only those pages.
func Own(shape bool) (*Pages, error) {
	maps, dev, ino, err := own("/proc/self/smaps", "/proc/self/exe")
	if err != nil {
		return nil, err
	}
	p := &Pages{shape: shape}
	page := uintptr(os.Getpagesize())
	n := 0
	perms := ""
	for _, m := range maps {
		if !m.droppable(dev, ino) {
			continue
		}
		n += int((m.End - m.Start) / uint64(page))
		// Mappings an earlier shaping split are one span again: they
		// differ only in the flag it set. Those with other permissions
		// stay apart, as the kernel keeps them.
		if last := len(p.spans) - 1; last >= 0 && p.spans[last].end == uintptr(m.Start) && perms == m.Perms {
			p.spans[last].end = uintptr(m.End)
			continue
		}
		p.spans = append(p.spans, span{uintptr(m.Start), uintptr(m.End)})
		perms = m.Perms
	}
	p.state = make([]uint8, n)
	p.buf = make([]byte, 512*8)
	p.areas = len(p.spans)
	if shape && n > maxShaped {
		p.shape, p.stop = false, fmt.Errorf("%d pages, more than the %d this splits", n, maxShaped)
	}
	return p, nil
}

// Drop unmaps the droppable pages, all but the process's own copies, and
// returns how many bytes of mappings it advised.
//
// With shaping (Own), it first splits the mappings so that what a touch
// maps back is the pages the process uses at rest. Why: a fault on a
// file's mapping also maps the pages around it that the page cache holds,
// up to 64 KB (the kernel's fault_around_bytes), though the process reads
// one; an idle agent's few hundred pages of code and tables, spread over
// its executable, came back as 35 windows of 64 KB, 2.2 MB. The kernel
// maps around only within one mapping (VMA), and no setting of a
// process's own turns that off. So the pages are learnt: at the first
// drop every page is probed (a mapping of its own), and at the next each
// probed page that is resident again was touched, exactly, and is hot;
// the others are cold. Hot pages are kept in runs, one mapping each, and
// so are cold ones. A cold page found resident later came in a window
// around a touch, so the window's pages are probed, alone, for one cycle.
// Measured in docs/benchmarks.md, "The executable's pages, one by one".
func (p *Pages) Drop() (int64, error) {
	first := p.drops == 0
	err := p.scan(func(st *uint8, e uint64) {
		*st &^= resident | ownCopy
		if e&pmPresent != 0 {
			*st |= resident
		}
		if copyEntry(e) {
			*st |= ownCopy
		}
		switch {
		case first:
			*st |= probe
		case *st&probe != 0:
			// Alone since the last drop: resident only if touched.
			*st &^= probe
			if *st&resident != 0 {
				*st |= hot
			}
		case *st&hot == 0 && *st&resident != 0:
			// Mapped in a window around a touch of a page near it:
			// alone until the next drop tells which it was.
			*st |= probe
		}
	})
	if err != nil {
		return 0, err
	}
	p.drops++
	if p.shape && first {
		// Start from what the kernel has: no page marked, whatever an
		// earlier Pages of this process did.
		for _, sp := range p.spans {
			if err := madvise(sp.start, sp.end-sp.start, madvDodump); err != nil {
				p.shape, p.stop = false, err
			}
		}
	}
	if p.shape {
		if err := p.shapeAreas(); err != nil {
			p.shape, p.stop = false, err
		}
	}
	return p.unmap()
}

// openPagemap opens this process's page map. A raw descriptor, because
// Drop reads it with pread into a buffer it keeps, and allocates nothing.
func openPagemap() (int, error) {
	fd, err := syscall.Open("/proc/self/pagemap", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/proc/self/pagemap", Err: err}
	}
	return fd, nil
}

// scan calls fn with the state and the pagemap entry of each page of the
// spans, in order.
func (p *Pages) scan(fn func(st *uint8, e uint64)) error {
	fd, err := openPagemap()
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	page := uintptr(os.Getpagesize())
	k := 0
	for _, sp := range p.spans {
		for a := sp.start; a < sp.end; {
			n := min(int((sp.end-a)/page), len(p.buf)/8)
			got, err := syscall.Pread(fd, p.buf[:n*8], int64(a/page)*8)
			if err != nil || got != n*8 {
				return fmt.Errorf("/proc/self/pagemap at %#x: read %d of %d bytes: %v", a, got, n*8, err)
			}
			for i := 0; i < n; i++ {
				fn(&p.state[k], binary.NativeEndian.Uint64(p.buf[i*8:]))
				k++
			}
			a += uintptr(n) * page
		}
	}
	return nil
}

// shapeAreas gives each probed page a mapping of its own, each run of hot
// pages one, and each run of the others one. The kernel splits a mapping
// where a flag changes and merges neighbours whose flags agree, so the
// areas get VM_DONTDUMP by turns. The flag only keeps pages out of a core
// dump, which by default holds none of a file's unchanged pages anyway
// (core(5), coredump_filter); the first page of each mapping, where the
// ELF header is, never has it.
func (p *Pages) shapeAreas() error {
	page := uintptr(os.Getpagesize())
	k, areas := 0, 0
	for _, sp := range p.spans {
		n := int((sp.end - sp.start) / page)
		st := p.state[k : k+n]
		want := false
		for j := range st {
			if j > 0 && ((st[j]|st[j-1])&probe != 0 || (st[j]^st[j-1])&hot != 0) {
				want = !want
				areas++
			}
			st[j] &^= wanted
			if want {
				st[j] |= wanted
			}
		}
		areas++
		// One madvise per run of pages whose flag must change the same way.
		for j := 0; j < n; {
			w := st[j] & wanted
			if (st[j]&marked != 0) == (w != 0) {
				j++
				continue
			}
			e := j + 1
			for e < n && st[e]&wanted == w && (st[e]&marked != 0) != (w != 0) {
				e++
			}
			advice := madvDodump
			if w != 0 {
				advice = madvDontdump
			}
			if err := madvise(sp.start+uintptr(j)*page, uintptr(e-j)*page, advice); err != nil {
				return err
			}
			for i := j; i < e; i++ {
				st[i] ^= marked
			}
			j = e
		}
		k += n
	}
	p.areas = areas
	return nil
}

// madvise(2) advice the syscall package has no names for.
const (
	madvDontdump = 16
	madvDodump   = 17
)

// madvise advises on addresses outside Go's memory: a slice over them
// would only be taken apart again.
func madvise(addr, n uintptr, advice int) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, addr, n, uintptr(advice)); e != 0 {
		return fmt.Errorf("madvise %#x-%#x %d: %v", addr, addr+n, advice, e)
	}
	return nil
}

// unmap advises MADV_DONTNEED on each run of pages that are not the
// process's own copies, and returns how many bytes it advised.
func (p *Pages) unmap() (int64, error) {
	page := uintptr(os.Getpagesize())
	var advised int64
	k := 0
	for _, sp := range p.spans {
		n := int((sp.end - sp.start) / page)
		st := p.state[k : k+n]
		for j := 0; j < n; {
			if st[j]&ownCopy != 0 {
				j++
				continue
			}
			e := j + 1
			for e < n && st[e]&ownCopy == 0 {
				e++
			}
			if err := madvise(sp.start+uintptr(j)*page, uintptr(e-j)*page, syscall.MADV_DONTNEED); err != nil {
				return advised, err
			}
			advised += int64(e-j) * int64(page)
			j = e
		}
		k += n
	}
	return advised, nil
}

// Resident returns how many bytes of the droppable pages are mapped now.
func (p *Pages) Resident() (int64, error) {
	var n int64
	err := p.scan(func(_ *uint8, e uint64) {
		if e&pmPresent != 0 {
			n++
		}
	})
	return n * int64(os.Getpagesize()), err
}

// Resident returns how many bytes of this process's droppable executable
// pages are mapped now.
func Resident() (int64, error) {
	p, err := Own(false)
	if err != nil {
		return 0, err
	}
	return p.Resident()
}

// Areas returns how many mappings the droppable pages are in, and why
// shaping stopped, if it did (see Drop).
func (p *Pages) Areas() (int, error) { return p.areas, p.stop }

// Drop unmaps this process's droppable executable pages once, without
// shaping, and returns how many bytes of mappings it advised: for a
// process that needs it once, as the long-lived reaper does.
func Drop() (int64, error) {
	p, err := Own(false)
	if err != nil {
		return 0, err
	}
	return p.Drop()
}

// own reads the mappings in smaps, and the device and inode of exe.
func own(smaps, exe string) (maps []mapping, dev, ino uint64, err error) {
	// stat follows /proc/self/exe to the file the process runs, even
	// one an upgrade has since replaced or deleted; the mappings name
	// that file by device and inode, not by its path.
	fi, err := os.Stat(exe)
	if err != nil {
		return nil, 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s: no inode", exe)
	}
	f, err := os.Open(smaps)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	maps, err = parse(f)
	return maps, uint64(st.Dev), st.Ino, err
}
