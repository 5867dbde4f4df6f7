#!/bin/bash
# IPVS scenarios, run inside the QEMU guest by test/e2e/qemu.sh: Debian 12's
# own kernel (ip_vs as a module), systemd as PID 1, feedbackd installed
# from this checkout with its real, unmodified units. Every assertion about
# weights is made against the kernel (ipvsadm), never the daemons' logs.
#
# Layout inside the guest:
#   director    the root network namespace: br0 10.0.0.1/24, the IPVS
#               table, feedbackd-master.socket listening on every address
#   rs1..rs3    network namespaces, each with a veth on br0 (10.0.0.11-13)
#               and one agent: feedbackd-agent@rsN.service (the packaged
#               template) plus a drop-in NetworkNamespacePath=/run/netns/rsN
#
# Why the template and not `ip netns exec` or systemd-run: the drop-in is
# what an operator would write to put an instance in a namespace, and the
# instance keeps its whole packaged sandbox (DynamicUser, watchdog,
# Restart=). systemd joins the namespace itself before dropping privileges;
# `ip netns exec` would need root and CAP_SYS_ADMIN inside the unit.
# The agent connects to 10.0.0.1 from inside rsN, so the master sees
# 10.0.0.1N as the peer: that IS the realserver address (no "address =").
#
# Results go to /mnt/out (the host's test/e2e/out/ipvs over 9p) in the
# format of lib.sh; progress lines starting with "e2e-ipvs:" go to the
# console. Every wait has a deadline; they are generous, as the guest
# runs under software emulation.
set -u

# The share must be mounted before lib.sh opens its files on it.
for _ in $(seq 150); do
  mountpoint -q /mnt/out && break
  mount /mnt/out 2>/dev/null || sleep 0.2
done
mountpoint -q /mnt/out || { echo "e2e-ipvs: the 9p share /mnt/out is not mounted"; exit 1; }
. /usr/local/lib/e2e/lib.sh
read -r BOOT_S _ </proc/uptime
T_START=$EPOCHREALTIME

M=feedbackd-master.service
SOCK=feedbackd-master.socket
AD=/etc/feedbackd/agent.d
HEALTH=/etc/feedbackd/rs3.health
VIP1=192.0.2.10 # scheduler wrr, max-weight 100 (health = weight)
VIP2=192.0.2.20 # scheduler wlc, max-weight 200 (weight = 2 x health)
RS1=10.0.0.11 RS2=10.0.0.12 RS3=10.0.0.13

# --- helpers (lib.sh has the generic ones) ---------------------------------

