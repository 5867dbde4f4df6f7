// Command feedbackd-agent runs on each LVS realserver: it measures the
// health of its services and reports it to feedbackd-master on the
// director. See feedbackd-agent(8).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agent"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/daemon"
	"github.com/lvs-feedbackd/feedbackd/internal/hugepages"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
)

const prog = "feedbackd-agent"

// agentProcs is the agent's GOMAXPROCS unless the environment sets one,
// and returnMemoryEvery how often it gives its free heap back: see
// internal/daemon/runtime.go for why.
const (
	agentProcs        = 2
	returnMemoryEvery = 30 * time.Second
)

// smallPagesErr is why the agent could not keep off transparent huge
// pages, said once the log is open.
var smallPagesErr error

func main() {
	// First, before anything is printed or opened: where the kernel gives
	// huge pages to every process, this starts the executable again
	// without them (internal/hugepages).
	smallPagesErr = hugepages.Avoid()
	os.Exit(run(os.Args[1:], cli.DefaultStdio()))
}

func run(args []string, io cli.Stdio) int {
	var c cli.Common
	var measure bool
	var instance, agentDir string
	f := cli.NewFlags(prog)
	f.RegisterCommon(&c, config.DefaultAgentPath)
	f.Bool(&measure, "measure every configured service once, print name, monitor and health, and exit", "m", "measure")
	f.String(&instance, "", "NAME", "run the instance NAME: DIR/NAME.conf layered over the common file given by -c (feedbackd-agent@NAME.service)", "instance")
	f.String(&agentDir, config.DefaultAgentDir, "DIR", "where instance files live", "agent-dir")
	const summary = "LVS dynamic feedback: reports this realserver's service health to feedbackd-master."
	if code, done := f.Begin(args, &c, io, summary); done {
		return code
	}
	cfg, err := config.LoadAgent(agentFiles(c.ConfFile, instance, agentDir)...)
	if code, ok := cli.Loaded(io, prog, err, cfg.WarningLines()); !ok {
		return code
	}
	if c.Test {
		fmt.Fprintf(io.Stdout, "%s: configuration %s OK (%d services, director %s)\n", prog, cfg.File, len(cfg.Services), cfg.Director)
		return cli.ExitOK
	}
	// Two Ps: a reply can run while a monitor samples, and no more are of
	// use to the agent (see daemon.CapProcs).
	procs := daemon.CapProcs(agentProcs)
	log, _, closeLog, err := cli.Logger(prog, c.Debug, cfg.LogLevel, cfg.LogFile, io.Stdout, io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	defer closeLog()
	sh := daemon.Start(log)
	defer sh.Close()
	sh.ReturnMemory(returnMemoryEvery)
	// The agent has no reload: feedbackd-agent-sync restarts it when its
	// files change.
	sh.IgnoreHUP("the agent applies configuration changes on restart")
	opts, mx := options(cfg, log, sh)
	if measure {
		if err := agent.MeasureOnce(sh.Ctx, cfg, opts, io.Stdout); err != nil {
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
	if _, err := promtext.Serve(sh.Ctx, cfg.MetricsListen, mx.Expose, log); err != nil {
		return cli.Fatal(log, err)
	}
	if err := serveAgentChecks(sh.Ctx, cfg, a, log); err != nil {
		return cli.Fatal(log, err)
	}
	log.Info("feedbackd-agent starting", "version", cli.Version, "director", cfg.Director,
		"services", len(cfg.Services), "instance", instance, "gomaxprocs", procs,
		"reaper", monitor.ReaperExecutable(), "small_pages", hugepages.Disabled())
	if smallPagesErr != nil {
		log.Warn("cannot keep off transparent huge pages; the agent's memory may be larger", "err", smallPagesErr)
	}
	// Ready once the monitors are built: waiting for the master would make
	// the unit fail to start whenever the director is down.
	sh.Notifier.Ready(fmt.Sprintf("connecting to director %s", cfg.Director))
	if err := a.Run(sh.Ctx); err != nil {
		log.Error("giving up", "err", err)
		return cli.ExitError
	}
	return cli.ExitOK
}
