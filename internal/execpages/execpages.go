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
// Only the standard library is below it, so that the monitor reaper can
// use it too.
package execpages

import (
	"bufio"
	"bytes"
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

// Drop unmaps this process's clean executable pages (see droppable) and
// returns how many bytes of mappings it advised.
func Drop() (int64, error) {
	maps, dev, ino, err := own("/proc/self/smaps", "/proc/self/exe")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range maps {
		if !m.droppable(dev, ino) {
			continue
		}
		// A raw call on the addresses: the pages are not Go memory,
		// and a slice over them would only be taken apart again.
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("madvise %x-%x: %v", m.Start, m.End, e)
		}
		n += int64(m.End - m.Start)
	}
	return n, nil
}

// Resident returns how many bytes of the mappings Drop would advise are
// resident in this process now: what a Drop would take out.
func Resident() (int64, error) {
	maps, dev, ino, err := own("/proc/self/smaps", "/proc/self/exe")
	var kb int64
	for _, m := range maps {
		if m.droppable(dev, ino) {
			kb += m.RssKB
		}
	}
	return kb << 10, err
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
