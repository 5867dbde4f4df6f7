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
# for rs3 during the hog, the hog exp-hog-rs3.service run in it and
# nothing else. So the three realservers compete for the guest's CPUs no
# more than three small machines would, and the cgroup CPU health (the
# agents' "monitor = cpuload" with "cgroup = /exp.slice/exp-rsN.slice",
# or the keepalived arm's cgroup-health.sh) sees each realserver's own
# load.
#
# Every scenario (SCENARIOS) is run once per arm (ARMS), with the same
# arrivals (same seed) and the same hog:
#   hog       the hog starts in rs3 at HOG_AT and runs to the end (HOG_DURATION)
#   recovery  the hog starts at HOG_AT and stops at REC_HOG_STOP (REC_DURATION)
# The arms:
#   static        equal wrr weights set by ipvsadm; no feedbackd, no keepalived
#   direct        feedbackd-master with weight-law = direct, slow-start = 0
#                 (the master as it was before the smoothed law)
#   smoothed-5s   weight-law = smoothed, weight-smoothing = 5, slow-start = 10
#                 (the defaults of commit a30d42f, written out)
#   smoothed-10s  the same with weight-smoothing = 10
#   keepalived    Debian's keepalived (checker only), a virtual_server for the
#                 VIP, wrr, a MISC_CHECK misc_dynamic per realserver running
#                 cgroup-health.sh (weight = the same cgroup CPU health)
# The feedbackd arms use one feedbackd-agent per realserver (the packaged
# units, in their namespaces by a NetworkNamespacePath= drop-in). Only one
# of feedbackd-master and keepalived runs at a time (checked at the start
# of every run), and neither during static.
set -u
LIB=/usr/local/lib/experiment
. $LIB/params
. $LIB/net.sh # the test network, shared with the e2e IPVS tier
VIP=192.0.2.10
OUT=/mnt/out

say() { echo "experiment: $*"; }
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds or the deadline.
wait_for() {
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then say "timed out waiting for: $what"; return 1; fi
    sleep 0.2
  done
}
# pause SECONDS: sleep with a deadline that does not depend on sleep's own
# accuracy under emulation.
pause() {
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do sleep 0.5; done
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
: >$OUT/runs.txt
exec 2>>$OUT/guest-stderr.txt
read -r up _ </proc/uptime
say "started, uptime ${up}s; $(nproc) CPUs, kernel $(uname -r)"
{
  echo "kernel=$(uname -r)"
  echo "cpus=$(nproc)"
  echo "systemd=$(systemctl --version | head -1)"
  echo "keepalived=$(keepalived --version 2>&1 | head -1)"
  echo "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "boot_s=$up"
} >$OUT/guest.txt

# --- network -------------------------------------------------------------
net_bridge || finish FAILED-network
for i in 1 2 3; do
  net_ns rs$i 10.0.0.1$i/24 && net_dr_vip rs$i $VIP || finish FAILED-network
done
net_client $VIP || finish FAILED-network
# Plenty of ephemeral ports and TIME_WAIT reuse for a new connection per request.
ip netns exec client sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
modprobe ip_vs 2>/dev/null
modprobe ip_vs_wrr 2>/dev/null

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

# --- other VMs on the host ----------------------------------------------
# The host (run.sh) keeps $OUT/other-qemu while another checkout's VM runs
# on the same two cores, and adds a line a second to other-qemu.log. That
# VM changes every figure, so calibration, warm-up and every run wait for
# it to end (up to QUIET_WAIT s), and a run during which it ran is done
# again (RETRIES in all per invocation); its files go to disturbed/.
quiet() { [ ! -e $OUT/other-qemu ]; }
wait_quiet() {
  quiet && return 0
  say "another VM runs on the host; waiting up to $QUIET_WAIT s before $1"
  wait_for "$QUIET_WAIT" "the host to be free of other VMs" quiet || say "going on with another VM on the host: $1 is disturbed"
}
other_marks() { if [ -f $OUT/other-qemu.log ]; then wc -l <$OUT/other-qemu.log; else echo 0; fi; }

wait_quiet calibration
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
# three: all three destinations have a weight above 0. (The column header
# line starts with "->" too: only lines with an address count.)
three() { [ "$(ipvsadm -Ln -t $VIP:80 2>/dev/null | awk '$1 == "->" && $2 ~ /^[0-9]/ && $4 > 0' | wc -l)" = 3 ]; }
# cpu_ns UNIT...: the CPU time the units have used since they started, in
# ns, summed (systemd's CPUUsageNSec, from the units' cgroups).
cpu_ns() {
  # %.0f: mawk's %d stops at 2^31.
  systemctl show -P CPUUsageNSec "$@" | awk '$1 ~ /^[0-9]+$/ { s += $1 } END { printf "%.0f", s }'
}

# sampler FILE: the IPVS weights of rs1..rs3 (from /proc/net/ip_vs, where
# 10.0.0.11:80 is 0A00000B:0050) and the slices' CPU usage, every half
# second, until killed. Bash builtins only, so that it keeps its pace
# under emulation (the earlier ipvsadm/awk sampler managed one a second)
# and takes little CPU from the realservers.
sampler() {
  local f=$1 t a b d w1 w2 w3 k u1 u2 u3
  local cg=/sys/fs/cgroup/exp.slice
  mkfifo /run/exp-sampler-tick 2>/dev/null
  exec 7<>/run/exp-sampler-tick
  echo "unix_ms,w1,w2,w3,usage1,usage2,usage3" >"$f"
  while :; do
    t=${EPOCHREALTIME/./}
    w1='' w2='' w3=''
    while read -r a b _ d _; do
      [ "$a" = "->" ] || continue
      case $b in
      0A00000B:0050) w1=$d ;;
      0A00000C:0050) w2=$d ;;
      0A00000D:0050) w3=$d ;;
      esac
    done </proc/net/ip_vs
    read -r k u1 <$cg/exp-rs1.slice/cpu.stat
    read -r k u2 <$cg/exp-rs2.slice/cpu.stat
    read -r k u3 <$cg/exp-rs3.slice/cpu.stat
    echo "$((t / 1000)),$w1,$w2,$w3,$u1,$u2,$u3" >>"$f"
    read -r -t 0.5 -u 7 _ # nothing is ever written: a sleep without a fork
  done
}

