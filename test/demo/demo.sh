#!/usr/bin/env bash
# The README's demo: real feedbackd binaries over real TCP on loopback, no
# root and no ip_vs needed. A master with --without-ipvs (an in-memory IPVS
# table that it prints after every change) and three agents, each a
# different realserver with a different monitor:
#
#   10.0.0.11  constant   health 80; stopped midway (SIGTERM -> STOP)
#   10.0.0.12  cpuload    this machine's idle CPU share
#   10.0.0.13  exec       `cat health-file`; the demo writes 90, 20, 60
#
# The demo checks its own story against the tables the master prints (the
# same shape as `ipvsadm -Ln`), never against what the daemons say about
# themselves, and exits 1 naming the step that failed unless:
#
#   1. the master listens;
#   2. all three realservers join (10.0.0.11 at weight 80, 10.0.0.13 at 90);
#   3. 10.0.0.13's weight follows its file to 20,
#   4. and then to 60;
#   5. 10.0.0.11 drops to weight 0 after its agent's STOP,
#   6. and is then removed, while the other two stay.
#
# Every wait has a deadline (DEMO_STEP_TIMEOUT seconds, default 30: the
# default smoothed weight law takes about 10 s to settle a change). While
# it waits, the demo shows every line the master logs (warnings and errors
# included) and every agent line above INFO, as they come.
set -euo pipefail
BIN=${1:-bin}
BIN=$(cd "$BIN" && pwd)
STEP_TIMEOUT=${DEMO_STEP_TIMEOUT:-30}
# A pause between steps, so that each state stays on the screen for a
# moment and the cpuload weight has time to move. It is not a wait for a
# condition: every condition is polled, with a deadline.
PACE=2
STEPS=6
WORK=$(mktemp -d /tmp/feedbackd-demo.XXXXXX)
pids=()

# stop_all: SIGTERM to everything started, the agents first (each sends
# STOP, which the master logs) and the master last; SIGKILL after 5 s (an
# agent waits up to 2 s for its STOP_ACK), so that stopping has a deadline
# too.
stop_all() {
  local i p end
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[i]} end=$((SECONDS + 5))
    kill -TERM "$p" 2>/dev/null || true
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

T0=${EPOCHREALTIME/./}
stamp() { local t=${EPOCHREALTIME/./}; printf '[%3d.%ds]' $(((t - T0) / 1000000)) $(((t - T0) / 100000 % 10)); }
say() { echo "$(stamp) $*"; }

# A free loopback port: nothing answers on it.
port=13262
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  port=$((port + 1))
  [ $port -lt 13362 ] || { echo "demo: no free port in 13262-13361 on 127.0.0.1" >&2; exit 1; }
done

# trust-agent-address = yes: the three demo agents all connect from
# 127.0.0.1 and each names the realserver it stands for with "address =";
# by default the master accepts only an agent's own address and would
# refuse all three ("address claim not trusted"). The master listens on
# loopback only, so only this machine can make such a claim.
cat >"$WORK/master.conf" <<CONF
loglevel = INFO
keepalive-interval = 1
keepalive-timeout = 2
keepalive-retries = 2
removal-interval = 3
# The weight law's timers, shortened like the others so that the story
# fits in half a minute (defaults: weight-smoothing = 5, slow-start = 10).
weight-smoothing = 2
slow-start = 2
listen = 127.0.0.1:$port
trust-agent-address = yes

[virtual-service]
name = web
address = 192.0.2.1
protocol = tcp
port = http
scheduler = wrr
CONF

agent_conf() { # name address monitor-lines...
  local name=$1 addr=$2
  shift 2
  {
    echo "director = 127.0.0.1:$port"
    echo "master-timeout = 5"
    echo "loglevel = INFO"
    echo
    echo "[service]"
    echo "name = web"
    echo "protocol = tcp"
    echo "port = 80"
    echo "forwarding = DR"
    echo "address = $addr"
    printf '%s\n' "$@"
  } >"$WORK/$name.conf"
}
echo 90 >"$WORK/health"
agent_conf rs1 10.0.0.11 "monitor = constant.so" "value = 80"
agent_conf rs2 10.0.0.12 "monitor = cpuload.so"
agent_conf rs3 10.0.0.13 "monitor = exec.so" "command = cat $WORK/health" "interval = 0.5"

