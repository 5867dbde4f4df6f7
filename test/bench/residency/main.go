// Command residency tells which of a running program's executable pages are
// resident: per ELF section, and for .text per Go package.
//
// It reads /proc/PID/pagemap (the present bit of each page; no privilege
// needed for that bit) against the sections and symbols of the executable,
// which must be built without -s -w for the per-package table. It answers
// "what part of the binary does the process keep in memory", which RSS
// alone does not.
//
//	CGO_ENABLED=0 go build -trimpath -o /tmp/agentsym/agent ./cmd/feedbackd-agent
//	go run ./test/bench/residency -pid PID -top 30
package main

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

const page = 4096

func main() {
	pid := flag.Int("pid", 0, "process to look at")
	top := flag.Int("top", 30, "packages to list")
	flag.Parse()
	if err := run(*pid, *top); err != nil {
		fmt.Fprintln(os.Stderr, "residency:", err)
		os.Exit(1)
	}
}

func run(pid, top int) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return err
	}
	present, err := residentPages(pid, exe)
	if err != nil {
		return err
	}
	f, err := elf.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return err
	}
	defer f.Close()
	resident := func(addr, size uint64) (n uint64) {
		for p := addr / page; p <= (addr+size-1)/page; p++ {
			if present[p] {
				lo, hi := max(addr, p*page), min(addr+size, (p+1)*page)
				n += hi - lo
			}
		}
		return n
	}
	fmt.Printf("%s (pid %d): resident of each loaded section\n", exe, pid)
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 {
			continue
		}
		fmt.Printf("  %-14s %7.2f MB of %7.2f MB\n", s.Name, mb(resident(s.Addr, s.Size)), mb(s.Size))
	}
	syms, err := f.Symbols()
	if err != nil {
		fmt.Println("no symbols (built with -s?): no per-package table")
		return nil
	}
	type sz struct{ res, all uint64 }
	per := map[string]*sz{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 {
			continue
		}
		p := pkgOf(s.Name)
		if per[p] == nil {
			per[p] = &sz{}
		}
		per[p].res += resident(s.Value, s.Size)
		per[p].all += s.Size
	}
	names := make([]string, 0, len(per))
	for p := range per {
		names = append(names, p)
	}
	sort.Slice(names, func(i, j int) bool { return per[names[i]].res > per[names[j]].res })
	fmt.Println(".text by package: KB resident / KB linked")
	for i, p := range names {
		if i == top {
			break
		}
		fmt.Printf("  %6.0f / %6.0f  %s\n", float64(per[p].res)/1024, float64(per[p].all)/1024, p)
	}
	return nil
}

// residentPages returns the page numbers of exe's mappings in pid that are
// present in memory.
func residentPages(pid int, exe string) (map[uint64]bool, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	present := map[uint64]bool{}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != exe {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		buf := make([]byte, (b-a)/page*8)
		if _, err := pm.ReadAt(buf, int64(a/page*8)); err != nil {
			return nil, err
		}
		for i := uint64(0); i < (b-a)/page; i++ {
			if binary.LittleEndian.Uint64(buf[i*8:])>>63 == 1 {
				present[a/page+i] = true
			}
		}
	}
	return present, sc.Err()
}

// pkgOf is the package part of a Go symbol name: "net/http.(*conn).serve"
// → "net/http". A generic instance's type arguments, which hold other
// packages' names, are cut off first.
func pkgOf(name string) string {
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	slash := strings.LastIndexByte(name, '/')
	if i := strings.IndexByte(name[slash+1:], '.'); i >= 0 {
		return name[:slash+1+i]
	}
	return name
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }
