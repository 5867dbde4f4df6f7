#!/usr/bin/env bash
# make metrics-check: the real master and a real agent, built from this
# tree, serve their Prometheus metrics, and Debian's promtool (from the
# prometheus package, unpacked here and not installed, so nothing starts)
# checks both expositions with "promtool check metrics". It also checks
# that what it checks is there: the master's scrape must show the agent's
# realserver with its weight, and the agent's its monitor's health.
#
# Needs: the build (bin/), apt to fetch the package, curl. Root is not
# needed when promtool is already unpacked in .cache/promtool.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
BIN=${BIN:-bin}
CACHE=$TOP/.cache/promtool
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "metrics-check: FAILED: $*" >&2; exit 1; }

promtool=$CACHE/usr/bin/promtool
if [ ! -x "$promtool" ]; then
  . "$TOP/test/readme/apt.sh"
  command -v curl >/dev/null || apt_install curl
  apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [^(]' || apt_get update -q
  (cd "$WORK" && apt_get download prometheus) || fail "apt-get download prometheus"
  mkdir -p "$CACHE"
  dpkg-deb -x "$WORK"/prometheus_*.deb "$CACHE"
fi
command -v curl >/dev/null || { . "$TOP/test/readme/apt.sh"; apt_install curl; }
"$promtool" --version 2>&1 | head -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
NECP=$(free_port); MM=$(free_port); AM=$(free_port)
cat >"$WORK/master.conf" <<CONF
loglevel = INFO
listen = 127.0.0.1:$NECP
metrics-listen = 127.0.0.1:$MM
keepalive-interval = 0.2

[virtual-service]
name = web
address = 192.0.2.10
protocol = tcp
port = 80
scheduler = wrr
CONF
cat >"$WORK/agent.conf" <<CONF
director = 127.0.0.1:$NECP
metrics-listen = 127.0.0.1:$AM

[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = constant
value = 70
interval = 0.2
CONF
"$BIN/feedbackd-master" --without-ipvs -c "$WORK/master.conf" --control-socket "$WORK/control.sock" >"$WORK/master.log" 2>&1 &
pids+=($!)
sleep 0.5
"$BIN/feedbackd-agent" -c "$WORK/agent.conf" >"$WORK/agent.log" 2>&1 &
pids+=($!)

# Every wait has a deadline: 20 s for the agent's weight to show.
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics"; }
deadline=$((SECONDS + 20))
until scrape "$MM" >"$WORK/master.prom" 2>/dev/null &&
  grep -q '^feedbackd_realserver_kernel_weight{realserver="127.0.0.1:80",vs="web"} 70$' "$WORK/master.prom"; do
  if [ $SECONDS -ge $deadline ]; then
    echo "--- master log"; cat "$WORK/master.log"; echo "--- agent log"; cat "$WORK/agent.log"
    fail "the master's metrics never showed the agent's realserver at weight 70"
  fi
  sleep 0.2
done
scrape "$AM" >"$WORK/agent.prom" || { cat "$WORK/agent.log"; fail "no agent metrics"; }
grep -q '^feedbackd_agent_health{monitor="constant",service="web"} 70$' "$WORK/agent.prom" ||
  fail "the agent's metrics lack its health: $(grep feedbackd_agent_health "$WORK/agent.prom")"

rc=0
for f in master agent; do
  if out=$("$promtool" check metrics <"$WORK/$f.prom" 2>&1); then
    echo "metrics-check: promtool check metrics: the $f's $(grep -c '^[a-z]' "$WORK/$f.prom") samples pass"
  else
    echo "metrics-check: promtool check metrics on the $f's metrics:"; echo "$out"; rc=1
  fi
done
[ $rc = 0 ] || fail "promtool found problems"
echo "metrics-check: 2 passed, 0 failed"
