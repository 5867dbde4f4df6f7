package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// Every test resolves port names from testdata/services, so that results
// do not depend on the machine's /etc/services.
func TestMain(m *testing.M) {
	servicesFile = "testdata/services"
	os.Exit(m.Run())
}

func parseErrors(t *testing.T, err error) Errors {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, want config.Errors: %v", err, err)
	}
	return es
}

func mustMaster(t *testing.T, text string) *Master {
	t.Helper()
	m, err := ParseMaster("master.conf", []byte(text))
	if err != nil {
		t.Fatalf("ParseMaster:\n%v", err)
	}
	return m
}

func mustAgent(t *testing.T, text string) *Agent {
	t.Helper()
	a, err := ParseAgent("agent.conf", []byte(text))
	if err != nil {
		t.Fatalf("ParseAgent:\n%v", err)
	}
	return a
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimalVS = "[virtual-service]\nname = web\naddress = 192.0.2.10\nprotocol = tcp\nport = 80\n"
const minimalService = "[service]\nname = web\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = cpuload\n"

func TestHOWTOMaster(t *testing.T) {
	m, err := LoadMaster("testdata/howto-master.conf")
	if err != nil {
		t.Fatalf("the HOWTO's sample must load unchanged:\n%v", err)
	}
	if m.LogFile != "/usr/local/var/log/feedbackd-master.log" || m.LogLevel != logging.LevelWarn {
		t.Errorf("logging: %q %v", m.LogFile, m.LogLevel)
	}
	if m.KeepaliveInterval != 2*time.Second || m.KeepaliveTimeout != 10*time.Second ||
		m.KeepaliveRetries != 3 || m.RemovalInterval != 30*time.Second {
		t.Errorf("timers: %+v", m)
	}
	want := []VirtualService{{Name: "http", Address: netip.MustParseAddr("127.0.0.1"),
		Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100, Line: 17}}
	if !slices.Equal(m.VirtualServices, want) {
		t.Errorf("virtual services:\n got %+v\nwant %+v", m.VirtualServices, want)
	}
	if len(m.Warnings) != 0 {
		t.Errorf("warnings: %q", m.Warnings)
	}
}

func TestHOWTOAgent(t *testing.T) {
	a, err := LoadAgent("testdata/howto-agent.conf")
	if err != nil {
		t.Fatalf("the HOWTO's sample must load unchanged:\n%v", err)
	}
	if a.Director != "$DIP:3262" || a.ConnectionRetries != 0 || a.MasterTimeout != 10*time.Second ||
		a.ModuleDir != "/usr/local/lib/feedbackd" || a.LogFile != "/usr/local/var/log/feedbackd-agent.log" ||
		a.LogLevel != logging.LevelWarn || a.File != "testdata/howto-agent.conf" {
		t.Errorf("globals: %+v", a)
	}
	if len(a.Services) != 2 {
		t.Fatalf("services: %+v", a.Services)
	}
	http, mail := a.Services[0], a.Services[1]
	if http.Name != "http" || http.Protocol != necp.ProtoTCP || http.Port != 80 ||
		http.Forwarding != necp.ForwardNAT || http.Monitor != "cpuload" || len(http.Params) != 0 ||
		http.Line != 23 || http.File != "testdata/howto-agent.conf" {
		t.Errorf("http: %+v", http)
	}
	if mail.Name != "mail" || mail.Port != 25 || mail.Monitor != "exec" ||
		mail.Params["command"] != "/usr/local/bin/monitor-mailqueue.sh" || len(mail.Params) != 1 || mail.Line != 30 {
		t.Errorf("mail: %+v", mail)
	}
	// $DIP and moduledir pass -t, with a warning each.
	if len(a.Warnings) != 2 || !strings.Contains(a.Warnings[0], "$DIP") || !strings.Contains(a.Warnings[1], "moduledir: ignored") {
		t.Errorf("warnings: %q", a.Warnings)
	}
}

// uncomment turns "#key = value" and "#[section]" lines back on, leaving
// prose comments ("# ...") alone: the packaged files document every key
// by a commented-out line, and those lines must be valid too.
func uncomment(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#(\[[a-z-]+\]|[a-z-]+ = .*)$`)
	return re.ReplaceAll(data, []byte("$1"))
}

func TestPackagedMaster(t *testing.T) {
	m, err := LoadMaster("../../etc/master.conf")
	if err != nil {
		t.Fatalf("etc/master.conf:\n%v", err)
	}
	if len(m.VirtualServices) != 0 || len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "no [virtual-service]") {
		t.Errorf("as shipped: %+v", m)
	}
	// The one setting the packaged file changes from its default: INFO, so
	// that the journal shows joins, weights and quiesces (issue 12).
	if m.LogLevel.String() != "INFO" {
		t.Errorf("packaged loglevel %v, want INFO", m.LogLevel)
	}
	// With every documented line switched on, the file must still be
	// valid, and the values it documents must be the real defaults.
	on, err := ParseMaster("master.conf", uncomment(t, "../../etc/master.conf"))
	if err != nil {
		t.Fatalf("etc/master.conf uncommented:\n%v", err)
	}
	def := mustMaster(t, minimalVS)
	if on.KeepaliveInterval != def.KeepaliveInterval || on.KeepaliveTimeout != def.KeepaliveTimeout ||
		on.KeepaliveRetries != def.KeepaliveRetries || on.RemovalInterval != def.RemovalInterval ||
		on.Listen != def.Listen || on.WeightLaw != def.WeightLaw ||
		on.WeightSmoothing != def.WeightSmoothing || on.SlowStart != def.SlowStart {
		t.Errorf("documented defaults differ from the real ones:\n got %+v\nwant %+v", on, def)
	}
	// Three examples: a persistent address service with the default
	// scheduler and max-weight, a firewall mark, a one-packet UDP one.
	if len(on.VirtualServices) != 3 || on.VirtualServices[0].Scheduler != DefaultScheduler || on.VirtualServices[0].MaxWeight != DefaultMaxWeight ||
		on.VirtualServices[1].FWMark == 0 || !on.VirtualServices[2].OnePacket {
		t.Errorf("example virtual services: %+v", on.VirtualServices)
	}
}

