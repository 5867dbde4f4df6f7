package man

// The master's JOURNAL section names log messages, their levels and
// fields, and the REASON= values; the tests here read internal/master and
// cmd/feedbackd-master (the source, as TestConfigKeysDocumented reads
// internal/config) and fail when the page and the code disagree, either
// way for the reasons. They also hold the journal to what the packaged
// configuration promises: etc/master.conf logs at INFO, every event the
// page lists is visible at that level, and quiescing or removing a
// realserver is never less visible than a weight change.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

// masterSources are the packages whose log lines feedbackd-master(8)
// describes.
var masterSources = []string{"internal/master", "internal/control", "cmd/feedbackd-master"}

// logCall is one logging call found in the source.
type logCall struct {
	level string // INFO, WARN, ... (logging.LevelName)
	msg   string
	keys  []string // string literals anywhere in the enclosing function
	pos   string
}

// parsedSource is the non-test Go files of some directories.
type parsedSource struct {
	fset  *token.FileSet
	files []*ast.File
}

func parseSources(t *testing.T, dirs ...string) parsedSource {
	t.Helper()
	src := parsedSource{fset: token.NewFileSet()}
	for _, d := range dirs {
		names, err := filepath.Glob(filepath.Join(repoRoot, d, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(src.fset, n, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			src.files = append(src.files, f)
		}
	}
	if len(src.files) == 0 {
		t.Fatalf("no Go files in %v", dirs)
	}
	return src
}

// stringLit returns the value of a string literal expression.
func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// methodLevels maps the names of logging methods, slog's and the master
// session's own (s.warn, s.info, s.debug, rate-limited per peer, and
// s.refuse, a WARN with its REASON=), to the level they log at.
var methodLevels = map[string]string{
	"Debug": "DEBUG", "Info": "INFO", "Warn": "WARN", "Error": "ERR",
	"debug": "DEBUG", "info": "INFO", "warn": "WARN", "refuse": "WARN",
}

// impliedKeys are keys a logging method adds by itself: the session's
// helpers log through session.logAt, which adds the agent's address.
var impliedKeys = map[string][]string{"debug": {"agent"}, "info": {"agent"}, "warn": {"agent"}, "refuse": {"agent", "reason"}}

// levelOf reads the level argument of a Log(ctx, level, msg) call:
// slog.LevelX or logging.LevelX, possibly plus or minus a constant.
func levelOf(e ast.Expr) (string, bool) {
	base := map[string]logging.Level{
		"LevelDebug": logging.LevelDebug, "LevelInfo": logging.LevelInfo,
		"LevelWarn": logging.LevelWarn, "LevelError": logging.LevelErr,
		"LevelCrit": logging.LevelCrit, "LevelErr": logging.LevelErr, "LevelVDebug": logging.LevelVDebug,
	}
	offset := 0
	if b, ok := e.(*ast.BinaryExpr); ok {
		n, err := strconv.Atoi(exprLit(b.Y))
		if err != nil || (b.Op != token.ADD && b.Op != token.SUB) {
			return "", false
		}
		if b.Op == token.SUB {
			n = -n
		}
		e, offset = b.X, n
	}
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	l, ok := base[sel.Sel.Name]
	if !ok {
		return "", false
	}
	return logging.LevelName(l + logging.Level(offset)), true
}

func exprLit(e ast.Expr) string {
	if bl, ok := e.(*ast.BasicLit); ok {
		return bl.Value
	}
	return ""
}

// logCalls finds every logging call whose message is a string literal.
func (src parsedSource) logCalls() []logCall {
	var calls []logCall
	for _, f := range src.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			var lits []string
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if s, ok := stringLit(asExpr(n)); ok {
					lits = append(lits, s)
				}
				return true
			})
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				level, msgArg := methodLevels[sel.Sel.Name], 0
				if sel.Sel.Name == "Log" && len(call.Args) >= 3 {
					level, _ = levelOf(call.Args[1])
					msgArg = 2
				}
				if level == "" || len(call.Args) <= msgArg {
					return true
				}
				msg, ok := stringLit(call.Args[msgArg])
				if !ok {
					return true
				}
				keys := append(slices.Clip(lits), impliedKeys[sel.Sel.Name]...)
				calls = append(calls, logCall{level: level, msg: msg, keys: keys,
					pos: src.fset.Position(call.Pos()).String()})
				return true
			})
		}
	}
	return calls
}

