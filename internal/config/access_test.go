package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMasterAccessAndLimitKeys(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "necp.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `allow = 10.0.0.0/24, 192.0.2.7 ::ffff:198.51.100.0/120
trust-agent-address = yes
secret-file = ` + secret + `
handshake-timeout = 3
max-sessions = 100
max-services = 8
weight-threshold = 0
weight-max-step = 20
[virtual-service]
name = web
address = 192.0.2.10
protocol = tcp
port = 80
`
	m, err := ParseMaster("m.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("198.51.100.0/24"),
	}
	if len(m.Allow) != len(wantAllow) {
		t.Fatalf("allow = %v, want %v", m.Allow, wantAllow)
	}
	for i := range wantAllow {
		if m.Allow[i] != wantAllow[i] {
			t.Errorf("allow[%d] = %v, want %v", i, m.Allow[i], wantAllow[i])
		}
	}
	if !m.TrustAgentAddress || m.HandshakeTimeout.Seconds() != 3 || m.MaxSessions != 100 ||
		m.MaxServices != 8 || m.WeightThreshold != 0 || m.WeightMaxStep != 20 {
		t.Errorf("parsed %+v", m)
	}
	if string(m.Secret) != "0123456789abcdef0123" || m.SecretFile != secret {
		t.Errorf("secret %q from %q; the trailing newline must go", m.Secret, m.SecretFile)
	}
	if len(m.Warnings) != 0 {
		t.Errorf("warnings: %q", m.Warnings)
	}
}

func TestMasterAccessDefaults(t *testing.T) {
	m, err := ParseMaster("m.conf", []byte("[virtual-service]\nname = w\naddress = 192.0.2.10\nprotocol = tcp\nport = 80\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Allow != nil || m.TrustAgentAddress || m.Secret != nil ||
		m.HandshakeTimeout != DefaultHandshakeTimeout || m.MaxSessions != DefaultMaxSessions ||
		m.MaxServices != DefaultMaxServices || m.WeightThreshold != DefaultWeightThreshold ||
		m.WeightMaxStep != DefaultWeightMaxStep {
		t.Errorf("defaults: %+v", m)
	}
	// "any" says the default out loud.
	m, err = ParseMaster("m.conf", []byte("allow = any\n[virtual-service]\nname = w\naddress = 192.0.2.10\nprotocol = tcp\nport = 80\n"))
	if err != nil || m.Allow != nil {
		t.Fatalf("allow = any: %v, %v", m, err)
	}
}

func TestAllowed(t *testing.T) {
	allow, err := parseAllow("10.0.0.0/24 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"10.0.0.1", true}, {"10.0.0.255", true}, {"10.0.1.1", false},
		{"192.0.2.7", true}, {"192.0.2.8", false},
		{"::ffff:10.0.0.9", true}, // dual-stack socket's view of an IPv4 agent
		{"2001:db8::1", false},
	} {
		if got := Allowed(allow, netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Allowed(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	if !Allowed(nil, netip.MustParseAddr("203.0.113.1")) {
		t.Error("no allow list must allow any address")
	}
}

func TestSecretFileChecks(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	if _, _, err := readSecret(short); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short secret: %v", err)
	}
	if _, _, err := readSecret("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSecret(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO without a writer: %v", err) // and above all: it returned
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 5000), 0o600)
	if _, _, err := readSecret(big); err == nil || !strings.Contains(err.Error(), "more than the 4096") {
		t.Errorf("5000-byte secret: %v", err)
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("0123456789abcdef"), 0o644)
	os.Chmod(open, 0o644) // whatever the umask
	s, warn, err := readSecret(open)
	if err != nil || string(s) != "0123456789abcdef" || !strings.Contains(warn, "readable by every user") {
		t.Errorf("world-readable secret: %q %q %v", s, warn, err)
	}
	src := "director = 192.0.2.1\nsecret-file = " + open + "\n[service]\nname = w\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = cpuload\n"
	p := filepath.Join(dir, "agent.conf")
	os.WriteFile(p, []byte(src), 0o644)
	a, err := LoadAgent(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Secret) != "0123456789abcdef" || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], p+":2: secret-file:") {
		t.Errorf("agent secret %q, warnings %q", a.Secret, a.Warnings)
	}
}

func TestSecretFromCredentials(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "necp-secret"), []byte("from-a-systemd-credential\n"), 0o400)
	src := "secret-file = necp-secret\n[virtual-service]\nname = w\naddress = 192.0.2.10\nprotocol = tcp\nport = 80\n"

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	m, err := ParseMaster("m.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if m.Secret != nil || len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "m.conf:1: secret-file:") {
		t.Fatalf("outside systemd: secret %q, warnings %q", m.Secret, m.Warnings)
	}
	if err := SecretMissing(m.SecretFile, m.Secret); err == nil {
		t.Fatal("a daemon would start without its secret")
	}

	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if m, err = ParseMaster("m.conf", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if string(m.Secret) != "from-a-systemd-credential" || SecretMissing(m.SecretFile, m.Secret) != nil {
		t.Fatalf("under systemd: secret %q", m.Secret)
	}
}
