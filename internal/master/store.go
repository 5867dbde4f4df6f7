package master

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
)

// Store keeps the list of destinations this master created, across
// restarts. The kernel has no field to tag an entry with its creator, and
// the master must never edit or delete IPVS entries it did not create, yet
// after a restart it must take back its own entries at their current weight
// (so that a restart disturbs nothing). The list is what tells the two apart.
type Store interface {
	Load() ([]Ref, error)
	Save([]Ref) error
}

// Journal is the optional part of a Store that records a change to the
// list by appending it, instead of writing the whole list again: when 20 000
// agents join, every pass that adds a few of them would otherwise rewrite
// and sync a 20 000-line file. The owner still writes the list whole (Save)
// at start, on a clean stop, after a failed append, and once the appended
// lines are as many as the list, so the file stays within about twice its size.
type Journal interface {
	// Append records that removed are no longer owned and added are.
	// Either may name destinations the list already has or lacks.
	Append(added, removed []Ref) error
}

// FileStore keeps the list in a text file, one destination per line:
//
//	tcp 192.0.2.1:80 10.0.0.2:80
//
// Save writes it atomically (temporary file, fsync, rename, fsync of the
// directory), so a crash leaves either the old or the new list. Append adds
// lines "+ tcp 192.0.2.1:80 10.0.0.2:80" and "- tcp ...", removals first,
// in one write followed by an fsync; a crash in the middle leaves a prefix
// of them, which is safe because the owner adds a destination to IPVS only
// after its line is on disk and removes one from the list only after it
// left IPVS. A last appended line cut short (no newline, or the zeros some
// file systems leave after a crash) is therefore ignored by Load, not taken
// as an error: it names nothing the master wrote to IPVS.
type FileStore struct{ Path string }

func (f FileStore) String() string { return f.Path }

func (f FileStore) Load() ([]Ref, error) {
	data, err := os.ReadFile(f.Path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f.parse(data)
}

// parse reads the list, the changes appended to it applied.
func (f FileStore) parse(data []byte) ([]Ref, error) {
	data = bytes.TrimRight(data, "\x00")
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) && (data[i+1] == '+' || data[i+1] == '-') {
		// A torn append: only appends write such lines, and only they
		// can be cut short (a whole write is renamed into place). A plain
		// last line without its newline is someone's edit, and is read.
		data = data[:i+1]
	}
	set := map[Ref]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		add := true
		if op, rest, ok := strings.Cut(line, " "); ok && (op == "+" || op == "-") {
			add, line = op == "+", rest
		}
		r, err := parseRef(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", f.Path, n, err)
		}
		if add {
			set[r] = true
		} else {
			delete(set, r)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	refs := slices.Collect(maps.Keys(set))
	sortIDs(refs)
	return refs, nil
}

func (f FileStore) Save(refs []Ref) error {
	var b bytes.Buffer
	b.WriteString("# Destinations created by feedbackd-master; do not edit while it runs.\n")
	b.WriteString("# Lines \"+ ...\" and \"- ...\" after the list are changes recorded since it was written.\n")
	for _, r := range refs {
		b.WriteString(formatRef(r))
		b.WriteByte('\n')
	}
	return writeAtomic(f.Path, b.Bytes())
}

// Append adds the change to the end of the file, which must exist (Save
// made it at start): if someone removed it, the error makes the owner
// write the list whole, which brings it back.
func (f FileStore) Append(added, removed []Ref) error {
	var b bytes.Buffer
	for _, r := range removed {
		b.WriteString("- " + formatRef(r) + "\n")
	}
	for _, r := range added {
		b.WriteString("+ " + formatRef(r) + "\n")
	}
	fd, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	return writeSynced(fd, b.Bytes())
}

// writeSynced writes data to f, syncs it to disk and closes it.
func writeSynced(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory, so that a crash leaves the old or the new file.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is: without this a
	// power cut can bring back the old list, and with it a master that
	// has forgotten destinations it created.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// formatRef writes "tcp VIP:PORT RIP:PORT", or "fwm MARK RIP:PORT" for a
// destination of a firewall-mark service (its family is the RIP's).
func formatRef(r Ref) string {
	svc := formatServiceKey(r.Service)
	if r.Service.FWMark != 0 {
		svc = "fwm " + strconv.FormatUint(uint64(r.Service.FWMark), 10)
	}
	return svc + " " + netip.AddrPortFrom(r.Dest.Address, r.Dest.Port).String()
}

func parseRef(line string) (Ref, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Ref{}, fmt.Errorf("want \"PROTO VIP:PORT RIP:PORT\" or \"fwm MARK RIP:PORT\", got %q", line)
	}
	rip, err := netip.ParseAddrPort(f[2])
	if err != nil {
		return Ref{}, err
	}
	svc, err := parseServiceKey(f[:2])
	if err != nil {
		return Ref{}, err
	}
	if svc.FWMark != 0 {
		svc = ipvs.FWMarkKey(svc.FWMark, rip.Addr())
	}
	return Ref{Service: svc, Dest: ipvs.DestKey{Address: rip.Addr(), Port: rip.Port()}}, nil
}

// AdminStore is the optional part of a Store that keeps the operators'
// admin states (drain, maint) across restarts.
type AdminStore interface {
	LoadAdmin() (map[Ref]string, error)
	SaveAdmin(map[Ref]string) error
}

// AdminPath is where FileStore keeps the admin states: beside the state
// file, master.state → master.admin.
func (f FileStore) AdminPath() string { return strings.TrimSuffix(f.Path, ".state") + ".admin" }

// LoadAdmin reads lines "STATE PROTO VIP:PORT RIP:PORT".
func (f FileStore) LoadAdmin() (map[Ref]string, error) {
	data, err := os.ReadFile(f.AdminPath())
	if os.IsNotExist(err) {
		return map[Ref]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[Ref]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		state, rest, _ := strings.Cut(line, " ")
		if state != "drain" && state != "maint" {
			return nil, fmt.Errorf("%s:%d: unknown admin state %q", f.AdminPath(), n, state)
		}
		r, err := parseRef(rest)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", f.AdminPath(), n, err)
		}
		out[r] = state
	}
	return out, sc.Err()
}

