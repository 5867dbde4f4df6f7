package value

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"2": 2 * time.Second, "0.5": 500 * time.Millisecond, " 1.25 ": 1250 * time.Millisecond,
		"0.1": 100 * time.Millisecond, "500ms": 500 * time.Millisecond, "1m30s": 90 * time.Second,
		"1h": time.Hour, "0.0000001": 100 * time.Nanosecond, "250us": 250 * time.Microsecond,
	} {
		if got, err := Duration(in); err != nil || got != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                    "empty duration",
		"0":                   `duration "0" must be greater than zero`,
		"0ms":                 `duration "0ms" must be greater than zero`,
		"-2s":                 `duration "-2s" must be greater than zero`,
		"-1":                  `invalid duration "-1" (want seconds such as 2 or 0.5, or a duration such as 500ms)`,
		"+2s":                 `invalid duration "+2s"`,
		"1e3":                 `invalid duration "1e3"`, // a typo rather than 16m40s
		"1e3s":                `invalid duration "1e3s"`,
		"0x10":                `invalid duration "0x10"`,
		"NaN":                 `invalid duration "NaN"`,
		"Inf":                 `invalid duration "Inf"`,
		"5 s":                 `invalid duration "5 s"`,
		"2.":                  `invalid duration "2."`,
		".5":                  `invalid duration ".5"`,
		"1d":                  `invalid duration "1d"`,
		"3e300":               `invalid duration "3e300"`,
		"9999999999999999999": `invalid duration "9999999999999999999"`, // past time.Duration
	} {
		if got, err := Duration(in); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Duration(%q) = %v, %v; want an error starting %q", in, got, err, want)
		}
	}
}

func TestTimer(t *testing.T) {
	if d, err := Timer("100ms", 100*time.Millisecond, "why"); err != nil || d != 100*time.Millisecond {
		t.Errorf("at the floor: %v, %v", d, err)
	}
	_, err := Timer("0.0999", 100*time.Millisecond, "healthy agents are declared dead")
	if err == nil || err.Error() != "99.9ms is too short (at least 100ms: healthy agents are declared dead)" {
		t.Errorf("below the floor: %v", err)
	}
	// The grammar comes first: a bad value is not reported as short.
	if _, err := Timer("1e3", time.Second, "x"); err == nil || !strings.HasPrefix(err.Error(), "invalid duration") {
		t.Errorf("1e3: %v", err)
	}
}

