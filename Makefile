# feedbackd — LVS dynamic feedback (master and agent).
# `make demo` shows it working; `make test` runs the tests.

GO      ?= go
# The release version is kept in one place, internal/cli/VERSION (see
# internal/cli/version.go); -V, --help, the packages and the man pages'
# .TH lines (checked by test/man) all show it. A build of the commit
# tagged v$(RELEASE), with no tracked file modified, is exactly $(RELEASE).
# Any other build is a snapshot, $(RELEASE)+gitYYYYMMDD.N.gHASH[.dirty]
# (the commit's UTC date, N commits since internal/cli/VERSION last
# changed): valid for dpkg and rpm alike, and sorted by both after
# $(RELEASE) and before the next release.
RELEASE := $(shell cat internal/cli/VERSION)
VERSION ?= $(shell \
	if git describe --tags --exact-match --match 'v$(RELEASE)' HEAD >/dev/null 2>&1 && git diff --quiet HEAD -- 2>/dev/null; then \
		echo '$(RELEASE)'; \
	elif h=$$(git rev-parse --short=7 HEAD 2>/dev/null); then \
		b=$$(git log -1 --format=%H -- internal/cli/VERSION); \
		n=$$(git rev-list --count $${b:+$$b..}HEAD); \
		d=$$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d); \
		git diff --quiet HEAD -- || h=$$h.dirty; \
		echo '$(RELEASE)'+git$$d.$$n.g$$h; \
	else \
		echo '$(RELEASE)+unknown'; \
	fi)
# Computed once, so that every binary and package of one make run agrees.
VERSION := $(VERSION)
# packaging/build.sh takes the packages' version from here.
PKG_VERSION ?= $(VERSION)
export PKG_VERSION
PKG     := github.com/lvs-feedbackd/feedbackd
LDFLAGS := -s -w -X $(PKG)/internal/cli.Version=$(VERSION)
BIN     := bin
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build test vet unit demo bench fuzz clean

all: build

build: $(BIN)/feedbackd-master $(BIN)/feedbackd-agent $(BIN)/feedbackd-agent-sync $(BIN)/feedbackd-monitor-reaper $(BIN)/feedbackctl

# Always rebuilt: go's own cache makes that cheap and keeps bin/ honest.
.PHONY: $(BIN)/feedbackd-master $(BIN)/feedbackd-agent $(BIN)/feedbackd-agent-sync $(BIN)/feedbackd-monitor-reaper $(BIN)/feedbackctl
$(BIN)/feedbackd-master $(BIN)/feedbackd-agent $(BIN)/feedbackd-agent-sync $(BIN)/feedbackd-monitor-reaper $(BIN)/feedbackctl:
	$(GOBUILD) -o $@ ./cmd/$(notdir $@)

# The README's test command: what it needs beyond Go (test/readme/needs.sh:
# as root it installs the missing packages, otherwise it stops and prints
# the apt-get line), static checks, then every test. The prerequisites run
# left to right, so nothing runs before the check.
test: test-needs vet unit

.PHONY: test-needs demo-needs
test-needs:
	@GO='$(GO)' ./test/readme/needs.sh test
demo-needs:
	@GO='$(GO)' ./test/readme/needs.sh demo

