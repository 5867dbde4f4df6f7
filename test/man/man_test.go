// Package man checks the hand-written manual pages in man/:
//
//   - every page passes `mandoc -T lint` with no message at all, style
//     messages included (mandoc must be on PATH; without it the test fails
//     rather than skips, so that a CI image without it cannot pass
//     silently);
//   - each page's .TH names its file, and no page is, or points at,
//     feedbackd(8), which belongs to an unrelated Debian package;
//   - the pages keep up with the code: every option the programs' --help
//     prints is documented and every documented option exists; every key
//     of both configuration files (the lists are read from
//     internal/config's source, so a new key cannot slip by) has an entry
//     with its default, taken from the code's constants; every journal
//     field of logging.JournalFields is in both daemon pages, row for row.
//
// Nothing here sleeps; every external command runs under a deadline.
package man

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
)

// repoRoot is where go.mod is, seen from this package's directory (go test
// runs a package's tests in its source directory).
const repoRoot = "../.."

const (
	lintTimeout = 30 * time.Second
	// goRunTimeout covers compiling a command with a cold build cache.
	goRunTimeout = 5 * time.Minute
)

// The pages the checks below are about, by file name in man/.
const (
	masterPage     = "feedbackd-master.8"
	agentPage      = "feedbackd-agent.8"
	syncPage       = "feedbackd-agent-sync.8"
	masterConfPage = "feedbackd-master.conf.5"
	agentConfPage  = "feedbackd-agent.conf.5"
	ctlPage        = "feedbackctl.8"
)

// commands maps each command in cmd/ to its page.
var commands = map[string]string{
	"feedbackd-master":     masterPage,
	"feedbackd-agent":      agentPage,
	"feedbackd-agent-sync": syncPage,
	"feedbackctl":          ctlPage,
}

// pages lists man/*.[0-9], and fails when there are none.
func pages(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "man", "*.[0-9]"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manual pages in man/")
	}
	return files
}

func readPage(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "man", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// run runs a command under a deadline and returns its standard output and
// standard error separately.
func run(t *testing.T, timeout time.Duration, dir, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no result within %v", name, strings.Join(args, " "), timeout)
	}
	return o.String(), e.String(), err
}

func TestMandocLint(t *testing.T) {
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Fatalf("mandoc is not on PATH; install it (apt-get install mandoc): %v", err)
	}
	for _, p := range pages(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			stdout, stderr, err := run(t, lintTimeout, ".", mandoc, "-T", "lint", p)
			if err != nil || stdout != "" || stderr != "" {
				t.Errorf("mandoc -T lint %s: %v\n%s%s", p, err, stdout, stderr)
			}
		})
	}
}

// thArgs splits a .TH line's arguments, honouring double quotes.
func thArgs(line string) []string {
	var args []string
	rest := strings.TrimSpace(strings.TrimPrefix(line, ".TH"))
	for rest != "" {
		var arg string
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				arg, rest = rest[1:], ""
			} else {
				arg, rest = rest[1:end+1], rest[end+2:]
			}
		} else {
			arg, rest, _ = strings.Cut(rest, " ")
		}
		args = append(args, arg)
		rest = strings.TrimSpace(rest)
	}
	return args
}

func TestTitleMatchesFileName(t *testing.T) {
	for _, p := range pages(t) {
		base := filepath.Base(p)
		ext := filepath.Ext(base)
		name, section := strings.TrimSuffix(base, ext), ext[1:]
		var th []string
		for line := range strings.SplitSeq(readPage(t, base), "\n") {
			if strings.HasPrefix(line, ".TH ") {
				th = thArgs(line)
				break
			}
		}
		switch {
		case th == nil:
			t.Errorf("%s: no .TH line", base)
		case len(th) < 2:
			t.Errorf("%s: .TH has no section: %q", base, th)
		// Upper case, as mandoc wants titles; the name is the file's.
		case th[0] != strings.ToUpper(name) || th[1] != section:
			t.Errorf("%s: .TH %s %s, want .TH %s %s", base, th[0], th[1], strings.ToUpper(name), section)
		case len(th) < 5:
			t.Errorf("%s: .TH lacks date, source or manual: %q", base, th)
		}
	}
}

