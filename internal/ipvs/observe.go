package ipvs

// Observe wraps x so that onWrite is called after every successful write.
// The master's --without-ipvs mode uses it to print the in-memory table;
// onWrite must not block, since it runs on the caller's goroutine. A batch
// of destination writes (ApplyDestinations) calls it once, after the batch,
// if any of its writes succeeded: one table printed per owner pass, not one
// per changed realserver.
func Observe(x IPVS, onWrite func()) IPVS { return &observed{IPVS: x, onWrite: onWrite} }

type observed struct {
	IPVS
	onWrite func()
}

func (o *observed) done(err error) error {
	if err == nil {
		o.onWrite()
	}
	return err
}

func (o *observed) AddService(s Service) error    { return o.done(o.IPVS.AddService(s)) }
func (o *observed) UpdateService(s Service) error { return o.done(o.IPVS.UpdateService(s)) }
func (o *observed) AddDestination(s ServiceKey, d Destination) error {
	return o.done(o.IPVS.AddDestination(s, d))
}
func (o *observed) UpdateDestination(s ServiceKey, d Destination) error {
	return o.done(o.IPVS.UpdateDestination(s, d))
}
func (o *observed) DeleteDestination(s ServiceKey, d DestKey) error {
	return o.done(o.IPVS.DeleteDestination(s, d))
}

func (o *observed) ApplyDestinations(ops []DestOp) []error {
	errs := ApplyDestinations(o.IPVS, ops)
	for _, err := range errs {
		if err == nil {
			o.onWrite()
			break
		}
	}
	return errs
}
