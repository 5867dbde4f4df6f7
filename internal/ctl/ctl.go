// Package ctl is feedbackctl, the operator's command line for a running
// feedbackd-master: it sends one request over the master's control socket
// (internal/control) and prints the answer, as a table for people or as
// the master's JSON for scripts. All the state lives in the master; this
// package only parses the command line, formats, and turns the outcome
// into an exit status. See feedbackctl(8).
package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/control"
)

// Prog is the command's name.
const Prog = "feedbackctl"

// Exit statuses, documented in feedbackctl(8) (test/man checks the page
// against these). Scripts tell "the master is not running" (3) from "the
// master said no" (1, 4), so each has its own.
const (
	ExitOK          = cli.ExitOK    // done
	ExitFailed      = cli.ExitError // the master refused the request or failed to carry it out
	ExitUsage       = cli.ExitUsage // bad command line
	ExitUnreachable = 3             // no master at the socket: missing, refused, not a socket
	ExitDenied      = 4             // permission denied: by the master (peer credentials) or the socket's mode
)

// Env is what a run reads and writes besides its arguments, so that
// tests can fix the streams and the clock.
type Env struct {
	Stdout, Stderr io.Writer
	// Now gives the time agents' ages are counted to; nil: time.Now.
	Now func() time.Time
	// Loc is the zone times are printed in; nil: time.Local.
	Loc *time.Location
}

// command is one verb of the command line.
type command struct {
	name    string // control.Cmd*
	args    string // for messages: "RS [VS]"
	min     int    // positional arguments
	max     int
	vs      bool // takes --vs
	summary string
}

// commands in the order --help lists them.
var commands = []command{
	{control.CmdStatus, "[--vs NAME] [RS]", 0, 1, true, "each destination: agent, health, weights, admin state, why 0"},
	{control.CmdAgents, "[RS]", 0, 1, false, "each agent session and the services it offers"},
	{control.CmdEvents, "RS", 1, 1, false, "the latest events the master logged about RS"},
	{control.CmdDrain, "RS [VS]", 1, 2, false, "weight 0; connections go on; never removed"},
	{control.CmdMaint, "RS [VS]", 1, 2, false, "weight 0; removed at 0 active connections"},
	{control.CmdReady, "RS [VS]", 1, 2, false, "clear drain or maint: follow the agent again"},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func summary() string {
	var b strings.Builder
	b.WriteString("Shows what the running feedbackd-master is doing, and takes realservers out of service and back.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-24s %s\n", c.name+" "+c.args, c.summary)
	}
	b.WriteString("\nRS is a realserver's IP address, VS a [virtual-service] name (default: all).\n")
	fmt.Fprintf(&b, "Exit status: %d done, %d the master refused or failed, %d bad command line,\n%d cannot reach the master, %d permission denied.",
		ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitDenied)
	return b.String()
}

// options are the command line's options; they may come before or after
// the command and its arguments.
type options struct {
	socket  string
	json    bool
	vs      string
	version bool
	help    bool
}

func newFlags(o *options) *cli.Flags {
	f := cli.NewFlags(Prog)
	f.String(&o.socket, control.DefaultSocket, "PATH", "the master's control socket (default "+control.DefaultSocket+")", "s", "socket")
	f.Bool(&o.json, "print the master's answer as one JSON object (schema in feedbackctl(8))", "j", "json")
	f.String(&o.vs, "", "NAME", "status: only the virtual service NAME", "vs")
	f.Bool(&o.version, "print the version and exit", "V", "version")
	f.Bool(&o.help, "print this help and exit", "h", "help", "u", "usage")
	return f
}

// usage prints --help: cli's layout, with the command in the usage line.
func usage(f *cli.Flags, w io.Writer) {
	var b bytes.Buffer
	f.Usage(&b, summary())
	old := "Usage: " + Prog + " [OPTION]...\n"
	fmt.Fprint(w, strings.Replace(b.String(), old, "Usage: "+Prog+" [OPTION]... COMMAND [ARGUMENT]...\n", 1))
}

// parse reads options anywhere on the line ("status --json" as well as
// "--json status"); everything else is positional. After "--" all is
// positional.
func parse(f *cli.Flags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			return nil, err
		}
		rest := f.FlagSet.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// Run runs feedbackctl with args (without the program name) and returns