func TestPackagedAgent(t *testing.T) {
	if _, err := ParseAgent("../../etc/agent.conf", mustRead(t, "../../etc/agent.conf")); err != nil {
		t.Fatalf("etc/agent.conf as a layer:\n%v", err)
	}
	// As shipped the director is unset, so the agent refuses to start.
	_, err := LoadAgent("../../etc/agent.conf", "../../etc/agent.d/example.conf.sample")
	es := parseErrors(t, err)
	if len(es) != 1 || es[0].Key != "director" {
		t.Errorf("unedited agent.conf + example: %v", err)
	}

	dir := t.TempDir()
	base := writeFile(t, dir, "agent.conf", string(uncomment(t, "../../etc/agent.conf")))
	a, err := LoadAgent(base, "../../etc/agent.d/example.conf.sample")
	if err != nil {
		t.Fatalf("agent.conf uncommented + example:\n%v", err)
	}
	if a.MasterTimeout != DefaultMasterTimeout || a.ConnectionRetries != DefaultConnectionRetries || a.LogLevel != DefaultLogLevel {
		t.Errorf("documented defaults differ from the real ones: %+v", a)
	}
	if a.Director != "192.0.2.1:3262" || len(a.Services) != 3 || a.File != "../../etc/agent.d/example.conf.sample" {
		t.Errorf("layered: %+v", a)
	}
	if s := a.Services[1]; s.Monitor != "cpuload,http" || s.Params["url"] == "" || s.Params["timeout"] != "2" {
		t.Errorf("combination: %+v", s)
	}
	if p := a.Services[2].Params; p["timeout"] != "2" || p["interval"] != "5" || p["command"] == "" {
		t.Errorf("exec params: %v", p)
	}
	// The example's commented director override must be valid as well.
	ex := writeFile(t, dir, "example.conf", string(uncomment(t, "../../etc/agent.d/example.conf.sample")))
	a, err = LoadAgent(base, ex)
	if err != nil || a.Director != "192.0.2.2:3262" {
		t.Errorf("example uncommented: %v %+v", err, a)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var wantRE = regexp.MustCompile(`^# want: ([0-9]+)(?:: (\S+))?\s*$`)

// TestBroken checks that every file in testdata/broken is rejected with
// exactly one error, at the line and key its first line announces.
// Exactly one: a mistake must not drag follow-on complaints behind it.
func TestBroken(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("only %d broken files", len(files))
	}
	var nm, na int
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			first, _, _ := strings.Cut(string(mustRead(t, path)), "\n")
			w := wantRE.FindStringSubmatch(first)
			if w == nil {
				t.Fatalf("first line %q is not \"# want: LINE[: KEY]\"", first)
			}
			line, _ := strconv.Atoi(w[1])
			key := w[2]
			var err error
			switch base := filepath.Base(path); {
			case strings.HasPrefix(base, "master-"):
				nm++
				_, err = LoadMaster(path)
			case strings.HasPrefix(base, "agent-"):
				na++
				_, err = LoadAgent(path)
			default:
				t.Fatalf("name must start with master- or agent-")
			}
			if err == nil {
				t.Fatal("accepted")
			}
			es := parseErrors(t, err)
			if len(es) != 1 {
				t.Fatalf("want one error, got %d:\n%v", len(es), err)
			}
			e := es[0]
			if e.File != path || e.Line != line || e.Key != key {
				t.Errorf("got  %s:%d key %q (%v)\nwant %s:%d key %q", e.File, e.Line, e.Key, e, path, line, key)
			}
			t.Log(e)
		})
	}
	if nm == 0 || na == 0 {
		t.Errorf("master files %d, agent files %d: want both", nm, na)
	}
}

