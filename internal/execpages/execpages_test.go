package execpages

import (
	"strings"
	"testing"
)

// An smaps excerpt: the executable's three mappings, a library's, the
// heap, a mapping made read-only after it was written, a shared one, and
// a path with a space.
const sample = `00400000-0076b000 r-xp 00000000 fe:00 9977871                            /usr/sbin/feedbackd-agent
Size:               3500 kB
Rss:                2900 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
0076b000-00b06000 r--p 0036b000 fe:00 9977871                            /usr/sbin/feedbackd-agent
Rss:                1112 kB
Anonymous:             0 kB
00b06000-00b64000 rw-p 00706000 fe:00 9977871                            /usr/sbin/feedbackd-agent
Anonymous:            72 kB
00c00000-01000000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7f0000000000-7f0000001000 r--p 00010000 fe:00 9977871                            /usr/sbin/feedbackd-agent
Anonymous:             4 kB
7f0000002000-7f0000003000 r--s 00000000 fe:00 9977871                            /usr/sbin/feedbackd-agent
Anonymous:             0 kB
7f0000004000-7f0000005000 r-xp 00000000 103:02 9977871                           /lib/a b.so
Anonymous:             0 kB
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Anonymous:             0 kB
`

func TestParseAndChoose(t *testing.T) {
	maps, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	dev := mkdev(0xfe, 0)
	var got []string
	for _, m := range maps {
		if m.droppable(dev, 9977871) {
			got = append(got, m.Perms)
		}
	}
	// Only the executable's text and read-only data; not its data, the
	// copied read-only page, the shared mapping, nor another device's
	// file with the same inode number.
	if strings.Join(got, " ") != "r-xp r--p" {
		t.Errorf("droppable: %q, want the text and rodata mappings", got)
	}
	if len(maps) != 8 || maps[0].Start != 0x400000 || maps[0].End != 0x76b000 || maps[2].AnonKB != 72 || maps[0].RssKB != 2900 {
		t.Errorf("parsed: %+v", maps)
	}
	if maps[6].Dev != mkdev(0x103, 2) {
		t.Errorf("device 103:02 read as %#x", maps[6].Dev)
	}
}

// The lines parse passes over cost no allocation: the agent reads its
// smaps, a thousand lines, every 30 s.
func TestParseAllocatesPerMapping(t *testing.T) {
	padded := strings.ReplaceAll(sample, "Anonymous:", strings.Repeat("Pss:                 4 kB\n", 50)+"Anonymous:")
	allocs := func(in string) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, err := parse(strings.NewReader(in)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, b := allocs(sample), allocs(padded); b > a {
		t.Errorf("%v allocations with 400 more lines, %v without", b, a)
	}
}

// A mapping whose Anonymous line is missing is taken to hold copies.
func TestParseWithoutAnonymousKeeps(t *testing.T) {
	maps, err := parse(strings.NewReader("00400000-0076b000 r-xp 00000000 fe:00 7 /x\nRss: 4 kB\n"))
	if err != nil || len(maps) != 1 {
		t.Fatal(maps, err)
	}
	if maps[0].droppable(mkdev(0xfe, 0), 7) {
		t.Error("a mapping with no Anonymous line is droppable")
	}
}

func TestParseRefusesBrokenHeaders(t *testing.T) {
	for _, in := range []string{
		"00400000 r-xp 00000000 fe:00 7 /x\n",
		"00400000-0076b000 r-xp 00000000 fe00 7 /x\n",
		"0076b000-00400000 r-xp 00000000 fe:00 7 /x\n",
		"00400000-0076b000 r-xp 00000000 fe:00\n",
		"zz-0076b000 r-xp 00000000 fe:00 7 /x\n",
		"Anonymous: 0 kB\n",
		"00400000-0076b000 r-xp 00000000 fe:00 7 /x\nAnonymous: x kB\n",
	} {
		if maps, err := parse(strings.NewReader(in)); err == nil {
			t.Errorf("%q: parsed as %+v", in, maps)
		}
	}
}

// Drop on this test binary: it finds its own mappings (so the device and
// inode match what stat says), its resident set of them shrinks, and the
// program goes on running from the pages mapped back.
func TestDropSelf(t *testing.T) {
	before, err := Resident()
	if err != nil || before == 0 {
		t.Fatalf("resident before: %d, %v", before, err)
	}
	n, err := Drop()
	if err != nil {
		t.Fatal(err)
	}
	after, err := Resident()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the executable was dropped")
	}
	if after >= before {
		t.Errorf("executable's resident pages %d kB before, %d kB after", before>>10, after>>10)
	}
	t.Logf("advised %d kB; resident %d kB before, %d kB after", n>>10, before>>10, after>>10)
}