progress() { echo "e2e-ipvs: $*"; }
ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
secs_since() { awk -v a="$1" -v b="$(ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# dest VIP RIP: "<forwarding> <weight>" of RIP:80 under tcp VIP:80 in the
# kernel's table, empty if there is no such destination.
dest() {
  ipvsadm -Ln -t "$1:80" 2>/dev/null | awk -v d="$2:80" '$1 == "->" && $2 == d { print $3, $4 }'
}
# dest_is VIP RIP WEIGHT: present, forwarding Route (DR), that weight.
dest_is() { [ "$(dest "$1" "$2")" = "Route $3" ]; }
# dest_gone VIP RIP: the service exists, the destination does not.
dest_gone() { ipvsadm -Ln -t "$1:80" >/dev/null 2>&1 && [ -z "$(dest "$1" "$2")" ]; }
# scheduler VIP: the scheduler of tcp VIP:80, empty if there is no service.
scheduler() { ipvsadm -Ln -t "$1:80" 2>/dev/null | awk -v s="$1:80" '$1 == "TCP" && $2 == s { print $3 }'; }
sched_is() { [ "$(scheduler "$1")" = "$2" ]; }
# weights VIP: "RIP:PORT FORWARDING WEIGHT" of every destination, sorted,
# on one line separated by ", ".
weights() {
  ipvsadm -Ln -t "$1:80" 2>/dev/null | awk '$1 == "->" && $2 ~ /^[0-9]/ { print $2, $3, $4 }' | sort | paste -sd, | sed 's/,/, /g'
}
weights_are() { local v=$1; shift; [ "$(weights "$v")" = "$*" ]; }
# table: the whole IPVS table in save format, one rule per line, sorted:
# what is compared before and after a master restart.
table() { ipvsadm -Sn | sort; }
agents_are() { systemctl show -p StatusText --value "$M" | grep -q "^$1 agents"; }
agent() { echo "feedbackd-agent@$1.service"; }

ipvs_evidence() { evidence "kernel IPVS table, $1" ipvsadm -Ln; }
end() {
  if [ "$SCEN_OK" != 1 ]; then
    evidence "master journal (last 40 lines)" journalctl -q -u "$M" -n 40 --no-pager
    evidence "agent journals (last 20 lines)" journalctl -q -u 'feedbackd-agent@*' -n 20 --no-pager
  fi
  scenario_end
  progress "$SCEN $(tail -1 "$RESULTS" | cut -d' ' -f1)"
}

# agent_file NAME MONITOR-LINES...: agent.d/NAME.conf offering tcp/80 by
# direct routing. The instance also reads /etc/feedbackd/agent.conf
# (director = 10.0.0.1, written by qemu.sh).
agent_file() {
  local n=$1; shift
  {
    printf '[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\n'
    printf '%s\n' "$@"
  } >"$AD/$n.conf"
  chmod 644 "$AD/$n.conf"
}

# realserver N: namespace rsN with eth0 10.0.0.1N/24, its peer vrsN on br0,
# and the drop-in that puts feedbackd-agent@rsN in that namespace.
realserver() {
  local n=rs$1 ip=10.0.0.1$1
  ip netns add "$n" &&
    ip link add "v$n" type veth peer name eth0 netns "$n" &&
    ip link set "v$n" master br0 up &&
    ip -n "$n" addr add "$ip/24" dev eth0 &&
    ip -n "$n" link set eth0 up &&
    ip -n "$n" link set lo up || return 1
  mkdir -p "/etc/systemd/system/$(agent "$n").d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/%s\n' "$n" >"/etc/systemd/system/$(agent "$n").d/netns.conf"
}

progress "started, guest uptime ${BOOT_S}s"
log "feedbackd IPVS tier (QEMU TCG), $(date -u +%FT%TZ)"
log "kernel $(uname -r); $(systemctl --version | head -1); $(ipvsadm --version 2>&1 | head -1)"
log "guest uptime when the scenarios started: ${BOOT_S} s"

# ---------------------------------------------------------------------------
scenario_start I1 "socket activation: no master and no virtual service until the first agent connects; then both services with their schedulers; ip_vs autoloaded"
if grep -q '^ip_vs ' /proc/modules; then
  pass_note "ip_vs loaded at boot (systemd-modules-load, /usr/lib/modules-load.d/lvs-feedbackd.conf)"
else
  fail "ip_vs not loaded at boot"
fi
evidence "IPVS modules" sh -c "grep '^ip_vs' /proc/modules | cut -d' ' -f1"
[ -z "$(systemctl show -p DropInPaths --value "$M")" ] &&
  pass_note "feedbackd-master.service has no drop-ins (packaged unit as is)" ||
  fail "feedbackd-master.service has drop-ins: $(systemctl show -p DropInPaths --value "$M")"
evidence "master ExecStart" systemctl show -p ExecStart --value "$M"
ipvs_evidence "before"
[ -z "$(scheduler $VIP1)" ] && [ -z "$(scheduler $VIP2)" ] &&
  pass_note "no virtual service before the master runs" || fail "a virtual service exists before the master ran"
out=$(systemctl enable --now "$SOCK" 2>&1) || fail "systemctl enable --now $SOCK"
log "  systemctl enable --now $SOCK: $out"
wait_for 30 "$SOCK active" is_active "$SOCK"
ip link add br0 type bridge && ip link set br0 up && ip addr add 10.0.0.1/24 dev br0 || fail "creating br0"
for i in 1 2 3; do realserver $i || fail "creating realserver rs$i"; done
agent_file rs1 "monitor = constant" "value = 80"
agent_file rs2 "monitor = constant" "value = 40"
agent_file rs3 "monitor = exec" "command = cat $HEALTH"
systemctl daemon-reload
evidence "network" sh -c 'ip -br addr show br0; for n in rs1 rs2 rs3; do ip -n $n -br addr show eth0; done'
is_inactive "$M" && pass_note "master inactive while no agent has connected" || fail "master running before any agent connected"
# The unit relies on the kernel, not on a modprobe in its sandbox, if the
# modules are not loaded yet: unload them and let the master's requests
# bring them back. (Nothing may run ipvsadm from here until the master is
# up: ipvsadm itself makes the kernel load ip_vs.)
modprobe -r ip_vs_wrr ip_vs_wlc ip_vs_rr ip_vs_lc ip_vs && ! grep -q '^ip_vs' /proc/modules &&
  pass_note "IPVS modules unloaded, to check the autoload" || fail "could not unload the IPVS modules"
t0=$(ms)
systemctl start "$(agent rs1)" 2>>"$REPORT" || fail "systemctl start $(agent rs1)"
wait_for 60 "$(agent rs1) active (in namespace rs1)" is_active "$(agent rs1)"
# The master creates its virtual services before it reports READY=1.
wait_for 60 "master started by the agent's connection (socket activation, READY=1)" is_active "$M"
for m in ip_vs ip_vs_wrr ip_vs_wlc; do
  grep -q "^$m " /proc/modules && pass_note "$m loaded again on demand by the master's requests (family lookup, new service)" ||
    fail "$m not loaded after the master started"
done
wait_for 60 "virtual service tcp $VIP1:80 scheduler wrr in the kernel" sched_is $VIP1 wrr
wait_for 30 "virtual service tcp $VIP2:80 scheduler wlc in the kernel" sched_is $VIP2 wlc
log "  master active and services created $(secs_since "$t0") s after the first agent started"
mpid=$(mainpid "$M")
muid=$(awk '/^Uid:/ { print $2 }' /proc/"$mpid"/status)
mcap=$(awk '/^CapEff:/ { print $2 }' /proc/"$mpid"/status)
[ "$muid" != 0 ] && [ "$mcap" = 0000000000001000 ] &&
  pass_note "the master writing IPVS runs as uid $muid with CAP_NET_ADMIN only (CapEff $mcap)" ||
  fail "master uid $muid CapEff $mcap, want non-root with 0000000000001000 (CAP_NET_ADMIN)"
apid=$(mainpid "$(agent rs1)")
[ "$(readlink /proc/"$apid"/ns/net)" = "$(ip netns exec rs1 readlink /proc/self/ns/net)" ] &&
  pass_note "agent rs1 runs in network namespace rs1" || fail "agent rs1 is not in namespace rs1"
evidence "master status" systemctl status --no-pager -n 0 "$M"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I2 "three realservers: DR (Route) destinations with weights from health 80/40/60"
ipvs_evidence "before"
for n in rs2 rs3; do systemctl start "$(agent $n)" 2>>"$REPORT" || fail "systemctl start $(agent $n)"; done
wait_for 60 "$VIP1: $RS1 Route 80" dest_is $VIP1 $RS1 80
wait_for 60 "$VIP1: $RS2 Route 40" dest_is $VIP1 $RS2 40
wait_for 60 "$VIP1: $RS3 Route 60" dest_is $VIP1 $RS3 60
wait_for 30 "$VIP2 (max-weight 200): Route 160/80/120" weights_are $VIP2 "$RS1:80 Route 160, $RS2:80 Route 80, $RS3:80 Route 120"
wait_for 30 "master status: 3 agents" agents_are 3
evidence "master status text" systemctl show -p StatusText --value "$M"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I3 "exec monitor: rs3's health file 60 -> 10 gives weight 10 (20 under max-weight 200)"
ipvs_evidence "before"
t0=$(ms)
echo 10 >"$HEALTH"
wait_for 30 "$VIP1: $RS3 Route 10" dest_is $VIP1 $RS3 10 &&
  log "  weight 10 in the kernel $(secs_since "$t0") s after the file changed"
wait_for 10 "$VIP2: $RS3 Route 20" dest_is $VIP2 $RS3 20
dest_is $VIP1 $RS1 80 && dest_is $VIP1 $RS2 40 && pass_note "rs1 and rs2 untouched" || fail "rs1/rs2 weights changed"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I4 "systemctl stop of rs2's agent: weight 0 at once, destination deleted after removal-interval (3 s, no connections)"
ipvs_evidence "before"
t0=$(ms)
systemctl stop "$(agent rs2)" 2>>"$REPORT" || fail "systemctl stop $(agent rs2)"
log "  systemctl stop returned after $(secs_since "$t0") s"
rs2_zero() { dest_is $VIP1 $RS2 0 && dest_is $VIP2 $RS2 0; }
rs2_gone() { dest_gone $VIP1 $RS2 && dest_gone $VIP2 $RS2; }
wait_for 10 "$VIP1 and $VIP2: $RS2 Route 0 (quiesced)" rs2_zero &&
  { t_zero=$(ms); log "  weight 0 $(secs_since "$t0") s after the stop"; }
ipvs_evidence "quiesced"
wait_for 30 "$RS2 deleted from $VIP1 and $VIP2" rs2_gone &&
  log "  deleted $(secs_since "${t_zero:-$t0}") s after it went to weight 0 (removal-interval 3 s)"
dest_is $VIP1 $RS1 80 && dest_is $VIP1 $RS3 10 && pass_note "rs1 and rs3 untouched" || fail "rs1/rs3 weights changed"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I5 "kill -9 of rs1's agent: the closed connection quiesces it (weight 0); systemd restarts the agent and the weight returns"
ipvs_evidence "before"
apid=$(mainpid "$(agent rs1)")
n0=$(prop "$(agent rs1)" NRestarts)
t0=$(ms)
kill -KILL "$apid"
wait_for 10 "$VIP1: $RS1 Route 0" dest_is $VIP1 $RS1 0 && log "  weight 0 $(secs_since "$t0") s after the kill"
ipvs_evidence "quiesced"
# Restart=on-failure, RestartSec=5 in the packaged unit.
restarted() { [ "$(prop "$1" NRestarts)" -gt "$2" ] && is_active "$1"; }
wait_for 60 "agent rs1 restarted by systemd" restarted "$(agent rs1)" "$n0"
wait_for 60 "$VIP1: $RS1 Route 80 again" dest_is $VIP1 $RS1 80 && log "  weight 80 again $(secs_since "$t0") s after the kill"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I6 "master killed with SIGKILL: restarted by systemd, the kernel's table untouched meanwhile, agents re-register"
systemctl start "$(agent rs2)" 2>>"$REPORT" || fail "systemctl start $(agent rs2)"
wait_for 60 "$VIP1: $RS2 Route 40 (rs2 back)" dest_is $VIP1 $RS2 40
wait_for 30 "master status: 3 agents" agents_are 3
ipvs_evidence "before"
before=$(table)
pid=$(mainpid "$M")
n0=$(prop "$M" NRestarts)
changes=0
t0=$(ms)
kill -KILL "$pid"
# Until the agents are back, compare the kernel's table with the snapshot
# as fast as we can: the master's absence and its start must not touch it.
phase=gap
deadline=$((SECONDS + 90))
while :; do
  now=$(table)
  if [ "$now" != "$before" ]; then
    changes=$((changes + 1))
    [ $changes -le 3 ] && { log "  table changed during the $phase, $(secs_since "$t0") s after the kill:"; diff <(echo "$before") <(echo "$now") | sed 's/^/    /' >>"$REPORT"; }
  fi
  p=$(mainpid "$M")
  if [ "$phase" = gap ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; then
    phase="restart (new master $p, agents not yet back)"
    log "  new master process $p $(secs_since "$t0") s after the kill"
  fi
  if [ "$phase" != gap ] && agents_are 3; then break; fi
  [ $SECONDS -lt $deadline ] || { fail "timed out after 90 s: master restarted=$([ "$phase" = gap ] && echo no || echo yes), status '$(prop "$M" StatusText)'"; break; }
  sleep 0.1
done
[ "$phase" != gap ] && log "  3 agents back $(secs_since "$t0") s after the kill"
[ $changes = 0 ] && pass_note "the kernel's table never changed while the master was down or restarting" ||
  fail "the kernel's table changed $changes times while the master was down or restarting"
[ "$(prop "$M" NRestarts)" -gt "$n0" ] && pass_note "systemd restarted the master (NRestarts $n0 -> $(prop "$M" NRestarts))" ||
  fail "NRestarts did not increase ($n0 -> $(prop "$M" NRestarts))"
is_active "$SOCK" && pass_note "$SOCK stayed active" || fail "$SOCK not active"
sleep 3 # a few keepalive intervals: the new master must settle on the same weights
[ "$(table)" = "$before" ] && pass_note "table after the restart identical to before (ipvsadm -Sn)" ||
  { fail "table after the restart differs"; diff <(echo "$before") <(table) | sed 's/^/    /' >>"$REPORT"; }
evidence "master journal since the restart" journalctl -q -u "$M" --no-pager -n 15
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I7 "rs2's link cut: quiesced after (1 + keepalive-retries) x keepalive-timeout; link restored: the weight returns"
wait_for 30 "$VIP1: $RS2 Route 40 before the cut" dest_is $VIP1 $RS2 40
ipvs_evidence "before"
t0=$(ms)
# The agent's process and socket stay up; only its packets stop, as when a
# cable or switch fails: the master must notice through its own timers.
ip link set vrs2 down
wait_for 30 "$VIP1: $RS2 Route 0 (keepalives unanswered)" dest_is $VIP1 $RS2 0 &&
  log "  weight 0 $(secs_since "$t0") s after the cut (timers: (1+1) x 2 s after the first unanswered KEEPALIVE, sent within 1 s)"
journalctl -q -u "$M" --no-pager | grep -q "keepalives unanswered" &&
  pass_note "master logged: keepalives unanswered" || fail "no 'keepalives unanswered' in the master's journal"
ipvs_evidence "link down"
dest_is $VIP1 $RS1 80 && pass_note "rs1 untouched" || fail "rs1 changed while rs2's link was down"
t1=$(ms)
ip link set vrs2 up
# The agent notices the silence after master-timeout (10 s), reconnects at
# once, and reports again.
wait_for 90 "$VIP1: $RS2 Route 40 again after the link came back" dest_is $VIP1 $RS2 40 &&
  log "  weight 40 again $(secs_since "$t1") s after the link came back"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I8 "real HTTP traffic through $VIP1 (LVS-DR) is spread over the realservers in proportion to the weights"
# Classic LVS-DR on one L2 segment: the VIP is local on the director (so
# IPVS sees the packets in LOCAL_IN) and on each realserver's lo, where
# arp_ignore/arp_announce keep the realservers from answering ARP for it;
# replies go straight from the realserver to the client.
ip addr add $VIP1/32 dev lo 2>/dev/null || true
for i in 1 2 3; do
  n=rs$i
  ip netns exec $n sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip -n $n addr add $VIP1/32 dev lo
  # A tiny HTTP server that answers with its realserver's name.
  ip netns exec $n perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 64, ReuseAddr => 1) or die "listen: $!";
    while (my $c = $s->accept) { my $l = <$c>; print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n$ARGV[0]\n"; close $c }
  ' $n >/dev/null 2>&1 &
done
ip netns add client
ip link add vclient type veth peer name eth0 netns client
ip link set vclient master br0 up
ip -n client addr add 10.0.0.100/24 dev eth0
ip -n client link set eth0 up
ip -n client link set lo up
ip -n client route add $VIP1/32 via 10.0.0.1
# The weights while the traffic runs (rs3's health file still says 10).
wait_for 30 "weights 80/40/10 on $VIP1" weights_are $VIP1 "$RS1:80 Route 80, $RS2:80 Route 40, $RS3:80 Route 10"
ipvs_evidence "before the traffic"
wait_for 30 "an HTTP answer through $VIP1" ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP1/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs' <&3"
# wrr is a deterministic weighted round robin: 260 new connections are 20
# whole cycles of 8:4:1 (weights 80/40/10, divided by their gcd), so each
# realserver's share is exact up to the one cycle in progress when the
# warm-up request above was sent. Tolerance: 3 percentage points.
N=260
t0=$(ms)
ip netns exec client bash -c "
  for i in \$(seq $N); do
    exec 3<>/dev/tcp/$VIP1/80 || continue
    printf 'GET / HTTP/1.0\r\n\r\n' >&3
    grep '^rs' <&3
    exec 3<&-
  done" >/tmp/answers.txt 2>/dev/null
got=$(wc -l </tmp/answers.txt)
log "  $got answers to $N requests in $(secs_since "$t0") s"
[ "$got" -ge $((N * 95 / 100)) ] && pass_note "$got of $N requests answered" || fail "only $got of $N requests answered"
for i in 1 2 3; do
  w=$(dest $VIP1 10.0.0.1$i | awk '{print $2}')
  c=$(grep -c "^rs$i\$" /tmp/answers.txt || true)
  share=$(awk -v c="$c" -v n="$got" 'BEGIN { printf "%.1f", 100 * c / (n ? n : 1) }')
  want=$(awk -v w="$w" 'BEGIN { printf "%.1f", 100 * w / 130 }')
  log "  rs$i: weight $w, $c answers = $share % (weights say $want %)"
  awk -v a="$share" -v b="$want" 'BEGIN { d = a - b; exit !(d <= 3 && d >= -3) }' &&
    pass_note "rs$i share $share % within 3 points of $want %" || fail "rs$i share $share %, weights say $want %"
done
evidence "kernel counters after the traffic" ipvsadm -Ln --stats -t $VIP1:80
end

# ---------------------------------------------------------------------------
log ""
evidence "master warnings and errors (whole run)" journalctl -q -u "$M" -p warning --no-pager
evidence "units" systemctl list-units --no-pager --all 'feedbackd*'
evidence "failed units" systemctl list-units --no-pager --failed
journalctl --no-pager -o short-monotonic >/mnt/out/journal.txt 2>&1
printf 'boot_s=%s\nscenarios_s=%s\n' "$BOOT_S" "$(awk -v a="${T_START/./}" -v b="${EPOCHREALTIME/./}" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')" >/mnt/out/timings.txt
echo DONE >>"$RESULTS"
progress "done"
systemctl --no-block poweroff