func asExpr(n ast.Node) ast.Expr {
	e, _ := n.(ast.Expr)
	return e
}

// reasons finds the values the code can give the "reason" log attribute,
// following the ways a reason travels in internal/master:
//
//   - a string literal right after "reason" in a call's arguments, or
//     assigned to a variable or field named reason;
//   - a string literal passed for a parameter named reason, or returned by
//     a function whose result is named reason;
//   - a string literal returned by a function whose call is passed for a
//     parameter named reason or assigned to a variable named reason
//     (session.loop, whose result ends the session with that reason).
//
// A literal joined with something else ("connection error: " + err)
// counts as its literal prefix followed by "...".
func (src parsedSource) reasons(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	add := func(e ast.Expr) {
		if s, ok := reasonLit(e); ok {
			if _, dup := found[s]; !dup {
				found[s] = src.fset.Position(e.Pos()).String()
			}
		}
	}
	// Functions with a parameter named reason (index), and with a
	// result named reason.
	reasonParam := map[string]int{}
	reasonResult := map[string]bool{}
	funcs := map[string][]*ast.FuncDecl{}
	for _, f := range src.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			funcs[fn.Name.Name] = append(funcs[fn.Name.Name], fn)
			i := 0
			for _, fld := range fn.Type.Params.List {
				for _, n := range fld.Names {
					if n.Name == "reason" {
						reasonParam[fn.Name.Name] = i
					}
					i++
				}
				if len(fld.Names) == 0 {
					i++
				}
			}
			if fn.Type.Results != nil {
				for _, fld := range fn.Type.Results.List {
					for _, n := range fld.Names {
						if n.Name == "reason" {
							reasonResult[fn.Name.Name] = true
						}
					}
				}
			}
		}
	}
	calledName := func(e ast.Expr) string {
		call, ok := e.(*ast.CallExpr)
		if !ok {
			return ""
		}
		switch f := call.Fun.(type) {
		case *ast.Ident:
			return f.Name
		case *ast.SelectorExpr:
			return f.Sel.Name
		}
		return ""
	}
	for _, f := range src.files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				for i := 0; i+1 < len(n.Args); i++ {
					if k, ok := stringLit(n.Args[i]); ok && k == "reason" {
						add(n.Args[i+1])
					}
				}
				if i, ok := reasonParam[calledName(n)]; ok && i < len(n.Args) {
					add(n.Args[i])
					if g := calledName(n.Args[i]); g != "" {
						reasonResult[g] = true
					}
				}
			case *ast.AssignStmt:
				for i, lhs := range n.Lhs {
					id, ok := lhs.(*ast.Ident)
					if !ok || id.Name != "reason" || i >= len(n.Rhs) {
						continue
					}
					add(n.Rhs[i])
					if g := calledName(n.Rhs[i]); g != "" {
						reasonResult[g] = true
					}
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == "reason" {
					add(n.Value)
				}
			}
			return true
		})
	}
	names := make([]string, 0, len(reasonResult))
	for name := range reasonResult {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, fn := range funcs[name] {
			if fn.Body == nil || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if _, ok := n.(*ast.FuncLit); ok {
					return false // a closure's returns are not the function's
				}
				if r, ok := n.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
					add(r.Results[0])
				}
				return true
			})
		}
	}
	if len(found) < 8 {
		t.Fatalf("found only %d reasons in %v (%v); has the way reasons travel changed? update this test", len(found), masterSources, found)
	}
	return found
}

