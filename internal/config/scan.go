package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"
)

// Reading a file is split in two because gopkg.in/ini.v1, which the project
// uses for the INI syntax, keeps no positions (go-ini/ini#341): sections and
// keys come back without line numbers. So a small line scanner walks the
// raw bytes first. It records the line of every section header and key,
// reports the lines it cannot accept, and hands ini.v1 a sanitised copy with
// those lines blanked. ini.v1 then supplies the values, and the two views are
// zipped together in order: the n-th section ini.v1 returns is the n-th
// header the scanner saw, and within it the keys come in the same order.
// If they ever disagree that is a bug here, reported as such, never a
// silent misattribution of a line number.
//
// The scanner deliberately accepts a subset of what ini.v1 would: lines it
// rejects are exactly the ones where ini.v1 would do something surprising
// with a feedbackd file (see the comments in scan).

// block is one section occurrence: the globals before the first header, or
// one [virtual-service] / [service] block.
type block struct {
	name    string // lower case; "" for the globals
	line    int    // line of the header; 0 for the globals
	bad     bool   // the header was malformed (already reported)
	entries []entry
	// rejected holds keys whose line the scanner refused (already
	// reported), so that they are not reported missing as well.
	rejected map[string]bool
}

// entry is one key of a block, in file order.
type entry struct {
	key   string // lower case
	value string // as ini.v1 read it
	line  int
}

// iniOptions are the ini.v1 settings for both file kinds, chosen so that
// the HOWTO's syntax is read as the HOWTO means it.
var iniOptions = ini.LoadOptions{
	// Every [service] / [virtual-service] block is a separate thing;
	// without this ini.v1 merges repeated sections into the first.
	AllowNonUniqueSections: true,
	// "command = check; echo ok" must keep its "; echo ok". The price: a
	// comment after a value becomes part of the value, which badValue
	// points out when the value is then rejected.
	IgnoreInlineComment: true,
	// A trailing backslash belongs to a shell command, and continuation
	// lines would break the one-line-one-key mapping to line numbers.
	IgnoreContinuation: true,
	// Key and section names are matched case-insensitively, as operators
	// coming from the C daemon may have written "Port" or "[Service]".
	Insensitive: true,
	// Only "=": with ini.v1's default "=:", a mistyped "listen :3262"
	// would silently become listen = 3262.
	KeyValueDelimiters: "=",
}

var (
	utf8BOM   = []byte{0xEF, 0xBB, 0xBF}
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	badHeader = "[?]" // stands in for a malformed header in the copy ini.v1 reads
)

// scan reads one file into blocks. The errors are syntax errors and
// duplicate keys; the blocks are still returned so that the caller can check
// the rest of the file and report every problem in one go.
func scan(file string, data []byte) ([]block, Errors) {
	el := &errorList{file: file}
	// ini.v1 drops a UTF-8 byte order mark; so must the line count's view.
	data = bytes.TrimPrefix(data, utf8BOM)

	blocks := []block{{}}
	firstLine := []map[string]int{{}} // per block: key -> line of first occurrence
	var clean bytes.Buffer
	// ini.v1 splits on '\n' only (a '\r' before it is trimmed as space), so
	// the scanner does the same to keep the line numbers equal.
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		s := strings.TrimSpace(string(raw))
		out := "" // what ini.v1 sees for this line
		switch {
		case s == "" || s[0] == '#' || s[0] == ';':
			// blank or comment

		case s[0] == '[':
			b := block{line: n}
			end := strings.LastIndexByte(s, ']')
			switch {
			case end < 0:
				el.add(n, "", "section header without closing ]")
				b.bad = true
			default:
				b.name = strings.ToLower(strings.TrimSpace(s[1:end]))
				if rest := strings.TrimSpace(s[end+1:]); rest != "" && rest[0] != '#' && rest[0] != ';' {
					el.add(n, "", "unexpected text %q after section header", rest)
				}
				if !nameRE.MatchString(b.name) {
					el.add(n, "", "invalid section name [%s]", b.name)
					b.bad = true
				}
			}
			// Every header, even a broken one, opens a block in both views,
			// so the keys below it are not blamed on the previous block.
			// Names are written back canonically: ini.v1 does not trim them,
			// and a dot would make ini.v1 inherit keys from a "parent".
			if b.bad {
				out = badHeader
			} else {
				out = "[" + b.name + "]"
			}
			blocks = append(blocks, b)
			firstLine = append(firstLine, map[string]int{})

		default:
			eq := strings.IndexByte(s, '=')
			if eq < 0 {
				el.add(n, "", "expected \"key = value\", a [section] header or a # comment")
				break
			}
			key := strings.ToLower(strings.TrimSpace(s[:eq]))
			if key == "" {
				el.add(n, "", "missing key name before =")
				break
			}
			// Quoted or odd key names ("-" is ini.v1's auto-numbered key)
			// are nothing feedbackd uses; refusing them keeps the two views
			// in step.
			if !nameRE.MatchString(key) {
				el.add(n, "", "invalid key name %q", key)
				break
			}
			// ini.v1 reads a value that starts with ` or """ up to the
			// matching quote, possibly lines later, and drops the quotes: a
			// command such as `hostname` would silently lose them.
			v := strings.TrimLeftFunc(s[eq+1:], unicode.IsSpace)
			cur := len(blocks) - 1
			if strings.HasPrefix(v, "`") || strings.HasPrefix(v, `"""`) {
				el.add(n, key, "a value may not start with ` or \"\"\" (quote it with \" or ' instead)")
				if blocks[cur].rejected == nil {
					blocks[cur].rejected = map[string]bool{}
				}
				blocks[cur].rejected[key] = true
				break
			}
			if first, dup := firstLine[cur][key]; dup {
				el.add(n, key, "duplicate key (already set on line %d)", first)
				// ini.v1 keeps the first position and the last value; the
				// value does not matter as the file is already rejected.
				out = s
				break
			}
			firstLine[cur][key] = n
			blocks[cur].entries = append(blocks[cur].entries, entry{key: key, line: n})
			out = s
		}
		clean.WriteString(out)
		clean.WriteByte('\n')
	}

	if err := fillValues(blocks, clean.Bytes()); err != nil {
		el.add(0, "", "internal error: %v", err)
	}
	return blocks, el.errs
}

// fillValues parses the sanitised copy with ini.v1 and copies its values
// into the scanner's blocks, checking that both saw the same structure.
func fillValues(blocks []block, clean []byte) error {
	f, err := ini.LoadSources(iniOptions, clean)
	if err != nil {
		return fmt.Errorf("ini.v1 rejected a file the line scanner accepted: %v", err)
	}
	secs := f.Sections()
	if len(secs) != len(blocks) {
		return fmt.Errorf("ini.v1 found %d sections, the line scanner %d", len(secs), len(blocks))
	}
	for i, sec := range secs {
		keys := sec.Keys()
		b := &blocks[i]
		if len(keys) != len(b.entries) {
			return fmt.Errorf("block at line %d: ini.v1 found %d keys, the line scanner %d", b.line, len(keys), len(b.entries))
		}
		for j, k := range keys {
			if k.Name() != b.entries[j].key {
				return fmt.Errorf("line %d: ini.v1 read key %q, the line scanner %q", b.entries[j].line, k.Name(), b.entries[j].key)
			}
			// Value, not String: String expands ini.v1's %(name)s
			// references, which would mangle a printf in a command.
			b.entries[j].value = k.Value()
		}
	}
	return nil
}