// its exit status.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Loc == nil {
		env.Loc = time.Local
	}
	var o options
	f := newFlags(&o)
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "%s: %s\nTry '%s --help'.\n", Prog, fmt.Sprintf(format, a...), Prog)
		return ExitUsage
	}
	pos, err := parse(f, args)
	if err != nil {
		return usageErr("%v", err)
	}
	switch {
	case o.help:
		usage(f, env.Stdout)
		return ExitOK
	case o.version:
		cli.PrintVersion(env.Stdout, Prog)
		return ExitOK
	}
	if len(pos) == 0 {
		return usageErr("no command (one of %s)", commandNames())
	}
	cmd, ok := lookup(pos[0])
	if !ok {
		return usageErr("unknown command %q (one of %s)", pos[0], commandNames())
	}
	pos = pos[1:]
	prefix := Prog + " " + cmd.name + " " + cmd.args
	switch {
	case len(pos) < cmd.min:
		return usageErr("%s: missing RS, the realserver's address", prefix)
	case len(pos) > cmd.max:
		return usageErr("%s: unexpected argument %q", prefix, pos[cmd.max])
	}
	if !cmd.vs && flagSet(f, "vs") {
		if cmd.max == 2 {
			return usageErr("--vs is for status; %s takes the virtual service as its second argument", cmd.name)
		}
		return usageErr("--vs is for status only")
	}
	req := control.Request{Command: cmd.name, VS: o.vs}
	if len(pos) > 0 {
		a, err := netip.ParseAddr(pos[0])
		if err != nil {
			return usageErr("%s: RS %q is not an IP address (a realserver is named by its address, e.g. 10.0.0.11)", cmd.name, pos[0])
		}
		// The master's own spelling (::ffff:10.0.0.11 is 10.0.0.11, IPv6
		// compressed), so that it finds the realserver however it was typed.
		req.Realserver = a.Unmap().String()
	}
	if len(pos) > 1 {
		if pos[1] == "" {
			return usageErr("%s: empty VS", cmd.name)
		}
		req.VS = pos[1]
	}

	resp, err := control.Do(ctx, o.socket, req)
	if err != nil {
		return fail(env.Stderr, o.socket, err)
	}
	if cmd.name == control.CmdAgents && req.Realserver != "" {
		// The protocol lets the master filter; doing it here as well
		// gives the same answer from a master that does not.
		resp.Agents = agentsOf(resp.Agents, req.Realserver)
	}
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(resp); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", Prog, err)
			return ExitFailed
		}
		return ExitOK
	}
	var w bytes.Buffer
	switch cmd.name {
	case control.CmdStatus:
		if resp.Status == nil || len(resp.Status.Destinations) == 0 {
			fmt.Fprintln(&w, "no destinations"+filterNote(req))
		} else {
			writeDestinations(&w, resp.Status.Destinations)
		}
	case control.CmdAgents:
		if len(resp.Agents) == 0 {
			fmt.Fprintln(&w, "no agents"+filterNote(req))
		} else {
			writeAgents(&w, resp.Agents, env.Now(), env.Loc)
		}
	case control.CmdEvents:
		if len(resp.Events) == 0 {
			fmt.Fprintf(&w, "no events of %s\n", req.Realserver)
		} else {
			writeEvents(&w, resp.Events, env.Loc)
		}
	default: // drain, maint, ready
		what := req.Realserver
		if req.VS != "" {
			what += " in " + req.VS
		}
		switch n := len(resp.Changed); n {
		case 0:
			fmt.Fprintf(&w, "%s %s: nothing changed\n", cmd.name, what)
		default:
			fmt.Fprintf(&w, "%s %s: %s changed\n", cmd.name, what, plural(n, "destination"))
			writeDestinations(&w, resp.Changed)
		}
	}
	if _, err := env.Stdout.Write(w.Bytes()); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", Prog, err)
		return ExitFailed
	}
	return ExitOK
}

// CommandNames lists the commands, as --help and feedbackctl(8) do.
func CommandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return names
}

func commandNames() string { return strings.Join(CommandNames(), ", ") }

func flagSet(f *cli.Flags, name string) bool {
	set := false
	f.FlagSet.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			set = true
		}
	})
	return set
}

