// Command feedbackd-master runs on the LVS director: it accepts
// feedbackd-agent connections on TCP 3262 and turns their health reports
// into IPVS weights. See feedbackd-master(8).
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/daemon"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
	"github.com/lvs-feedbackd/feedbackd/internal/sdsocket"
)

const prog = "feedbackd-master"

// defaultStateFile lists the destinations this master created, so that a
// restarted master takes them back and never touches anyone else's.
const defaultStateFile = "/var/lib/lvs-feedbackd/master.state"

func main() {
	// Memory at scale is goroutine stacks plus the heap the GC lets grow to
	// GOGC% above the live set. The master allocates almost nothing in
	// steady state, so a tighter target is nearly free in CPU and keeps
	// 20 000 agents under 200 MB (docs/benchmarks.md). GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], cli.DefaultStdio()))
}

func run(args []string, io cli.Stdio) int {
	var o options
	if code, done := flags(&o).Begin(args, &o.Common, io, summary); done {
		return code
	}
	cfg, err := config.LoadMaster(o.ConfFile)
	if code, ok := cli.Loaded(io, prog, err, cfg.WarningLines()); !ok {
		return code
	}
	// Checked with the configuration, so that -t refuses it too.
	if err := master.CheckPoller(os.Getenv("FEEDBACKD_POLLER")); err != nil {
		fmt.Fprintf(io.Stderr, "%s: FEEDBACKD_POLLER: %v\n", prog, err)
		return cli.ExitError
	}
	if o.Test {
		fmt.Fprintf(io.Stdout, "%s: configuration %s OK (%d virtual services)\n", prog, cfg.File, len(cfg.VirtualServices))
		return cli.ExitOK
	}
	if err := o.overrideListen(cfg); err != nil {
		fmt.Fprintf(io.Stderr, "%s: --listen: %v\n", prog, err)
		return cli.ExitUsage
	}
	log, logw, closeLog, err := cli.Logger(prog, o.Debug, cfg.LogLevel, cfg.LogFile, io.Stdout, io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	defer closeLog()
	sh := daemon.Start(log)
	defer sh.Close()
	kv, store, err := backends(o, log, logw)
	if err != nil {
		return cli.Fatal(log, err)
	}
	defer kv.Close()
	ln, ctlLn, err := sdsocket.Listeners(cfg.Listen, log)
	if err != nil {
		return cli.Fatal(log, err)
	}
	m, obs, status, err := newMaster(cfg, o, log, kv, store, sh, ln)
	if err != nil {
		return cli.Fatal(log, err)
	}
	sh.Reloads(func(ctx context.Context) error { return reload(ctx, m, cfg.File, o.listen, log) }, status)
	go serveControl(sh.Ctx, m, ctlLn, o.controlSocket, log)
	if _, err := promtext.Serve(sh.Ctx, cfg.MetricsListen, obs.Expose, log); err != nil {
		return cli.Fatal(log, err)
	}
	err = m.Run(sh.Ctx, ln)
	log.Info("feedbackd-master stopped; IPVS tables left as they are")
	if err != nil {
		return cli.Fatal(log, err)
	}
	return cli.ExitOK
}
