// Command feedbackd-agent runs on each LVS realserver: it measures the
// health of its services and reports it to feedbackd-master on the
// director. See feedbackd-agent(8).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/agent"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
)

const prog = "feedbackd-agent"

func main() { os.Exit(run(os.Args[1:], cli.DefaultStdio())) }

func run(args []string, io cli.Stdio) int {
	var c cli.Common
	var measure bool
	f := cli.NewFlags(prog)
	f.RegisterCommon(&c, config.DefaultAgentPath)
	f.Bool(&measure, "measure every configured service once, print name, monitor and health, and exit", "m", "measure")
	const summary = "LVS dynamic feedback: reports this realserver's service health to feedbackd-master."
	if code, done := f.Begin(args, &c, io, summary); done {
		return code
	}
	cfg, err := config.LoadAgent(c.ConfFile)
	if code, ok := cli.Loaded(io, prog, err, cfg.WarningLines()); !ok {
		return code
	}
	if c.Test {
		fmt.Fprintf(io.Stdout, "%s: configuration %s OK (%d services, director %s)\n", prog, cfg.File, len(cfg.Services), cfg.Director)
		return cli.ExitOK
	}
	log, _, closeLog, err := cli.Logger(c.Debug, cfg.LogLevel, cfg.LogFile, io.Stdout, io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	defer closeLog()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opts := agent.Options{Logger: log}
	if measure {
		if err := agent.MeasureOnce(ctx, cfg, opts, io.Stdout); err != nil {
			fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
			return cli.ExitError
		}
		return cli.ExitOK
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	log.Info("feedbackd-agent starting", "version", cli.Version, "director", cfg.Director, "services", len(cfg.Services))
	if err := a.Run(ctx); err != nil {
		log.Error("giving up", "err", err)
		return cli.ExitError
	}
	return cli.ExitOK
}
