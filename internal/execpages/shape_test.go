package execpages

import (
	_ "embed"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// blob is read-only data in the test binary's executable, sixteen pages that
// nothing reads but the tests below.
//
//go:embed testdata/blob.txt
var blob string

// sink keeps touch's read from being compiled away.
var sink byte

// present reads whether each page from addr is mapped in this process.
func present(t *testing.T, addr uintptr, pages int) []bool {
	t.Helper()
	fd, err := openPagemap()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	page := uintptr(os.Getpagesize())
	buf := make([]byte, 8*pages)
	if _, err := syscall.Pread(fd, buf, int64(addr/page)*8); err != nil {
		t.Fatal(err)
	}
	out := make([]bool, pages)
	for i := range out {
		out[i] = buf[i*8+7]&0x80 != 0
	}
	return out
}

// touch reads one byte of blob's page i (counted from its first whole
// page) and returns the page's address.
func touch(i int) uintptr { return uintptr(pageOf(i)) }

// pageOf points at blob's page i and reads a byte of it.
func pageOf(i int) unsafe.Pointer {
	page := os.Getpagesize()
	start := unsafe.Pointer(unsafe.StringData(blob))
	skip := (page - int(uintptr(start))%page) % page
	p := unsafe.Add(start, skip+i*page)
	sink += *(*byte)(p)
	return p
}

// exeAreas counts the mappings of the executable that fall inside p's spans.
func exeAreas(t *testing.T, p *Pages) int {
	t.Helper()
	maps, dev, ino, err := own("/proc/self/smaps", "/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range maps {
		for _, sp := range p.spans {
			if m.Dev == dev && m.Ino == ino && uintptr(m.Start) >= sp.start && uintptr(m.End) <= sp.end {
				n++
			}
		}
	}
	return n
}

// After a shaped drop, a touch maps back its own page and no other: the
// kernel's fault-around stops at the page's mapping. Then the second drop
// merges the pages not touched in between back into few mappings, and
// keeps the touched page apart from them; a page of those touched later
// is learnt in two more drops.
func TestShapedTouchMapsOnePage(t *testing.T) {
	if len(blob) < 15*os.Getpagesize() {
		t.Fatalf("blob is %d bytes, want 15 pages", len(blob))
	}
	// Without shaping, for comparison: the kernel maps around the touch.
	if _, err := Drop(); err != nil {
		t.Fatal(err)
	}
	a := touch(3)
	t.Logf("unshaped, pages 2, 3, 4 after touching 3: %v", present(t, a-uintptr(os.Getpagesize()), 3))

	p, err := Own(true)
	if err != nil {
		t.Fatal(err)
	}
	pages := len(p.state)
	if _, err := p.Drop(); err != nil {
		t.Fatal(err)
	}
	areas, err := p.Areas()
	if err != nil || areas != pages || exeAreas(t, p) != pages {
		t.Fatalf("first drop: %d areas (%d in the maps), %v; want one per page, %d", areas, exeAreas(t, p), err, pages)
	}
	a = touch(5)
	if got := present(t, a-uintptr(os.Getpagesize()), 3); got[0] || !got[1] || got[2] {
		t.Fatalf("shaped, pages 4, 5, 6 after touching 5: %v, want only 5", got)
	}

	if _, err := p.Drop(); err != nil {
		t.Fatal(err)
	}
	areas, err = p.Areas()
	if err != nil || areas >= pages/2 || areas != exeAreas(t, p) {
		t.Fatalf("second drop: %d areas (%d in the maps) of %d pages, %v; want fewer than half, as the maps say", areas, exeAreas(t, p), pages, err)
	}
	a = touch(5)
	if got := present(t, a-uintptr(os.Getpagesize()), 3); got[0] || !got[1] || got[2] {
		t.Errorf("after the second drop, pages 4, 5, 6 after touching 5 again: %v, want only 5", got)
	}
	a = touch(7)
	t.Logf("%d pages in %d areas; pages 6, 7, 8 after touching 7, merged back: %v", pages, areas, present(t, a-uintptr(os.Getpagesize()), 3))

	// Page 7's window came back with it; the third drop probes those
	// pages one by one, so a touch of 7 maps only 7 again, and the fourth
	// keeps 7 with the pages used at rest.
	for _, drop := range []string{"third", "fourth"} {
		if _, err := p.Drop(); err != nil {
			t.Fatal(err)
		}
		a = touch(7)
		if got := present(t, a-uintptr(os.Getpagesize()), 3); got[0] || !got[1] || got[2] {
			t.Errorf("after the %s drop, pages 6, 7, 8 after touching 7: %v, want only 7", drop, got)
		}
	}
	if areas, _ := p.Areas(); areas != exeAreas(t, p) {
		t.Errorf("%d areas, the maps say %d", areas, exeAreas(t, p))
	}
}

// A page the process wrote after Own found its mappings (as a debugger's
// breakpoint is) is its own copy, and Drop keeps it: MADV_DONTNEED would
// put the file's bytes back under the process.
func TestDropKeepsCopiesMadeLater(t *testing.T) {
	p, err := Own(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Drop(); err != nil {
		t.Fatal(err)
	}
	// Page 13 of blob, which no other test reads: it stays a copy for
	// the rest of the process.
	ptr := pageOf(13)
	a := uintptr(ptr)
	pg := unsafe.Slice((*byte)(ptr), os.Getpagesize())
	if err := syscall.Mprotect(pg, syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
		t.Fatal(err)
	}
	pg[10] = '!'
	if err := syscall.Mprotect(pg, syscall.PROT_READ); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Drop(); err != nil {
		t.Fatal(err)
	}
	if got := present(t, a, 1); pg[10] != '!' || !got[0] {
		t.Fatalf("after Drop the written byte reads %q, and the page is mapped: %v; the copy was thrown away", pg[10], got[0])
	}
}

// Which page-map entries are the process's own copies.
func TestCopyEntry(t *testing.T) {
	for _, tc := range []struct {
		e    uint64
		copy bool
	}{
		{0, false},                               // not mapped
		{pmPresent | pmFile, false},              // the file's page
		{pmPresent, true},                        // written: anonymous
		{pmSwapped, true},                        // written, then swapped out
		{pmSwapped | pmFile, false},              // the file's page, being migrated
		{pmPresent | pmFile | 1<<56 | 42, false}, // exclusive, with a frame number
	} {
		if got := copyEntry(tc.e); got != tc.copy {
			t.Errorf("copyEntry(%#x) = %v, want %v", tc.e, got, tc.copy)
		}
	}
}