// reasonLit reads a reason from a string literal, or from a literal
// joined with something else ("closed: " + why), which gives "closed: ...".
func reasonLit(e ast.Expr) (string, bool) {
	if s, ok := stringLit(e); ok {
		return s, s != ""
	}
	if b, ok := e.(*ast.BinaryExpr); ok && b.Op == token.ADD {
		if s, ok := reasonLit(b.X); ok {
			return strings.TrimSuffix(s, "...") + "...", true
		}
	}
	return "", false
}

// notLoggedReasons are reasons the code gives that never reach a log line
// as REASON=, so the page does not list them. Each says why.
var notLoggedReasons = map[string]string{
	// A session that times out or is refused in its handshake has not
	// joined: its end reason quiesces nothing. The lines logged for it
	// say so in words.
	"handshake timed out": "the session had not joined",
	// On SIGTERM the owner stops before the sessions end, and acts on
	// nothing they report.
	"master stopping": "the owner has stopped",
	// A session the owner closes (kick) has already been taken out of the
	// table, with the owner's own REASON=; its end reason finds nothing.
	"closed by the master: ...": "the owner logged the cause already",
}

// tblRows returns the rows of the first tbl(1) table after the line
// header in src (plain source), each as its cells with T{ T} blocks
// joined into one line.
func tblRows(t *testing.T, src, header string) [][]string {
	t.Helper()
	_, rest, ok := strings.Cut(src, "\n"+header+"\n")
	if !ok {
		t.Fatalf("no table with the header line %q", header)
	}
	body, _, ok := strings.Cut(rest, "\n.TE\n")
	if !ok {
		t.Fatalf("table %q has no .TE", header)
	}
	// Join T{ ... T} blocks: "a|T{\ntext\nmore\nT}|b" -> "a|text more|b".
	block := regexp.MustCompile(`T\{\n((?:.|\n)*?)\nT\}`)
	body = block.ReplaceAllStringFunc(body, func(m string) string {
		inner := block.FindStringSubmatch(m)[1]
		return text(inner)
	})
	var rows [][]string
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, ".") {
			continue
		}
		rows = append(rows, strings.Split(line, "|"))
	}
	if len(rows) == 0 {
		t.Fatalf("table %q has no rows", header)
	}
	return rows
}

// fieldKey maps a journal field named in a page back to the log key
// that makes it (logging.JournalFields, else the generic upper-casing).
func fieldKey(field string) string {
	for _, f := range logging.JournalFields {
		if f.Field == field {
			return f.Key
		}
	}
	return strings.ToLower(field)
}