// fontEscape matches roff font changes (\fB, \fR, \fP, \f(CW, \f[B]) and
// the zero-width \& and \c, which sit between words in the source.
var fontEscape = regexp.MustCompile(`\\f(\[[^]]*\]|\(..|.)|\\&|\\c`)

// plain turns roff source into text close enough to what a reader sees
// for the checks here: font escapes and \& removed, "\-" as "-", \(aq as
// '.
func plain(src string) string {
	s := fontEscape.ReplaceAllString(src, "")
	s = strings.ReplaceAll(s, `\-`, "-")
	s = strings.ReplaceAll(s, `\(aq`, "'")
	return s
}

// text turns roff source into running text: macro names at the start of
// lines and double quotes dropped, lines joined with single spaces.
func text(src string) string {
	var words []string
	for line := range strings.SplitSeq(plain(src), "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			macro, args, _ := strings.Cut(line, " ")
			switch macro {
			case ".B", ".I", ".BR", ".BI", ".IB", ".IR", ".RB", ".RI":
				line = strings.ReplaceAll(args, `"`, "")
			default:
				continue
			}
		}
		words = append(words, strings.Fields(line)...)
	}
	return strings.Join(words, " ")
}

// feedbackdRef finds a reference to a page called just "feedbackd": the
// name must not be the tail of feedbackd-master and the like.
var feedbackdRef = regexp.MustCompile(`(^|[^A-Za-z0-9_.@-])feedbackd\s*\(\s*[0-9]`)

func TestNoFeedbackdPage(t *testing.T) {
	own, _ := filepath.Glob(filepath.Join(repoRoot, "man", "feedbackd.*"))
	for _, p := range own {
		t.Errorf("%s: the page name feedbackd belongs to an unrelated Debian package", p)
	}
	for _, p := range pages(t) {
		base := filepath.Base(p)
		src := readPage(t, base)
		for _, bad := range []string{"feedbackd(8)", `\fBfeedbackd\fR(8)`, `\fBfeedbackd\fP(8)`} {
			if strings.Contains(src, bad) {
				t.Errorf("%s refers to %s, an unrelated Debian package's page", base, bad)
			}
		}
		for i, line := range strings.Split(plain(src), "\n") {
			if feedbackdRef.MatchString(line) {
				t.Errorf("%s:%d refers to a page feedbackd(N): %s", base, i+1, line)
			}
		}
	}
}

// optionRE finds long and short options in text: --name or -x, not inside
// a word ("feedbackd-agent" has no option -a).
var (
	longOptRE  = regexp.MustCompile(`(?:^|[^A-Za-z0-9-])(--[a-z][a-z0-9-]*)`)
	shortOptRE = regexp.MustCompile(`(?:^|[ ,])(-[A-Za-z])(?:[ ,=]|$)`)
)

