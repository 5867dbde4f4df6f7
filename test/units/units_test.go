// Package units checks the systemd unit files in systemd/ with the tools
// systemd itself ships, without needing systemd as PID 1:
//
//   - `systemd-analyze verify` loads each unit (and the units it names) the
//     way systemd would and complains about bad values, unknown keys and
//     ExecStart= binaries that do not exist;
//   - `systemd-analyze security --offline=yes` scores each service's
//     sandbox from 0.0 (locked down) to 10.0 (unprotected);
//   - plain reads of the files check what neither tool can judge: that the
//     master keeps CAP_NET_ADMIN and the host network, that the agent can
//     still read /proc/stat, and so on.
//
// systemd-analyze must be on PATH (Debian/Ubuntu: the "systemd" package).
// Without it the test fails rather than skips, so that a CI image without
// it cannot pass silently.
package units

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/control"
)

// repoRoot is where go.mod is, seen from this package's directory (go test
// runs a package's tests in its source directory).
const repoRoot = "../.."

// The unit files, as installed in /usr/lib/systemd/system.
const (
	masterSocket  = "feedbackd-master.socket"
	masterService = "feedbackd-master.service"
	agentTemplate = "feedbackd-agent@.service"
	syncService   = "feedbackd-agent-sync.service"
	syncPath      = "feedbackd-agent-sync.path"
	modulesLoad   = "lvs-feedbackd.conf" // /usr/lib/modules-load.d/
)

// agentInstance is how the template is verified and scored: an instance
// whose escaped name (\x2d is "-") exercises %I's unescaping.
const agentInstance = `feedbackd-agent@web\x2dfrontend.service`

// binaries are the commands the units run from /usr/sbin, built from
// ./cmd/NAME for verify, which insists that ExecStart= names an executable.
var binaries = []string{"feedbackd-master", "feedbackd-agent", "feedbackd-agent-sync"}

// securityLimits are the highest acceptable overall exposure levels, in
// tenths: `systemd-analyze security --threshold=N` fails above N/10 (its
// scale is 0-100 although it prints 0.0-10.0; TestSecurity checks that).
var securityLimits = map[string]int{
	masterService: 25, // 2.5: needs CAP_NET_ADMIN, netlink and the host network
	agentInstance: 15, // 1.5: no privileges at all, but monitors need the network
	syncService:   10, // 1.0: root, but no capabilities and no network
}

// manPages are the pages the units may point at with Documentation=.
// Never feedbackd(8): that page belongs to an unrelated Debian package.
var manPages = []string{
	"feedbackd-master(8)", "feedbackd-agent(8)", "feedbackd-master.conf(5)",
	"feedbackd-agent.conf(5)", "feedbackd-agent-sync(8)",
}

// Time limits for the external commands; nothing here sleeps.
const (
	buildTimeout   = 5 * time.Minute // a cold build cache in CI
	analyzeTimeout = 30 * time.Second
)

// unitDir holds the unit files as they are installed.
var unitDir = filepath.Join(repoRoot, "systemd")