# --- the load: a rate that leaves each realserver UTIL_PCT busy ----------
# What a request costs its slice is the calibrated work plus what the HTTP
# server, the TCP handshake and the softirqs charged to the slice cost
# under emulation, and the latter depends on the host: on a busy host a
# request has cost its slice about four times the calibrated 8 ms, which
# at a fixed 20 requests/s left the realservers nearly saturated before
# the hog, and rs1 and rs2 unable to carry rs3's share after it whatever
# the weights. So unless RATE is given, a warm-up at WARM_RATE through
# equal static weights measures the slices' CPU per answered request, and
# the rate is set so that each realserver is UTIL_PCT busy before the hog:
# rs1 and rs2 then have room for rs3's share (2 × UTIL_PCT × 3/2). The
# same rate and arrivals serve every run of the invocation.
if [ -z "$RATE" ]; then
  wait_quiet "the warm-up"
  start_servers
  ipvsadm -C
  ipvsadm -A -t $VIP:80 -s wrr
  for i in 1 2 3; do ipvsadm -a -t $VIP:80 -r 10.0.0.1$i:80 -g -w 1; done
  u0=0
  for i in 1 2 3; do read -r _ u </sys/fs/cgroup/exp.slice/exp-rs$i.slice/cpu.stat; u0=$((u0 + u)); done
  ip netns exec client $LIB/loadgen -addr $VIP:80 -rate "$WARM_RATE" -duration 20s -seed 99 \
    -timeout "${TIMEOUT}s" -out /tmp/warmup.csv -meta /tmp/warmup.meta >/dev/null || finish FAILED-warmup
  u1=0
  for i in 1 2 3; do read -r _ u </sys/fs/cgroup/exp.slice/exp-rs$i.slice/cpu.stat; u1=$((u1 + u)); done
  ok=$(grep -c ',ok$' /tmp/warmup.csv)
  cp /tmp/warmup.csv $OUT/warmup.csv
  ipvsadm -C
  stop_servers
  [ "$ok" -gt 0 ] || finish FAILED-warmup-no-answers
  per_us=$(((u1 - u0) / ok))
  # each realserver's capacity is QUOTA/per requests/s; three of them at UTIL_PCT
  RATE=$(awk -v q="${QUOTA%\%}" -v p="$per_us" -v u="$UTIL_PCT" 'BEGIN { r = 3 * u / 100 * q / 100 * 1e6 / p; if (r < 2) r = 2; if (r > 40) r = 40; printf "%.1f", r }')
  say "warm-up: $ok requests cost the slices $((per_us / 1000)) ms of CPU each; rate $RATE requests/s for $UTIL_PCT % busy realservers"
  echo "warmup_cpu_per_request_us=$per_us" >>$OUT/guest.txt
