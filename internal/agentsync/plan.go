// Package agentsync keeps the feedbackd-agent@NAME.service instances in
// step with the files /etc/feedbackd/agent.d/NAME.conf: a new file starts
// its instance, a changed file (or a changed base agent.conf) restarts it,
// a removed file stops it, and an invalid file is refused without touching
// anything. feedbackd-agent-sync runs it from a .path unit.
//
// The work is split so that the decisions can be tested without systemd:
// Scan reads and checks the files, Plan (pure) compares them with what
// systemd reports and with the State recorded at the last start, and
// Execute carries the plan out through a Manager (D-Bus in production, a
// fake in tests).
package agentsync

import (
	"cmp"
	"slices"
)

// Running is an agent unit as systemd reports it. Units that are loaded
// but inactive are reported too (Active and Failed both false).
type Running struct {
	Name   string // instance name, unescaped from the unit name
	Unit   string
	State  string // systemd's ActiveState, for messages
	Active bool   // active, reloading or activating (including auto-restart)
	Failed bool
}

// State maps an instance name to the File.Hash it was last started,
// restarted or adopted with by agent-sync.
type State map[string]string

// Kind is what to do with one instance. The values are in execution order.
type Kind int

const (
	// Refuse: the file is invalid. Nothing is done to the unit: a running
	// instance keeps its previous configuration until the file is fixed.
	Refuse Kind = iota
	// Stop: the file is gone. Stops run before starts so that a renamed
	// file does not offer the same services twice for a moment.
	Stop
	// Start: the file is valid and its unit is not running.
	Start
	// Restart: the file (or agent.conf) changed since agent-sync started
	// the running unit.
	Restart
	// Adopt: the unit runs but agent-sync has no record of it (started by
	// hand, or the state in /run was lost): record the hash, do not
	// restart. Restarting would cut the agent's connection for nothing in
	// the common case, and the next change restarts it anyway.
	Adopt
)

func (k Kind) String() string {
	switch k {
	case Refuse:
		return "refuse"
	case Stop:
		return "stop"
	case Start:
		return "start"
	case Restart:
		return "restart"
	case Adopt:
		return "adopt"
	}
	return "unknown"
}

// Action is one step of a plan.
type Action struct {
	Kind   Kind
	Name   string // instance name
	Unit   string
	Path   string // the instance file; empty for Stop
	Reason string // why, in words, for the log and the dry run
	// Hash is recorded in the State once the action succeeded (Start,
	// Restart, Adopt).
	Hash string
	// ResetFailed asks for systemd's failed state (and with it the start
	// rate limit) to be cleared first: the operator who just fixed a file
	// expects a fresh attempt, not "start request repeated too quickly".
	ResetFailed bool
	Err         error // Refuse: the configuration problem
}

// Plan decides what to do, comparing the files with the units systemd
// reports and the recorded state. It is pure. Actions come in execution
// order: Kind, then instance name.
//
//   - invalid file: Refuse, whatever the unit is doing;
//   - valid file, unit failed: Restart if the file changed since the
//     recorded start, else Start (a retry: an operator who fixed a
//     monitor script expects one; the path unit only fires on changes,
//     so this cannot loop);
//   - valid file, unit not running: Start;
//   - valid file, unit running, no record: Adopt;
//   - valid file, unit running, record differs: Restart;
//   - valid file, unit running, record matches: nothing;
//   - running unit without a file (valid or not): Stop.
//
// Instances are matched by unit name, so a unit started by hand under an
// unescaped name (feedbackd-agent@web-frontend.service, which %I reads as
// "web/frontend") counts as having no file and is stopped, while the
// properly escaped one is started.
func Plan(files []File, running []Running, state State) []Action {
	units := make(map[string]Running, len(running))
	for _, r := range running {
		units[r.Unit] = r
	}
	var acts []Action
	haveFile := make(map[string]bool, len(files))
	for _, f := range files {
		haveFile[f.Unit] = true
		r, listed := units[f.Unit]
		a := Action{Name: f.Name, Unit: f.Unit, Path: f.Path, Hash: f.Hash}
		rec, known := state[f.Name]
		switch {
		case f.Err != nil:
			a.Kind, a.Err = Refuse, f.Err
			a.Reason = "invalid configuration; instance not started"
			if listed && r.Active {
				a.Reason = "invalid configuration; the running instance keeps its previous configuration"
			}
		case listed && r.Failed:
			a.Kind, a.ResetFailed = Start, true
			a.Reason = "unit had failed; retrying"
			if known && rec != f.Hash {
				a.Kind, a.Reason = Restart, "configuration changed; unit had failed"
			}
		case !listed:
			a.Kind, a.Reason = Start, "not running"
		case !r.Active:
			a.Kind, a.Reason = Start, "unit is "+r.State
		case !known:
			a.Kind, a.Reason = Adopt, "running, not started by agent-sync; recording its configuration without a restart"
		case rec != f.Hash:
			a.Kind, a.Reason = Restart, "configuration changed"
		default:
			continue // up to date
		}
		acts = append(acts, a)
	}
	for _, r := range running {
		if !haveFile[r.Unit] && r.Active {
			acts = append(acts, Action{Kind: Stop, Name: r.Name, Unit: r.Unit, Reason: "its file is gone"})
		}
	}
	slices.SortStableFunc(acts, func(a, b Action) int {
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmp.Compare(a.Unit, b.Unit)
	})
	return acts
}
