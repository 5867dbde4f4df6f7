#!/bin/bash
# The README's two commands, as a new user types them, on a clean Debian 12
# root with only Go (and make) added. test/readme/check.sh runs this as root
# inside systemd-nspawn; the commands themselves run as an ordinary user,
# "builder", except where the README tells that user to be root.
#
#   A  make demo (builder). It may stop before running anything and print
#      one "apt-get install" line (Go needs ca-certificates to fetch the
#      modules); B then runs that line as root and C runs make demo again.
#      The demo must pass its own checks: "all 6 steps passed".
#   D  make test (builder): on this root it must stop before running
#      anything and print one "apt-get install" line (mandoc, systemd).
#   E  make test-needs as root: the root path of make test installs the
#      same packages itself; afterwards the check passes for builder too.
#   F  make test (builder): everything passes.
#   G  the demo with trust-agent-address removed from its master.conf
#      must fail, naming step 2: the demo's checks can fail.
#
# Each step ends in a "PASS X" or "FAIL X" line in /mnt/out/results.txt;
# the last line is DONE.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
U=builder
SRC=/home/$U/src
RESULTS=/mnt/out/results.txt
: >"$RESULTS"
T_STEP=0

step() { T_STEP=$SECONDS; printf '\n=== readme-check %s\n' "$*"; }
pass() { echo "PASS $1 ($((SECONDS - T_STEP)) s)" | tee -a "$RESULTS"; }
fail() { echo "FAIL $1: $2 ($((SECONDS - T_STEP)) s)" | tee -a "$RESULTS"; }
# as_user CMD: CMD in $SRC as builder, with the environment of a fresh
# login: Go on PATH, nothing else of this script's.
as_user() {
  runuser -u "$U" -- env -i HOME=/home/$U USER=$U LOGNAME=$U SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin bash -c "cd $SRC && $1"
}
# run_logged LOG CMD...: CMD, its output shown and kept in LOG; its status.
run_logged() {
  local log=$1
  shift
  set -o pipefail
  "$@" 2>&1 | tee "$log"
  local rc=$?
  set +o pipefail
  return $rc
}
# apt_line LOG: the one "apt-get install" line LOG printed, else nothing.
apt_lines() { grep -E '^ *(sudo )?apt-get install ' "$1" || true; }
# stopped_before_running NAME LOG: the checks of a command that stopped
# for want of packages: one apt-get line, "Nothing was run", and no go
# command run. Prints the packages of the line.
stopped_before_running() {
  local name=$1 log=$2 lines
  lines=$(apt_lines "$log")
  if [ "$(printf '%s' "$lines" | grep -c .)" != 1 ]; then
    fail "$name" "it failed without printing exactly one apt-get install line"
    return 1
  fi
  if ! grep -q 'Nothing was run' "$log" || grep -qE '^(CGO_ENABLED=0 )?go (build|vet|test)|go: downloading' "$log"; then
    fail "$name" "it ran something before stopping for the missing packages"
    return 1
  fi
  pass "$name: stopped before running anything; printed: $(echo $lines)"
  echo "$lines" | sed -E 's/^ *(sudo )?apt-get install //' >/tmp/pkgs
}

echo "readme-check: $(. /etc/os-release && echo "$PRETTY_NAME"), $(/usr/local/go/bin/go version)"

# Not the README's: what a freshly installed machine has and a debootstrap
# root lacks, current package lists, and an ordinary user.
step "setup: apt-get update, user $U"
# ~/.cache is kept between runs (check.sh); the caches in it are keyed on
# their inputs.
if apt-get -q update >/tmp/update.log 2>&1 && useradd -m -s /bin/bash "$U" &&
  cp -a /usr/local/src/feedbackd "$SRC" && chown -R "$U:$U" "$SRC" /mnt/home-cache &&
  ln -s /mnt/home-cache "/home/$U/.cache"; then
  pass setup
else
  cat /tmp/update.log
  fail setup "apt-get update, useradd or the copy of the source failed"
  echo DONE >>"$RESULTS"
  exit 1
fi

step "A: make demo (as $U)"
if run_logged /tmp/A.log as_user "make demo"; then
  grep -q 'demo: all 6 steps passed' /tmp/A.log && pass "A: make demo passed (nothing was missing)" ||
    fail A "make demo exited 0 without 'demo: all 6 steps passed'"
elif stopped_before_running A /tmp/A.log; then
  step "B: the printed line, as root: apt-get install $(cat /tmp/pkgs)"
  # -y: the answer the user would type at apt-get's question.
  if run_logged /tmp/B.log apt-get -o DPkg::Lock::Timeout=600 install -y -q $(cat /tmp/pkgs); then
    pass "B: apt-get install $(cat /tmp/pkgs)"
  else
    fail B "apt-get install $(cat /tmp/pkgs) failed"
  fi
  step "C: make demo again (as $U)"
  if run_logged /tmp/C.log as_user "make demo" && grep -q 'demo: all 6 steps passed' /tmp/C.log; then
    pass "C: make demo passed its six steps"
  else
    fail C "make demo failed (its output above names the step)"
  fi
fi

step "D: make test (as $U)"
if run_logged /tmp/D.log as_user "make test"; then
  pass "D: make test passed (nothing was missing)"
  fail E "the root path of make test was not exercised: this root should lack mandoc and systemd"
elif stopped_before_running D /tmp/D.log; then
  step "E: make test-needs (as root): installs what make test needs itself"
  if run_logged /tmp/E.log bash -c "cd $SRC && PATH=/usr/local/go/bin:\$PATH make test-needs"; then
    missing=$(for p in $(cat /tmp/pkgs); do dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done)
    if [ -n "$missing" ]; then
      fail E "make test-needs as root left these packages of the printed line uninstalled: $missing"
    elif ! as_user "./test/readme/needs.sh test"; then
      fail E "after make test-needs as root, the check still fails for $U"
    else
      pass "E: make test-needs as root installed $(cat /tmp/pkgs)"
    fi
  else
    fail E "make test-needs as root failed"
  fi
  step "F: make test (as $U)"
  if run_logged /tmp/F.log as_user "make test"; then
    pass "F: make test passed"
  else
    fail F "make test failed"
  fi
fi

step "G: the demo must fail when its story does not happen (trust-agent-address removed)"
as_user "sed '/^trust-agent-address = yes\$/d' test/demo/demo.sh >/tmp/demo-untrusted.sh && chmod +x /tmp/demo-untrusted.sh"
if run_logged /tmp/G.log as_user "DEMO_STEP_TIMEOUT=5 /tmp/demo-untrusted.sh bin"; then
  fail G "the demo passed with its agents' address claims refused"
elif grep -q 'demo: FAILED at step 2/6' /tmp/G.log; then
  pass "G: the broken demo exited non-zero, naming step 2"
else
  fail G "the broken demo failed, but without naming step 2"
fi

echo DONE >>"$RESULTS"
