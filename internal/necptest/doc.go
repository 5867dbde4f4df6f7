// Package necptest provides a scriptable NECP agent and master for tests
// and benchmarks, speaking the wire format of package necp over real TCP.
//
// An [Agent] dials a master: the real one (internal/master, the
// feedbackd-master binary) or a [Master] from this package. It can play a
// well-behaved agent (Init, Start, answering KEEPALIVEs with a health the
// test sets at any time, Stop) or a hostile one (Send any necp.Message,
// SendRaw any bytes, Recv with a deadline, go silent, Close).
//
// A [Master] listens on loopback and hands each agent connection to the
// test as an [AgentConn], on which the test plays the master's side: the
// handshake with chosen START_ACK statuses, KEEPALIVEs one at a time or on
// a ticker, STOP_ACK, closing the connection. It records the health the
// agent reports.
//
// # Two ways to drive a connection
//
// Step by step: the test's goroutine reads (Recv, Expect, Await, and the
// handshake methods built on them), each read bounded by a deadline. A
// hostile test wants this: it decides exactly what is read, and when.
//
// In the background: Agent.Serve answers every KEEPALIVE, and
// AgentConn.Serve sends KEEPALIVEs on a ticker, each in a goroutine of its
// own, until Pause or Close. While a connection serves, its reading methods
// return [ErrServing]: one goroutine reads a connection at a time, so a
// test can never steal a message from the loop. Writes (Send, SendRaw) are
// safe at any time; each frame goes out in one Write, whole.
//
// Pause stops a loop by moving the connection's deadlines into the past,
// which necp.Reader is built to survive: a frame cut short is completed by
// the next read. After Pause the test reads step by step again.
//
// # Errors and deadlines
//
// The methods return errors and never call t.Fatal; only [StartMaster] and
// [DialAgent], which take a testing.TB, fail a test. Every wait has a
// deadline: a timeout error satisfies errors.Is(err,
// os.ErrDeadlineExceeded), whether it came from the socket or from waiting
// for a connection or a condition.
//
// There is no global state: any number of agents and masters can run in one
// process, which is how the scale benchmark runs thousands of agents.
package necptest
