package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/daemon"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/metrics"
	"github.com/lvs-feedbackd/feedbackd/internal/sd"
)

const summary = "LVS dynamic feedback: polls feedbackd-agents over NECP and sets IPVS weights from their health."

type options struct {
	cli.Common
	dryRun, withoutIPVS              bool
	listen, stateFile, controlSocket string
}

func flags(o *options) *cli.Flags {
	f := cli.NewFlags(prog)
	f.RegisterCommon(&o.Common, config.DefaultMasterPath)
	f.Bool(&o.dryRun, "read IPVS but never write it; log what would be written", "n", "dry-run")
	f.Bool(&o.withoutIPVS, "use an in-memory IPVS table (no kernel ip_vs needed); the table is logged on every change", "without-ipvs")
	f.String(&o.listen, "", "ADDR", "listen on ADDR (host:port) when not socket-activated; overrides 'listen' in the config", "listen")
	f.String(&o.stateFile, defaultStateFile, "FILE", "where to keep the list of destinations this master created", "state-file")
	f.String(&o.controlSocket, control.DefaultSocket, "PATH", "the control socket for feedbackctl, when systemd does not pass one", "control-socket")
	return f
}

// overrideListen applies --listen over the configuration's listen, and
// keeps the parsed form so that a reload applies it again.
func (o *options) overrideListen(cfg *config.Master) error {
	if o.listen == "" {
		return nil
	}
	l, err := config.ParseListen(o.listen)
	if err != nil {
		return err
	}
	cfg.Listen, o.listen = l, l
	return nil
}

// newMaster builds the master with its metrics, wired to systemd: the
// returned status is the STATUS= line the shell shows.
func newMaster(cfg *config.Master, o options, log *slog.Logger, kv ipvs.IPVS, store master.Store,
	sh *daemon.Shell, ln net.Listener) (*master.Master, *metrics.Master, func() string, error) {
	var m *master.Master
	status := func() string { return m.Summary().String() + sh.Note() }
	obs := metricsFor(&m)
	m, err := master.New(cfg, master.Options{
		Logger: log, IPVS: kv, Store: store, DryRun: o.dryRun, Observer: obs, Sysctls: sysctls(o),
		LoopEvery: sd.LoopEvery(sh.Notifier.WatchdogInterval()),
		// How the agents' sockets are polled: io_uring unless told epoll,
		// for a kernel where io_uring misbehaves (feedbackd-master(8)).
		Poller: os.Getenv("FEEDBACKD_POLLER"),
		// READY=1 once the configuration is loaded, IPVS opened and the
		// virtual services ensured.
		OnReady: func() {
			log.Info("feedbackd-master ready", "version", cli.Version, "listen", ln.Addr().String(),
				"virtual_services", len(cfg.VirtualServices), "dry_run", o.dryRun, "without_ipvs", o.withoutIPVS)
			sh.Notifier.Ready(status())
		},
		// The watchdog is fed only while the loop that owns the cluster
		// really turns.
		OnLoop: func() { sh.Notifier.Alive(time.Now()); sh.Notifier.Status(status(), time.Second) },
	})
	return m, obs, status, err
}

// backends opens the IPVS implementation and the ownership store the
// options ask for.
func backends(o options, log *slog.Logger, logw io.Writer) (ipvs.IPVS, master.Store, error) {
	var kv ipvs.IPVS
	var store master.Store = master.FileStore{Path: o.stateFile}
	if o.withoutIPVS {
		// The in-memory table is the only place to see what the master
		// does, so print it after writes; it does not outlive the process,
		// and neither does the list of what the master created in it.
		mem := ipvs.NewMemory(nil)
		kv = ipvs.Observe(mem, ipvs.Printer(mem, logw))
		store = &master.MemoryStore{}
	} else {
		k, err := ipvs.NewKernel(log)
		if err != nil {
			return nil, nil, err
		}
		kv = k
	}
	if o.dryRun {
		kv = ipvs.NewDryRun(kv, log)
		// Read which destinations are ours, so that a dry run shows what
		// the real master would do with them, but never write the file.
		store = master.ReadOnly(store)
	}
	return kv, store, nil
}

// sysctls is where the master reads the IPVS sysctls it warns about: the
// kernel's, unless the table is an in-memory one.
func sysctls(o options) fs.FS {
	if o.withoutIPVS {
		return nil
	}
	return os.DirFS("/proc/sys")
}

// serveControl answers feedbackctl on the control socket systemd passed,
// or on one it opens at path. Without one the master still runs: the
// control socket is for operators, not for balancing.
func serveControl(ctx context.Context, m *master.Master, ln net.Listener, path string, log *slog.Logger) {
	if ln == nil {
		var err error
		if ln, err = control.Listen(path); err != nil {
			log.Warn("no control socket; feedbackctl cannot reach this master", "path", path, "err", err)
			return
		}
		defer os.Remove(path)
	}
	srv := &control.Server{
		Handle: m.Control,
		// Root, or the configuration's control-group, may change admin
		// states; anyone who can reach the socket may read them. The
		// configuration is read at each request, so a reload applies.
		MayChange: func(p control.Peer) bool {
			cfg := m.Config()
			return p.UID == 0 || cfg.ControlGroup != "" && p.InGroup(cfg.ControlGID)
		},
		Log: log,
	}
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("control socket stopped", "err", err)
	}
}

// metricsFor builds the master's metrics; *m is the master, set once it
// exists (the metrics are its Observer, so they come first).
func metricsFor(m **master.Master) *metrics.Master {
	return metrics.NewMaster(cli.Version, func(ctx context.Context) ([]control.Destination, int, int, error) {
		r := (*m).Control(ctx, control.Request{Version: control.Version, Command: control.CmdStatus}, "metrics")
		if !r.OK {
			return nil, 0, 0, errors.New(r.Error)
		}
		return r.Status.Destinations, (*m).Sessions(), (*m).Summary().Agents, nil
	})
}

// reload re-reads the configuration on SIGHUP. A broken file keeps the
// running configuration, and the error names file, line and key.
func reload(ctx context.Context, m *master.Master, file, listen string, log *slog.Logger) error {
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
