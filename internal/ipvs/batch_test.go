package ipvs

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
)

// A table that does not batch gets one call per write, in order, with
// each call's own error; the wrappers pass a batch on and keep their
// promises (one table print per batch; a dry run logs and writes nothing).
func TestApplyDestinations(t *testing.T) {
	mem := NewMemory(nil)
	mustNoErr(t, mem.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	rs2 := DestKey{Address: netip.MustParseAddr("10.0.0.3"), Port: 80}
	ops := []DestOp{
		{OpAdd, svcKey, Destination{DestKey: rs1, Weight: 1, Forwarding: ForwardRoute}},
		{OpAdd, svcKey, Destination{DestKey: rs1, Weight: 2, Forwarding: ForwardRoute}}, // exists
		{OpUpdate, svcKey, Destination{DestKey: rs1, Weight: 3, Forwarding: ForwardRoute}},
		{OpAdd, svcKey, Destination{DestKey: rs2, Weight: 4, Forwarding: ForwardRoute}},
		{OpDelete, svcKey, Destination{DestKey: rs2}},
		{OpDelete, svcKey, Destination{DestKey: rs2}}, // gone
		{OpKind(9), svcKey, Destination{DestKey: rs2}},
	}

	before := mem.Writes()
	var buf bytes.Buffer
	dry := NewDryRun(mem, slog.New(slog.NewJSONHandler(&buf, nil)))
	errs := ApplyDestinations(dry, ops)
	if n := len(logLines(t, &buf)); n != 6 || mem.Writes() != before {
		t.Errorf("dry run: %d lines logged (want 6), %d writes (want 0)", n, mem.Writes()-before)
	}
	if !errors.Is(errs[6], ErrInvalid) {
		t.Errorf("dry run, unknown kind: %v", errs[6])
	}

	prints := 0
	obs := Observe(mem, func() { prints++ })
	errs = ApplyDestinations(obs, ops)
	want := []error{nil, ErrExist, nil, nil, nil, ErrNotExist, ErrInvalid}
	for i := range ops {
		if !errors.Is(errs[i], want[i]) || (want[i] == nil) != (errs[i] == nil) {
			t.Errorf("op %d (%v): %v, want %v", i, ops[i].Kind, errs[i], want[i])
		}
	}
	if prints != 1 {
		t.Errorf("observer called %d times for one batch, want 1", prints)
	}
	ds, _ := mem.Destinations(svcKey)
	if len(ds) != 1 || ds[0].Weight != 3 {
		t.Errorf("table after the batch: %+v", ds)
	}
	if ApplyDestinations(obs, ops[5:6]); prints != 1 {
		t.Errorf("observer called for a batch with no successful write")
	}
}
