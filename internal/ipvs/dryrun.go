package ipvs

import (
	"log/slog"
)

// NewDryRun wraps inner so that reads pass through (connection counts and
// the existing table stay real) while writes are only logged at INFO, as
// "dry-run: would add destination" etc. with the full request as fields,
// and then report success.
//
// Because nothing is written, a later read does not show the change: a
// destination "added" in a dry run is still missing on the next pass, an
// "updated" weight still has its old value. The master must therefore
// tolerate reading back something other than what it wrote (it should in
// any case, since an operator with ipvsadm can change the table under it),
// and in a dry run it will announce the same change on every pass.
//
// Requests the real table would refuse as invalid (see NormalizeService
// and CheckDestination) are refused here too, with the same ErrInvalid
// error, so that a dry run shows configuration mistakes instead of
// pretending they would work. Whether the object exists is not checked:
// that depends on the earlier, unperformed, writes.
//
// The wrapper is as safe for concurrent use as inner. Close closes inner.
func NewDryRun(inner IPVS, log *slog.Logger) IPVS {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &dryRun{inner: inner, log: log}
}

type dryRun struct {
	inner IPVS
	log   *slog.Logger
}

func (r *dryRun) Services() ([]Service, error) { return r.inner.Services() }

func (r *dryRun) Destinations(svc ServiceKey) ([]Destination, error) {
	return r.inner.Destinations(svc)
}

func (r *dryRun) AddService(s Service) error { return r.logService("dry-run: would add service", s) }

func (r *dryRun) UpdateService(s Service) error {
	return r.logService("dry-run: would update service", s)
}

func (r *dryRun) logService(msg string, s Service) error {
	n, err := NormalizeService(s)
	if err != nil {
		return err
	}
	r.log.Info(msg,
		"service", n.ServiceKey.String(),
		"scheduler", n.Scheduler,
		"flags", n.Flags,
		"timeout", n.Timeout,
		"netmask", n.Netmask)
	return nil
}

func (r *dryRun) AddDestination(svc ServiceKey, d Destination) error {
	return r.logDest("dry-run: would add destination", svc, d)
}

func (r *dryRun) UpdateDestination(svc ServiceKey, d Destination) error {
	return r.logDest("dry-run: would update destination", svc, d)
}

func (r *dryRun) logDest(msg string, svc ServiceKey, d Destination) error {
	if err := CheckDestination(svc, d); err != nil {
		return err
	}
	r.log.Info(msg,
		"service", svc.String(),
		"destination", d.DestKey.String(),
		"forwarding", d.Forwarding.String(),
		"weight", d.Weight,
		"upper_threshold", d.UpperThreshold,
		"lower_threshold", d.LowerThreshold)
	return nil
}

func (r *dryRun) DeleteDestination(svc ServiceKey, k DestKey) error {
	r.log.Info("dry-run: would delete destination",
		"service", svc.String(),
		"destination", k.String())
	return nil
}

// ApplyDestinations logs each write, as the single calls do: a dry run
// never reaches inner's batching.
func (r *dryRun) ApplyDestinations(ops []DestOp) []error { return applyEach(r, ops) }

func (r *dryRun) Close() error { return r.inner.Close() }
