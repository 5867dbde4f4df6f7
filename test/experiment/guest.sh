#!/bin/bash
# The guest side of the load-balancing experiment (test/experiment/run.sh):
# runs inside the QEMU guest as a oneshot unit, writes its results to the
# 9p share /mnt/out and powers the VM off.
#
# Layout (as in the e2e tier's I8): the director is the root network
# namespace (br0 10.0.0.1/24, the IPVS table, the VIP 192.0.2.10 on lo);
# rs1..rs3 are network namespaces on br0 (10.0.0.11-13, the VIP on their
# lo, arp_ignore/arp_announce), forwarding is direct routing; the client
# namespace (10.0.0.100) sends the load.
#
# Each realserver is a systemd slice exp-rsN.slice with its own CPU budget
# (CPUQuota=, cgroup v2 cpu.max): its HTTP server exp-http-rsN.service and,
# for rs3 from the middle of each run on, the hog exp-hog-rs3.service run
# in it and nothing else. So the three realservers compete for the guest's
# CPUs no more than three small machines would, and the agents' cpuload
# monitors with "cgroup = /exp.slice/exp-rsN.slice" see each realserver's
# own load.
#
# Three runs with the same arrivals (same seed): "static" with equal wrr
# weights set by ipvsadm and no feedbackd; "feedback" with feedbackd-master
# (its defaults) and one feedbackd-agent per realserver (the packaged units;
# the agents in their namespaces by a NetworkNamespacePath= drop-in); and
# "feedback-damped", the same with weight-max-step = MAX_STEP in master.conf.
set -u
LIB=/usr/local/lib/experiment
. $LIB/params
VIP=192.0.2.10
OUT=/mnt/out

