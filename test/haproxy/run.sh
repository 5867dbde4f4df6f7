#!/usr/bin/env bash
# make haproxy-check: Debian 12's real haproxy (fetched with apt-get
# download and unpacked, not installed, so no system service starts) runs
# on loopback with a private configuration and its stats socket in a
# temporary directory, and takes its weights from a real feedbackd-agent
# built from this tree through agent-check (agent-check-listen). It checks,
# on HAProxy's own stats socket ("show servers state", "show stat"):
#   1. the weight HAProxy shows follows the agent's health (a file-driven
#      exec monitor, changed during the test), and an unknown health keeps
#      the last weight;
#   2. a local drain and a local maintenance (the agent's admin-file) show
#      as HAProxy's DRAIN and MAINT, and "ready" brings the server back;
#   3. while an exec monitor is slow, the agent answers at once from its
#      last sample: each answer time is printed as a figure and must be
#      shorter than one measurement of the monitor (a functional bound:
#      answered from the cache instead of waiting; not a timing limit).
# Every wait has a deadline (STEP_TIMEOUT, 20 s).
#
# Needs: the build (bin/), apt to fetch the package and socat. Root is not
# needed once haproxy is unpacked in .cache/haproxy and socat is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
BIN=${BIN:-bin}
CACHE=$TOP/.cache/haproxy
STEP_TIMEOUT=${STEP_TIMEOUT:-20}
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
logs() {
  echo "--- agent log"; cat "$WORK/agent.log" || true
  echo "--- haproxy log"; cat "$WORK/haproxy.log" || true
  echo "--- show servers state"; hap "show servers state app" || true
}
fail() { echo "haproxy-check: FAILED: $*" >&2; logs >&2; exit 1; }

haproxy=$CACHE/usr/sbin/haproxy
if [ ! -x "$haproxy" ]; then
  . "$TOP/test/readme/apt.sh"
  apt-cache policy haproxy 2>/dev/null | grep -q 'Candidate: [^(]' || apt_get update -q
  (cd "$WORK" && apt_get download haproxy) || fail "apt-get download haproxy"
  mkdir -p "$CACHE"
  dpkg-deb -x "$WORK"/haproxy_*.deb "$CACHE"
fi
# The unpacked binary needs its libraries; install those it lacks (the
# package's own dependencies, all libraries, none of them a service).
if ldd "$haproxy" | grep -q 'not found'; then
  . "$TOP/test/readme/apt.sh"
  deps=$(dpkg-deb -f "$(ls "$WORK"/haproxy_*.deb 2>/dev/null || true)" Depends 2>/dev/null | tr ',' '\n' | sed 's/(.*//; s/|.*//; s/ //g' | grep '^lib' || true)
  [ -n "$deps" ] || deps=$(apt-cache depends haproxy | awk '/Depends: lib/ {print $2}')
  # shellcheck disable=SC2086
  apt_install $deps
fi
command -v socat >/dev/null || { . "$TOP/test/readme/apt.sh"; apt_install socat; }
"$haproxy" -v | sed -n 1p

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
NECP=$(free_port); WEB=$(free_port); LB=$(free_port); AC1=$(free_port); AC2=$(free_port)
SOCK=$WORK/haproxy.sock
hap() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$SOCK"; }

# The agent: web follows a file; slow takes SLOW s per measurement. The
# director is a port nobody listens on: HAProxy needs no feedbackd-master.
echo 70 >"$WORK/health"
echo 60 >"$WORK/slow-health"
SLOW=3
cat >"$WORK/agent.conf" <<CONF
director = 127.0.0.1:$NECP
loglevel = INFO
admin-file = $WORK/admin

[service]
name = web
protocol = tcp
port = 80
forwarding = DR
monitor = exec
command = cat $WORK/health
interval = 0.2
agent-check-listen = 127.0.0.1:$AC1

[service]
name = slow
protocol = tcp
port = 81
forwarding = DR
monitor = exec
command = touch $WORK/busy; sleep $SLOW; rm -f $WORK/busy; cat $WORK/slow-health
timeout = 10
interval = 4
agent-check-listen = 127.0.0.1:$AC2
CONF
"$BIN/feedbackd-agent" -t -c "$WORK/agent.conf"
"$BIN/feedbackd-agent" -c "$WORK/agent.conf" >"$WORK/agent.log" 2>&1 &
pids+=($!)

# HAProxy: one frontend stands in for the realservers' web server (so
# that the regular "check" passes), and backend app has one server per
# agent-check port. A dynamic algorithm (roundrobin), as percentage
# weights need.
cat >"$WORK/haproxy.cfg" <<CONF
global
    stats socket $SOCK mode 600 level admin
    log stdout format short local0 info

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s

frontend realserver
    bind 127.0.0.1:$WEB
    http-request return status 200 content-type text/plain string ok

frontend lb
    bind 127.0.0.1:$LB
    default_backend app

backend app
    balance roundrobin
    default-server check inter 500ms agent-check agent-inter 200ms
    server web 127.0.0.1:$WEB weight 100 agent-addr 127.0.0.1 agent-port $AC1
    server slow 127.0.0.1:$WEB weight 100 agent-addr 127.0.0.1 agent-port $AC2
