// Package realipvs measures how fast feedbackd-master gets weights into the
// kernel's IPVS table over real netlink (issue 7): the master runs
// in-process on the moby/ipvs-backed ipvs.Kernel, fake agents speak NECP to
// it over loopback, and the kernel is read back through a netlink handle of
// its own.
//
// The real-kernel tests are behind the build tag realipvs and need root and
// a kernel with ip_vs (every one of them is named TestRealIPVS...):
//
//	CGO_ENABLED=0 go test -c -tags realipvs -o realipvs.test ./test/realipvs
//	sudo ./realipvs.test -test.v
//
// They create virtual services in 198.51.100.0/24 (TEST-NET-2) only, with
// realservers in 198.18.0.0/15 (the benchmarking range), and delete those
// services when they end, failed or not. Every figure is logged as
// "figure: NAME: VALUE UNIT" for grepping.
//
// Without the tag, the same harness runs against the in-memory IPVS table
// (a quick test, and BenchmarkReconcile1000Memory for comparison).
package realipvs