fi
echo "rate=$RATE" >>$OUT/guest.txt

HOG="systemd-run -q --unit=exp-hog-rs3 --slice=exp-rs3.slice -p CPUWeight=$HOG_WEIGHT $LIB/cpuhttp -hog $HOG_THREADS"

# run NAME SCENARIO ARM: one load run through the VIP with the scenario's
# hog. Refuses to run with the wrong controller alive: feedbackd-master
# only in the feedbackd arms, keepalived only in its own.
run() {
  local name=$1 scen=$2 arm=$3 sp dur events=()
  case $scen in
  hog)
    dur=$HOG_DURATION
    events=(-at "${HOG_AT}s=$HOG")
    ;;
  recovery)
    dur=$REC_DURATION
    events=(-at "${HOG_AT}s=$HOG" -at "${REC_HOG_STOP}s=systemctl stop exp-hog-rs3")
    ;;
  *) finish "FAILED-unknown-scenario-$scen" ;;
  esac
  local m k
  # (pgrep -f: the master's process name is cut to 15 characters.)
  m=$(pgrep -f '^/usr/sbin/feedbackd-master' >/dev/null && echo yes || echo no)
  k=$(pgrep -x keepalived >/dev/null && echo yes || echo no)
  echo "$name: feedbackd-master running: $m, keepalived running: $k" >>$OUT/controllers.txt
  case $arm in
  static) [ $m$k = nono ] || finish "FAILED-$name-a-controller-is-running" ;;
  keepalived) [ $m$k = noyes ] || finish "FAILED-$name-controllers-m$m-k$k" ;;
  *) [ $m$k = yesno ] || finish "FAILED-$name-controllers-m$m-k$k" ;;
  esac
  wait_for 30 "an answer through the VIP" ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs' <&3" ||
    finish "FAILED-$name-vip"
  ipvsadm -Z
  sampler /tmp/$name.weights.csv &
  sp=$!
  # expreport times the master's and keepalived's journal lines from this
  # line: keep "NAME: ...s at ... req/s".
  say "$name: ${dur}s at $RATE req/s, scenario $scen, arm $arm"
  ip netns exec client $LIB/loadgen -addr $VIP:80 -rate "$RATE" -duration "${dur}s" -seed "$SEED" \
    -timeout "${TIMEOUT}s" "${events[@]}" -out /tmp/$name.csv -meta /tmp/$name.meta >/dev/null ||
    say "$name: loadgen failed"
  kill $sp
  wait $sp 2>/dev/null
  ipvsadm -Ln --stats -t $VIP:80 >$OUT/$name.ipvs-stats.txt
  cp /tmp/$name.csv /tmp/$name.meta /tmp/$name.weights.csv $OUT/
  systemctl stop exp-hog-rs3 2>/dev/null
  echo "$name $scen $arm" >>$OUT/runs.txt
  say "$name: done, $(($(wc -l </tmp/$name.csv) - 1)) requests"
}

# --- static: equal weights, no controller --------------------------------
static_run() {
  local name=$1 scen=$2 i
  start_servers
  ipvsadm -C
  ipvsadm -A -t $VIP:80 -s wrr
  for i in 1 2 3; do ipvsadm -a -t $VIP:80 -r 10.0.0.1$i:80 -g -w 1; done
  ipvsadm -Ln >$OUT/$name.ipvs.txt
  run $name $scen static
  ipvsadm -C
  stop_servers
}

# --- feedbackd: master + three agents -------------------------------------
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

