package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// InstanceFile is where the agent instance NAME (feedbackd-agent@NAME)
// keeps its own settings: DIR/NAME.conf.
func InstanceFile(dir, name string) string { return filepath.Join(dir, name+".conf") }

// AgentLayers lists the files an agent instance reads, in order: the common
// file, then the instance's own file layered over it. An instance may do
// without the common file (a realserver whose one agent file says
// everything). feedbackd-agent and feedbackd-agent-sync both use this, so
// that the sync command validates exactly what the agent will load.
func AgentLayers(common, instanceFile string) []string {
	if _, err := os.Stat(common); errors.Is(err, fs.ErrNotExist) {
		return []string{instanceFile}
	}
	return []string{common, instanceFile}
}