echo "feedbackd demo: feedbackd-master --without-ipvs (an in-memory IPVS table) and three agents on 127.0.0.1:$port"
echo "  10.0.0.11 constant 80 | 10.0.0.12 cpuload | 10.0.0.13 exec 'cat FILE', FILE 90 -> 20 -> 60"
echo "  each step is checked against the master's printed table, with a deadline of $STEP_TIMEOUT s"
for f in master rs1 rs2 rs3; do
  if [ "$f" = master ]; then b=feedbackd-master; else b=feedbackd-agent; fi
  "$BIN/$b" -t -c "$WORK/$f.conf" 2>&1 | sed 's/^/  /' ||
    { echo "demo: FAILED before step 1: $b -t rejects the demo's $f.conf" >&2; exit 1; }
done

# --- reading the master's output --------------------------------------------
# master.log holds the master's log lines and, after every change, its table:
# a "--- IPVS table" line, then lines in the shape of ipvsadm -Ln. Only whole
# lines are read (the master is writing while the demo reads).
snapshot() { head -n "$(wc -l <"$1")" "$1"; }

# last_table: the last table the master printed.
last_table() {
  snapshot "$WORK/master.log" | awk '
    /^--- IPVS table/ { buf = ""; blk = 1; next }
    blk && /^(IP Virtual Server|Prot |  -> |(TCP|UDP|SCTP|FWM) +|  \.\.\. )/ { buf = buf $0 "\n"; next }
    { blk = 0 }
    END { printf "%s", buf }'
}
# weight ADDR: ADDR's weight in the last table, or "absent".
weight() {
  last_table | awk -v a="$1:" '$1 == "->" && index($2, a) == 1 { w = $4 } END { print (w == "" ? "absent" : w) }'
}

# show_new: everything new in the logs since the last call, except the
# tables: every master line (so every warning and error), and the agents'
# lines above INFO. The time stamp and the agent's ephemeral port are
# dropped to keep lines short: the demo's own [seconds] say when.
declare -A seen=([master]=0 [rs1]=0 [rs2]=0 [rs3]=0)
show_new() {
  local f n
  for f in master rs1 rs2 rs3; do
    [ -f "$WORK/$f.log" ] || continue
    n=$(wc -l <"$WORK/$f.log")
    [ "$n" -gt "${seen[$f]}" ] || continue
    sed -n "$((seen[$f] + 1)),${n}p" "$WORK/$f.log" | awk -v who="$f" '
      who == "master" && /^--- IPVS table/ { blk = 1; next }
      who == "master" && blk && /^(IP Virtual Server|Prot |  -> |(TCP|UDP|SCTP|FWM) +|  \.\.\. )/ { next }
      { blk = 0 }
      who != "master" && /level=(INFO|DEBUG|VDEBUG)/ { next }
      {
        sub(/^time=[^ ]+ level=/, ""); sub(/ msg=/, " ")
        sub(/ agent=127\.0\.0\.1:[0-9]+/, "")
        printf "    %-6s %s\n", who, $0
      }'
    seen[$f]=$n
  done
}

# fail STEP WHAT: the demo's story did not happen; say where, show the
# evidence, exit 1.
fail() {
  show_new
  echo "$(stamp) demo: FAILED at step $1/$STEPS: $2" >&2
  echo "  the master's last table:" >&2
  last_table | sed 's/^/    /' >&2
  local rs
  for rs in rs1 rs2 rs3; do
    echo "  the last lines of agent $rs:" >&2
    tail -3 "$WORK/$rs.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
  exit 1
}

