package integration

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/lvs-feedbackd/feedbackd/internal/control"
	"github.com/lvs-feedbackd/feedbackd/internal/ipvs"
	"github.com/lvs-feedbackd/feedbackd/internal/master"
	"github.com/lvs-feedbackd/feedbackd/internal/metrics"
	"github.com/lvs-feedbackd/feedbackd/internal/promtext"
	"github.com/lvs-feedbackd/feedbackd/internal/testutil"
)

// serveControl puts the running master's control socket in a temporary
// directory, as the packaged unit does under /run/feedbackd.
func serveControl(t *testing.T, c *cluster, mayChange func(control.Peer) bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := &control.Server{Handle: c.m.Control, MayChange: mayChange, Log: slog.New(slog.DiscardHandler)}
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

// TestControlDrainMaintReady: over the real socket, against the running
// master and a real agent reporting 80: drain takes the weight to 0 while
// the agent keeps reporting, status agrees with the table, ready brings it
// back, maint deletes it at 0 connections and keeps it out; someone who
// may not change state is refused and changes nothing.
func TestControlDrainMaintReady(t *testing.T) {
	c := startCluster(t, masterConfig())
	path := serveControl(t, c, func(p control.Peer) bool { return p.UID == os.Getuid() }) // this test's own user, root or not
	a := joinedAgent(t, c, "127.0.0.80", 80)
	c.waitWeight("127.0.0.80", 80, 5*time.Second)
	do := func(cmd string) *control.Response {
		t.Helper()
		r, err := control.Do(context.Background(), path, control.Request{Command: cmd, Realserver: "127.0.0.80"})
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return r
	}
	if r := do(control.CmdDrain); len(r.Changed) != 1 || r.Changed[0].Kernel != 0 || r.Changed[0].Admin != "drain" {
		t.Fatalf("drain answered %+v", r.Changed)
	}
	// The answer comes after the write: the table already shows 0.
	if w := c.weights()["127.0.0.80"]; w != 0 {
		t.Fatalf("weight %d right after drain returned", w)
	}
	answer(t, a, 81)
	time.Sleep(300 * time.Millisecond)
	st := do(control.CmdStatus).Status.Destinations
	if len(st) != 1 || st[0].Kernel != 0 || st[0].Weight != 0 || st[0].Why != "admin drain" || st[0].Health != 81 {
		t.Fatalf("status while drained: %+v", st)
	}
	do(control.CmdReady)
	c.waitWeight("127.0.0.80", 81, 5*time.Second)

	do(control.CmdMaint)
	c.waitFor("deleted in maint", 5*time.Second, func() bool { _, ok := c.weights()["127.0.0.80"]; return !ok })
	answer(t, a, 82)
	time.Sleep(300 * time.Millisecond)
	if _, ok := c.weights()["127.0.0.80"]; ok {
		t.Fatal("back in IPVS while in maint")
	}
	do(control.CmdReady)
	c.waitWeight("127.0.0.80", 82, 5*time.Second)

	denied := serveControl(t, c, func(control.Peer) bool { return false })
	_, err := control.Do(context.Background(), denied, control.Request{Command: control.CmdDrain, Realserver: "127.0.0.80"})
	if !control.IsDenied(err) {
		t.Fatalf("drain without permission: %v", err)
	}
	if w := c.weights()["127.0.0.80"]; w != 82 {
		t.Fatalf("a refused drain changed the weight to %d", w)
	}
}

// TestMetricsAgreeWithTable: the Prometheus metrics of a running master,
// scraped over HTTP, say what its IPVS table says, count the IPVS writes
// and the refusals, and pass the linter promtool check metrics uses.
func TestMetricsAgreeWithTable(t *testing.T) {
	cfg := masterConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/25")}
	c := &cluster{t: t, kv: ipvs.NewMemory(nil), store: &master.MemoryStore{}, logs: &testutil.SyncBuffer{}}
	mx := metrics.NewMaster("test", func(ctx context.Context) ([]control.Destination, int, int, error) {
		r := c.m.Control(ctx, control.Request{Version: control.Version, Command: control.CmdStatus}, "metrics")
		return r.Status.Destinations, c.m.Sessions(), c.m.Summary().Agents, nil
	})
	c.obs = mx
	c.start(cfg, "127.0.0.1:0")
	t.Cleanup(c.stop)
	addr, err := promtext.Serve(t.Context(), "127.0.0.1:0", mx.Expose, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String() + "/metrics"
	joinedAgent(t, c, "127.0.0.81", 64)
	c.waitWeight("127.0.0.81", 64, 5*time.Second)
	refused := dialRaw(t, c, "127.0.0.200") // outside allow
	closedByMaster(t, refused, 5*time.Second)
	var body string
	c.waitFor("metrics with the weight and the refusal", 5*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return strings.Contains(body, `feedbackd_realserver_kernel_weight{realserver="127.0.0.81:80",vs="web"} 64`) &&
			strings.Contains(body, `feedbackd_refusals_total{reason="address not in allow"} 1`)
	})
	for _, want := range []string{`feedbackd_ipvs_writes_total{op="add"} 1`, `feedbackd_agents 1`, `feedbackd_keepalive_rtt_seconds_count`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if problems, err := promlint.New(strings.NewReader(body)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
}