func (f FileStore) SaveAdmin(m map[Ref]string) error {
	refs := make([]Ref, 0, len(m))
	for r := range m {
		refs = append(refs, r)
	}
	sortIDs(refs)
	var b bytes.Buffer
	b.WriteString("# Admin states set with feedbackctl; do not edit while feedbackd-master runs.\n")
	for _, r := range refs {
		b.WriteString(m[r] + " " + formatRef(r) + "\n")
	}
	return writeAtomic(f.AdminPath(), b.Bytes())
}

// ServiceStore is the optional part of a Store that keeps the list of
// virtual services this master created, across restarts: only those it
// updates to match the configuration (services.go). found is false when
// no list was ever saved (a master of 0.6 or earlier ran here, or none).
type ServiceStore interface {
	LoadServices() (keys []ipvs.ServiceKey, found bool, err error)
	SaveServices([]ipvs.ServiceKey) error
}

// ServicesPath is where FileStore keeps the created virtual services:
// beside the state file, master.state → master.services.
func (f FileStore) ServicesPath() string { return strings.TrimSuffix(f.Path, ".state") + ".services" }

// LoadServices reads lines "PROTO VIP:PORT" or "fwm MARK [ipv6]".
func (f FileStore) LoadServices() ([]ipvs.ServiceKey, bool, error) {
	data, err := os.ReadFile(f.ServicesPath())
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var keys []ipvs.ServiceKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseServiceKey(strings.Fields(line))
		if err != nil {
			return nil, false, fmt.Errorf("%s:%d: %v", f.ServicesPath(), n, err)
		}
		keys = append(keys, k)
	}
	return keys, true, sc.Err()
}

func (f FileStore) SaveServices(keys []ipvs.ServiceKey) error {
	var b bytes.Buffer
	b.WriteString("# Virtual services created by feedbackd-master; do not edit while it runs.\n")
	for _, k := range keys {
		b.WriteString(formatServiceKey(k) + "\n")
	}
	return writeAtomic(f.ServicesPath(), b.Bytes())
}