# wait_until STEP WHAT CMD...: poll CMD until it succeeds, showing the logs
# as they grow; fail the step after STEP_TIMEOUT seconds.
wait_until() {
  local step=$1 what=$2
  shift 2
  local end=$((SECONDS + STEP_TIMEOUT))
  until "$@"; do
    show_new
    [ $SECONDS -lt $end ] || fail "$step" "$what: not seen within $STEP_TIMEOUT s"
    kill -0 "${pids[0]}" 2>/dev/null || fail "$step" "$what: the master exited"
    sleep 0.2
  done
  show_new
}
# ok STEP WHAT: a step passed; the table that shows it (its three heading
# lines only the first time).
headings=yes
ok() {
  say "step $1/$STEPS ok: $2"
  if [ $headings = yes ]; then
    last_table | sed 's/^/      /'
    headings=no
  else
    last_table | awk '/^(TCP|UDP|SCTP|FWM) |^  -> [0-9[]/ { print "      " $0 }'
  fi
}
# hold: the pause between steps, showing the logs meanwhile.
hold() {
  local end=$((${EPOCHREALTIME/./} + PACE * 1000000))
  while [ "${EPOCHREALTIME/./}" -lt $end ]; do show_new; sleep 0.2; done
}

weight_is() { [ "$(weight "$1")" = "$2" ]; }
absent() { [ "$(weight "$1")" = absent ]; }
present() { ! absent "$1"; }
# listening: a socket in state LISTEN (0A) on 127.0.0.1:port, read from
# /proc rather than by connecting, which the master would log.
listening() { grep -q "^ *[0-9]*: 0100007F:$(printf %04X "$port") [0-9A-F:]* 0A " /proc/net/tcp; }

# --- the story ----------------------------------------------------------------
"$BIN/feedbackd-master" --without-ipvs -c "$WORK/master.conf" >"$WORK/master.log" 2>&1 &
pids+=($!)
say "starting feedbackd-master"
wait_until 1 "the master listening on 127.0.0.1:$port" listening
say "step 1/$STEPS ok: the master listens on 127.0.0.1:$port"

say "starting the three agents"
for rs in rs1 rs2 rs3; do
  "$BIN/feedbackd-agent" -c "$WORK/$rs.conf" >"$WORK/$rs.log" 2>&1 &
  pids+=($!)
done
rs1_pid=${pids[1]}
wait_until 2 "10.0.0.11, 10.0.0.12 and 10.0.0.13 in the table" \
  eval 'present 10.0.0.11 && present 10.0.0.12 && present 10.0.0.13'
wait_until 2 "10.0.0.11 at weight 80 (constant 80)" weight_is 10.0.0.11 80
wait_until 2 "10.0.0.13 at weight 90 (its file says 90)" weight_is 10.0.0.13 90
ok 2 "all three realservers joined; 10.0.0.11 at 80, 10.0.0.13 at 90, 10.0.0.12 at its idle CPU share"
hold

echo 20 >"$WORK/health"
say "10.0.0.13's health file: 90 -> 20"
wait_until 3 "10.0.0.13 at weight 20" weight_is 10.0.0.13 20
ok 3 "10.0.0.13 followed its file to 20"
hold

echo 60 >"$WORK/health"
say "10.0.0.13's health file: 20 -> 60"
wait_until 4 "10.0.0.13 at weight 60" weight_is 10.0.0.13 60
ok 4 "10.0.0.13 followed its file to 60"
hold

kill -TERM "$rs1_pid"
say "the agent of 10.0.0.11 stopped with SIGTERM: it sends STOP"
wait_until 5 "10.0.0.11 at weight 0 after its STOP" weight_is 10.0.0.11 0
ok 5 "10.0.0.11 quiesced (weight 0); removal-interval is 3 s"
wait_until 6 "10.0.0.11 removed from the table" absent 10.0.0.11
wait_until 6 "10.0.0.12 and 10.0.0.13 still in the table" eval 'present 10.0.0.12 && present 10.0.0.13'
ok 6 "10.0.0.11 removed; 10.0.0.12 and 10.0.0.13 stay"

say "stopping the master and the agents"
stop_all
show_new
say "demo: all $STEPS steps passed"