func options(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// hasOption reports whether opt appears in s as a whole option.
func hasOption(s, opt string) bool {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9-])` + regexp.QuoteMeta(opt) + `([^A-Za-z0-9-]|$)`)
	return re.MatchString(s)
}

// section returns the source of the .SH section title, up to the next .SH.
func section(src, title string) string {
	_, rest, ok := strings.Cut(src, "\n.SH "+title+"\n")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "\n.SH ")
	return body
}

// TestOptionsDocumented compares each command's --help with its page, both
// ways: every option in --help is in the page, and every option the
// page's OPTIONS section gives an entry exists.
func TestOptionsDocumented(t *testing.T) {
	goCmd, err := exec.LookPath("go") // go test puts GOROOT/bin first on PATH
	if err != nil {
		t.Fatalf("go not found on PATH: %v", err)
	}
	for cmd, page := range commands {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			help, stderr, err := run(t, goRunTimeout, repoRoot, goCmd, "run", "./cmd/"+cmd, "--help")
			if err != nil {
				t.Fatalf("go run ./cmd/%s --help: %v\n%s", cmd, err, stderr)
			}
			_, list, ok := strings.Cut(help, "\nOptions:\n")
			if !ok {
				t.Fatalf("%s --help has no \"Options:\" list:\n%s", cmd, help)
			}
			longs, shorts := options(longOptRE, list), options(shortOptRE, list)
			if len(longs) < 5 || len(shorts) < 5 {
				t.Fatalf("%s --help: found only %q and %q; has its format changed?\n%s", cmd, longs, shorts, help)
			}
			src := plain(readPage(t, page))
			for _, opt := range append(longs, shorts...) {
				if !hasOption(src, opt) {
					t.Errorf("%s: option %s (from %s --help) is not documented", page, opt, cmd)
				}
			}

			// Entries of OPTIONS: the line after each .TP.
			opts := section(src, "OPTIONS")
			if opts == "" {
				t.Fatalf("%s: no OPTIONS section", page)
			}
			lines := strings.Split(opts, "\n")
			for i := 0; i+1 < len(lines); i++ {
				if lines[i] != ".TP" {
					continue
				}
				for _, opt := range append(options(longOptRE, lines[i+1]), options(shortOptRE, lines[i+1])...) {
					if !hasOption(list, opt) {
						t.Errorf("%s documents %s, which %s --help does not list", page, opt, cmd)
					}
				}
			}
		})
	}
}

// stringLists reads the package-level variables names of a Go file that
// are []string literals, such as masterGlobalKeys in
// internal/config/master.go. They are unexported, so the test reads the
// source: a key added there is then checked here without anyone having to
// remember this test.
func stringLists(t *testing.T, file string, names ...string) map[string][]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string][]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !slices.Contains(names, id.Name) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.CompositeLit)
				if !ok {
					continue
				}
				for _, elt := range lit.Elts {
					bl, ok := elt.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						continue
					}
					s, err := strconv.Unquote(bl.Value)
					if err != nil {
						t.Fatal(err)
					}
					lists[id.Name] = append(lists[id.Name], s)
				}
			}
		}
	}
	for _, n := range names {
		if len(lists[n]) == 0 {
			t.Fatalf("%s: no []string literal %s; if it was renamed or moved, update this test", file, n)
		}
	}
	return lists
}

// keyEntry returns the source of the tagged paragraph documenting key
// ("keepalive-interval = seconds"): from its .TP to the next .TP, .SH or
// .SS. The page source must already be plain.
func keyEntry(src, key string) (string, bool) {
	re := regexp.MustCompile(`(?m)^\.TP\n\.B[IR]? +"?` + regexp.QuoteMeta(key) + ` *=`)
	loc := re.FindStringIndex(src)
	if loc == nil {
		return "", false
	}
	rest := src[loc[1]:]
	end := len(rest)
	for _, stop := range []string{"\n.TP\n", "\n.SH ", "\n.SS "} {
		if i := strings.Index(rest, stop); i >= 0 && i < end {
			end = i
		}
	}
	return rest[:end], true
}

func seconds(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	if s == "1" {
		return "1 second"
	}
	return s + " seconds"
}

// atLeast formats a timer's floor as the pages state it.
func atLeast(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("At least %d milliseconds", d.Milliseconds())
	}
	return "At least " + seconds(d)
}

// wordIn reports whether word appears in s, not as part of a longer key.
func wordIn(s, word string) bool {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(word) + `([^A-Za-z0-9_-]|$)`)
	return re.MatchString(s)
}