// listUnits lists every unit in systemd/ (not the modules-load file), so
// that a unit added later is verified without touching this test.
func listUnits() ([]string, error) {
	var names []string
	for _, pat := range []string{"*.service", "*.socket", "*.path", "*.timer", "*.target"} {
		m, err := filepath.Glob(filepath.Join(unitDir, pat))
		if err != nil {
			return nil, err
		}
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

// unitFiles is listUnits for a test, which also requires the five units
// this package is about.
func unitFiles(t *testing.T) []string {
	t.Helper()
	names, err := listUnits()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{masterSocket, masterService, agentTemplate, syncService, syncPath} {
		if !slices.Contains(names, want) {
			t.Errorf("systemd/%s is missing", want)
		}
	}
	return names
}

// unit is a parsed unit file: section -> key -> values in file order.
type unit map[string]map[string][]string

// parseUnit reads the subset of the unit file syntax (systemd.syntax(7))
// these files use: [Section] headers, Key=Value lines, comment lines
// starting with # or ;, and lines continued with a trailing backslash.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cont string
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get returns the values of key in section ("" if absent), and last the
// effective one for single-valued keys.
func (u unit) get(section, key string) []string { return u[section][key] }

func (u unit) last(section, key string) string {
	v := u.get(section, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words splits the values of a list-valued key (several assignments
// accumulate; an empty one resets the list).
func (u unit) words(section, key string) []string {
	var w []string
	for _, v := range u.get(section, key) {
		if v == "" {
			w = nil
			continue
		}
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// requireAnalyze finds systemd-analyze or fails the test.
func requireAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found on PATH (%v): install the systemd package "+
			"(Debian/Ubuntu: apt-get install systemd) to check the unit files in systemd/", err)
	}
	return p
}

// analyzeEnv keeps systemd-analyze's own logging predictable: every
// warning (and notice) on stderr, nothing at info or debug level whatever
// the caller's environment says, no colours, no pager, never the journal.
func analyzeEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SYSTEMD_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") ||
			strings.HasPrefix(kv, "JOURNAL_STREAM=")
	})
	return append(env,
		"SYSTEMD_LOG_LEVEL=notice", "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_COLOR=0",
		"SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat", "SYSTEMD_URLIFY=0")
}

// run runs a command with a deadline and returns stdout, stderr and the
// exit code (-1 if it did not exit normally).
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no answer within %v", name, strings.Join(args, " "), timeout)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return o.String(), e.String(), code
}

// stageRoot is a temporary directory shared by the tests of this package
// (made by TestMain), so that the binaries are built once.
var stageRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "feedbackd-units-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stageRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	stageOnce sync.Once
	stageDir  string
	stageLog  []string
	stageErr  error
)

// stageUnits builds the binaries and copies the units into a temporary
// directory with /usr/sbin/feedbackd-* replaced by the built binaries, so
// that verify finds real executables. File names are kept: verify loads a
// unit's neighbours (the socket of a service, the service of a path unit)
// from the same directory. It returns that directory.
func stageUnits(t *testing.T) string {
	t.Helper()
	stageOnce.Do(func() { stageDir, stageLog, stageErr = stage(t.Context()) })
	for _, l := range stageLog {
		t.Log(l)
	}
	if stageErr != nil {
		t.Fatal(stageErr)
	}
	return stageDir
}

func stage(ctx context.Context) (string, []string, error) {
	var notes []string
	bin := filepath.Join(stageRoot, "bin")
	units := filepath.Join(stageRoot, "units")
	for _, d := range []string{bin, units} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", nil, err
		}
	}

	var pkgs []string
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(repoRoot, "cmd", b)); err == nil {
			pkgs = append(pkgs, "./cmd/"+b)
			continue
		}
		// A command that does not exist (yet): verify only needs an
		// executable file at the path, so a stand-in script keeps the unit
		// checked. (feedbackd-agent-sync was written alongside these
		// units; today every command in binaries is built for real.)
		notes = append(notes, fmt.Sprintf("./cmd/%s does not exist; verifying its unit against a stand-in executable", b))
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			return "", nil, err
		}
	}
	goCmd, err := exec.LookPath("go") // go test puts GOROOT/bin first on PATH
	if err != nil {
		return "", nil, fmt.Errorf("go not found on PATH: %w", err)
	}
	if len(pkgs) > 0 {
		bctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		build := exec.CommandContext(bctx, goCmd, append([]string{"build", "-o", bin + "/"}, pkgs...)...)
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
		}
	}

	names, err := listUnits()
	if err != nil {
		return "", nil, err
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(unitDir, name))
		if err != nil {
			return "", nil, err
		}
		staged := strings.ReplaceAll(string(data), "/usr/sbin/feedbackd-", bin+"/feedbackd-")
		if err := os.WriteFile(filepath.Join(units, name), []byte(staged), 0o644); err != nil {
			return "", nil, err
		}
	}
	return units, notes, nil
}

