//go:build tools

// Package tools pins the versions of the programs the build runs, so that
// "go run" and "go build" from this directory use exactly the versions in
// go.mod/go.sum:
//
//	cd tools && go build -o ../bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm
//
// staticcheck (make test runs it) is pinned at v0.8.2.
//
// nfpm is pinned at v2.45.0: v2.46.0 and later pull in an MSIX packager
// whose module host cannot be reached from here.
package tools

import (
	_ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
