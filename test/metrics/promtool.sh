#!/usr/bin/env bash
# make metrics-check: the real master and a real agent, built from this
# tree, serve their Prometheus metrics, and Debian's promtool (from the
# prometheus package, unpacked here and not installed, so nothing starts)
# checks both expositions with "promtool check metrics". It also checks
# that what it checks is there: the master's scrape must show the agent's
# realserver with its weight, and the agent's its monitor's health.
#
# Then the Prometheus server of the same package scrapes both every second,
# as in production: the daemons serve /metrics with an HTTP server of their
# own (internal/promtext), not net/http's, so a real scraper must find both
# targets up, with no scrape error, and read the agent's health.
#
# Needs: the build (bin/), apt to fetch the package, curl, python3 (to read
# Prometheus' JSON). Root is not needed when the package is already
# unpacked in .cache/promtool.
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
command -v python3 >/dev/null || { . "$TOP/test/readme/apt.sh"; apt_install python3; }
"$promtool" --version 2>&1 | head -1
prometheus=$CACHE/usr/bin/prometheus
[ -x "$prometheus" ] || fail "the prometheus package unpacked in $CACHE has no usr/bin/prometheus (remove $CACHE to fetch it again)"

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

# Debian's Prometheus 2.42 scrapes both every second, its data in $WORK.
PP=$(free_port)
cat >"$WORK/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: feedbackd-master
    static_configs: [{targets: ['127.0.0.1:$MM']}]
  - job_name: feedbackd-agent
    static_configs: [{targets: ['127.0.0.1:$AM']}]
CONF
"$prometheus" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$WORK/prometheus.log" 2>&1 &
pids+=($!)
api() { curl -fsS --max-time 5 "http://127.0.0.1:$PP/api/v1/$1"; }
# up per job, one "job=value" a line, from /api/v1/query?query=up.
up() {
  api 'query?query=up' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print(r["metric"]["job"] + "=" + r["value"][1])'
}
deadline=$((SECONDS + 30))
until up >"$WORK/up" 2>/dev/null &&
  grep -qx 'feedbackd-master=1' "$WORK/up" && grep -qx 'feedbackd-agent=1' "$WORK/up"; do
  if [ $SECONDS -ge $deadline ]; then
    echo "--- prometheus log"; tail -20 "$WORK/prometheus.log"
    echo "--- targets"; api targets || true; echo
    fail "Prometheus did not find both targets up within 30 s (up: $(tr '\n' ' ' <"$WORK/up" 2>/dev/null))"
  fi
  sleep 0.5
done
# Every target healthy and without a scrape error, as /api/v1/targets says.
api targets | python3 -c '
import json, sys
ts = json.load(sys.stdin)["data"]["activeTargets"]
bad = [t["labels"]["job"] + ": health " + t["health"] + ", lastError " + repr(t["lastError"])
       for t in ts if t["health"] != "up" or t["lastError"]]
for b in bad:
    print(b)
sys.exit(1 if bad or len(ts) != 2 else 0)' >"$WORK/targets" ||
  fail "Prometheus' targets: $(cat "$WORK/targets")"
# And what it stored is what the agent serves.
health=$(api 'query?query=feedbackd_agent_health' | python3 -c '
import json, sys
print(" ".join(r["value"][1] for r in json.load(sys.stdin)["data"]["result"]))')
[ "$health" = 70 ] || fail "Prometheus stored feedbackd_agent_health as \"$health\", not 70"
echo "metrics-check: $("$prometheus" --version 2>&1 | head -1 | cut -d' ' -f1-3) scrapes both every second: up = 1 for both, no scrape error"
echo "metrics-check: 3 passed, 0 failed"