say() { echo "experiment: $*"; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds or the deadline.
wait_for() {
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then say "timed out after $1 s waiting for: $what"; return 1; fi
    sleep 0.2
  done
}
finish() {
  journalctl --no-pager -o short-monotonic >$OUT/journal.txt 2>&1
  echo "${1:-DONE}" >>$OUT/status.txt
  say "${1:-done}"
  systemctl --no-block poweroff
  exit 0
}

deadline=$((SECONDS + 30))
until mountpoint -q $OUT; do
  mount $OUT 2>/dev/null && break
  [ $SECONDS -lt $deadline ] || { say "the 9p share $OUT is not mounted"; systemctl --no-block poweroff; exit 1; }
  sleep 0.2
done
: >$OUT/status.txt
exec 2>>$OUT/guest-stderr.txt
read -r up _ </proc/uptime
say "started, uptime ${up}s; $(nproc) CPUs, kernel $(uname -r)"
{
  echo "kernel=$(uname -r)"
  echo "cpus=$(nproc)"
  echo "systemd=$(systemctl --version | head -1)"
  echo "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "boot_s=$up"
} >$OUT/guest.txt

# --- network -------------------------------------------------------------
ip link add br0 type bridge && ip link set br0 up && ip addr add 10.0.0.1/24 dev br0 || finish FAILED-network
ip addr add $VIP/32 dev lo
for i in 1 2 3; do
  n=rs$i
  ip netns add $n
  ip link add v$n type veth peer name eth0 netns $n
  ip link set v$n master br0 up
  ip -n $n addr add 10.0.0.1$i/24 dev eth0
  ip -n $n link set eth0 up
  ip -n $n link set lo up
  ip netns exec $n sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip -n $n addr add $VIP/32 dev lo
done
ip netns add client
ip link add vclient type veth peer name eth0 netns client
ip link set vclient master br0 up
ip -n client addr add 10.0.0.100/24 dev eth0
ip -n client link set eth0 up
ip -n client link set lo up
ip -n client route add $VIP/32 via 10.0.0.1
# Plenty of ephemeral ports and TIME_WAIT reuse for a new connection per request.
ip netns exec client sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1

# --- the realservers' CPU budgets ----------------------------------------
for i in 1 2 3; do
  cat >/run/systemd/system/exp-rs$i.slice <<UNIT
[Unit]
Description=experiment realserver rs$i (its own CPU budget)
[Slice]
CPUQuota=$QUOTA
CPUQuotaPeriodSec=$QUOTA_PERIOD
UNIT
done
systemctl daemon-reload

WORK=$($LIB/cpuhttp -calibrate "${WORK_MS}ms")
say "calibrated: $WORK iterations = $WORK_MS ms of CPU per request"
echo "work_iterations=$WORK" >>$OUT/guest.txt

start_servers() {
  local i
  for i in 1 2 3; do
    systemctl reset-failed exp-http-rs$i.service 2>/dev/null
    systemd-run -q --unit=exp-http-rs$i --slice=exp-rs$i.slice -p NetworkNamespacePath=/run/netns/rs$i \
      $LIB/cpuhttp -listen :80 -name rs$i -work "$WORK" || finish FAILED-start-rs$i
  done
  for i in 1 2 3; do
    wait_for 30 "rs$i answers" ip netns exec rs$i bash -c "exec 3<>/dev/tcp/10.0.0.1$i/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs$i' <&3" ||
      finish FAILED-rs$i-not-answering
  done
}
stop_servers() { systemctl stop exp-http-rs1 exp-http-rs2 exp-http-rs3 exp-hog-rs3 2>/dev/null; }
usage() { awk '$1 == "usage_usec" { print $2 }' /sys/fs/cgroup/exp.slice/exp-rs$1.slice/cpu.stat; }

# sampler FILE: the IPVS weights of rs1..rs3 and the slices' CPU usage,
# every half second, until killed.
sampler() {
  echo "unix_ms,w1,w2,w3,usage1,usage2,usage3" >"$1"
  while :; do
    local t w
    t=$(now_ms)
    w=$(ipvsadm -Ln -t $VIP:80 2>/dev/null | awk '$1 == "->" { w[$2] = $4 } END { printf "%s,%s,%s", w["10.0.0.11:80"], w["10.0.0.12:80"], w["10.0.0.13:80"] }')
    echo "$t,$w,$(usage 1),$(usage 2),$(usage 3)" >>"$1"
    sleep 0.5
  done
}

HOG="systemd-run -q --unit=exp-hog-rs3 --slice=exp-rs3.slice -p CPUWeight=$HOG_WEIGHT $LIB/cpuhttp -hog $HOG_THREADS"
# run NAME: one load run through the VIP, the hog started at HOG_AT.
run() {
  local name=$1 sp
  wait_for 30 "an answer through the VIP" ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs' <&3" ||
    finish "FAILED-$name-vip"
  ipvsadm -Z
  sampler /tmp/$name.weights.csv &
  sp=$!
  say "$name: ${DURATION}s at $RATE req/s, hog in rs3 at ${HOG_AT}s"
  ip netns exec client $LIB/loadgen -addr $VIP:80 -rate "$RATE" -duration "${DURATION}s" -seed "$SEED" \
    -timeout "${TIMEOUT}s" -at "${HOG_AT}s=$HOG" -out /tmp/$name.csv -meta /tmp/$name.meta >/dev/null ||
    say "$name: loadgen failed"
  kill $sp
  wait $sp 2>/dev/null
  ipvsadm -Ln --stats -t $VIP:80 >$OUT/$name.ipvs-stats.txt
  cp /tmp/$name.csv /tmp/$name.meta /tmp/$name.weights.csv $OUT/
  systemctl stop exp-hog-rs3
  say "$name: done, $(($(wc -l </tmp/$name.csv) - 1)) requests"
}

# --- run 1: static equal weights, no feedbackd -----------------------------
start_servers
ipvsadm -A -t $VIP:80 -s wrr
for i in 1 2 3; do ipvsadm -a -t $VIP:80 -r 10.0.0.1$i:80 -g -w 1; done
ipvsadm -Ln >$OUT/static.ipvs.txt
run static
ipvsadm -C
stop_servers

# --- runs 2 and 3: feedbackd with cgroup-aware cpuload monitors ----------
# feedback_run NAME MASTER-GLOBALS: start the master (with MASTER-GLOBALS as
# extra lines before the first [virtual-service], "" for the defaults) and
# the three agents on fresh servers, run the load, collect the evidence and
# stop everything again, so that the next run starts from the same state.
feedback_run() {
  local name=$1 globals=$2 i t
  start_servers
  {
    printf 'loglevel = INFO\nkeepalive-interval = 1\nkeepalive-timeout = 2\n'
    [ -z "$globals" ] || printf '%s\n' "$globals"
    printf '\n[virtual-service]\nname = web\naddress = %s\nprotocol = tcp\nport = 80\nscheduler = wrr\n' $VIP
  } >/etc/feedbackd/master.conf
  cp /etc/feedbackd/master.conf $OUT/$name.master.conf
  chmod 644 /etc/feedbackd/master.conf
  systemctl start feedbackd-master.socket
  for i in 1 2 3; do systemctl start feedbackd-agent@rs$i.service; done
  wait_for 90 "three weighted destinations from feedbackd" three || finish "FAILED-$name-feedbackd"
  # A few samples, so that the weights reflect the idle realservers.
  t=$((SECONDS + 5))
  while [ $SECONDS -lt $t ]; do sleep 0.5; done
  ipvsadm -Ln >$OUT/$name.ipvs.txt
  local since
  since=$(date +%s)
  run $name
  {
    for i in 1 2 3; do
      echo "== exp-rs$i.slice: cpu.max $(cat /sys/fs/cgroup/exp.slice/exp-rs$i.slice/cpu.max)"
    done
    echo "== master.conf"
    cat /etc/feedbackd/master.conf
    echo "== agent sandbox"
    systemctl show -p ProtectControlGroups -p DynamicUser -p PrivateUsers -p NetworkNamespacePath feedbackd-agent@rs1.service
    echo "== agent journal during the run (warnings and errors)"
    journalctl -q -u 'feedbackd-agent@*' -p warning --no-pager --since "@$since"
    echo "== master: weight writes during the run"
    journalctl -q -u feedbackd-master --no-pager --since "@$since" | grep -c 'weight changed'
    echo "== master journal (last 30 lines)"
    journalctl -q -u feedbackd-master --no-pager -n 30
  } >$OUT/$name.evidence.txt 2>&1
  for i in 1 2 3; do systemctl stop feedbackd-agent@rs$i.service; done
  systemctl stop feedbackd-master.socket feedbackd-master.service
  ipvsadm -C
  stop_servers
}

printf 'director = 10.0.0.1\nmaster-timeout = 10\nloglevel = INFO\n' >/etc/feedbackd/agent.conf
mkdir -p /etc/feedbackd/agent.d
for i in 1 2 3; do
  printf '[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = cpuload\ncgroup = /exp.slice/exp-rs%s.slice\ninterval = %s\n' \
    $i "$AGENT_INTERVAL" >/etc/feedbackd/agent.d/rs$i.conf
  mkdir -p /etc/systemd/system/feedbackd-agent@rs$i.service.d
  printf '[Service]\nNetworkNamespacePath=/run/netns/rs%s\n' $i >/etc/systemd/system/feedbackd-agent@rs$i.service.d/netns.conf
done
chmod 644 /etc/feedbackd/*.conf /etc/feedbackd/agent.d/*.conf
systemctl daemon-reload
three() { [ "$(ipvsadm -Ln -t $VIP:80 2>/dev/null | awk '$1 == "->" && $4 > 0' | wc -l)" = 3 ]; }

# Run 2, "feedback": the master's defaults (weight-threshold 5 %, no step cap).
feedback_run feedback ""
# Run 3, "feedback-damped": the same, with weight-max-step = $MAX_STEP (per
# cent of max-weight per keepalive-interval; see docs/experiment.md).
feedback_run feedback-damped "weight-max-step = $MAX_STEP"
finish DONE
