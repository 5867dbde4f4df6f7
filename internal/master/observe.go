package master

import "time"

// Observer is told what the master does, for its metrics
// (internal/metrics). The master package knows nothing of Prometheus; a
// nil Observer in Options is a no-op. Every method must be cheap and safe
// for concurrent use: sessions call it from their own goroutines.
type Observer interface {
	// KeepaliveAnswered: an agent answered a KEEPALIVE, rtt after its last
	// transmission.
	KeepaliveAnswered(rtt time.Duration)
	// KeepaliveMissed: a KEEPALIVE went unanswered for keepalive-timeout.
	KeepaliveMissed()
	// Refused: a connection, a START or a service was refused; reason is
	// the REASON= of the log line.
	Refused(reason string)
	// IPVSWrite: one write to IPVS ("add", "update", "delete").
	IPVSWrite(op string, took time.Duration, err error)
	// Reloaded: a reload was applied (err nil) or refused.
	Reloaded(err error)
	// StateSaved: the state file was written (err nil) or not.
	StateSaved(err error)
}

type noObserver struct{}

func (noObserver) KeepaliveAnswered(time.Duration)        {}
func (noObserver) KeepaliveMissed()                       {}
func (noObserver) Refused(string)                         {}
func (noObserver) IPVSWrite(string, time.Duration, error) {}
func (noObserver) Reloaded(error)                         {}
func (noObserver) StateSaved(error)                       {}