vet:
	@out=$$(gofmt -l cmd internal test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools && $(GO) build -o ../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...

# The master's tests run twice: with io_uring (the default) and with epoll
# (the fallback), so that every session test covers both ways of polling.
# execpages' own test runs again as a PIE: a PIE has a read-only mapping of
# relocated pages that must not be dropped (it crashes if it is), nor
# split page by page.
unit:
	$(GO) test -count=1 ./...
	FEEDBACKD_TEST_POLLER=epoll $(GO) test -count=1 ./internal/master/
	$(GO) test -count=1 -buildmode=pie -run 'TestDropSelf|TestShaped|TestDropKeeps' ./internal/execpages/

# The README's demo: a master (--without-ipvs) and three agents on loopback;
# it checks its own story and exits 1 naming the step that failed.
demo: demo-needs build
	./test/demo/demo.sh $(BIN)

# Benchmarks whose figures go in docs/benchmarks.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(GO) run ./test/bench/scale -master $(BIN)/feedbackd-master -n 1000,5000,20000

# feedbackd-master against Debian's haproxy agent-check at 1 000, 5 000 and
# 20 000 agents (as many as the open-files limit allows), alternating, with
# the ratios (docs/benchmarks.md). About 20-30 minutes; not part of .ci/run.
# BENCH_PEERS_ARGS: e.g. -reps 5 -baseline OLD-MASTER-BINARY.
.PHONY: bench-peers
bench-peers: build
	BIN=$(BIN) GO='$(GO)' ./test/bench/peers/run.sh $(BENCH_PEERS_ARGS)

FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzUnmarshal -fuzztime $(FUZZTIME) ./internal/necp

clean:
	rm -rf $(BIN) dist

# The real-system tier, needs root: real systemd in nspawn with the .deb
# packages (test/e2e/run.sh), then Debian's kernel with real IPVS under
# QEMU (test/e2e/qemu.sh), then a keepalived HA director pair in the same
# QEMU guest (test/e2e/ha.sh, docs/ha.md). Reports in test/e2e/out/.
.PHONY: e2e e2e-systemd e2e-ipvs e2e-ha
e2e: e2e-systemd e2e-ipvs e2e-ha
e2e-systemd:
	./test/e2e/run.sh
e2e-ipvs:
	./test/e2e/qemu.sh
e2e-ha:
	./test/e2e/ha.sh

# The README's two commands as a new user runs them, in a clean Debian 12
# root (debootstrap minbase + make, systemd-nspawn) with only Go added:
# test/readme/check.sh. Needs root. Fails when the demo's own checks fail,
# when make test fails, or when either does not say what to install.
.PHONY: readme-check
readme-check:
	GO='$(GO)' ./test/readme/check.sh

# Packages: lvs-feedbackd-master and lvs-feedbackd-agent, .deb and .rpm, in
# dist/ (nfpm.yaml, packaging/nfpm-agent.yaml; see packaging/README.md).
# Reproducible: static stripped binaries from the build flags above, and
# every time stamp from the last commit (SOURCE_DATE_EPOCH).
PKG_BINS := feedbackd-master feedbackd-agent feedbackd-agent-sync feedbackd-monitor-reaper feedbackctl
.PHONY: package package-check
package:
	rm -rf dist/build && mkdir -p dist/build/bin
	for b in $(PKG_BINS); do $(GOBUILD) -buildvcs=false -o dist/build/bin/$$b ./cmd/$$b || exit 1; done
	GO='$(GO)' ./packaging/build.sh

# Lintian (no error or warning), rpmlint (no error), the packages' contents
# (packaging/check-contents.sh) and reproducibility (two builds, same
# sha256). Installs lintian, rpmlint, rpm and mandoc with apt if missing.
package-check:
	GO='$(GO)' MAKE='$(MAKE)' ./packaging/check.sh

# The load-balancing experiment of docs/experiment.md: static weights
# against feedbackd on real IPVS under QEMU, about 10 minutes, needs root.
# Not part of test, e2e or CI. Results in test/experiment/out/.
# Both daemons' Prometheus metrics, checked by Debian's promtool (fetched
# with apt-get download and unpacked, not installed): test/metrics/promtool.sh.
.PHONY: metrics-check
metrics-check: build
	./test/metrics/promtool.sh

# HAProxy's agent-check answered by a real agent, checked by Debian's real
# haproxy on loopback (fetched with apt-get download and unpacked, not
# installed): test/haproxy/run.sh.
.PHONY: haproxy-check
haproxy-check: build
	./test/haproxy/run.sh

.PHONY: experiment
experiment:
	./test/experiment/run.sh

# The master's deterministic simulation (internal/master/sim_test.go) in
# its long form: SIMSEEDS seeds of SIMSTEPS random events each, about a
# million events, a few minutes on two cores; it prints seeds, events and
# time, and every failing seed shrunk to its shortest event sequence.
# make test runs its short form, 200 seeds of 300 events.
SIMSEEDS ?= 3334
SIMSTEPS ?= 300
.PHONY: simulate
simulate:
	$(GO) test -run '^TestSimulation$$' -count=1 -v -timeout 1h \
		./internal/master/ -sim.seeds=$(SIMSEEDS) -sim.steps=$(SIMSTEPS) -sim.all
