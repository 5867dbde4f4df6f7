package cli

import (
	_ "embed"
	"runtime/debug"
	"strings"
)

// release is the contents of internal/cli/VERSION: the release version of
// this code, and the one place it is kept. The Makefile reads the same file
// for the packages' version, and test/man checks the man pages' .TH lines
// against it. To release X.Y.Z: write X.Y.Z here, add an entry to
// packaging/changelog.yml, commit, and tag that commit vX.Y.Z.
//
//go:embed VERSION
var release string

// Release is the release version, e.g. "0.6.0".
var Release = strings.TrimSpace(release)

// Version is the full version printed by -V and --help, logged by the
// daemons and given to the packages: Release for a build of the tagged
// release commit, otherwise Release with a "+git..." suffix (see the
// Makefile's VERSION). The Makefile stamps it with
// -ldflags "-X .../internal/cli.Version=..."; a build that was not stamped
// (go build, go run) gets Release plus what Go recorded about the commit,
// "+git.gHASH[.dirty]", or "+unknown" outside a git checkout. Never the
// bare Release: only the Makefile can tell that a build is exactly the
// tagged release.
var Version string

func init() {
	if Version == "" {
		Version = Release + vcsSuffix()
	}
}

func vcsSuffix() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "+unknown"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ".dirty"
			}
		}
	}
	if len(rev) < 7 {
		return "+unknown"
	}
	return "+git.g" + rev[:7] + dirty
}
