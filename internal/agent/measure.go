package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/lvs-feedbackd/feedbackd/internal/config"
	"github.com/lvs-feedbackd/feedbackd/internal/logging"
	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// MeasureOnce builds each service's monitor, measures it once and prints one
// table row per service to w: name, protocol/port, forwarding, monitor and
// health, or "unknown: reason" when the monitor could not be built or its
// measurement failed. It never contacts the master.
//
// Services are measured concurrently, so the whole run takes as long as the
// slowest monitor (an exec command up to its timeout; cpuload about 100 ms
// for its two /proc/stat samples) rather than the sum. ctx bounds it all.
//
// It returns a non-nil error, naming every failed service, when any health
// is unknown: the point of measuring once is to check that the monitors
// work, and a failing monitor would make the master leave the weight alone
// (health 255), so the caller should exit non-zero. The table is still
// printed in full first.
func MeasureOnce(ctx context.Context, cfg *config.Agent, opts Options, w io.Writer) error {
	if cfg == nil {
		return errors.New("agent: no configuration")
	}
	if len(cfg.Services) == 0 {
		return errors.New("agent: no [service] configured")
	}
	log := opts.Logger
	if log == nil {
		log = logging.Discard()
	}

	// err is the monitor's own error, for the table row (which already
	// names the service); the returned error adds the service name.
	type result struct {
		health int
		err    error
	}
	results := make([]result, len(cfg.Services))
	var wg sync.WaitGroup
	for i, sc := range cfg.Services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := monitor.New(sc.Monitor, sc.Params,
				monitor.Options{ProcRoot: opts.ProcRoot, Logger: log.With("service", sc.Name)})
			if err != nil {
				results[i].err = err
				return
			}
			defer m.Close()
			h, err := m.Measure(ctx)
			results[i] = result{health: h, err: err}
		}()
	}
	wg.Wait()

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPROTOCOL/PORT\tFORWARDING\tMONITOR\tHEALTH")
	var errs []error
	for i, sc := range cfg.Services {
		health := strconv.Itoa(results[i].health)
		if err := results[i].err; err != nil {
			errs = append(errs, fmt.Errorf("service %q%s: %w", sc.Name, where(sc), err))
			// One line per row: a multi-line error (exec stderr) would
			// break the table.
			health = "unknown: " + strings.Join(strings.Fields(err.Error()), " ")
		}
		fmt.Fprintf(tw, "%s\t%s/%d\t%s\t%s\t%s\n", sc.Name, necp.ProtocolName(sc.Protocol), sc.Port,
			sc.Forwarding.String(), sc.Monitor, health)
	}
	if err := tw.Flush(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
