// Command feedbackd-master runs on the LVS director: it accepts
// feedbackd-agent connections on TCP 3262 and turns their health reports
// into IPVS weights. See feedbackd-master(8).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/sd"
)

const prog = "feedbackd-master"

// defaultStateFile lists the destinations this master created, so that a
// restarted master takes them back and never touches anyone else's.
const defaultStateFile = "/var/lib/lvs-feedbackd/master.state"

func main() {
	// Memory at scale is goroutine stacks plus the heap the GC lets grow to
	// GOGC% above the live set. The master allocates almost nothing in
	// steady state (an unchanged health report costs no allocation), so a
	// tighter target is nearly free in CPU and keeps 20 000 agents under
	// 200 MB (docs/benchmarks.md). An operator's GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], cli.DefaultStdio()))
}

type options struct {
	cli.Common
	dryRun      bool
	withoutIPVS bool
	listen      string
	stateFile   string
}

func run(args []string, io cli.Stdio) int {
	var o options
	f := cli.NewFlags(prog)
	f.RegisterCommon(&o.Common, config.DefaultMasterPath)
	f.Bool(&o.dryRun, "read IPVS but never write it; log what would be written", "n", "dry-run")
	f.Bool(&o.withoutIPVS, "use an in-memory IPVS table (no kernel ip_vs needed); the table is logged on every change", "without-ipvs")
	f.String(&o.listen, "", "ADDR", "listen on ADDR (host:port) when not socket-activated; overrides 'listen' in the config", "listen")
	f.String(&o.stateFile, defaultStateFile, "FILE", "where to keep the list of destinations this master created", "state-file")
	const summary = "LVS dynamic feedback: polls feedbackd-agents over NECP and sets IPVS weights from their health."
	if code, done := f.Begin(args, &o.Common, io, summary); done {
		return code
	}
	cfg, err := config.LoadMaster(o.ConfFile)
	if code, ok := cli.Loaded(io, prog, err, cfg.WarningLines()); !ok {
		return code
	}
	if o.Test {
		fmt.Fprintf(io.Stdout, "%s: configuration %s OK (%d virtual services)\n", prog, cfg.File, len(cfg.VirtualServices))
		return cli.ExitOK
	}
	if o.listen != "" {
		l, err := config.ParseListen(o.listen)
		if err != nil {
			fmt.Fprintf(io.Stderr, "%s: --listen: %v\n", prog, err)
			return cli.ExitUsage
		}
		cfg.Listen, o.listen = l, l
	}
	log, logw, closeLog, err := cli.Logger(prog, o.Debug, cfg.LogLevel, cfg.LogFile, io.Stdout, io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", prog, err)
		return cli.ExitError
	}
	defer closeLog()
	if err := serve(cfg, o, log, logw); err != nil {
		log.Log(context.Background(), slog.LevelError+4, "fatal", "err", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func serve(cfg *config.Master, o options, log *slog.Logger, logw io.Writer) error {
	var m *master.Master
	// Signals first: a SIGHUP that arrived during start-up would otherwise
	// kill the process (its default action).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	notifier := sd.New(log)
	// A failed reload stays in the status line until a reload succeeds, so
	// `systemctl status` shows that the running configuration is not the
	// file on disk.
	var reloadNote atomic.Value
	reloadNote.Store("")
	status := func() string { return m.Summary().String() + reloadNote.Load().(string) }

	var kv ipvs.IPVS
	var store master.Store = master.FileStore{Path: o.stateFile}
	if o.withoutIPVS {
		// The in-memory table is the only place to see what the master
		// does, so print it after writes.
		mem := ipvs.NewMemory(nil)
		kv = ipvs.Observe(mem, tablePrinter(mem, logw))
		store = &master.MemoryStore{}
	} else {
		k, err := ipvs.NewKernel(log)
		if err != nil {
			return err
		}
		kv = k
	}
	defer kv.Close()
	if o.dryRun {
		kv = ipvs.NewDryRun(kv, log)
		// Read which destinations are ours, so that a dry run shows what
		// the real master would do with them, but never write the file.
		store = master.ReadOnly(store)
	}

	ln, err := listener(cfg.Listen, log)
	if err != nil {
		return err
	}
	m, err = master.New(cfg, master.Options{
		Logger: log, IPVS: kv, Store: store, DryRun: o.dryRun,
		LoopEvery: loopEvery(notifier.WatchdogInterval()),
		// READY=1 only now: the configuration is loaded, IPVS opened and
		// the virtual services ensured.
		OnReady: func() {
			log.Info("feedbackd-master ready", "version", cli.Version, "listen", ln.Addr().String(),
				"virtual_services", len(cfg.VirtualServices), "dry_run", o.dryRun, "without_ipvs", o.withoutIPVS)
			notifier.Ready(status())
		},
		// The owner loop runs this at least once a second: the watchdog is
		// fed only while the loop that owns the cluster really turns.
		OnLoop: func() {
			notifier.Alive(time.Now())
			notifier.Status(status(), time.Second)
		},
	})
	if err != nil {
		return err
	}
	go func() {
		for range hup {
			if err := reload(ctx, m, cfg.File, o.listen, log, notifier); err != nil {
				reloadNote.Store("; last reload failed: " + firstLine(err.Error()))
			} else {
				reloadNote.Store("")
			}
			notifier.Ready(status())
		}
	}()
	// STOPPING=1 as soon as the signal arrives, and before the process exits.
	defer notifier.StoppingWhenDone(ctx)()
	err = m.Run(ctx, ln)
	log.Info("feedbackd-master stopped; IPVS tables left as they are")
	return err
}

// reload re-reads the configuration on SIGHUP. A broken file keeps the
// running configuration, and the error names file, line and key.
func reload(ctx context.Context, m *master.Master, file, listen string, log *slog.Logger, n *sd.Notifier) error {
	n.Reloading()
	newCfg, err := config.LoadMaster(file)
	if err == nil {
		if listen != "" {
			newCfg.Listen = listen
		}
		err = m.Reload(ctx, newCfg)
	}
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return err
	}
	for _, w := range newCfg.Warnings {
		log.Warn("configuration warning", "warning", w)
	}
	return nil
}

// loopEvery is how often the owner loop must turn at least: often enough
// that pings at half the watchdog interval are never late.
func loopEvery(watchdog time.Duration) time.Duration {
	if watchdog > 0 && watchdog/4 < time.Second {
		return watchdog / 4
	}
	return time.Second
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// tablePrinter prints the in-memory table after writes: the only way to
// see what a --without-ipvs master does. Bursts of writes (a thousand
// agents joining) are coalesced into one print per 200 ms, and a large
// table is cut short, so printing never costs more than the work itself.
func tablePrinter(mem *ipvs.Memory, w io.Writer) func() {
	const maxLines = 60
	kick := make(chan struct{}, 1)
	go func() {
		for range kick {
			lines := strings.SplitAfter(mem.String(), "\n")
			if len(lines) > maxLines {
				more := len(lines) - maxLines
				lines = append(lines[:maxLines], fmt.Sprintf("  ... %d more lines\n", more))
			}
			fmt.Fprintf(w, "--- IPVS table (in-memory, --without-ipvs) ---\n%s", strings.Join(lines, ""))
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return func() {
		select {
		case kick <- struct{}{}:
		default: // a print is already pending; it will show this write too
		}
	}
}

// listener takes the socket systemd passes (feedbackd-master.socket) or
// listens itself on addr.
func listener(addr string, log *slog.Logger) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, err
	}
	for _, l := range lns {
		if l != nil {
			log.Debug("using socket passed by systemd", "addr", l.Addr().String())
			return l, nil
		}
	}
	if addr == "" {
		addr = config.DefaultListen
	}
	return net.Listen("tcp", addr)
}
