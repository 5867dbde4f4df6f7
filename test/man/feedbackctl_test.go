package man

// feedbackctl(8) against the code: every command of internal/ctl has an
// entry in COMMANDS, every column of its tables an entry in STATUS TABLE
// or AGENTS TABLE, and every JSON field of the control protocol's types
// (internal/control) an entry in JSON OUTPUT, under the type's own
// subsection and in the order of the struct, saying "omitted when empty"
// exactly when the field is omitempty. Each check goes both ways: an
// entry for something the code does not have fails too.

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ctl"
)

// entries returns the tags of the tagged paragraphs of src (.TP or .TQ,
// then the tag line, with macro and fonts gone), each with its body up to
// the next tag, in order.
func entries(src string) (tags []string, bodies []string) {
	lines := strings.Split(src, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if lines[i] != ".TP" && lines[i] != ".TQ" {
			continue
		}
		tag := lines[i+1]
		if macro, args, ok := strings.Cut(tag, " "); ok && strings.HasPrefix(macro, ".") {
			tag = strings.ReplaceAll(args, `"`, "")
		}
		var body []string
		for j := i + 2; j < len(lines) && lines[j] != ".TP" && lines[j] != ".TQ"; j++ {
			body = append(body, lines[j])
		}
		tags = append(tags, tag)
		bodies = append(bodies, text(strings.Join(body, "\n")))
	}
	return tags, bodies
}

// subsection returns the source of .SS title within sec, up to the next
// .SS.
func subsection(sec, title string) string {
	_, rest, ok := strings.Cut(sec, "\n.SS "+title+"\n")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "\n.SS ")
	return body
}

func TestCtlCommandsDocumented(t *testing.T) {
	src := plain(readPage(t, ctlPage))
	tags, _ := entries(section(src, "COMMANDS"))
	var documented []string
	for _, tag := range tags {
		name, _, _ := strings.Cut(tag, " ")
		documented = append(documented, name)
	}
	if want := ctl.CommandNames(); !slices.Equal(documented, want) {
		t.Errorf("%s: COMMANDS has entries %q, feedbackctl has the commands %q", ctlPage, documented, want)
	}
	synopsis := text(section(src, "SYNOPSIS"))
	for _, name := range ctl.CommandNames() {
		if !wordIn(synopsis, name) {
			t.Errorf("%s: SYNOPSIS lacks the command %s", ctlPage, name)
		}
	}
}

func TestCtlColumnsDocumented(t *testing.T) {
	src := plain(readPage(t, ctlPage))
	for _, c := range []struct {
		section string
		columns []string
	}{
		{"STATUS TABLE", ctl.StatusColumns},
		{"AGENTS TABLE", ctl.AgentsColumns},
	} {
		tags, _ := entries(section(src, c.section))
		if !slices.Equal(tags, c.columns) {
			t.Errorf("%s: %s has entries %q, the table's columns are %q", ctlPage, c.section, tags, c.columns)
		}
	}
}

func TestCtlJSONDocumented(t *testing.T) {
	sec := section(plain(readPage(t, ctlPage)), "JSON OUTPUT")
	if sec == "" {
		t.Fatalf("%s: no JSON OUTPUT section", ctlPage)
	}
	for _, v := range []any{control.Response{}, control.Status{}, control.Destination{}, control.Agent{}, control.Service{}, control.Event{}} {
		typ := reflect.TypeOf(v)
		sub := subsection(sec, typ.Name())
		if sub == "" {
			t.Errorf("%s: JSON OUTPUT has no subsection %q for control.%s", ctlPage, typ.Name(), typ.Name())
			continue
		}
		var fields []string
		omit := map[string]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" || name == "-" {
				t.Fatalf("control.%s.%s has no JSON name; feedbackctl(8) documents names", typ.Name(), f.Name)
			}
			fields = append(fields, name)
			omit[name] = strings.Contains(opts, "omitempty")
		}
		tags, bodies := entries(sub)
		if !slices.Equal(tags, fields) {
			t.Errorf("%s: JSON OUTPUT, %s, has entries %q; control.%s has the fields %q", ctlPage, typ.Name(), tags, typ.Name(), fields)
			continue
		}
		for i, name := range tags {
			says := strings.Contains(bodies[i], "omitted when")
			if says != omit[name] {
				t.Errorf("%s: JSON OUTPUT, %s.%s: the page says omitted %v, the code's omitempty is %v: %s",
					ctlPage, typ.Name(), name, says, omit[name], bodies[i])
			}
		}
	}
	// The request, in the protocol's subsection.
	proto := text(subsection(sec, "The control protocol"))
	req := reflect.TypeOf(control.Request{})
	for i := range req.NumField() {
		name, _, _ := strings.Cut(req.Field(i).Tag.Get("json"), ",")
		if !wordIn(proto, name) {
			t.Errorf("%s: the control protocol does not name the request field %s", ctlPage, name)
		}
	}
	for _, name := range ctl.CommandNames() {
		if !wordIn(proto, name) {
			t.Errorf("%s: the control protocol does not name the command %s", ctlPage, name)
		}
	}
}
