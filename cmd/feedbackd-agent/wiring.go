package main

import (
	"log/slog"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agent"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/daemon"
	"github.com/lvs-feedbackd/feedbackd/internal/metrics"
)

// options wires the agent to systemd and to its metrics.
func options(cfg *config.Agent, log *slog.Logger, sh *daemon.Shell) (agent.Options, *metrics.Agent) {
	svcs := map[string]string{}
	for _, s := range cfg.Services {
		svcs[s.Name] = s.Monitor
	}
	mx := metrics.NewAgent(cli.Version, svcs)
	return agent.Options{
		Logger: log,
		// The watchdog is fed whenever the agent shows life: each KEEPALIVE
		// answered, and each connection attempt or loss while the master is
		// away. A hung agent does neither.
		OnState: func(connected bool, summary string) {
			sh.Notifier.Status(summary, 0)
			sh.Notifier.Alive(time.Now())
		},
		OnKeepalive: func() { sh.Notifier.Alive(time.Now()) },
		OnSample:    mx.Sampled,
	}, mx
}

// agentFiles lists the files an agent reads: the common file alone, or for
// an instance its own file layered over it.
func agentFiles(common, instance, dir string) []string {
	if instance == "" {
		return []string{common}
	}
	return config.AgentLayers(common, config.InstanceFile(dir, instance))
}
