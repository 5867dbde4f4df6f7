package value

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Port names are resolved from /etc/services here rather than by
// net.LookupPort. net.LookupPort may go through the cgo resolver and NSS
// (which may consult NIS, sss or nothing at all), falls back to its own
// built-in table when /etc/services is missing, and cannot be pointed at a
// test file, so "port = http" could pass -t on one machine and fail on
// another. Parsing the file directly gives one answer for one file, and
// tests substitute their own file through Services.File.
//
// When the file cannot be read at all (minimal containers ship without
// it), fallbackServices supplies the common names so that the HOWTO's own
// samples ("port = http", "port = smtp") still load. When the file exists
// it is authoritative: a name it lacks is an error even if the fallback
// table knows it, because the operator's file is what the other tools on
// the host agree with.

// DefaultServicesFile is the services database read when Services.File is
// empty.
const DefaultServicesFile = "/etc/services"

// Services reads port names from one services(5) file. The zero value
// reads DefaultServicesFile; tests name a file of their own, so that their
// results do not depend on the machine.
type Services struct {
	File string
}

func (sv Services) file() string {
	if sv.File == "" {
		return DefaultServicesFile
	}
	return sv.File
}

// fallbackServices is used only when the services file cannot be read.
// Names and numbers are IANA's.
var fallbackServices = map[string]map[string]uint16{
	"tcp": {
		"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
		"http": 80, "www": 80, "pop3": 110, "imap": 143, "imap2": 143,
		"ldap": 389, "https": 443, "submissions": 465, "submission": 587,
		"ldaps": 636, "imaps": 993, "pop3s": 995, "mysql": 3306,
		"postgresql": 5432, "http-alt": 8080,
	},
	"udp": {
		"domain": 53, "ntp": 123, "snmp": 161, "ldap": 389, "https": 443,
		"syslog": 514,
	},
}

// servicesCache holds the parsed file, keyed by path, size and modification
// time, so that a config with many ports reads it once, while an edited
// file (or a test's substitute) is picked up on the next call.
var servicesCache struct {
	sync.Mutex
	path  string
	size  int64
	mtime time.Time
	table map[string]map[string]uint16
}

// table returns the table of the services file, or the fallback.
func (sv Services) table() map[string]map[string]uint16 {
	path := sv.file()
	st, err := os.Stat(path)
	if err != nil {
		return fallbackServices
	}
	c := &servicesCache
	c.Lock()
	defer c.Unlock()
	if c.table != nil && c.path == path && c.size == st.Size() && c.mtime.Equal(st.ModTime()) {
		return c.table
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fallbackServices
	}
	c.path, c.size, c.mtime, c.table = path, st.Size(), st.ModTime(), parseServices(data)
	return c.table
}

// parseServices reads the services(5) format: "name port/proto aliases...
// # comment". Malformed lines are skipped, as the C library does. The
// first entry for a name wins, also as in getservbyname(3).
func parseServices(data []byte) map[string]map[string]uint16 {
	t := map[string]map[string]uint16{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		num, proto, ok := strings.Cut(f[1], "/")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			continue
		}
		proto = strings.ToLower(proto)
		if t[proto] == nil {
			t[proto] = map[string]uint16{}
		}
		for _, name := range append(f[:1:1], f[2:]...) {
			name = strings.ToLower(name)
			if _, dup := t[proto][name]; !dup {
				t[proto][name] = uint16(n)
			}
		}
	}
	return t
}

// Port reads a port: a number from 1 to 65535, or a service name from the
// services file registered for proto, "tcp" or "udp".
// An empty proto accepts a name registered for either, which is used when
// the block's protocol is itself invalid, so that one mistake is not
// reported twice. Names are matched case-insensitively: "port = HTTP" can
// only mean http, and the services files in use have no names that differ
// by case alone.
func (sv Services) Port(s string, proto string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	if digitsRE.MatchString(s) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("port %s out of range (want 1 to 65535)", s)
		}
		return uint16(n), nil
	}
	proto = strings.ToLower(proto)
	protos := []string{proto}
	switch proto {
	case "tcp", "udp":
	case "":
		protos = []string{"tcp", "udp"}
	default:
		return 0, fmt.Errorf("cannot look up port %q for protocol %q", s, proto)
	}
	t := sv.table()
	for _, p := range protos {
		if n, ok := t[p][strings.ToLower(s)]; ok {
			return n, nil
		}
	}
	if proto == "" {
		return 0, fmt.Errorf("unknown port name %q (not a number and not in %s)", s, sv.name())
	}
	return 0, fmt.Errorf("unknown port name %q for %s (not a number and not in %s)", s, proto, sv.name())
}

// name names the table used, for error messages.
func (sv Services) name() string {
	if _, err := os.Stat(sv.file()); err != nil {
		return "the built-in table (" + sv.file() + " is missing)"
	}
	return sv.file()
}