// TestJournalEventsDocumented checks the table of logged events in
// feedbackd-master(8) against the code: each message is logged, at the
// level the table gives, with the fields it names; every one is visible
// at INFO, the level the packaged master.conf sets; and quiescing or
// removing a realserver is at least as visible as a weight change.
func TestJournalEventsDocumented(t *testing.T) {
	calls := parseSources(t, masterSources...).logCalls()
	if len(calls) < 20 {
		t.Fatalf("found only %d logging calls in %v; has the logging API changed? update this test", len(calls), masterSources)
	}
	rows := tblRows(t, plain(readPage(t, masterPage)), "Level|Message|Fields")
	for _, row := range rows {
		if len(row) != 3 {
			t.Errorf("%s: event row %q: want Level|Message|Fields", masterPage, row)
			continue
		}
		level, msg, fields := row[0], row[1], strings.Fields(strings.ReplaceAll(row[2], ",", " "))
		prefix, isPrefix := strings.CutSuffix(msg, "...")
		var match []logCall
		for _, c := range calls {
			if c.msg == msg || isPrefix && strings.HasPrefix(c.msg, prefix) {
				match = append(match, c)
			}
		}
		if len(match) == 0 {
			t.Errorf("%s lists the event %q, which %v never logs", masterPage, msg, masterSources)
			continue
		}
		for _, c := range match {
			if c.level != level {
				t.Errorf("%s: %q is listed at %s, but %s logs %q at %s", masterPage, msg, level, c.pos, c.msg, c.level)
			}
			for _, fld := range fields {
				if !slices.Contains(c.keys, fieldKey(fld)) {
					t.Errorf("%s: %q is listed with %s, but %s logs it without the key %q", masterPage, msg, fld, c.pos, fieldKey(fld))
				}
			}
		}
		if l, err := logging.ParseLevel(level); err != nil || l < logging.LevelInfo {
			t.Errorf("%s: the event %q is at %s, invisible at INFO, the packaged log level", masterPage, msg, level)
		}
	}

	// Whatever takes a realserver out of service is at least as visible
	// as a weight change.
	levelOfMsg := func(msg string) logging.Level {
		t.Helper()
		var found []string
		for _, c := range calls {
			if c.msg == msg {
				found = append(found, c.level)
			}
		}
		if len(found) == 0 {
			t.Fatalf("%v never logs %q; update this test", masterSources, msg)
		}
		least := logging.LevelCrit
		for _, name := range found {
			l, err := logging.ParseLevel(name)
			if err != nil {
				t.Fatal(err)
			}
			least = min(least, l)
		}
		return least
	}
	weight := levelOfMsg("weight changed")
	for _, msg := range []string{"realserver quiesced", "realserver removed"} {
		if l := levelOfMsg(msg); l < weight {
			t.Errorf("%q is logged at %s, less visible than \"weight changed\" at %s", msg, logging.LevelName(l), logging.LevelName(weight))
		}
	}
}

// TestPackagedLogLevel checks that etc/master.conf is a valid
// configuration that logs at INFO, the level feedbackd-master(8)'s JOURNAL
// section and the README's "journalctl -u feedbackd-master" count on.
func TestPackagedLogLevel(t *testing.T) {
	const file = "etc/master.conf"
	cfg, err := config.ParseMaster(file, []byte(readRepo(t, file)))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if cfg.LogLevel != logging.LevelInfo {
		t.Errorf("%s: loglevel is %s; the pages promise INFO in the packaged file", file, logging.LevelName(cfg.LogLevel))
	}
	src := text(readPage(t, masterPage))
	if !strings.Contains(src, "The packaged /etc/feedbackd/master.conf sets loglevel = INFO") {
		t.Errorf("%s: JOURNAL no longer says that the packaged master.conf sets loglevel = INFO", masterPage)
	}
	if def := logging.LevelName(config.DefaultLogLevel); !strings.Contains(src, "Without a loglevel key the master logs at "+def) {
		t.Errorf("%s: JOURNAL does not say that the default level is %s", masterPage, def)
	}
}

