package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The first complaint is written, later ones within the period only
// counted, and the count goes out with the next line.
func TestWarn(t *testing.T) {
	var buf bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, "not_logged")
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	for i := range 100 {
		r.Warn("bad output", "i", i)
		now = now.Add(time.Second)
	}
	if n := strings.Count(buf.String(), "bad output"); n != 2 {
		t.Fatalf("%d lines for 100 complaints over 100 s, want 2 (one a minute):\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "i=60 not_logged=59") {
		t.Fatalf("the second line does not count the 59 held back:\n%s", buf.String())
	}
	if strings.Contains(strings.SplitN(buf.String(), "\n", 2)[0], "not_logged") {
		t.Fatalf("the first line claims complaints were held back:\n%s", buf.String())
	}
	// No logger: nothing, and no panic.
	New(nil, time.Second, "x").Warn("nothing")
}