func filterNote(req control.Request) string {
	var parts []string
	if req.VS != "" {
		parts = append(parts, "virtual service "+req.VS)
	}
	if req.Realserver != "" {
		parts = append(parts, "realserver "+req.Realserver)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// agentsOf keeps the sessions that register the realserver rs.
func agentsOf(as []control.Agent, rs string) []control.Agent {
	var out []control.Agent
	for _, a := range as {
		for _, s := range a.Services {
			if addr, err := netip.ParseAddr(s.Realserver); err == nil && addr.Unmap().String() == rs {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// fail reports err from control.Do and returns the exit status for it.
func fail(stderr io.Writer, socket string, err error) int {
	code := classify(err)
	var cerr *control.Error
	switch {
	case code == ExitUnreachable:
		fmt.Fprintf(stderr, "%s: %v\n%s: is feedbackd-master running, with its control socket at %s? (--socket)\n", Prog, err, Prog, socket)
	case errors.As(err, &cerr):
		msg := cerr.Msg
		if msg == "" {
			msg = "refused, without saying why"
		}
		if code == ExitDenied && !strings.Contains(strings.ToLower(msg), "permission denied") {
			msg = "permission denied: " + msg
		}
		fmt.Fprintf(stderr, "%s: feedbackd-master: %s\n", Prog, msg)
	case code == ExitDenied:
		fmt.Fprintf(stderr, "%s: permission denied: %v\n", Prog, err)
	default:
		fmt.Fprintf(stderr, "%s: %v\n", Prog, err)
	}
	return code
}

// classify maps an error of control.Do to an exit status. Only a failed
// connect means no master; once connected, a broken exchange is the
// master failing (1).
func classify(err error) int {
	if control.IsDenied(err) {
		return ExitDenied
	}
	var cerr *control.Error
	if errors.As(err, &cerr) {
		return ExitFailed
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		// EACCES: the socket's mode or its directory's keeps this user
		// out. That is a permission, not an absent master.
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return ExitDenied
		}
		return ExitUnreachable
	}
	return ExitFailed
}

// dash stands for an empty cell, so that every line has every column
// (awk-friendly).
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// health formats a health as the master reports it.
func health(h int) string {
	switch {
	case h < 0:
		return "-" // never reported
	case h == 255:
		return "unknown" // the agent's monitor failed
	}
	return strconv.Itoa(h)
}

// adminName is the admin state as the commands call it: "" is ready.
func adminName(a string) string {
	if a == control.AdminReady {
		return control.CmdReady
	}
	return a
}

// sortDestinations orders by virtual service, then realserver address
// (numerically), so that the table reads the same however the master
// iterates.
func sortDestinations(ds []control.Destination) []control.Destination {
	ds = append([]control.Destination(nil), ds...)
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].VS != ds[j].VS {
			return ds[i].VS < ds[j].VS
		}
		a, errA := netip.ParseAddrPort(ds[i].Realserver)
		b, errB := netip.ParseAddrPort(ds[j].Realserver)
		if errA == nil && errB == nil {
			return a.Compare(b) < 0
		}
		return ds[i].Realserver < ds[j].Realserver
	})
	return ds
}

// The tables' columns, each documented in feedbackctl(8) (test/man
// checks).
var (
	StatusColumns = []string{"VS", "REALSERVER", "STATE", "AGENT", "HEALTH", "AGE", "TARGET", "WEIGHT", "KERNEL", "ACTIVE", "INACTIVE", "ADMIN", "WHY"}
	AgentsColumns = []string{"AGENT", "SINCE", "UP", "SERVICES"}
)

// writeDestinations prints the status table.
func writeDestinations(w io.Writer, ds []control.Destination) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(StatusColumns, "\t"))
	for _, d := range sortDestinations(ds) {
		kernel := "-" // not in IPVS
		if d.Kernel >= 0 {
			kernel = strconv.Itoa(d.Kernel)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n",
			dash(d.VS), dash(d.Realserver), dash(d.State), dash(d.Agent), health(d.Health), dash(d.HealthAge),
			d.Target, d.Weight, kernel, d.ActiveConn, d.InactConn, adminName(d.Admin), dash(d.Why))
	}
	tw.Flush()
}

// writeAgents prints one line per agent session.
func writeAgents(w io.Writer, as []control.Agent, now time.Time, loc *time.Location) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(AgentsColumns, "\t"))
	for _, a := range as {
		var svcs []string
		for _, s := range a.Services {
			svcs = append(svcs, fmt.Sprintf("%s %s health %s owns %d offers %d",
				dash(s.Service), dash(s.Realserver), health(s.Health), s.Owns, s.Offers))
		}
		since, up := "-", "-"
		if !a.Since.IsZero() {
			since = a.Since.In(loc).Format(time.DateTime)
			up = age(now.Sub(a.Since))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(a.Peer), since, up, dash(strings.Join(svcs, "; ")))
	}
	tw.Flush()
}

// age formats a duration to the second, as "3h2m5s".
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Truncate(time.Second).String()
}

// writeEvents prints one line per event: time, level, message, then the
// attributes as key=value in key order, quoted when they need it.
func writeEvents(w io.Writer, es []control.Event, loc *time.Location) {
	for _, e := range es {
		var b strings.Builder
		b.WriteString(e.Time.In(loc).Format("2006-01-02 15:04:05.000"))
		b.WriteString(" " + dash(e.Level) + " " + e.Message)
		keys := make([]string, 0, len(e.Attrs))
		for k := range e.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := e.Attrs[k]
			if v == "" || strings.ContainsAny(v, " \t\n\"=") || !strconv.CanBackquote(v) {
				v = strconv.Quote(v)
			}
			b.WriteString(" " + k + "=" + v)
		}
		fmt.Fprintln(w, b.String())
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// Main is feedbackctl's main: Run with the process's arguments and
// streams. SIGINT and SIGTERM keep their default, ending the process at
// once: a request is one short exchange, and the master acts on it whole
// or not at all.
func Main() int {
	return Run(context.Background(), os.Args[1:], Env{Stdout: os.Stdout, Stderr: os.Stderr})
}
