package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lvs-feedbackd/feedbackd/internal/agent"
	"github.com/lvs-feedbackd/feedbackd/internal/agentcheck"
	"github.com/lvs-feedbackd/feedbackd/internal/agentmetrics"
	"github.com/lvs-feedbackd/feedbackd/internal/cli"
	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/daemon"
)

// options wires the agent to systemd and to its metrics.
func options(cfg *config.Agent, log *slog.Logger, sh *daemon.Shell) (agent.Options, *agentmetrics.Agent) {
	svcs := map[string]string{}
	for _, s := range cfg.Services {
		svcs[s.Name] = s.Monitor
	}
	mx := agentmetrics.New(cli.Version, svcs)
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

// serveAgentChecks opens the HAProxy agent-check listener of each service
// that has agent-check-listen. Failing to listen stops the agent, as for
// metrics-listen: HAProxy would otherwise keep its configured weights and
// nothing would say why.
func serveAgentChecks(ctx context.Context, cfg *config.Agent, a *agent.Agent, log *slog.Logger) error {
	for _, sc := range cfg.Services {
		if sc.AgentCheckListen == "" {
			continue
		}
		addr, err := agentcheck.Listen(ctx, sc.AgentCheckListen, a.AgentCheck(sc.Name), log.With("service", sc.Name))
		if err != nil {
			return fmt.Errorf("service %q: agent-check-listen: %w", sc.Name, err)
		}
		log.Info("answering HAProxy agent-check", "service", sc.Name, "listen", addr.String())
	}
	return nil
}