func readRepo(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestConfigKeysDocumented checks that every key of both configuration
// files has an entry in its .5 page that states its default (or that it
// is required), with the defaults the code uses, and that the commented
// example files in etc/ mention every key too.
func TestConfigKeysDocumented(t *testing.T) {
	master := stringLists(t, "internal/config/master.go", "masterGlobalKeys", "virtualKeys")
	agent := stringLists(t, "internal/config/agent.go", "agentGlobalKeys", "serviceKeys")
	schedulers := stringLists(t, "internal/config/values.go", "schedulers")["schedulers"]

	// Keys the config reader insists on, per file (see parseVirtual,
	// parseService and LoadAgent). The monitors' own keys come from the
	// monitor package, as in the config reader, which marks the required
	// ones.
	required := map[string]map[string]bool{
		masterConfPage: {"name": true, "address": true, "protocol": true, "port": true},
		agentConfPage: {"director": true, "name": true, "protocol": true, "port": true,
			"forwarding": true, "monitor": true},
	}
	var monitorKeys []string
	for _, n := range monitor.Names() {
		k, ok := monitor.Lookup(n)
		if !ok {
			t.Fatalf("monitor.Lookup(%q) failed", n)
		}
		for _, spec := range k.Keys {
			if !slices.Contains(monitorKeys, spec.Name) {
				monitorKeys = append(monitorKeys, spec.Name)
			}
			if spec.Required {
				required[agentConfPage][spec.Name] = true
			}
		}
	}

	// Defaults as the pages must state them, from the code's constants.
	defaults := map[string]string{
		"loglevel":           logging.LevelName(config.DefaultLogLevel),
		"keepalive-interval": seconds(config.DefaultKeepaliveInterval),
		"keepalive-timeout":  seconds(config.DefaultKeepaliveTimeout),
		"keepalive-retries":  strconv.Itoa(config.DefaultKeepaliveRetries),
		"removal-interval":   seconds(config.DefaultRemovalInterval),
		"listen":             config.DefaultListen,
		"scheduler":          config.DefaultScheduler,
		"max-weight":         strconv.Itoa(config.DefaultMaxWeight),
		"master-timeout":     seconds(config.DefaultMasterTimeout),
		"connection-retries": strconv.Itoa(config.DefaultConnectionRetries),
		"interval":           seconds(monitor.DefaultInterval),
		"timeout":            seconds(monitor.DefaultTimeout),
		"handshake-timeout":  seconds(config.DefaultHandshakeTimeout),
		"max-sessions":       strconv.Itoa(config.DefaultMaxSessions),
		"max-services":       strconv.Itoa(config.DefaultMaxServices),
		"weight-threshold":   strconv.Itoa(config.DefaultWeightThreshold),
		"weight-max-step":    strconv.Itoa(config.DefaultWeightMaxStep),
	}

	// Floors of the timers, which -t refuses to go below, as the pages
	// must state them ("At least 100 milliseconds"), and the shortest
	// shared secret.
	floors := map[string]string{
		"keepalive-interval": atLeast(config.MinKeepaliveInterval),
		"keepalive-timeout":  atLeast(config.MinKeepaliveTimeout),
		"handshake-timeout":  atLeast(config.MinHandshakeTimeout),
		"removal-interval":   atLeast(config.MinRemovalInterval),
		"master-timeout":     atLeast(config.MinMasterTimeout),
		"interval":           atLeast(monitor.MinInterval),
		"timeout":            atLeast(monitor.MinTimeout),
		"secret-file":        fmt.Sprintf("at least %d bytes", config.MinSecretLen),
	}

	check := func(t *testing.T, page string, keys []string) {
		src := plain(readPage(t, page))
		for _, key := range keys {
			entry, ok := keyEntry(src, key)
			if !ok {
				t.Errorf("%s: no entry (.TP, then .BI \"%s = \" ...) for the key %s", page, key, key)
				continue
			}
			body := text(entry)
			switch def, hasDefault := defaults[key]; {
			case required[page][key]:
				if !strings.Contains(strings.ToLower(body), "required") {
					t.Errorf("%s: the entry for %s does not say it is required: %s", page, key, body)
				}
			case hasDefault:
				if !strings.Contains(body, "Default: "+def) {
					t.Errorf("%s: the entry for %s does not say \"Default: %s\": %s", page, key, def, body)
				}
			case !strings.Contains(body, "Default"):
				t.Errorf("%s: the entry for %s states no default: %s", page, key, body)
			}
			if floor, ok := floors[key]; ok && !strings.Contains(strings.ToLower(body), strings.ToLower(floor)) {
				t.Errorf("%s: the entry for %s does not say %q (the code's floor): %s", page, key, floor, body)
			}
		}
	}
	t.Run(masterConfPage, func(t *testing.T) {
		check(t, masterConfPage, append(master["masterGlobalKeys"], master["virtualKeys"]...))
		src := text(readPage(t, masterConfPage))
		for _, s := range schedulers {
			if !wordIn(src, s) {
				t.Errorf("%s: scheduler %s is not listed", masterConfPage, s)
			}
		}
	})
	t.Run(agentConfPage, func(t *testing.T) {
		check(t, agentConfPage, slices.Concat(agent["agentGlobalKeys"], agent["serviceKeys"], monitorKeys))
		for _, page := range []string{agentConfPage, agentPage} {
			src := text(readPage(t, page))
			for _, n := range monitor.Names() {
				if !wordIn(src, n) {
					t.Errorf("%s: monitor %s is not described", page, n)
				}
			}
		}
		// feedbackd-agent(8) has an entry for each monitor.
		src := plain(readPage(t, agentPage))
		for _, n := range monitor.Names() {
			if !strings.Contains(section(src, "MONITORS"), "\n.TP\n.B "+n+"\n") {
				t.Errorf("%s: MONITORS has no entry (.TP, .B %s) for the monitor %s", agentPage, n, n)
			}
		}
	})
	t.Run("log levels", func(t *testing.T) {
		for _, page := range []string{masterConfPage, agentConfPage} {
			src := text(readPage(t, page))
			for _, l := range []logging.Level{logging.LevelCrit, logging.LevelErr, logging.LevelWarn,
				logging.LevelInfo, logging.LevelDebug, logging.LevelVDebug} {
				if !wordIn(src, logging.LevelName(l)) {
					t.Errorf("%s: log level %s is not listed", page, logging.LevelName(l))
				}
			}
		}
	})

	// The commented example files shipped in etc/ mention every key too.
	examples := []struct {
		file string
		keys []string
	}{
		{"etc/master.conf", append(master["masterGlobalKeys"], master["virtualKeys"]...)},
		{"etc/agent.conf", agent["agentGlobalKeys"]},
		{"etc/agent.d/example.conf.sample", append(agent["serviceKeys"], monitorKeys...)},
	}
	for _, ex := range examples {
		src := readRepo(t, ex.file)
		for _, key := range ex.keys {
			if !wordIn(src, key) {
				t.Errorf("%s does not mention the key %s", ex.file, key)
			}
		}
	}
}

// TestJournalFields checks that both daemon pages carry the whole table
// of logging.JournalFields, one tbl row per field: key, field, meaning.
func TestJournalFields(t *testing.T) {
	if len(logging.JournalFields) == 0 {
		t.Fatal("logging.JournalFields is empty")
	}
	for _, page := range []string{masterPage, agentPage} {
		src := plain(readPage(t, page))
		for _, f := range logging.JournalFields {
			row := f.Key + "|" + f.Field + "|T{\n" + f.Meaning + "\nT}\n"
			if !strings.Contains(src, row) {
				t.Errorf("%s: no table row for the journal field %s (want the lines %q)", page, f.Field, row)
			}
		}
		if !strings.Contains(src, "journalctl -u feedbackd-") {
			t.Errorf("%s: no journalctl example", page)
		}
	}
}

// manRef matches .BR NAME (N) in plain source.
var manRef = regexp.MustCompile(`(?m)^\.BR (feedbackd-[A-Za-z0-9.-]+|feedbackctl) \(([0-9])\)`)

// TestReferencesExist checks that the feedbackd pages the pages and the
// units point at (.BR name (N), Documentation=man:name(N)) are all here.
func TestReferencesExist(t *testing.T) {
	exists := func(name, sec string) bool {
		_, err := os.Stat(filepath.Join(repoRoot, "man", name+"."+sec))
		return err == nil
	}
	for _, p := range pages(t) {
		base := filepath.Base(p)
		for _, m := range manRef.FindAllStringSubmatch(plain(readPage(t, base)), -1) {
			if !exists(m[1], m[2]) {
				t.Errorf("%s refers to %s(%s), which is not in man/", base, m[1], m[2])
			}
		}
	}
	units, err := filepath.Glob(filepath.Join(repoRoot, "systemd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	docRef := regexp.MustCompile(`man:(feedbackd[A-Za-z0-9.@-]*|feedbackctl)\(([0-9])\)`)
	for _, u := range units {
		data, err := os.ReadFile(u)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docRef.FindAllStringSubmatch(string(data), -1) {
			if !exists(m[1], m[2]) {
				t.Errorf("%s: Documentation=man:%s(%s) has no page in man/", filepath.Base(u), m[1], m[2])
			}
		}
	}
}