CONF
"$haproxy" -c -f "$WORK/haproxy.cfg" >/dev/null || fail "haproxy -c rejects the configuration"
"$haproxy" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
pids+=($!)

# state SERVER: "OPSTATE ADMINSTATE UWEIGHT" from show servers state
# (srv_op_state 2 = running; srv_admin_state bits 0x01 maint and 0x08 drain
# forced by the agent or the CLI).
state() { hap "show servers state app" 2>/dev/null | awk -v s="$1" '$4 == s {print $6, $7, $8}'; }
# status SERVER: the status column of show stat (UP, DRAIN, MAINT, ...).
status() { hap "show stat" 2>/dev/null | awk -F, -v s="$1" '$1 == "app" && $2 == s {print $18}'; }
# until_state WHAT CMD...: poll CMD until it succeeds, for STEP_TIMEOUT s.
until_ok() {
  local what=$1 deadline=$((SECONDS + STEP_TIMEOUT)) t0=$SECONDS
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "$what: not within ${STEP_TIMEOUT} s (state: $(state web) / $(state slow), status: $(status web) / $(status slow))"
    sleep 0.1
  done
  echo "haproxy-check: $what ($((SECONDS - t0)) s)"
}
weight_is() { [ "$(state "$1" | awk '{print $1, $3}')" = "2 $2" ]; }
admin_is() { local a; a=$(state "$1" | awk '{print $2}'); [ -n "$a" ] && [ $((a & $2)) = "$3" ]; }
uweight_is() { [ "$(state "$1" | awk '{print $3}')" = "$2" ]; }
# HAProxy adds who set it: "DRAIN (agent)".
status_is() { case "$(status "$1")" in "$2" | "$2 "*) return 0 ;; esac; return 1; }

until_ok "HAProxy up, its stats socket answers" test -S "$SOCK"
until_ok "web: weight 70 from health 70" weight_is web 70
echo 30 >"$WORK/health"
until_ok "web: weight 30 after health 30" weight_is web 30
echo 100 >"$WORK/health"
until_ok "web: weight 100 after health 100" weight_is web 100
echo 0 >"$WORK/health"
until_ok "web: weight 0 after health 0 (HAProxy's status says DRAIN for a weight of 0)" weight_is web 0
echo 55 >"$WORK/health"
until_ok "web: weight 55 after health 55" weight_is web 55
# Unknown health (a monitor that fails) sends no weight: HAProxy keeps 55.
echo junk >"$WORK/health"
until_ok "web: the agent logs the unknown health" grep -q 'health unknown' "$WORK/agent.log"
sleep 1
weight_is web 55 || fail "web: weight changed on unknown health: $(state web)"
echo "haproxy-check: web: weight kept at 55 while the health is unknown"
echo 80 >"$WORK/health"
until_ok "web: weight 80 after health 80" weight_is web 80

# Local maintenance through the agent's admin-file.
echo "web drain" >"$WORK/admin"
until_ok "web: DRAIN after a local drain" admin_is web 8 8
until_ok "web: show stat says DRAIN" status_is web DRAIN
echo "web maint" >"$WORK/admin"
until_ok "web: MAINT after a local maint" admin_is web 1 1
until_ok "web: show stat says MAINT" status_is web MAINT
echo 40 >"$WORK/health"
until_ok "web: weight follows health (40) in MAINT" uweight_is web 40
echo "* drain" >"$WORK/admin"
until_ok "slow: DRAIN after a drain of every service" admin_is slow 8 8
until_ok "web: DRAIN, not MAINT, after a drain of every service" admin_is web 9 8
rm -f "$WORK/admin"
until_ok "web: READY again after the admin file is gone" admin_is web 9 0
until_ok "slow: READY again" admin_is slow 9 0
until_ok "web: weight 40 after ready" weight_is web 40

# The slow monitor: HAProxy has its cached weight, and the agent answers
# at once while a measurement is in progress.
until_ok "slow: weight 60 from its slow monitor" weight_is slow 60
worst=0; n=0
for i in $(seq 1 40); do
  [ -e "$WORK/busy" ] || { sleep 0.1; continue; }
  t0=$(date +%s%N)
  exec 3<>"/dev/tcp/127.0.0.1/$AC2" || fail "slow: cannot connect to the agent-check port"
  IFS= read -r -t 10 line <&3 || fail "slow: no answer within 10 s while the monitor was measuring"
  t1=$(date +%s%N)
  exec 3<&-
  [ "$line" = "ready 60%" ] || fail "slow: answer '$line' while measuring, want 'ready 60%' (the last sample)"
  us=$(((t1 - t0) / 1000)); n=$((n + 1)); [ $us -le $worst ] || worst=$us
  echo "haproxy-check: slow: answered in ${us} µs while the monitor was measuring"
  sleep 0.1
done
[ $n -ge 3 ] || fail "slow: only $n answers while the monitor was measuring; want at least 3"
[ $worst -lt $((SLOW * 1000000)) ] || fail "slow: an answer took ${worst} µs, as long as a measurement (${SLOW} s): the agent waited for the monitor"
weight_is slow 60 || fail "slow: HAProxy's weight moved while the monitor was slow: $(state slow)"
echo "haproxy-check: slow: $n answers while a ${SLOW} s measurement ran; the slowest took ${worst} µs (bound: at once from the last sample, under one measurement)"
echo "haproxy-check: passed"
