package ipvs

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
)

// logLines decodes the JSON records written to buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func TestDryRun(t *testing.T) {
	inner := NewMemory(nil)
	mustNoErr(t, inner.AddService(Service{ServiceKey: svcKey, Scheduler: "wrr"}))
	mustNoErr(t, inner.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 10, Forwarding: ForwardRoute}))
	mustNoErr(t, inner.SetConns(svcKey, rs1, 5, 6))
	before, writesBefore := inner.String(), inner.Writes()

	var buf bytes.Buffer
	x := NewDryRun(inner, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))

	// Reads are real.
	ds, err := x.Destinations(svcKey)
	mustNoErr(t, err)
	if len(ds) != 1 || ds[0].ActiveConns != 5 || ds[0].InactiveConns != 6 {
		t.Fatalf("Destinations through dry run: %+v", ds)
	}
	svcs, err := x.Services()
	mustNoErr(t, err)
	if len(svcs) != 1 || svcs[0].Flags&FlagHashed == 0 {
		t.Fatalf("Services through dry run: %+v", svcs)
	}
	if buf.Len() != 0 {
		t.Errorf("reads logged: %s", buf.String())
	}

	other := ServiceKey{Protocol: ProtoUDP, Address: vip, Port: 53}
	mustNoErr(t, x.AddService(Service{ServiceKey: other, Scheduler: "rr", Flags: FlagHashed | FlagPersistent, Timeout: 60}))
	mustNoErr(t, x.AddDestination(svcKey, Destination{DestKey: rs2, Weight: 75, Forwarding: ForwardTunnel, UpperThreshold: 100, LowerThreshold: 50}))
	// Would fail with ErrExist / ErrNotExist for real; a dry run cannot know.
	mustNoErr(t, x.AddDestination(svcKey, Destination{DestKey: rs1, Weight: 1}))
	mustNoErr(t, x.UpdateDestination(svcKey, Destination{DestKey: rs1, Weight: 20, Forwarding: ForwardRoute}))
	mustNoErr(t, x.DeleteDestination(svcKey, rs1))

	if inner.Writes() != writesBefore || inner.String() != before {
		t.Fatalf("dry run wrote to the inner table: %d writes\n%s", inner.Writes()-writesBefore, inner.String())
	}

	recs := logLines(t, &buf)
	want := []map[string]any{
		{"msg": "dry-run: would add service", "service": "UDP 10.0.0.1:53", "scheduler": "rr",
			"flags": float64(FlagPersistent), "timeout": float64(60), "netmask": float64(0xffffffff)},
		{"msg": "dry-run: would add destination", "service": "TCP 10.0.0.1:80", "destination": "10.0.0.3:80",
			"forwarding": "Tunnel", "weight": float64(75), "upper_threshold": float64(100), "lower_threshold": float64(50)},
		{"msg": "dry-run: would add destination", "destination": "10.0.0.2:80", "weight": float64(1), "forwarding": "Masq"},
		{"msg": "dry-run: would update destination", "service": "TCP 10.0.0.1:80", "destination": "10.0.0.2:80",
			"forwarding": "Route", "weight": float64(20), "upper_threshold": float64(0), "lower_threshold": float64(0)},
		{"msg": "dry-run: would delete destination", "service": "TCP 10.0.0.1:80", "destination": "10.0.0.2:80"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d log records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		if recs[i]["level"] != "INFO" {
			t.Errorf("record %d at level %v, want INFO", i, recs[i]["level"])
		}
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %#v, want %#v (record %v)", i, k, recs[i][k], v, recs[i])
			}
		}
	}
}

func TestDryRunInvalid(t *testing.T) {
	inner := NewMemory(nil)
	var buf bytes.Buffer
	x := NewDryRun(inner, slog.New(slog.NewJSONHandler(&buf, nil)))
	if err := x.AddService(Service{ServiceKey: svcKey}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddService without scheduler: %v, want ErrInvalid", err)
	}
	if err := x.AddDestination(svcKey, Destination{DestKey: rs1, Weight: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative weight: %v, want ErrInvalid", err)
	}
	if err := x.UpdateDestination(svcKey, Destination{DestKey: rs1, LowerThreshold: 2}); !errors.Is(err, ErrInvalid) {
		t.Errorf("inverted thresholds: %v, want ErrInvalid", err)
	}
	if buf.Len() != 0 {
		t.Errorf("refused requests logged as would-be writes: %s", buf.String())
	}
	if inner.Writes() != 0 {
		t.Error("inner written")
	}
}

type closeCounter struct {
	IPVS
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestDryRunCloseAndNilLogger(t *testing.T) {
	c := &closeCounter{IPVS: NewMemory(nil)}
	x := NewDryRun(c, nil)
	mustNoErr(t, x.DeleteDestination(svcKey, rs1)) // nil logger must not panic
	mustNoErr(t, x.Close())
	if c.closed != 1 {
		t.Errorf("inner closed %d times, want 1", c.closed)
	}
}