# feedback_run NAME SCENARIO ARM SETTLE MASTER-GLOBALS: start the master
# (MASTER-GLOBALS as extra lines before the first [virtual-service]) and
# the three agents on fresh servers, wait SETTLE s after all three have a
# weight (past any slow start), run the load, collect the evidence and
# stop everything again, so that the next run starts from the same state.
feedback_run() {
  local name=$1 scen=$2 arm=$3 settle=$4 globals=$5 i since
  start_servers
  ipvsadm -C
  {
    printf 'loglevel = INFO\nkeepalive-interval = 1\nkeepalive-timeout = 2\n'
    printf '%s\n' "$globals"
    printf '\n[virtual-service]\nname = web\naddress = %s\nprotocol = tcp\nport = 80\nscheduler = wrr\n' $VIP
  } >/etc/feedbackd/master.conf
  chmod 644 /etc/feedbackd/master.conf
  cp /etc/feedbackd/master.conf $OUT/$name.master.conf
  systemctl start feedbackd-master.socket
  for i in 1 2 3; do systemctl start feedbackd-agent@rs$i.service; done
  wait_for 90 "three weighted destinations from feedbackd" three || finish "FAILED-$name-feedbackd"
  pause "$settle"
  ipvsadm -Ln >$OUT/$name.ipvs.txt
  since=$(date +%s)
  local t0=$SECONDS c0
  c0=$(cpu_ns feedbackd-master.service feedbackd-agent@rs1.service feedbackd-agent@rs2.service feedbackd-agent@rs3.service)
  run $name $scen $arm
  echo "$name $(($(cpu_ns feedbackd-master.service feedbackd-agent@rs1.service feedbackd-agent@rs2.service feedbackd-agent@rs3.service) - c0)) $((SECONDS - t0))" >>$OUT/controller-cpu.txt
  {
    for i in 1 2 3; do
      echo "== exp-rs$i.slice: cpu.max $(cat /sys/fs/cgroup/exp.slice/exp-rs$i.slice/cpu.max)"
    done
    echo "== master.conf"
    cat /etc/feedbackd/master.conf
    echo "== the master's effective configuration (feedbackd-master -t)"
    feedbackd-master -t 2>&1 | tail -5
    echo "== agent sandbox"
    systemctl show -p ProtectControlGroups -p DynamicUser -p PrivateUsers -p NetworkNamespacePath feedbackd-agent@rs1.service
    echo "== agent journal during the run (warnings and errors)"
    journalctl -q -u 'feedbackd-agent@*' -p warning --no-pager --since "@$since"
    echo "== master: weight writes during the run"
    journalctl -q -u feedbackd-master --no-pager --since "@$since" | grep -c 'weight changed'
    echo "== master journal during the run (warnings and errors)"
    journalctl -q -u feedbackd-master -p warning --no-pager --since "@$since"
  } >$OUT/$name.evidence.txt 2>&1
  for i in 1 2 3; do systemctl stop feedbackd-agent@rs$i.service; done
  systemctl stop feedbackd-master.socket feedbackd-master.service
  wait_for 20 "feedbackd-master to exit" bash -c "! pgrep -f '^/usr/sbin/feedbackd-master'" || finish "FAILED-$name-master-did-not-stop"
  ipvsadm -C
  stop_servers
}

