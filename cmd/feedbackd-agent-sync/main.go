// Command feedbackd-agent-sync starts, restarts and stops the
// feedbackd-agent@NAME.service instances so that they match the files
// /etc/feedbackd/agent.d/NAME.conf. feedbackd-agent-sync.path runs it
// whenever that directory or agent.conf changes. See internal/agentsync.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/agentsync"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
)

const prog = "feedbackd-agent-sync"

// connectFunc opens the Manager; tests pass a fake.
type connectFunc func(ctx context.Context) (agentsync.Manager, func(), error)

func connectSystemd(ctx context.Context) (agentsync.Manager, func(), error) {
	s, err := agentsync.NewSystemd(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

func main() { os.Exit(run(os.Args[1:], cli.DefaultStdio(), connectSystemd)) }

func run(args []string, io cli.Stdio, connect connectFunc) int {
	var c cli.Common
	var dir, stateDir string
	var dryRun bool
	f := cli.NewFlags(prog)
	f.RegisterCommon(&c, config.DefaultAgentPath)
	f.String(&dir, config.DefaultAgentDir, "DIR", "one agent instance per DIR/NAME.conf (default "+config.DefaultAgentDir+")", "dir")
	f.String(&stateDir, agentsync.DefaultStateDir, "DIR", "remember there what each instance was started with (default "+agentsync.DefaultStateDir+")", "state-dir")
	f.Bool(&dryRun, "print what would be started, restarted and stopped; change nothing", "n", "dry-run")
	const summary = "Starts, restarts and stops feedbackd-agent@NAME.service to match the files NAME.conf in the instance directory."
	if code, done := f.Begin(args, &c, io, summary); done {
		return code
	}
	if c.Test {
		return agentsync.CheckFiles(io.Stdout, io.Stderr, prog, c.ConfFile, dir)
	}
	// INFO rather than agent.conf's loglevel (WARN by default): the point
	// of this command is the one journal line per start, restart or stop.
	log, _, closeLog, err := cli.Logger(prog, c.Debug, logging.LevelInfo, "", io.Stdout, io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	defer closeLog()
	// SIGTERM (systemctl stop, the unit's timeout) ends the wait for a job
	// cleanly; the jobs themselves go on in systemd.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m, closeM, err := connect(ctx)
	if err != nil {
		log.Error("giving up", "err", err)
		return cli.ExitError
	}
	defer closeM()
	sum, err := agentsync.Sync(ctx, m, agentsync.Options{
		Base: c.ConfFile, Dir: dir, StateDir: stateDir,
		DryRun: dryRun, Out: io.Stdout, Log: log,
	})
	if err != nil {
		log.Error("giving up", "err", err)
		return cli.ExitError
	}
	if !dryRun {
		log.Debug("done", "ok", sum.Done, "failed", sum.Failed, "refused", sum.Refused)
	}
	if !sum.OK() {
		return cli.ExitError
	}
	return cli.ExitOK
}
