package agentsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultStateDir is on /run: the state only has to outlive the instances
// it describes, and those do not survive a reboot either. Losing it is
// harmless: running instances are adopted, not restarted.
const DefaultStateDir = "/run/lvs-feedbackd/agent-sync"

const (
	stateFile    = "state.json"
	lockFile     = "lock"
	stateVersion = 1
)

// stateJSON is the file format; the version lets a later format be told
// apart from a corrupt file.
type stateJSON struct {
	Version   int               `json:"version"`
	Instances map[string]string `json:"instances"` // name -> hash
}

// LoadState reads the state in dir. A missing file is an empty state. A
// file that cannot be read or parsed also gives an empty state, with an
// error saying so for the caller to log as a warning: the consequence is
// only that running instances are adopted rather than restarted.
func LoadState(dir string) (State, error) {
	p := filepath.Join(dir, stateFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("state ignored: %w", err)
	}
	var s stateJSON
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("state ignored: %s: %w", p, err)
	}
	if s.Version != stateVersion {
		return State{}, fmt.Errorf("state ignored: %s: version %d, want %d", p, s.Version, stateVersion)
	}
	st := State{}
	maps.Copy(st, s.Instances)
	return st, nil
}

// SaveState writes st to dir atomically: a temporary file in the same
// directory, renamed over the old one, so a crash or a concurrent reader
// sees the old state or the new one, never half of one.
func SaveState(dir string, st State) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	data, err := json.MarshalIndent(stateJSON{Version: stateVersion, Instances: st}, "", "  ")
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(dir, "."+stateFile+".*")
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, stateFile))
	}
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	return nil
}

// Prune drops the records of instances that have no file any more: their
// units are stopped (or were never running), and should the name come
// back, its instance must be started, not adopted.
func (st State) Prune(files []File) {
	keep := make(map[string]bool, len(files))
	for _, f := range files {
		keep[f.Name] = true
	}
	maps.DeleteFunc(st, func(name, _ string) bool { return !keep[name] })
}

// Lock takes an exclusive lock on dir for one run, so that a run by hand
// and one from the path unit do not overwrite each other's state. It
// waits for the other run; the lock goes with the process, so a killed
// run cannot leave it behind.
func Lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("locking state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking state: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking state: %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}
