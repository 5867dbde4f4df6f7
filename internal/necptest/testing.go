package necptest

import "testing"

// StartMaster listens on 127.0.0.1 and a free port, and closes the master
// (and every connection it accepted) when tb's test ends. It fails tb if
// it cannot listen.
func StartMaster(tb testing.TB, opts MasterOptions) *Master {
	tb.Helper()
	m, err := Listen("", opts)
	if err != nil {
		tb.Fatalf("necptest: listen: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// DialAgent dials the master at addr and closes the agent when tb's test
// ends. It fails tb if it cannot connect.
func DialAgent(tb testing.TB, addr string, opts AgentOptions) *Agent {
	tb.Helper()
	a, err := Dial(addr, opts)
	if err != nil {
		tb.Fatalf("necptest: dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}