func TestMasterDefaults(t *testing.T) {
	m := mustMaster(t, minimalVS)
	want := Master{File: "master.conf", LogLevel: logging.LevelWarn, KeepaliveInterval: 2 * time.Second,
		KeepaliveTimeout: 10 * time.Second, KeepaliveRetries: 3, RemovalInterval: 30 * time.Second, Listen: ":3262"}
	vs := m.VirtualServices
	m.VirtualServices = nil
	if !equalMaster(*m, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *m, want)
	}
	if len(vs) != 1 || vs[0].Scheduler != "wrr" || vs[0].MaxWeight != 100 || vs[0].Line != 1 {
		t.Errorf("virtual service defaults: %+v", vs)
	}
}

func equalMaster(a, b Master) bool {
	return a.File == b.File && a.LogFile == b.LogFile && a.LogLevel == b.LogLevel &&
		a.KeepaliveInterval == b.KeepaliveInterval && a.KeepaliveTimeout == b.KeepaliveTimeout &&
		a.KeepaliveRetries == b.KeepaliveRetries && a.RemovalInterval == b.RemovalInterval &&
		a.Listen == b.Listen && slices.Equal(a.VirtualServices, b.VirtualServices) && len(a.Warnings) == len(b.Warnings)
}

func TestAgentDefaults(t *testing.T) {
	a := mustAgent(t, "director = lb.example.com\n"+minimalService)
	if a.Director != "lb.example.com:3262" || a.ConnectionRetries != 0 || a.MasterTimeout != 30*time.Second ||
		a.LogLevel != logging.LevelWarn || a.LogFile != "" || a.ModuleDir != "" || len(a.Warnings) != 0 {
		t.Errorf("defaults: %+v", a)
	}
	s := a.Services[0]
	if s.Forwarding != necp.ForwardDR || s.Monitor != "cpuload" || s.Params == nil || len(s.Params) != 0 {
		t.Errorf("service: %+v", s)
	}
}

func TestMasterValues(t *testing.T) {
	m := mustMaster(t, `loglevel = vdebug
keepalive-interval = 500ms
keepalive-timeout = 2.5
keepalive-retries = 0
removal-interval = 1m
listen = 10.0.0.1
logfile = /var/log/x.log
[Virtual-Service]
Name = dns
address = 192.0.2.53
protocol = UDP
port = domain
scheduler = WLC
max-weight = 65535
`)
	if m.LogLevel != logging.LevelVDebug || m.KeepaliveInterval != 500*time.Millisecond ||
		m.KeepaliveTimeout != 2500*time.Millisecond || m.KeepaliveRetries != 0 ||
		m.RemovalInterval != time.Minute || m.Listen != "10.0.0.1:3262" || m.LogFile != "/var/log/x.log" {
		t.Errorf("globals: %+v", m)
	}
	vs := m.VirtualServices[0]
	if vs.Name != "dns" || vs.Protocol != necp.ProtoUDP || vs.Port != 53 || vs.Scheduler != "wlc" || vs.MaxWeight != 65535 {
		t.Errorf("virtual service: %+v", vs)
	}
}

func TestListen(t *testing.T) {
	for in, want := range map[string]string{
		":3262": ":3262", ":4000": ":4000", "0.0.0.0": "0.0.0.0:3262", "127.0.0.1:99": "127.0.0.1:99",
		"localhost": "localhost:3262", ":www": ":80", "::1": "[::1]:3262", "[::]:3262": "[::]:3262",
	} {
		m := mustMaster(t, "listen = "+in+"\n"+minimalVS)
		if m.Listen != want {
			t.Errorf("listen = %s: got %q, want %q", in, m.Listen, want)
		}
	}
	for _, in := range []string{"[::1", "[::]3262", "host name", "10.0.0.1:0", "a_b:80", ":"} {
		if _, err := ParseMaster("m", []byte("listen = "+in+"\n"+minimalVS)); err == nil {
			t.Errorf("listen = %s accepted", in)
		}
	}
}

func TestDirector(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1:3262", "192.0.2.1:4000": "192.0.2.1:4000", "lb": "lb:3262",
		"lb.example.com.:http": "lb.example.com.:80", "$DIP": "$DIP:3262",
		"::1": "[::1]:3262", "[2001:db8::1]:3262": "[2001:db8::1]:3262", "[2001:db8::1]:4000": "[2001:db8::1]:4000",
	} {
		a := mustAgent(t, "director = "+in+"\n")
		if a.Director != want {
			t.Errorf("director = %s: got %q, want %q", in, a.Director, want)
		}
		if warned := len(a.Warnings) == 1; warned != (in == "$DIP") {
			t.Errorf("director = %s: warnings %q", in, a.Warnings)
		}
	}
	for _, in := range []string{"", ":3262", "0.0.0.0", "::", "[2001:db8::1", "lb:70000", "lb:", "a a", "192.0.2.1, 192.0.2.1:3262", ",",
		"[::1]:3262 ::1"} {
		if _, err := ParseAgent("a", []byte("director = "+in+"\n")); err == nil {
			t.Errorf("director = %q accepted", in)
		}
	}
	// Several directors (an HA pair, active-active): commas or spaces.
	a := mustAgent(t, "director = 192.0.2.1, 192.0.2.2:4000 lb\n")
	if want := []string{"192.0.2.1:3262", "192.0.2.2:4000", "lb:3262"}; !slices.Equal(a.Directors, want) ||
		a.Director != "192.0.2.1:3262, 192.0.2.2:4000, lb:3262" {
		t.Errorf("three directors: %q (%q)", a.Directors, a.Director)
	}
	// Both families in one list.
	a = mustAgent(t, "director = 192.0.2.1 [2001:db8::1]:4000, 2001:db8::2\n")
	if want := []string{"192.0.2.1:3262", "[2001:db8::1]:4000", "[2001:db8::2]:3262"}; !slices.Equal(a.Directors, want) {
		t.Errorf("two families: %q", a.Directors)
	}
}