// formatServiceKey writes "tcp VIP:PORT", or "fwm MARK" ("fwm MARK ipv6"
// for that family).
func formatServiceKey(k ipvs.ServiceKey) string {
	if k.FWMark != 0 {
		s := "fwm " + strconv.FormatUint(uint64(k.FWMark), 10)
		if k.Address.Is6() {
			s += " ipv6"
		}
		return s
	}
	proto := "tcp"
	if k.Protocol == 17 {
		proto = "udp"
	}
	return proto + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

func parseServiceKey(f []string) (ipvs.ServiceKey, error) {
	if len(f) >= 2 && f[0] == "fwm" {
		mark, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || mark == 0 {
			return ipvs.ServiceKey{}, fmt.Errorf("bad firewall mark %q", f[1])
		}
		switch {
		case len(f) == 2:
			return ipvs.FWMarkKey(uint32(mark), netip.Addr{}), nil
		case len(f) == 3 && f[2] == "ipv6":
			return ipvs.FWMarkKey(uint32(mark), netip.IPv6Unspecified()), nil
		}
		return ipvs.ServiceKey{}, fmt.Errorf("want \"fwm MARK [ipv6]\", got %q", strings.Join(f, " "))
	}
	if len(f) != 2 {
		return ipvs.ServiceKey{}, fmt.Errorf("want \"PROTO VIP:PORT\" or \"fwm MARK\", got %q", strings.Join(f, " "))
	}
	var proto uint16
	switch f[0] {
	case "tcp":
		proto = 6
	case "udp":
		proto = 17
	default:
		n, err := strconv.ParseUint(f[0], 10, 16)
		if err != nil {
			return ipvs.ServiceKey{}, fmt.Errorf("bad protocol %q", f[0])
		}
		proto = uint16(n)
	}
	vip, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return ipvs.ServiceKey{}, err
	}
	return ipvs.ServiceKey{Protocol: proto, Address: vip.Addr(), Port: vip.Port()}, nil
}

// MemoryStore keeps the list in memory: for tests, and for --without-ipvs,
// whose in-memory table does not outlive the process either.
type MemoryStore struct {
	mu       sync.Mutex
	refs     map[Ref]bool
	admin    map[Ref]string
	svcs     []ipvs.ServiceKey
	svcsSeen bool
}

func (m *MemoryStore) LoadServices() ([]ipvs.ServiceKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.svcs), m.svcsSeen, nil
}

func (m *MemoryStore) SaveServices(keys []ipvs.ServiceKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcs, m.svcsSeen = slices.Clone(keys), true
	return nil
}

func (m *MemoryStore) LoadAdmin() (map[Ref]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.admin), nil
}

func (m *MemoryStore) SaveAdmin(a map[Ref]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.admin = maps.Clone(a)
	return nil
}

func (m *MemoryStore) String() string { return "(in memory)" }

func (m *MemoryStore) Load() ([]Ref, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := slices.Collect(maps.Keys(m.refs))
	sortIDs(refs)
	return refs, nil
}

func (m *MemoryStore) Save(refs []Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs = make(map[Ref]bool, len(refs))
	for _, r := range refs {
		m.refs[r] = true
	}
	return nil
}

func (m *MemoryStore) Append(added, removed []Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == nil {
		m.refs = map[Ref]bool{}
	}
	for _, r := range removed {
		delete(m.refs, r)
	}
	for _, r := range added {
		m.refs[r] = true
	}
	return nil
}

// ReadOnly returns a Store that loads from s but discards saves: a dry run
// must know which destinations are the master's without recording anything.
func ReadOnly(s Store) Store { return readOnly{s} }

type readOnly struct{ Store }

func (readOnly) Save([]Ref) error { return nil }

func (r readOnly) LoadAdmin() (map[Ref]string, error) {
	if a, ok := r.Store.(AdminStore); ok {
		return a.LoadAdmin()
	}
	return nil, nil
}

func (readOnly) SaveAdmin(map[Ref]string) error { return nil }

func (r readOnly) LoadServices() ([]ipvs.ServiceKey, bool, error) {
	if s, ok := r.Store.(ServiceStore); ok {
		return s.LoadServices()
	}
	return nil, false, nil
}

func (readOnly) SaveServices([]ipvs.ServiceKey) error { return nil }
