package agentsync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// Manager is the part of systemd that agent-sync uses. Start, Restart and
// Stop return once systemd's job has finished, with an error unless the
// job's result is "done".
type Manager interface {
	// ListInstances reports the loaded units matching UnitPattern.
	ListInstances(ctx context.Context) ([]Running, error)
	Start(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	// ResetFailed clears a unit's failed state and start rate limit.
	ResetFailed(ctx context.Context, unit string) error
}

// Summary counts the outcome of a run.
type Summary struct {
	Done    int // actions that succeeded (adoptions included)
	Failed  int // actions systemd refused or that failed
	Refused int // invalid files
}

// OK says whether the run deserves exit status 0: nothing failed and
// nothing was refused, so that "systemctl status feedbackd-agent-sync"
// shows a refused file as a failure.
func (s Summary) OK() bool { return s.Failed == 0 && s.Refused == 0 }

// Execute carries out actions in the given order (Plan's: stops before
// starts). A failed action is logged with its unit and cause and does not
// stop the others: one broken instance must not hold the rest back. It
// returns the new state: a hash is recorded only once its start, restart
// or adoption succeeded, and a stopped instance's record is dropped. st is
// not modified.
func Execute(ctx context.Context, m Manager, actions []Action, st State, log *slog.Logger) (State, Summary) {
	next := maps.Clone(st)
	if next == nil {
		next = State{}
	}
	var sum Summary
	for _, a := range actions {
		attrs := []any{"unit", a.Unit, "reason", a.Reason}
		if a.Kind == Refuse {
			sum.Refused++
			// One line per problem, each a complete "file:line: key:
			// message", rather than one line with embedded newlines.
			for _, line := range strings.Split(a.Err.Error(), "\n") {
				log.Error("refused invalid configuration", append(attrs, "file", a.Path, "err", line)...)
			}
			continue
		}
		var err error
		switch a.Kind {
		case Stop:
			err = m.Stop(ctx, a.Unit)
		case Start, Restart:
			if a.ResetFailed {
				// Not fatal: the start that follows reports the real
				// outcome.
				if err := m.ResetFailed(ctx, a.Unit); err != nil {
					log.Warn("could not reset the failed state", "unit", a.Unit, "err", err)
				}
			}
			if a.Kind == Start {
				err = m.Start(ctx, a.Unit)
			} else {
				err = m.Restart(ctx, a.Unit)
			}
		case Adopt: // only the record changes
		default:
			err = fmt.Errorf("unknown action %v", a.Kind)
		}
		if err != nil {
			sum.Failed++
			log.Error(a.Kind.String()+" failed", append(attrs, "err", err)...)
			continue
		}
		sum.Done++
		if a.Kind == Stop {
			delete(next, a.Name)
		} else {
			next[a.Name] = a.Hash
		}
		log.Info(pastTense[a.Kind], attrs...)
	}
	return next, sum
}

var pastTense = map[Kind]string{Stop: "stopped", Start: "started", Restart: "restarted", Adopt: "adopted"}

// Options configure Sync.
type Options struct {
	Base     string // the base agent.conf
	Dir      string // agent.d
	StateDir string
	// DryRun prints the plan to Out and changes nothing: no unit, no
	// state, no lock. It only reads from systemd.
	DryRun bool
	Out    io.Writer
	Log    *slog.Logger
}

// maxPasses bounds the rescans of one run (see Sync), so that something
// rewriting agent.d without pause cannot keep a run going for ever.
const maxPasses = 3

// Sync is one complete run: scan, plan, execute, save the state. The
// error is for what prevents a run at all (the directory, the list of
// units, the state lock) or a state that could not be saved; the failures
// of single actions are in the Summary.
//
// After executing, it scans again and, if a file changed meanwhile, goes
// round once more: a change that arrives while this run is working
// triggers the path unit, but systemd merges that trigger into the run
// already in progress, so nobody else would pick the change up.
func Sync(ctx context.Context, m Manager, o Options) (Summary, error) {
	log := o.Log
	if !o.DryRun {
		unlock, err := Lock(o.StateDir)
		if err != nil {
			return Summary{}, err
		}
		defer unlock()
	}
	files, skipped, err := Scan(o.Base, o.Dir)
	if err != nil {
		return Summary{}, err
	}
	for _, s := range skipped {
		log.Debug("skipping file", "file", s.Name, "reason", s.Reason)
	}
	st, stErr := LoadState(o.StateDir)
	if stErr != nil {
		log.Warn("running instances will be adopted, not restarted", "err", stErr)
	}
	var total Summary
	for pass := 1; ; pass++ {
		running, err := m.ListInstances(ctx)
		if err != nil {
			return total, fmt.Errorf("listing %s units: %w", UnitPattern, err)
		}
		actions := Plan(files, running, st)
		if o.DryRun {
			WritePlan(o.Out, actions, files)
			for _, a := range actions {
				if a.Kind == Refuse {
					total.Refused++
				}
			}
			return total, nil
		}
		logWarnings(log, files)
		log.Debug("plan", "pass", pass, "files", len(files), "units", len(running), "actions", len(actions))
		next, sum := Execute(ctx, m, actions, st, log)
		next.Prune(files)
		// Rewrite a state that could not be read even when nothing
		// changed, so that its warning is not repeated on every run.
		if !maps.Equal(next, st) || stErr != nil {
			if err := SaveState(o.StateDir, next); err != nil {
				return total, err
			}
		}
		st, stErr = next, nil
		// Failures add up over the passes; refusals are those of the
		// files as they are now, a file fixed meanwhile is not one.
		total.Done += sum.Done
		total.Failed += sum.Failed
		total.Refused = sum.Refused

		again, _, err := Scan(o.Base, o.Dir)
		if err != nil || sameFiles(files, again) {
			return total, nil
		}
		if pass == maxPasses {
			log.Warn("files keep changing; leaving the rest to the next run", "passes", pass)
			return total, nil
		}
		log.Info("files changed during the run; going again")
		files = again
	}
}

// sameFiles says whether two scans found the same files with the same
// contents and verdicts.
func sameFiles(a, b []File) bool {
	return slices.EqualFunc(a, b, func(x, y File) bool {
		return x.Name == y.Name && x.Hash == y.Hash && (x.Err == nil) == (y.Err == nil)
	})
}

// logWarnings logs each distinct configuration warning once: a warning in
// agent.conf comes back with every instance file.
func logWarnings(log *slog.Logger, files []File) {
	seen := map[string]bool{}
	for _, f := range files {
		for _, w := range f.Warnings {
			if !seen[w] {
				seen[w] = true
				log.Warn("configuration warning", "warning", w)
			}
		}
	}
}

// WritePlan prints actions for --dry-run, one per line, a refusal followed
// by its configuration errors.
func WritePlan(w io.Writer, actions []Action, files []File) {
	for _, a := range actions {
		fmt.Fprintf(w, "%-7s %s: %s\n", a.Kind, a.Unit, a.Reason)
		if a.Kind == Refuse {
			for _, line := range strings.Split(a.Err.Error(), "\n") {
				fmt.Fprintf(w, "        %s\n", line)
			}
		}
	}
	fmt.Fprintf(w, "%d instance files, %d actions\n", len(files), len(actions))
}