// TestReasonsDocumented compares the REASON= values of feedbackd-master(8)
// with those the code can log, both ways.
func TestReasonsDocumented(t *testing.T) {
	code := parseSources(t, masterSources...).reasons(t)
	// The entries of the subsection Reasons: .TP, then .B "reason".
	src := plain(readPage(t, masterPage))
	_, sub, ok := strings.Cut(src, "\n.SS Reasons\n")
	if !ok {
		t.Fatalf("%s: no subsection Reasons", masterPage)
	}
	if i := strings.Index(sub, "\n.S"); i >= 0 {
		sub = sub[:i]
	}
	entries := regexp.MustCompile(`(?m)^\.TP\n\.B (.*)$`).FindAllStringSubmatch(sub, -1)
	if len(entries) == 0 {
		t.Fatalf("%s: Reasons has no entries (.TP, then .B \"reason\")", masterPage)
	}
	page := map[string]bool{}
	for _, m := range entries {
		r := strings.Trim(m[1], `"`)
		page[r] = true
		if _, ok := code[r]; !ok {
			t.Errorf("%s lists REASON=%q, which %v never gives", masterPage, r, masterSources)
		}
		if why, ok := notLoggedReasons[r]; ok {
			t.Errorf("%s lists REASON=%q, which is never logged (%s)", masterPage, r, why)
		}
	}
	var missing []string
	for r, pos := range code {
		if !page[r] && notLoggedReasons[r] == "" {
			missing = append(missing, r+" ("+pos+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s: REASON=%s is not in the table of reasons", masterPage, m)
	}
	for r := range notLoggedReasons {
		if _, ok := code[r]; !ok {
			t.Errorf("notLoggedReasons lists %q, which the code no longer gives; remove it", r)
		}
	}
}

// TestReasonsNamedElsewhere checks every REASON= value that another page
// or document names (REASON="x", `REASON=x`, the list in
// feedbackd-master.conf(5)'s ACCESS CONTROL, the lists in
// docs/access-control.md) against the reasons the code gives.
func TestReasonsNamedElsewhere(t *testing.T) {
	code := parseSources(t, masterSources...).reasons(t)
	named := map[string][]string{} // reason -> where
	note := func(where, r string) {
		r = strings.TrimSpace(r)
		if r != "" {
			named[r] = append(named[r], where)
		}
	}
	inline := []*regexp.Regexp{
		regexp.MustCompile(`REASON="([^"]+)"`),
		regexp.MustCompile("`REASON=([^`\"]+)`"),
		// roff: .BR REASON=address\ not\ in\ allow .
		regexp.MustCompile(`REASON=((?:[^\s\\"]|\\ )+)`),
	}
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append(docs, filepath.Join(repoRoot, "README.md"))
	files = append(files, pages(t)...)
	for _, f := range files {
		rel, _ := filepath.Rel(repoRoot, f)
		src := readRepo(t, rel)
		if strings.HasSuffix(f, ".md") {
			for _, re := range inline[:2] {
				for _, m := range re.FindAllStringSubmatch(src, -1) {
					note(rel, m[1])
				}
			}
			continue
		}
		src = plain(src)
		for _, re := range []*regexp.Regexp{inline[0], inline[2]} {
			for _, m := range re.FindAllStringSubmatch(src, -1) {
				note(rel, strings.ReplaceAll(m[1], `\ `, " "))
			}
		}
	}

	// feedbackd-master.conf(5): "Refused agents are logged with REASON=
	// (.RB ( "a" , .BR "b" , ... .BR "z" )) and never reach IPVS."
	conf := plain(readPage(t, masterConfPage))
	_, list, ok := strings.Cut(conf, "Refused agents are logged with\n")
	if list, _, ok2 := strings.Cut(list, "and never reach IPVS"); ok && ok2 {
		for _, m := range regexp.MustCompile(`(?m)^\.R?BR? \(? ?"([^"]+)"`).FindAllStringSubmatch(list, -1) {
			note(masterConfPage+" ACCESS CONTROL", m[1])
		}
	} else {
		t.Errorf("%s: no list \"Refused agents are logged with REASON= (...) and never reach IPVS\"", masterConfPage)
	}
	// docs/access-control.md: the backquoted reasons of the paragraph
	// "Every refusal is logged ...".
	ac := readRepo(t, "docs/access-control.md")
	if _, para, ok := strings.Cut(ac, "Every refusal is logged"); ok {
		para, _, _ = strings.Cut(para, "\n\n")
		for i, code := range strings.Split(para, "`") {
			if i%2 == 1 && !strings.Contains(code, "=") {
				note("docs/access-control.md refusals", strings.Join(strings.Fields(code), " "))
			}
		}
	} else {
		t.Errorf("docs/access-control.md: no paragraph \"Every refusal is logged ...\"")
	}

	if len(named) < 5 {
		t.Fatalf("found only %d reasons named in the pages and docs (%v); has their form changed?", len(named), named)
	}
	for r, where := range named {
		if _, ok := code[r]; !ok {
			t.Errorf("REASON=%q (in %s) is not a reason %v gives", r, strings.Join(where, ", "), masterSources)
		}
	}
}