// TestVerify runs `systemd-analyze verify` on every unit and on an
// instance of the agent template. Unknown keys are only warnings (exit
// code 0), so stderr must be empty as well.
func TestVerify(t *testing.T) {
	analyze := requireAnalyze(t)
	units := stageUnits(t)
	targets := []string{}
	for _, name := range unitFiles(t) {
		targets = append(targets, name)
		switch {
		case name == agentTemplate:
			targets = append(targets, agentInstance)
		case strings.HasSuffix(name, "@.service"):
			targets = append(targets, strings.TrimSuffix(name, ".service")+"test.service")
		}
	}
	for _, name := range targets {
		t.Run(name, func(t *testing.T) {
			// A path (not a bare name) makes verify load the file and its
			// neighbours from units/; an instance path needs no file of
			// its own, verify finds the template next to it.
			_, stderr, code := run(t, analyzeTimeout, analyzeEnv(), analyze,
				"verify", "--man=no", filepath.Join(units, name))
			if code != 0 || strings.TrimSpace(stderr) != "" {
				t.Errorf("systemd-analyze verify %s: exit code %d, stderr:\n%s", name, code, stderr)
			}
		})
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): (\d+)\.(\d)\b`)

// TestSecurity scores each service with `systemd-analyze security
// --offline=yes` and holds it to its limit in securityLimits.
func TestSecurity(t *testing.T) {
	analyze := requireAnalyze(t)
	// --offline= and --threshold= arrived in systemd 250 (Debian 12 and
	// RHEL 9 have 252).
	out, _, _ := run(t, analyzeTimeout, analyzeEnv(), analyze, "--version")
	var version int
	if _, err := fmt.Sscanf(out, "systemd %d", &version); err != nil || version < 250 {
		t.Fatalf("systemd-analyze security --offline needs systemd 250 or later; systemd-analyze --version says %q",
			strings.SplitN(out, "\n", 2)[0])
	}
	units := stageUnits(t)
	for _, name := range slices.Sorted(maps.Keys(securityLimits)) {
		limit := securityLimits[name]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(units, name)
			stdout, stderr, code := run(t, analyzeTimeout, analyzeEnv(), analyze,
				"security", "--offline=yes", "--no-pager", fmt.Sprintf("--threshold=%d", limit), path)
			m := exposureRE.FindStringSubmatch(stdout)
			if m == nil {
				t.Fatalf("no \"Overall exposure level\" line in the output (exit code %d):\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			whole, _ := strconv.Atoi(m[2])
			tenth, _ := strconv.Atoi(m[3])
			score := whole*10 + tenth
			t.Logf("%s: overall exposure level %d.%d (limit %d.%d)", name, whole, tenth, limit/10, limit%10)
			if score > limit {
				t.Errorf("%s scores %d.%d, above the limit %d.%d; the items it loses points on:\n%s",
					name, whole, tenth, limit/10, limit%10, failedItems(stdout))
			}
			if code != 0 {
				t.Errorf("systemd-analyze security --threshold=%d %s: exit code %d, want 0\n%s", limit, name, code, stderr)
			}
			if strings.TrimSpace(stderr) != "" {
				t.Errorf("systemd-analyze security %s wrote to stderr:\n%s", name, stderr)
			}
			// The threshold is in tenths of the printed figure: one tenth
			// below the score must fail, or the limits above mean nothing.
			if score > 0 {
				_, _, below := run(t, analyzeTimeout, analyzeEnv(), analyze,
					"security", "--offline=yes", "--no-pager", fmt.Sprintf("--threshold=%d", score-1), path)
				if below == 0 {
					t.Errorf("--threshold=%d passed a unit scoring %d.%d: the threshold is not in tenths any more; fix securityLimits",
						score-1, whole, tenth)
				}
			}
		})
	}
}

// failedItems picks the lines of a security report that cost points.
func failedItems(report string) string {
	var b strings.Builder
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "✗") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestContents checks what verify and security cannot see. It needs no
// systemd tools.
func TestContents(t *testing.T) {
	dir := unitDir
	all := map[string]unit{}
	for _, name := range unitFiles(t) {
		all[name] = parseUnit(t, filepath.Join(dir, name))
	}

	t.Run("Description and Documentation", func(t *testing.T) {
		docRE := regexp.MustCompile(`^man:(\S+\(\d\))$`)
		for name, u := range all {
			if u.last("Unit", "Description") == "" {
				t.Errorf("%s: no Description=", name)
			}
			docs := u.words("Unit", "Documentation")
			if len(docs) == 0 {
				t.Errorf("%s: no Documentation=", name)
			}
			for _, d := range docs {
				m := docRE.FindStringSubmatch(d)
				if m == nil || !slices.Contains(manPages, m[1]) {
					t.Errorf("%s: Documentation=%s is not one of man:%s", name, d, strings.Join(manPages, ", man:"))
				}
			}
		}
	})

	t.Run("never feedbackd(8)", func(t *testing.T) {
		// Comments included: a page that belongs to another package.
		bad := regexp.MustCompile(`(^|[^-.\w])feedbackd\(8\)`)
		for _, name := range append(unitFiles(t), modulesLoad) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if loc := bad.FindIndex(data); loc != nil {
				t.Errorf("%s refers to feedbackd(8), a page of the unrelated feedbackd package: %q", name, data[loc[0]:loc[1]])
			}
		}
	})

	t.Run("no modprobe in Exec lines", func(t *testing.T) {
		// ip_vs comes from modules-load.d (and the kernel's autoload), never
		// from a command that would fail in the sandbox or without modules.
		for name, u := range all {
			for key, vals := range u["Service"] {
				if !strings.HasPrefix(key, "Exec") {
					continue
				}
				for _, v := range vals {
					if strings.Contains(v, "modprobe") {
						t.Errorf("%s: %s=%s loads a module; list it in %s instead", name, key, v, modulesLoad)
					}
				}
			}
		}
	})

	t.Run("Exec binaries", func(t *testing.T) {
		// Every command is one of ours from /usr/sbin (so verify checks the
		// real build) or kill for ExecReload.
		for name, u := range all {
			for key, vals := range u["Service"] {
				if !strings.HasPrefix(key, "Exec") {
					continue
				}
				for _, v := range vals {
					f := strings.Fields(strings.TrimLeft(v, "-@:+!"))
					if len(f) == 0 {
						continue
					}
					ok := f[0] == "/bin/kill"
					for _, b := range binaries {
						ok = ok || f[0] == "/usr/sbin/"+b
					}
					if !ok {
						t.Errorf("%s: %s=%s runs %s, not /usr/sbin/feedbackd-* or /bin/kill", name, key, v, f[0])
					}
				}
			}
		}
	})

	t.Run("socket", func(t *testing.T) {
		u := all[masterSocket]
		_, port, _ := strings.Cut(config.DefaultListen, ":")
		if got := u.get("Socket", "ListenStream"); !slices.Equal(got, []string{port, control.DefaultSocket}) {
			// A bare port is [::]:PORT, dual-stack with BindIPv6Only=both;
			// then the control socket where feedbackctl looks for it.
			t.Errorf("%s: ListenStream=%q, want exactly %q and %q (the master's default port, all addresses; the control socket)",
				masterSocket, got, port, control.DefaultSocket)
		}
		if got := u.last("Socket", "SocketMode"); got != "0666" {
			t.Errorf("%s: SocketMode=%q, want 0666 (everyone may read the status; the master checks credentials before a change)", masterSocket, got)
		}
		if got := u.last("Socket", "BindIPv6Only"); got != "both" {
			t.Errorf("%s: BindIPv6Only=%q, want both (IPv4 too, whatever net.ipv6.bindv6only says)", masterSocket, got)
		}
		if got := u.last("Socket", "Accept"); got != "no" && got != "" {
			t.Errorf("%s: Accept=%s; the master accepts connections itself", masterSocket, got)
		}
	})

	t.Run("master", func(t *testing.T) {
		u := all[masterService]
		for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
			if got := u.words("Service", key); !slices.Equal(got, []string{"CAP_NET_ADMIN"}) {
				t.Errorf("%s: %s=%q, want exactly CAP_NET_ADMIN (every IPVS netlink request needs it)", masterService, key, got)
			}
		}
		// The IPVS table is in the host's network namespace, and agents
		// connect from anywhere; CAP_NET_ADMIN inside a private user
		// namespace would not count for IPVS.
		for _, key := range []string{"PrivateNetwork", "PrivateUsers"} {
			if v := u.last("Service", key); v != "" && !isFalse(v) {
				t.Errorf("%s: %s=%s hides what the master must reach", masterService, key, v)
			}
		}
		for _, key := range []string{"NetworkNamespacePath", "JoinsNamespaceOf", "IPAddressDeny", "IPAddressAllow"} {
			if v := u.get("Service", key); v != nil {
				t.Errorf("%s: %s=%q: agents may connect from any address", masterService, key, v)
			}
		}
		if !slices.Contains(u.words("Service", "RestrictAddressFamilies"), "AF_NETLINK") {
			t.Errorf("%s: RestrictAddressFamilies= lacks AF_NETLINK, which is how IPVS is driven", masterService)
		}
		if u.last("Service", "User") != "" || !isTrue(u.last("Service", "DynamicUser")) {
			t.Errorf("%s: want DynamicUser=yes and no User=", masterService)
		}
		// The master's default --state-file is /var/lib/lvs-feedbackd/master.state.
		if got := u.words("Service", "StateDirectory"); !slices.Equal(got, []string{"lvs-feedbackd"}) {
			t.Errorf("%s: StateDirectory=%q, want lvs-feedbackd", masterService, got)
		}
		if !slices.Contains(u.words("Unit", "Requires"), masterSocket) || !slices.Contains(u.words("Unit", "After"), masterSocket) {
			t.Errorf("%s: want Requires= and After=%s", masterService, masterSocket)
		}
		if got := u.last("Service", "Type"); got != "notify" {
			t.Errorf("%s: Type=%s, want notify", masterService, got)
		}
		if n, err := strconv.Atoi(u.last("Service", "LimitNOFILE")); err != nil || n <= 20000 {
			t.Errorf("%s: LimitNOFILE=%q, want well above 20000 (one descriptor per agent)", masterService, u.last("Service", "LimitNOFILE"))
		}
		// The master reads the IPVS sysctls under /proc/sys to warn about
		// them (internal/master/sysctl.go), which ProcSubset=pid hides: the
		// warning then never came (found by e2e V1).
		if v := u.get("Service", "ProcSubset"); v != nil && u.last("Service", "ProcSubset") != "all" {
			t.Errorf("%s: ProcSubset=%s hides /proc/sys/net/ipv4/vs from the master", masterService, u.last("Service", "ProcSubset"))
		}
	})

	t.Run("agent", func(t *testing.T) {
		u := all[agentTemplate]
		// The cpuload monitor reads /proc/stat, which ProcSubset=pid hides.
		if v := u.get("Service", "ProcSubset"); v != nil && u.last("Service", "ProcSubset") != "all" {
			t.Errorf("%s: ProcSubset=%s hides /proc/stat from the cpuload monitor", agentTemplate, u.last("Service", "ProcSubset"))
		}
		if got := u.get("Service", "CapabilityBoundingSet"); !slices.Equal(got, []string{""}) {
			t.Errorf("%s: CapabilityBoundingSet=%q, want empty (no capabilities)", agentTemplate, got)
		}
		if got := u.words("Service", "AmbientCapabilities"); len(got) != 0 {
			t.Errorf("%s: AmbientCapabilities=%q, want none", agentTemplate, got)
		}
		if !isTrue(u.last("Service", "DynamicUser")) {
			t.Errorf("%s: want DynamicUser=yes", agentTemplate)
		}
		if v := u.last("Service", "PrivateNetwork"); v != "" && !isFalse(v) {
			t.Errorf("%s: PrivateNetwork=%s: the agent must reach the director and monitors local services", agentTemplate, v)
		}
		if got := u.last("Service", "ExecStart"); !strings.HasSuffix(got, " --instance=%I") {
			t.Errorf("%s: ExecStart=%s, want ... --instance=%%I (instance names are systemd-escaped)", agentTemplate, got)
		}
		if got := u.last("Service", "Type"); got != "notify" {
			t.Errorf("%s: Type=%s, want notify", agentTemplate, got)
		}
	})

	t.Run("sync", func(t *testing.T) {
		s, p := all[syncService], all[syncPath]
		if got := p.words("Path", "PathChanged"); !slices.Contains(got, config.DefaultAgentDir) || !slices.Contains(got, config.DefaultAgentPath) {
			t.Errorf("%s: PathChanged=%q, want %s and %s", syncPath, got, config.DefaultAgentDir, config.DefaultAgentPath)
		}
		if got := p.last("Path", "Unit"); got != "" && got != syncService {
			t.Errorf("%s: Unit=%s, want %s", syncPath, got, syncService)
		}
		if !slices.Contains(p.words("Install", "Also"), syncService) {
			t.Errorf("%s: [Install] lacks Also=%s", syncPath, syncService)
		}
		if got := s.last("Service", "Type"); got != "oneshot" {
			t.Errorf("%s: Type=%s, want oneshot", syncService, got)
		}
		// The state directory on the command line is the RuntimeDirectory
		// systemd creates, and it must survive between runs.
		rt := s.words("Service", "RuntimeDirectory")
		if len(rt) != 1 || !strings.Contains(s.last("Service", "ExecStart"), " --state-dir=/run/"+rt[0]) {
			t.Errorf("%s: ExecStart=%s does not pass --state-dir=/run/<RuntimeDirectory> (RuntimeDirectory=%q)",
				syncService, s.last("Service", "ExecStart"), rt)
		}
		if !isTrue(s.last("Service", "RuntimeDirectoryPreserve")) {
			t.Errorf("%s: want RuntimeDirectoryPreserve=yes: a oneshot's RuntimeDirectory is removed after every run otherwise", syncService)
		}
		// systemd's default start limit (5 starts in 10 s) is reached by a
		// few quick edits, and it fails the path unit too.
		if b, err := strconv.Atoi(s.last("Unit", "StartLimitBurst")); err != nil || b < 20 {
			t.Errorf("%s: StartLimitBurst=%q, want at least 20", syncService, s.last("Unit", "StartLimitBurst"))
		}
		if len(s.words("Install", "WantedBy")) == 0 {
			t.Errorf("%s: no [Install] WantedBy=: it must also run at boot", syncService)
		}
	})

	t.Run("modules-load", func(t *testing.T) {
		if modulesLoad == "feedbackd.conf" {
			t.Fatal("feedbackd.conf collides with the unrelated feedbackd package's /etc/modules-load.d/feedbackd.conf")
		}
		data, err := os.ReadFile(filepath.Join(dir, modulesLoad))
		if err != nil {
			t.Fatal(err)
		}
		var mods []string
		for _, l := range strings.Split(string(data), "\n") {
			l = strings.TrimSpace(l)
			if l != "" && l[0] != '#' && l[0] != ';' {
				mods = append(mods, l)
			}
		}
		for _, want := range []string{"ip_vs", "ip_vs_wrr"} {
			if !slices.Contains(mods, want) {
				t.Errorf("%s does not load %s (modules: %q)", modulesLoad, want, mods)
			}
		}
	})
}

func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true
	}
	return false
}

func isFalse(v string) bool {
	switch strings.ToLower(v) {
	case "0", "no", "n", "false", "f", "off":
		return true
	}
	return false
}
