package agentsync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
)

// File is one agent.d/NAME.conf file, checked.
type File struct {
	Name string // instance name: the file name without ".conf"
	Path string
	Unit string // the unit that runs it, see UnitFor
	// Hash identifies the configuration the instance runs with: a change
	// in the base agent.conf must restart every instance, as well as a
	// change in the instance's own file, so both go in. Empty when the
	// file could not be read.
	Hash string
	// Err is why the file is refused: the layered configuration's
	// config.Errors (one "file:line: key: message" per line), a read
	// error or a bad instance name. nil for a valid file.
	Err      error
	Warnings []string      // doubts from config.LoadAgent, for a valid file
	Config   *config.Agent // the layered configuration, for a valid file
}

// Skipped is a directory entry that is not an instance, and why.
type Skipped struct {
	Name   string // file name in the directory
	Reason string
}

// Scan checks every instance file in dir against the base file, in file
// name order. The check is the agent's own (feedbackd-agent --instance):
// config.LoadAgent(base, file), or LoadAgent(file) when base does not
// exist, so a file passes exactly when the agent would start with it.
//
// A missing or unreadable dir is an error rather than "no instances": a
// mistyped --dir or an unmounted /etc must not stop every agent. A base
// file that exists but cannot be read is not an error here: every file is
// then refused with the read error and no instance is touched.
func Scan(base, dir string) ([]File, []Skipped, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading instance directory: %w", err)
	}
	// Read once for the hash of every instance. LoadAgent reads it again;
	// if it changes in between, the path unit fires again and the next
	// run sees the new hash, so the race costs at most one extra restart.
	baseData, _ := os.ReadFile(base)
	baseSum := sha256.Sum256(baseData)

	var files []File
	var skipped []Skipped
	for _, e := range entries {
		name, skip, err := classify(e.Name())
		if skip != "" {
			skipped = append(skipped, Skipped{Name: e.Name(), Reason: skip})
			continue
		}
		path := filepath.Join(dir, e.Name())
		f := File{Name: name, Path: path, Unit: UnitFor(name)}
		if err != nil {
			f.Err = fmt.Errorf("%s: %w", path, err)
			files = append(files, f)
			continue
		}
		if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
			// A directory or a device named web.conf: LoadAgent's read
			// error ("is a directory") would be less clear.
			f.Err = fmt.Errorf("%s: not a regular file", path)
			files = append(files, f)
			continue
		}
		if data, err := os.ReadFile(path); err == nil {
			f.Hash = hashOf(baseSum, data)
		}
		cfg, err := config.LoadAgent(config.AgentLayers(base, path)...)
		if err != nil {
			f.Err = err
		} else {
			f.Config = cfg
			f.Warnings = cfg.WarningLines()
		}
		files = append(files, f)
	}
	return files, skipped, nil
}

// hashOf combines the two files' digests rather than their bytes, so that
// moving a line from one file to the other changes the hash too.
func hashOf(baseSum [sha256.Size]byte, data []byte) string {
	s := sha256.Sum256(data)
	h := sha256.New()
	h.Write(baseSum[:])
	h.Write(s[:])
	return hex.EncodeToString(h.Sum(nil))
}