func TestServiceParams(t *testing.T) {
	a := mustAgent(t, `director = 192.0.2.1
[service]
name = check
protocol = tcp
port = 8080
forwarding = tun
monitor = EXEC.so
Command = /bin/check --a; echo $? # not a comment
TIMEOUT = 0.5
interval = 2s
[service]
name = fixed
protocol = udp
port = 53
forwarding = Nat
monitor = constant
value = 0
[service]
name = script
protocol = udp
port = ntp
forwarding = DR
monitor = perl.so
file = monitor.pl
`)
	s := a.Services
	if s[0].Monitor != "exec" || s[0].Forwarding != necp.ForwardTUN ||
		s[0].Params["command"] != "/bin/check --a; echo $? # not a comment" ||
		s[0].Params["timeout"] != "0.5" || s[0].Params["interval"] != "2s" || len(s[0].Params) != 3 {
		t.Errorf("exec: %+v", s[0])
	}
	if s[1].Monitor != "constant" || s[1].Params["value"] != "0" || s[1].Forwarding != necp.ForwardNAT {
		t.Errorf("constant: %+v", s[1])
	}
	if s[2].Monitor != "perl" || s[2].Params["file"] != "monitor.pl" || s[2].Port != 123 {
		t.Errorf("perl: %+v", s[2])
	}
}

