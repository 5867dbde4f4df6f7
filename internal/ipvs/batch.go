package ipvs

import "fmt"

// OpKind is the kind of one destination write.
type OpKind uint8

const (
	OpAdd    OpKind = iota + 1 // AddDestination
	OpUpdate                   // UpdateDestination
	OpDelete                   // DeleteDestination (only Dest.DestKey is used)
)

func (k OpKind) String() string {
	switch k {
	case OpAdd:
		return "add"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// DestOp is one destination write of a batch.
type DestOp struct {
	Kind    OpKind
	Service ServiceKey
	Dest    Destination
}

// Batcher is a table that can carry out many destination writes at once,
// faster than one call each, with the same result: the writes happen in
// order, and errs[i] is what the single call for ops[i] would have returned
// (nil, or an error with the same sentinels and wording).
//
// Kernel is one: it sends the requests without waiting for each answer
// (see genlWriter). A wrapper (dry run, observer) implements it too, so
// that wrapping a Kernel does not hide it.
type Batcher interface {
	ApplyDestinations(ops []DestOp) (errs []error)
}

// ApplyDestinations carries out ops on t in order: at once if t is a
// Batcher, else one call each. errs has one entry per op.
func ApplyDestinations(t IPVS, ops []DestOp) []error {
	if b, ok := t.(Batcher); ok {
		return b.ApplyDestinations(ops)
	}
	return applyEach(t, ops)
}

// applyEach is the one-call-per-write way, for tables that gain nothing
// from batching.
func applyEach(t IPVS, ops []DestOp) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case OpAdd:
			errs[i] = t.AddDestination(op.Service, op.Dest)
		case OpUpdate:
			errs[i] = t.UpdateDestination(op.Service, op.Dest)
		case OpDelete:
			errs[i] = t.DeleteDestination(op.Service, op.Dest.DestKey)
		default:
			errs[i] = invalidf("unknown destination write %v", op.Kind)
		}
	}
	return errs
}
