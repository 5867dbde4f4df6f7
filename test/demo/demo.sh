#!/usr/bin/env bash
# The README's demo: real feedbackd binaries over real TCP on loopback, no
# root and no ip_vs needed. A master with --without-ipvs (an in-memory IPVS
# table that it prints on every change) and three agents, each a different
# realserver with a different monitor:
#
#   10.0.0.11  constant   health 80
#   10.0.0.12  cpuload    this machine's idle CPU share
#   10.0.0.13  exec       `cat health-file`; the demo changes the file midway
#
# Midway the demo also stops the first agent (SIGTERM → STOP → weight 0 →
# removed). It prints the weight table every two seconds for about 20 s,
# then stops everything.
set -euo pipefail
BIN=${1:-bin}
BIN=$(cd "$BIN" && pwd)
WORK=$(mktemp -d /tmp/feedbackd-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port: nothing answers on it.
port=13262
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

cat >"$WORK/master.conf" <<CONF
loglevel = INFO
keepalive-interval = 1
keepalive-timeout = 2
keepalive-retries = 2
removal-interval = 3
listen = 127.0.0.1:$port

[virtual-service]
name = web
address = 192.0.2.1
protocol = tcp
port = http
scheduler = wrr
CONF

agent_conf() { # name address monitor-lines...
  local name=$1 addr=$2; shift 2
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

for f in master rs1 rs2 rs3; do
  if [ "$f" = master ]; then b=feedbackd-master; else b=feedbackd-agent; fi
  "$BIN/$b" -t -c "$WORK/$f.conf"
done

"$BIN/feedbackd-master" --without-ipvs -c "$WORK/master.conf" 2>"$WORK/master.log" &
pids+=($!)
deadline=$((SECONDS + 10))
until grep -q 'feedbackd-master ready' "$WORK/master.log"; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/master.log"; echo "master did not start" >&2; exit 1; }
  sleep 0.1
done
for rs in rs1 rs2 rs3; do
  "$BIN/feedbackd-agent" -c "$WORK/$rs.conf" 2>"$WORK/$rs.log" &
  pids+=($!)
done
rs1_pid=${pids[1]}

# The last table the master printed.
table() {
  awk '/^--- IPVS table/ {buf = ""; blk = 1; next}
       /^time=/          {blk = 0}
       blk               {buf = buf "    " $0 "\n"}
       END               {printf "%s", buf}' "$WORK/master.log"
}
seen=0
events() { # master log lines about realservers since the last call
  local n
  n=$(wc -l <"$WORK/master.log")
  sed -n "$((seen + 1)),${n}p" "$WORK/master.log" |
    grep -E 'msg="(realserver|weight changed|virtual service)' |
    sed -E 's/^time=[^ ]+ level=([A-Z]+) msg=/  \1 /' || true
  seen=$n
}

start=$SECONDS
for t in 2 4 6 8 10 12 14 16 18 20; do
  while [ $((SECONDS - start)) -lt $t ]; do sleep 0.2; done
  case $t in
    8)  echo 20 >"$WORK/health"; note="(exec health file on 10.0.0.13 changed 90 -> 20)";;
    12) echo 60 >"$WORK/health"; note="(exec health file on 10.0.0.13 changed 20 -> 60)";;
    14) kill -TERM "$rs1_pid"; note="(agent on 10.0.0.11 stopped with SIGTERM: STOP, quiesce, removal after 3 s)";;
    *)  note="";;
  esac
  sleep 1.2 # give the change a keepalive interval to show
  echo "=== t=${t}s $note"
  events
  table
done

echo "=== stopping master and agents"
cleanup
pids=()
trap - EXIT
echo "demo finished"