func TestNumbers(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "7": 7, "0080": 80, "2147483647": 1<<31 - 1} {
		if got, err := Count(in); err != nil || got != want {
			t.Errorf("Count(%q) = %d, %v", in, got, err)
		}
	}
	for in, want := range map[string]string{
		"-1": `invalid number "-1" (want a whole number, 0 or more)`, "+1": "invalid number", "1.0": "invalid number",
		" 1": "invalid number", "": "invalid number", "2147483648": `number "2147483648" is too large`,
		"99999999999999999999": "is too large",
	} {
		if _, err := Count(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Count(%q): %v, want %q", in, err, want)
		}
	}
	if n, err := Range("50", 0, 50); err != nil || n != 50 {
		t.Errorf("Range at hi: %d %v", n, err)
	}
	for _, in := range []string{"51", "x", "-1"} {
		if _, err := Range(in, 0, 50); err == nil || err.Error() != `invalid value "`+in+`" (want a whole number from 0 to 50)` {
			t.Errorf("Range(%q): %v", in, err)
		}
	}
	for in, want := range map[string]int{"0": 0, "100": 100, "42": 42} {
		if got, err := Health(in); err != nil || got != want {
			t.Errorf("Health(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"101", "-1", "50%", "4.5", "", "unknown"} {
		if _, err := Health(in); err == nil || err.Error() != `invalid health "`+in+`" (want a whole number from 0 to 100)` {
			t.Errorf("Health(%q): %v", in, err)
		}
	}
}

func TestBool(t *testing.T) {
	for _, in := range []string{"yes", "YES", "true", "on", "1"} {
		if b, err := Bool(in); err != nil || !b {
			t.Errorf("Bool(%q) = %v, %v", in, b, err)
		}
	}
	for _, in := range []string{"no", "False", "off", "0"} {
		if b, err := Bool(in); err != nil || b {
			t.Errorf("Bool(%q) = %v, %v", in, b, err)
		}
	}
	if _, err := Bool("maybe"); err == nil || err.Error() != `invalid switch "maybe" (want yes or no)` {
		t.Errorf("maybe: %v", err)
	}
	if _, err := NonEmpty("", "path"); err == nil || err.Error() != "empty path" {
		t.Errorf("NonEmpty: %v", err)
	}
}

func TestAddress(t *testing.T) {
	for _, in := range []string{"192.0.2.10", "2001:db8::10", "::1"} {
		if a, err := Address(in); err != nil || a != netip.MustParseAddr(in) {
			t.Errorf("%s: %v %v", in, a, err)
		}
	}
	for in, want := range map[string]string{
		"web":             "invalid address",
		"::ffff:10.0.0.1": "write it as 10.0.0.1",
		"fe80::1%eth0":    "has a zone",
		"fe80::1":         "cannot be a virtual service address",
		"::":              "cannot be a virtual service address",
		"ff02::1":         "cannot be a virtual service address",
		"0.0.0.0":         "cannot be a virtual service address",
		"224.0.0.1":       "cannot be a virtual service address",
		"255.255.255.255": "cannot be a virtual service address",
	} {
		if _, err := Address(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Address(%q): %v, want %q", in, err, want)
		}
	}
}

func TestNetworks(t *testing.T) {
	got, err := Networks("10.0.0.0/24, 192.0.2.7 ::ffff:10.1.0.0/112\t2001:db8::/32")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := Networks("ANY"); err != nil || got != nil {
		t.Errorf("any: %v, %v", got, err)
	}
	for in, want := range map[string]string{
		"":                "empty allow list",
		"any, 10.0.0.0/8": `"any" must be the only entry`,
		"10.0.0.1/8":      "has host bits set (did you mean 10.0.0.0/8?)",
		"10.0.0.0/33":     "invalid network",
		"ten":             "invalid address",
	} {
		if _, err := Networks(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Networks(%q): %v, want %q", in, err, want)
		}
	}
}

// testServices is a services file unlike a real one in places: http is
// tcp only, webcache exists only here, ntp is udp only.
func testServices(t *testing.T) Services {
	t.Helper()
	p := filepath.Join(t.TempDir(), "services")
	data := "smtp 25/tcp mail\ndomain 53/udp\nhttp 80/tcp www # web\nntp 123/udp\nwebcache 8080/tcp HTTP-Cache\nbroken-line notaport/tcp\nzero 0/tcp\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return Services{File: p}
}

func TestPort(t *testing.T) {
	sv := testServices(t)
	for _, c := range []struct {
		in, proto string
		want      uint16
	}{
		{"80", "tcp", 80}, {"65535", "udp", 65535}, {"0080", "tcp", 80}, {"HTTP", "TCP", 80}, {"www", "tcp", 80},
		{"mail", "tcp", 25}, {"ntp", "udp", 123}, {"ntp", "", 123}, {"http-cache", "tcp", 8080},
	} {
		if got, err := sv.Port(c.in, c.proto); err != nil || got != c.want {
			t.Errorf("Port(%q, %q) = %d, %v; want %d", c.in, c.proto, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, proto, want string }{
		{"0", "tcp", "port 0 out of range (want 1 to 65535)"}, {"65536", "tcp", "out of range"}, {"", "tcp", "empty port"},
		{"ntp", "tcp", `unknown port name "ntp" for tcp (not a number and not in ` + sv.File + ")"},
		{"nosuch", "", `unknown port name "nosuch" (not a number and not in`},
		{"broken-line", "tcp", "unknown port name"}, {"zero", "tcp", "unknown port name"},
		{"http", "sctp", `cannot look up port "http" for protocol "sctp"`},
		{"ssh", "tcp", "unknown port name"}, // in the fallback table, but the file exists and lacks it
	} {
		if _, err := sv.Port(c.in, c.proto); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Port(%q, %q): %v, want %q", c.in, c.proto, err, c.want)
		}
	}
	// Without the file, the built-in table, and the error says so.
	none := Services{File: filepath.Join(t.TempDir(), "absent")}
	if p, err := none.Port("ssh", "tcp"); err != nil || p != 22 {
		t.Errorf("fallback ssh: %d %v", p, err)
	}
	if _, err := none.Port("webcache", "tcp"); err == nil || !strings.Contains(err.Error(), "the built-in table") {
		t.Errorf("fallback webcache: %v", err)
	}
}

func TestParseServicesFirstWins(t *testing.T) {
	tab := parseServices([]byte("a 10/tcp\na 11/tcp b\n#c 12/tcp\nc 13/TCP\n\td 14/udp   # x\n"))
	if tab["tcp"]["a"] != 10 || tab["tcp"]["b"] != 11 || tab["tcp"]["c"] != 13 || tab["udp"]["d"] != 14 || len(tab["tcp"]) != 3 {
		t.Errorf("%v", tab)
	}
}

func TestHostPorts(t *testing.T) {
	sv := testServices(t)
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1:3262", "192.0.2.1:4000": "192.0.2.1:4000", "lb": "lb:3262",
		"lb.example.com.:www": "lb.example.com.:80", "$DIP": "$DIP:3262",
		"::1": "[::1]:3262", "[2001:db8::1]:3262": "[2001:db8::1]:3262", "[2001:db8::1]": "[2001:db8::1]:3262",
		"2001:DB8:0::1": "[2001:db8::1]:3262", "[2001:db8::1]:www": "[2001:db8::1]:80",
	} {
		got, warn, err := sv.Director(in, 3262)
		if err != nil || got != want || (warn != "") != (in == "$DIP") {
			t.Errorf("Director(%q) = %q, %q, %v; want %q", in, got, warn, err, want)
		}
	}
	for _, in := range []string{"", ":3262", "0.0.0.0", "224.0.0.1", "lb:70000", "lb:", "a b", "lb:ntp",
		"[::]:3262", "::", "[2001:db8::1", "[2001:db8::1]3262", "[192.0.2.1]:3262", "2001:db8::1::2", "[::ffff:10.0.0.1]", "[lb]:3262"} {
		if got, _, err := sv.Director(in, 3262); err == nil {
			t.Errorf("Director(%q) = %q, want an error", in, got)
		}
	}
	for in, want := range map[string]string{
		":3262": ":3262", "0.0.0.0": "0.0.0.0:3262", "127.0.0.1:99": "127.0.0.1:99", "localhost": "localhost:3262", ":www": ":80",
		"::1": "[::1]:3262", "[::]:3262": "[::]:3262", "[2001:db8::1]:99": "[2001:db8::1]:99",
	} {
		if got, err := sv.Listen(in, 3262); err != nil || got != want {
			t.Errorf("Listen(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"[::1]3262", "[::1", "host name", "10.0.0.1:0", "a_b:80", ":", "[::1]:0"} {
		if got, err := sv.Listen(in, 3262); err == nil {
			t.Errorf("Listen(%q) = %q, want an error", in, got)
		}
	}
	for in, ok := range map[string]bool{"a": true, "a-b.c": true, "a.": true, "-a": false, "a-": false, "a..b": false, "a_b": false, "": false, strings.Repeat("a", 64): false} {
		if Hostname(in) != ok {
			t.Errorf("Hostname(%q) = %v", in, !ok)
		}
	}
}

func TestChoice(t *testing.T) {
	if got, err := Choice(" head ", "GET", "HEAD"); err != nil || got != "HEAD" {
		t.Errorf("Choice(head) = %q, %v", got, err)
	}
	if _, err := Choice("POST", "GET", "HEAD"); err == nil || !strings.Contains(err.Error(), "want GET, HEAD") {
		t.Errorf("Choice(POST) = %v", err)
	}
}

func TestEndpoint(t *testing.T) {
	sv := testServices(t)
	for in, want := range map[string]string{
		"127.0.0.1:80":      "127.0.0.1:80",
		" localhost:mail ":  "localhost:25",
		"db.example.com:25": "db.example.com:25",
		"[::1]:80":          "[::1]:80",
	} {
		if got, err := sv.Endpoint(in); err != nil || got != want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000",
		"0.0.0.0:80", "224.0.0.1:80", "[::]:80", "::1", "[::1]", "bad_host!:80", "a b:80", "127.0.0.1:nosuch"} {
		if got, err := sv.Endpoint(in); err == nil {
			t.Errorf("Endpoint(%q) = %q, want an error", in, got)
		}
	}
}

func TestHTTPURL(t *testing.T) {
	for _, in := range []string{"http://127.0.0.1/health", "https://www.example.com:8443/status?full=1", "http://[::1]:8080/", "HTTP://host/"} {
		if _, err := HTTPURL(in); err != nil {
			t.Errorf("HTTPURL(%q): %v", in, err)
		}
	}
	for in, want := range map[string]string{
		"":                     "scheme",
		"127.0.0.1/health":     "scheme",
		"ftp://host/":          "scheme",
		"http:///path":         "no host",
		"http://:80/":          "no host",
		"http://user:pw@host/": "password",
		"http://host/#frag":    "fragment",
		"http://host:99999/":   "port",
		"http://host:0/":       "port",
		"http://host/%zz":      "invalid URL",
		"http://ho st/":        "invalid URL",
	} {
		_, err := HTTPURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("HTTPURL(%q) = %v, want an error with %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("HTTPURL(%q): the error shows the password: %v", in, err)
		}
	}
}