# --- keepalived: checker only, MISC_CHECK misc_dynamic --------------------
# The configuration an LVS operator writes for dynamic weights: a
# virtual_server for the VIP with wrr and direct routing, and per
# realserver a MISC_CHECK whose exit status sets the weight (misc_dynamic:
# exit 2..255 sets weight = status - 2). delay_loop and misc_timeout are
# the agents' interval. retry 3: a check that fails or times out three
# times more in a row takes the realserver out, as the master drops an
# agent after keepalive-retries (3) missed keepalives; without it one slow
# check on the emulated machine removes a realserver (seen in a trial
# run). The script's state (its previous reading) is in /run/exp-misc,
# emptied before each run.
keepalived_conf() {
  local i
  cat <<CONF
global_defs {
    router_id experiment
    script_user root
    enable_script_security
}

virtual_server $VIP 80 {
    delay_loop $AGENT_INTERVAL
    lb_algo wrr
    lb_kind DR
    protocol TCP
CONF
  for i in 1 2 3; do
    cat <<CONF

    real_server 10.0.0.1$i 80 {
        weight 100
        MISC_CHECK {
            misc_path "$LIB/cgroup-health.sh /exp.slice/exp-rs$i.slice /run/exp-misc/rs$i"
            misc_timeout $AGENT_INTERVAL
            misc_dynamic
            retry 3
        }
    }
CONF
  done
  echo "}"
}
# misc_ran: every realserver's script has run at least twice (so every
# weight is a measured one, not the configured 100 or a first 0.1 s read).
misc_ran() {
  local i n
  for i in 1 2 3; do
    n=0
    [ -f /run/exp-misc/rs$i.log ] && n=$(wc -l </run/exp-misc/rs$i.log)
    [ "$n" -ge 2 ] || return 1
  done
}

keepalived_run() {
  local name=$1 scen=$2 since i
  start_servers
  ipvsadm -C
  rm -rf /run/exp-misc
  mkdir -m 700 /run/exp-misc
  mkdir -p /etc/keepalived
  keepalived_conf >/etc/keepalived/keepalived.conf
  cp /etc/keepalived/keepalived.conf $OUT/$name.keepalived.conf
  # Only the checker process (LVS), no VRRP.
  echo 'DAEMON_ARGS="--check"' >/etc/default/keepalived
  keepalived -t -f /etc/keepalived/keepalived.conf >$OUT/$name.keepalived-t.txt 2>&1 || finish "FAILED-$name-keepalived-config"
  since=$(date +%s)
  systemctl start keepalived.service || finish "FAILED-$name-keepalived-start"
  wait_for 60 "three destinations from keepalived" three || finish "FAILED-$name-keepalived-destinations"
  wait_for 60 "every MISC_CHECK to have run twice" misc_ran || finish "FAILED-$name-keepalived-misc-check"
  pause 5
  ipvsadm -Ln >$OUT/$name.ipvs.txt
  local t0=$SECONDS c0
  c0=$(cpu_ns keepalived.service)
  run $name $scen keepalived
  echo "$name $(($(cpu_ns keepalived.service) - c0)) $((SECONDS - t0))" >>$OUT/controller-cpu.txt
  {
    echo "== CPU of keepalived.service since it started (keepalived and its checks), and of keepalived's own processes (clock ticks)"
    systemctl show -p CPUUsageNSec keepalived.service
    for i in $(pgrep -x keepalived); do awk '{ print "pid " $1 ": " $14 + $15 " ticks" }' /proc/$i/stat; done
    echo "== keepalived.conf"
    cat /etc/keepalived/keepalived.conf
    echo "== the health each check computed (unix µs, health) and the weight IPVS has now"
    for i in 1 2 3; do echo "rs$i: $(tail -1 /run/exp-misc/rs$i.log) of $(wc -l </run/exp-misc/rs$i.log) checks"; done
    ipvsadm -Ln -t $VIP:80
    echo "== keepalived: weight changes since it started"
    journalctl -q -u keepalived --no-pager --since "@$since" | grep -c 'Changing weight'
    echo "== keepalived journal since it started (all but the weight changes)"
    journalctl -q -u keepalived --no-pager --since "@$since" | grep -v 'Changing weight' | tail -40
  } >$OUT/$name.evidence.txt 2>&1
  for i in 1 2 3; do cp /run/exp-misc/rs$i.log $OUT/$name.misc-rs$i.log; done
  systemctl stop keepalived.service
  wait_for 20 "keepalived to exit" bash -c '! pgrep -x keepalived' || finish "FAILED-$name-keepalived-did-not-stop"
  ipvsadm -C
  stop_servers
}

systemctl is-enabled -q keepalived.service 2>/dev/null && finish FAILED-keepalived-enabled-at-boot
# arm_run NAME SCENARIO ARM: one run of an arm, from servers started to
# servers stopped.
arm_run() {
  local name=$1 scen=$2 arm=$3
  case $arm in
  static) static_run $name $scen ;;
  direct) feedback_run $name $scen $arm 5 "weight-law = direct
slow-start = 0" ;;
  smoothed-5s) feedback_run $name $scen $arm $((5 + SLOW_START)) "weight-law = smoothed
weight-smoothing = 5
slow-start = $SLOW_START" ;;
  smoothed-10s) feedback_run $name $scen $arm $((5 + SLOW_START)) "weight-law = smoothed
weight-smoothing = 10
slow-start = $SLOW_START" ;;
  keepalived) keepalived_run $name $scen ;;
  *) finish "FAILED-unknown-arm-$arm" ;;
  esac
}
retries=$RETRIES
mkdir -p $OUT/disturbed
: >$OUT/disturbed.txt
: >$OUT/controller-cpu.txt
for scen in $SCENARIOS; do
  for arm in $ARMS; do
    name=$scen-$arm
    try=1
    while :; do
      wait_quiet $name
      n0=$(other_marks)
      arm_run $name $scen $arm
      n1=$(other_marks)
      [ "$n1" -gt "$n0" ] || break
      if [ "$retries" -le 0 ]; then
        say "$name: another VM ran on the host during it; no repeats left, kept (disturbed.txt)"
        echo "$name kept $((n1 - n0))" >>$OUT/disturbed.txt
        break
      fi
      retries=$((retries - 1))
      say "$name: another VM ran on the host for $((n1 - n0)) s of it; once more ($retries repeats left)"
      echo "$name repeated $((n1 - n0))" >>$OUT/disturbed.txt
      for f in $OUT/$name.*; do mv "$f" "$OUT/disturbed/$(basename "$f" | sed "s/^$name\./$name.try$try./")"; done
      sed -i "/^$name /d" $OUT/runs.txt $OUT/controller-cpu.txt
      try=$((try + 1))
    done
  done
done
finish DONE
