package cli

import (
	"context"
	"log/slog"
)

// LevelFatal is above ERROR: the line a daemon logs before it exits 1
// (journald priority crit).
const LevelFatal = slog.LevelError + 4

// Fatal logs err as the reason the daemon stops and returns ExitError,
// for `return cli.Fatal(log, err)` in a main.
func Fatal(log *slog.Logger, err error) int {
	log.Log(context.Background(), LevelFatal, "fatal", "err", err)
	return ExitError
}