// TestSyntax covers what the scanner and ini.v1 must agree on.
func TestSyntax(t *testing.T) {
	// CRLF line ends, a byte order mark, indentation, no final newline,
	// quotes around a value, a trailing backslash, a %(x)s that ini.v1
	// would expand through Key.String.
	text := "\ufeff# bom\r\ndirector = 192.0.2.1\r\n  [service]  # web\r\n\tname = \"my web\"\r\nprotocol=tcp\r\nport = 80\r\nforwarding = DR\r\n" +
		"monitor = exec\r\ncommand = printf '%(x)s' \\\r\n; comment\r\ninterval = 3"
	a := mustAgent(t, text)
	s := a.Services[0]
	if s.Line != 3 || s.Name != "my web" || s.Params["command"] != `printf '%(x)s' \` || s.Params["interval"] != "3" {
		t.Errorf("%+v", s)
	}
	// A broken line is reported and the rest of the file still checked.
	_, err := ParseAgent("a.conf", []byte("director = 192.0.2.1\n[service\nname = x\n[service]\nport = 99999\n"))
	es := parseErrors(t, err)
	got := []string{}
	for _, e := range es {
		got = append(got, strconv.Itoa(e.Line)+":"+e.Key)
	}
	want := []string{"2:", "4:monitor", "4:name", "4:protocol", "4:forwarding", "5:port"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v\n%v", got, want, err)
	}
}

func TestAllErrorsSorted(t *testing.T) {
	_, err := ParseMaster("m.conf", []byte(`loglevel = LOUD
[virtual-service]
name = a
address = 192.0.2.1
protocol = tcp
port = 0
bogus = 1
[elsewhere]
junk
keepalive-retries = x
`))
	es := parseErrors(t, err)
	var lines []int
	for _, e := range es {
		lines = append(lines, e.Line)
	}
	// Line 10 is inside the unknown section: not checked, not reported.
	if !slices.Equal(lines, []int{1, 6, 7, 8, 9}) {
		t.Errorf("lines %v:\n%v", lines, err)
	}
	if !strings.HasPrefix(err.Error(), "m.conf:1: loglevel: unknown log level") || strings.Count(err.Error(), "\n") != 4 {
		t.Errorf("text:\n%v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.conf", Line: 7, Key: "scheduler", Msg: "bad"}, "a.conf:7: scheduler: bad"},
		{Error{File: "a.conf", Line: 3, Msg: "syntax"}, "a.conf:3: syntax"},
		{Error{File: "a.conf", Key: "director", Msg: "missing"}, "a.conf: director: missing"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

func TestInlineCommentHint(t *testing.T) {
	_, err := ParseMaster("m", []byte("keepalive-interval = 2 ; seconds\n"+minimalVS))
	if err == nil || !strings.Contains(err.Error(), "comments must be on a line of their own") {
		t.Errorf("%v", err)
	}
}

func TestReadErrors(t *testing.T) {
	_, err := LoadMaster("testdata/no-such-file.conf")
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "testdata/no-such-file.conf: cannot read: no such file or directory" {
		t.Errorf("%v", err)
	}
	// One unreadable layer does not hide the problems of the others.
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.conf", "director = 192.0.2.1\nloglevel = LOUD\n")
	_, err = LoadAgent(bad, filepath.Join(dir, "missing.conf"))
	es := parseErrors(t, err)
	if len(es) != 2 || es[0].File != bad || es[0].Key != "loglevel" || !errors.Is(es[1], fs.ErrNotExist) {
		t.Errorf("%v", err)
	}
	if _, err := LoadAgent(); err == nil {
		t.Error("LoadAgent() with no files accepted")
	}
}

func TestLayering(t *testing.T) {
	dir := t.TempDir()
	base := writeFile(t, dir, "agent.conf", "director = 192.0.2.1\nloglevel = INFO\nmaster-timeout = 20\n"+minimalService)
	inst := writeFile(t, dir, "inst.conf", "loglevel = DEBUG\nconnection-retries = 5\n[service]\nname = dns\nprotocol = udp\nport = 53\nforwarding = DR\nmonitor = constant\nvalue = 50\n")
	a, err := LoadAgent(base, inst)
	if err != nil {
		t.Fatal(err)
	}
	// Later files override only the keys they set.
	if a.Director != "192.0.2.1:3262" || a.LogLevel != logging.LevelDebug || a.MasterTimeout != 20*time.Second ||
		a.ConnectionRetries != 5 || a.File != inst {
		t.Errorf("globals: %+v", a)
	}
	if len(a.Services) != 2 || a.Services[0].Name != "web" || a.Services[0].File != base ||
		a.Services[1].Name != "dns" || a.Services[1].File != inst || a.Services[1].Line != 3 {
		t.Errorf("services: %+v", a.Services)
	}

	// Only a director in one file and only services in the other.
	onlyDir := writeFile(t, dir, "dir.conf", "director = 192.0.2.9\n")
	onlySvc := writeFile(t, dir, "svc.conf", minimalService)
	if a, err := LoadAgent(onlyDir, onlySvc); err != nil || a.Director != "192.0.2.9:3262" {
		t.Errorf("%v %+v", err, a)
	}
	// The later director wins.
	if a, err := LoadAgent(base, onlyDir); err != nil || a.Director != "192.0.2.9:3262" {
		t.Errorf("%v %+v", err, a)
	}

	// The same service in two layers is an error naming both places.
	_, err = LoadAgent(base, onlySvc)
	es := parseErrors(t, err)
	if len(es) != 1 || es[0].File != onlySvc || es[0].Line != 1 || !strings.Contains(es[0].Msg, base+":4") {
		t.Errorf("%v", err)
	}

	// Neither file names a director / offers a service.
	_, err = LoadAgent(onlySvc, writeFile(t, dir, "x.conf", "loglevel = ERR\n"))
	es = parseErrors(t, err)
	if len(es) != 1 || es[0].Key != "director" || es[0].Line != 0 || !strings.Contains(es[0].Msg, "any of the files") {
		t.Errorf("%v", err)
	}
	_, err = LoadAgent(onlyDir)
	es = parseErrors(t, err)
	if len(es) != 1 || es[0].File != onlyDir || !strings.Contains(es[0].Msg, "no [service]") {
		t.Errorf("%v", err)
	}
	// ParseAgent checks a single layer: neither is required there.
	if _, err := ParseAgent("empty.conf", nil); err != nil {
		t.Errorf("empty layer: %v", err)
	}
}

func TestMasterWarnings(t *testing.T) {
	m := mustMaster(t, "keepalive-interval = 20\n"+minimalVS+"scheduler = rr\n"+
		"[virtual-service]\nname = web\naddress = 192.0.2.11\nprotocol = tcp\nport = 80\n")
	want := []string{
		"master.conf:1: keepalive-interval: 20s is close to or above",
		"master.conf:7: scheduler: rr ignores weights",
		"master.conf:8: name \"web\" is also used by the [virtual-service] on line 2",
	}
	if len(m.Warnings) != len(want) {
		t.Fatalf("warnings: %q", m.Warnings)
	}
	for i, w := range want {
		if !strings.HasPrefix(m.Warnings[i], w) {
			t.Errorf("warning %d: %q, want prefix %q", i, m.Warnings[i], w)
		}
	}
	a := mustAgent(t, "master-timeout = 3\n")
	if len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "master-timeout") {
		t.Errorf("agent warnings: %q", a.Warnings)
	}
}

func TestSameVIPDifferentPortOrProtocol(t *testing.T) {
	m := mustMaster(t, minimalVS+
		"[virtual-service]\nname = web-udp\naddress = 192.0.2.10\nprotocol = udp\nport = 80\n"+
		"[virtual-service]\nname = web-other-vip\naddress = 192.0.2.11\nprotocol = tcp\nport = 80\n")
	if len(m.VirtualServices) != 3 {
		t.Errorf("%+v", m.VirtualServices)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"2": 2 * time.Second, "0.5": 500 * time.Millisecond, "30": 30 * time.Second, "0.001": time.Millisecond,
		"500ms": 500 * time.Millisecond, "2s": 2 * time.Second, "1m30s": 90 * time.Second, " 10 ": 10 * time.Second,
		"007": 7 * time.Second,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0.0", "0s", "-1", "-2s", "1e3", "0x10", "2.", ".5", "two", "2 s", "+2", "1ns0", "0.0000000001", "99999999999999999999", "Inf", "NaN"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, c := range []struct {
		in, proto string
		want      uint16
	}{
		{"80", "tcp", 80}, {"1", "udp", 1}, {"65535", "tcp", 65535}, {"0080", "tcp", 80},
		{"http", "tcp", 80}, {"HTTP", "TCP", 80}, {"www", "tcp", 80}, {"mail", "tcp", 25},
		{"domain", "udp", 53}, {"ntp", "udp", 123}, {"http-cache", "tcp", 8080}, {"ntp", "", 123},
	} {
		got, err := ParsePort(c.in, c.proto)
		if err != nil || got != c.want {
			t.Errorf("ParsePort(%q, %q) = %d, %v; want %d", c.in, c.proto, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, proto string }{
		{"0", "tcp"}, {"65536", "tcp"}, {"70000", "udp"}, {"-1", "tcp"}, {"", "tcp"},
		{"http", "udp"}, {"ntp", "tcp"}, {"nosuch", "tcp"}, {"broken-line", "tcp"}, {"zero", "tcp"},
		{"http", "sctp"}, {"99999999999999999999", "tcp"},
		{"ssh", "tcp"}, // in the fallback table, but the file exists and lacks it
	} {
		if got, err := ParsePort(c.in, c.proto); err == nil {
			t.Errorf("ParsePort(%q, %q) = %d, want an error", c.in, c.proto, got)
		}
	}
}

func TestParsePortServicesFile(t *testing.T) {
	defer func(f string) { servicesFile = f }(servicesFile)

	// A missing file falls back to the built-in table.
	servicesFile = filepath.Join(t.TempDir(), "absent")
	if p, err := ParsePort("https", "tcp"); err != nil || p != 443 {
		t.Errorf("fallback https: %d %v", p, err)
	}
	if _, err := ParsePort("webcache", "tcp"); err == nil || !strings.Contains(err.Error(), "built-in table") {
		t.Errorf("fallback webcache: %v", err)
	}

	// A replaced or edited file is read again.
	dir := t.TempDir()
	servicesFile = writeFile(t, dir, "services", "feedback 4000/tcp\n")
	if p, err := ParsePort("feedback", "tcp"); err != nil || p != 4000 {
		t.Errorf("injected: %d %v", p, err)
	}
	writeFile(t, dir, "services", "feedback 4001/tcp fb # edited\n")
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(servicesFile, later, later); err != nil {
		t.Fatal(err)
	}
	if p, err := ParsePort("fb", "tcp"); err != nil || p != 4001 {
		t.Errorf("edited: %d %v", p, err)
	}
}

// FuzzParse checks that the line scanner and ini.v1 never disagree on the
// structure of a file (that would show as an "internal error") and that
// nothing panics. The seeds run with every go test.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/howto-master.conf", "testdata/howto-agent.conf", "../../etc/master.conf", "../../etc/agent.d/example.conf.sample"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	broken, _ := filepath.Glob("testdata/broken/*.conf")
	for _, p := range broken {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"a = \"\"\"x\ny\"\"\"\n", "a = `x\ny`\n", "[a.b]\nc = d\n[a]\ne = f\n", "[DEFAULT]\nx = 1\n", "[]\n", "[ ]\n",
		"- = 1\n", "\"k\" = v\n", "a = 1 \\\nb = 2\n", "a : b\n", "[x]]\n", "[[x]\n", "\xfe\xffa = b\n",
		"a = b\rc = d\n", "\x00 = 1\n", "=\n", "a\x85 = b\n", "[s] ; c\n", "a = \"\"\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, err := range []error{
			func() error { _, err := ParseMaster("f", data); return err }(),
			func() error { _, err := ParseAgent("f", data); return err }(),
		} {
			if err != nil && strings.Contains(err.Error(), "internal error") {
				t.Fatalf("%q:\n%v", data, err)
			}
		}
	})
}

func TestServiceAddress(t *testing.T) {
	a := mustAgent(t, `director = 192.0.2.1
[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = cpuload
address = 10.0.0.11

[service]
name = dns
protocol = udp
port = 53
forwarding = NAT
monitor = cpuload
`)
	if got := a.Services[0].Address.String(); got != "10.0.0.11" {
		t.Fatalf("address = %s, want 10.0.0.11", got)
	}
	if a.Services[1].Address.IsValid() {
		t.Fatalf("a service without address must register the connection's source, got %s", a.Services[1].Address)
	}
}

// The README's two sample files (its first and second ```ini blocks) must
// parse as printed.
func TestREADMESamples(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "```ini\n")
	if len(parts) < 3 {
		t.Fatalf("README has %d ini blocks, want 2", len(parts)-1)
	}
	master := strings.SplitN(parts[1], "```", 2)[0]
	agent := strings.SplitN(parts[2], "```", 2)[0]
	if _, err := ParseMaster("README.md (master)", []byte(master)); err != nil {
		t.Errorf("README master sample: %v", err)
	}
	// LoadAgent, not ParseAgent: a complete file needs a director and a
	// [service], which a single layer need not have.
	path := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(path, []byte(agent), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAgent(path); err != nil {
		t.Errorf("README agent sample: %v", err)
	}
}

// TestTimerFloors: each timer is accepted at its floor and refused just
// below it, with the error at the key's line (issue 13: -t passed
// keepalive-timeout = 0.0000001).
func TestTimerFloors(t *testing.T) {
	master := []struct {
		key   string
		floor time.Duration
		get   func(*Master) time.Duration
	}{
		{"keepalive-interval", MinKeepaliveInterval, func(m *Master) time.Duration { return m.KeepaliveInterval }},
		{"keepalive-timeout", MinKeepaliveTimeout, func(m *Master) time.Duration { return m.KeepaliveTimeout }},
		{"removal-interval", MinRemovalInterval, func(m *Master) time.Duration { return m.RemovalInterval }},
		{"handshake-timeout", MinHandshakeTimeout, func(m *Master) time.Duration { return m.HandshakeTimeout }},
	}
	for _, c := range master {
		m := mustMaster(t, fmt.Sprintf("%s = %v\n%s", c.key, c.floor, minimalVS))
		if got := c.get(m); got != c.floor {
			t.Errorf("%s = %v: got %v", c.key, c.floor, got)
		}
		_, err := ParseMaster("m.conf", []byte(fmt.Sprintf("loglevel = INFO\n%s = %v\n%s", c.key, c.floor-time.Nanosecond, minimalVS)))
		if err == nil {
			t.Errorf("%s = %v accepted", c.key, c.floor-time.Nanosecond)
			continue
		}
		es := parseErrors(t, err)
		if len(es) != 1 || es[0].Line != 2 || es[0].Key != c.key || !strings.Contains(es[0].Msg, "too short (at least "+c.floor.String()) {
			t.Errorf("%s below its floor: %v", c.key, err)
		}
	}

	a := mustAgent(t, fmt.Sprintf("master-timeout = %v\n", MinMasterTimeout))
	if a.MasterTimeout != MinMasterTimeout {
		t.Errorf("master-timeout at the floor: %v", a.MasterTimeout)
	}
	_, err := ParseAgent("a.conf", []byte(fmt.Sprintf("master-timeout = %v\n", MinMasterTimeout-time.Nanosecond)))
	if es := parseErrors(t, err); len(es) != 1 || es[0].Line != 1 || es[0].Key != "master-timeout" {
		t.Errorf("master-timeout below its floor: %v", err)
	}

	// The monitors' own timers, with the floors the monitor package declares.
	svc := "director = 192.0.2.1\n[service]\nname = web\nprotocol = tcp\nport = 80\nforwarding = DR\n"
	for _, c := range []struct {
		lines, key string
		floor      time.Duration
	}{
		{"monitor = constant\nvalue = 50\n", "interval", monitor.MinInterval},
		{"monitor = cpuload\n", "interval", monitor.MinInterval},
		{"monitor = exec\ncommand = true\n", "timeout", monitor.MinTimeout},
		{"monitor = perl\nfile = x.pl\n", "timeout", monitor.MinTimeout},
	} {
		text := svc + c.lines
		a := mustAgent(t, fmt.Sprintf("%s%s = %v\n", text, c.key, c.floor))
		if got := a.Services[0].Params[c.key]; got != c.floor.String() {
			t.Errorf("%s%s at the floor: %q", c.lines, c.key, got)
		}
		_, err := ParseAgent("a.conf", []byte(fmt.Sprintf("%s%s = %v\n", text, c.key, c.floor-time.Microsecond)))
		line := strings.Count(text, "\n") + 1
		if es := parseErrors(t, err); len(es) != 1 || es[0].Line != line || es[0].Key != c.key {
			t.Errorf("%s%s below its floor: want line %d: %v", c.lines, c.key, line, err)
		}
	}
}

// TestKeepaliveDeathRelation: (1 + keepalive-retries) × keepalive-timeout
// must fit in a time.Duration; the largest product that fits is accepted.
func TestKeepaliveDeathRelation(t *testing.T) {
	// keepalive-retries is at most 2^31 - 1, so 1 + retries is 2^31, and
	// 2^32 - 1 ns is the longest timeout whose product still fits.
	m := mustMaster(t, "keepalive-timeout = 4294967295ns\nkeepalive-retries = 2147483647\n"+minimalVS)
	if got := time.Duration(1+m.KeepaliveRetries) * m.KeepaliveTimeout; got <= 0 {
		t.Errorf("accepted, but the product wraps: %v", got)
	}
	_, err := ParseMaster("m.conf", []byte("keepalive-timeout = 4294967296ns\nkeepalive-retries = 2147483647\n"+minimalVS))
	if es := parseErrors(t, err); len(es) != 1 || es[0].Line != 2 || es[0].Key != "keepalive-retries" {
		t.Errorf("%v", err)
	}
}

func TestAgentCheckListen(t *testing.T) {
	a := mustAgent(t, `director = 192.0.2.1
[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = cpuload
agent-check-listen = 127.0.0.1:9777

[service]
name = mail
protocol = tcp
port = 25
forwarding = DR
monitor = cpuload
agent-check-listen = 127.0.0.2:9777

[service]
name = dns
protocol = udp
port = 53
forwarding = DR
monitor = cpuload
agent-check-listen = :9778
`)
	for i, want := range []string{"127.0.0.1:9777", "127.0.0.2:9777", ":9778"} {
		if got := a.Services[i].AgentCheckListen; got != want {
			t.Errorf("service %d: agent-check-listen %q, want %q", i, got, want)
		}
	}
	// HAProxy reaches an agent over either family.
	if got, err := parseAgentCheckListen("[::1]:9777"); err != nil || got != "[::1]:9777" {
		t.Errorf("agent-check-listen = [::1]:9777: %q, %v", got, err)
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", "::1", "[::1]", "127.0.0.1:70000", "a b:1", ""} {
		if got, err := parseAgentCheckListen(bad); err == nil {
			t.Errorf("agent-check-listen = %q accepted as %q", bad, got)
		}
	}
}

// The keys ipvsadm -A sets besides the scheduler, read as written: a
// persistent service, a firewall-mark one fed by tcp/80, an sh service
// with its flags, a one-packet UDP one with the director's forwarding.
func TestVirtualServiceOptions(t *testing.T) {
	m := mustMaster(t, `[virtual-service]
name = web
address = 192.0.2.10
protocol = tcp
port = 80
persistence-timeout = 600
persistence-netmask = 255.255.255.0
[virtual-service]
name = web-marked
fwmark = 1
protocol = tcp
agent-port = http
scheduler = sh
scheduler-flags = sh-port, sh-fallback
forwarding = dr
persistence-timeout = 60
[virtual-service]
name = dns
address = 192.0.2.10
protocol = udp
port = 53
one-packet = yes
forwarding = NAT
scheduler = mh
scheduler-flags = mh-fallback
persistence-timeout = 30
persistence-netmask = /16
`)
	want := []VirtualService{
		{Name: "web", Address: netip.MustParseAddr("192.0.2.10"), Protocol: necp.ProtoTCP, Port: 80, Scheduler: "wrr", MaxWeight: 100, Line: 1,
			PersistenceTimeout: 600, PersistenceNetmask: 24},
		{Name: "web-marked", Protocol: necp.ProtoTCP, Scheduler: "sh", MaxWeight: 100, Line: 8,
			FWMark: 1, AgentPort: 80, SchedulerFlags: "sh-port,sh-fallback", Forwarding: necp.ForwardDR, PersistenceTimeout: 60},
		{Name: "dns", Address: netip.MustParseAddr("192.0.2.10"), Protocol: necp.ProtoUDP, Port: 53, Scheduler: "mh", MaxWeight: 100, Line: 17,
			OnePacket: true, Forwarding: necp.ForwardNAT, SchedulerFlags: "mh-fallback", PersistenceTimeout: 30, PersistenceNetmask: 16},
	}
	if !slices.Equal(m.VirtualServices, want) {
		t.Errorf("virtual services:\n got %+v\nwant %+v", m.VirtualServices, want)
	}
	if fm := m.VirtualServices[1]; fm.FeedPort() != 80 || fm.DestPort(80) != 0 {
		t.Errorf("fwmark service: feeds from port %d, adds realservers on port %d; want 80 and 0", fm.FeedPort(), fm.DestPort(80))
	}
	if vs := m.VirtualServices[0]; vs.FeedPort() != 80 || vs.DestPort(80) != 80 {
		t.Errorf("address service: feeds from port %d, adds realservers on port %d; want 80 and 80", vs.FeedPort(), vs.DestPort(80))
	}
}

// persistence-netmask takes ipvsadm -M's dotted mask or a prefix length,
// and refuses masks with holes and the mask that puts every client on one
// realserver.
func TestParsePersistenceNetmask(t *testing.T) {
	for in, want := range map[string]int{"255.255.255.0": 24, "24": 24, "/8": 8, "255.255.255.255": 32, "128.0.0.0": 1} {
		if got, err := parsePersistenceNetmask(in, false); err != nil || got != want {
			t.Errorf("parsePersistenceNetmask(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "/0", "0.0.0.0", "33", "255.0.255.0", "0.255.255.255", "ffff::", "mask", ""} {
		if got, err := parsePersistenceNetmask(in, false); err == nil {
			t.Errorf("parsePersistenceNetmask(%q) = %d, want an error", in, got)
		}
	}
	// An IPv6 service: prefix lengths up to 128, no dotted masks.
	if got, err := parsePersistenceNetmask("64", true); err != nil || got != 64 {
		t.Errorf("IPv6 persistence-netmask 64 = %d, %v", got, err)
	}
	for _, in := range []string{"129", "0", "255.255.255.0", "ffff:ffff::"} {
		if got, err := parsePersistenceNetmask(in, true); err == nil {
			t.Errorf("IPv6 persistence-netmask %q = %d, want an error", in, got)
		}
	}
}
