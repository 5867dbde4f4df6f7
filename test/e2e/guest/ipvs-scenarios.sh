#!/bin/bash
# IPVS scenarios, run inside the QEMU guest by test/e2e/qemu.sh: Debian 12's
# own kernel (ip_vs as a module), systemd as PID 1. The guest boots without
# feedbackd; scenario I0 installs the packages built from this checkout
# with apt on the running system, and every later scenario runs the real,
# unmodified units they ship. Every assertion about weights is made against
# the kernel (ipvsadm), and about events against systemd and journald,
# never the daemons' own opinion.
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
. /usr/local/lib/e2e/net.sh
STATE=/var/lib/lvs-feedbackd/master.state
# state_list: the destinations the state file lists, with the changes
# appended to it applied ("+ LINE" adds LINE, "- LINE" removes it; see
# FILES in feedbackd-master(8)), sorted.
state_list() {
  awk '/^#/ || NF == 0 { next }
       $1 == "+" || $1 == "-" { op = $1; $1 = ""; sub(/^ /, ""); if (op == "+") on[$0] = 1; else delete on[$0]; next }
       { on[$0] = 1 }
       END { for (k in on) print k }' "$STATE" | sort
}
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

# jn PATTERN JOURNALCTL-ARGS...: how many journal lines match PATTERN.
# jmore N PATTERN JOURNALCTL-ARGS...: more than N now. A scenario counts
# before it acts and waits for the count to grow. (Not --after-cursor:
# here it did not return PID 1's "Watchdog timeout" entry, which
# journalctl -u lists.)
jn() { local pat=$1; shift; journalctl -q --no-pager "$@" 2>/dev/null | grep -c -- "$pat"; }
jmore() { local n0=$1 pat=$2; shift 2; [ "$(jn "$pat" "$@")" -gt "$n0" ]; }
# stays_for SECONDS DESCRIPTION CMD...: CMD holds at every sample for the
# whole period (the opposite of wait_for).
stays_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ]; do
    "$@" >/dev/null 2>&1 || { fail "no longer true after $((secs - (end - SECONDS))) s: $what"; return 1; }
    sleep 0.2
  done
  pass_note "$what"
}
table_is() { [ "$(table)" = "$1" ]; }

ipvs_evidence() { evidence "kernel IPVS table, $1" ipvsadm -Ln; }
end() {
  if [ "$SCEN_OK" != 1 ]; then
    evidence "master journal (last 40 lines)" journalctl -q -u "$M" -n 40 --no-pager
    evidence "agent journals (last 20 lines)" journalctl -q -u 'feedbackd-agent@*' -n 20 --no-pager
  fi
  scenario_end
  progress "$SCEN $(tail -1 "$RESULTS" | cut -d' ' -f1) (${SCEN_TIMES[-1]#* } s)"
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
  local n=rs$1
  net_ns "$n" "10.0.0.1$1/24" || return 1
  mkdir -p "/etc/systemd/system/$(agent "$n").d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/%s\n' "$n" >"/etc/systemd/system/$(agent "$n").d/netns.conf"
}

progress "started, guest uptime ${BOOT_S}s"
log "feedbackd IPVS tier (QEMU TCG), $(date -u +%FT%TZ)"
log "kernel $(uname -r); $(systemctl --version | head -1); $(ipvsadm --version 2>&1 | head -1)"
log "guest uptime when the scenarios started: ${BOOT_S} s"

# ---------------------------------------------------------------------------
scenario_start I0 "apt install of the built .deb packages on the running guest (offline, dependencies already in the image); the install enables and starts nothing"
DEBDIR=/usr/local/lib/e2e/debs
STAGED=/usr/local/lib/e2e/etc
evidence "packages offered" ls -l $DEBDIR
evidence "system state before the install" systemctl is-system-running
if ! dpkg-query -W 'lvs-feedbackd-*' >/dev/null 2>&1 && [ ! -e /usr/sbin/feedbackd-master ] && [ ! -e /etc/feedbackd ]; then
  pass_note "the guest booted without the product (no lvs-feedbackd-* package, no /usr/sbin/feedbackd-master, no /etc/feedbackd)"
else
  fail "the product is already in the image"
  evidence "dpkg" dpkg-query -W 'lvs-feedbackd-*'
fi
# No configuration is written before the install: a file already at a
# conffile's path would make dpkg ask what to do. DEBIAN_FRONTEND only
# keeps debconf from ever asking on a console nobody reads.
t0=$(ms)
# Each output line is stamped with the seconds since the start, to show
# where the time goes under emulation.
stamp() { local l; while IFS= read -r l; do printf '%6s %s\n' "$(secs_since "$t0")" "$l"; done; }
if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600 \
  $DEBDIR/lvs-feedbackd-master_*.deb $DEBDIR/lvs-feedbackd-agent_*.deb </dev/null 2>&1 | stamp >/tmp/apt.txt; [ "${PIPESTATUS[0]}" = 0 ]; then
  pass_note "apt-get install -y $(cd $DEBDIR && echo lvs-feedbackd-master_*.deb lvs-feedbackd-agent_*.deb) ($(secs_since "$t0") s)"
else
  fail "apt-get install failed"
fi
evidence "apt-get install output" cat /tmp/apt.txt
for d in $DEBDIR/*.deb; do
  want=$(dpkg-deb -W --showformat '${Package} ${Version}' "$d")
  got=$(dpkg-query -W -f '${Package} ${Version} ${Status}' "${want%% *}" 2>/dev/null)
  [ "$got" = "$want install ok installed" ] && pass_note "installed: $want" || fail "dpkg says '$got', want '$want install ok installed'"
done
for f in /usr/sbin/feedbackd-master /usr/sbin/feedbackd-agent /usr/sbin/feedbackd-agent-sync \
  /usr/lib/systemd/system/feedbackd-master.socket /usr/lib/systemd/system/feedbackd-master.service \
  /usr/lib/systemd/system/feedbackd-agent@.service /usr/lib/systemd/system/feedbackd-agent-sync.path \
  /usr/lib/systemd/system/feedbackd-agent-sync.service /usr/lib/modules-load.d/lvs-feedbackd.conf \
  /etc/feedbackd/master.conf /etc/feedbackd/agent.conf; do
  [ -e "$f" ] || fail "missing after the install: $f"
done
# (/lib is /usr/lib on this merged-/usr root; systemd may name either.)
[ "$(readlink -f "$(prop "$M" FragmentPath)")" = /usr/lib/systemd/system/feedbackd-master.service ] &&
  pass_note "systemd loaded the packaged unit (postinst daemon-reload)" || fail "master unit FragmentPath '$(prop "$M" FragmentPath)'"
for u in $SOCK $M feedbackd-agent-sync.path feedbackd-agent-sync.service; do
  st=$(systemctl is-enabled "$u" 2>/dev/null || true)
  [ "$st" = disabled ] && is_inactive "$u" && pass_note "$u $st and inactive after the install" ||
    fail "$u is '$st', $(prop "$u" ActiveState) after the install; want disabled, inactive"
done
# The test's configuration replaces the packaged examples, after the
# install (the way an operator configures a fresh package).
dpkg --verify lvs-feedbackd-master lvs-feedbackd-agent >/tmp/verify.txt 2>&1 && [ ! -s /tmp/verify.txt ] &&
  pass_note "dpkg --verify: the installed files are the packaged ones" || { fail "dpkg --verify"; evidence "dpkg --verify" cat /tmp/verify.txt; }
install -m644 $STAGED/master.conf $STAGED/agent.conf $STAGED/rs3.health /etc/feedbackd/
out=$(/usr/sbin/feedbackd-master -t 2>&1) && pass_note "feedbackd-master -t accepts the test's master.conf" || fail "feedbackd-master -t: $out"
evidence "dpkg -L lvs-feedbackd-master (units, binaries)" sh -c "dpkg -L lvs-feedbackd-master | grep -E 'sbin|systemd|modules-load'"
end

# ---------------------------------------------------------------------------
scenario_start I1 "socket activation: no master and no virtual service until the first agent connects; then both services with their schedulers; ip_vs autoloaded"
# The package's modules-load.d file takes effect at the next boot, or now
# with a restart of systemd-modules-load. ip_vs itself may be loaded
# already (an ipvsadm run at boot loads it; evidence below), but nothing
# else here loads the schedulers, ip_vs_rr and ip_vs_lc in particular.
evidence "IPVS modules before systemd-modules-load" sh -c "grep '^ip_vs' /proc/modules | cut -d' ' -f1"
systemctl restart systemd-modules-load.service || fail "systemctl restart systemd-modules-load.service"
for m in ip_vs ip_vs_wrr ip_vs_wlc ip_vs_rr ip_vs_lc; do
  grep -q "^$m " /proc/modules || fail "$m not loaded by systemd-modules-load (/usr/lib/modules-load.d/lvs-feedbackd.conf)"
done
[ "$SCEN_OK" = 1 ] && pass_note "systemd-modules-load loaded ip_vs and its schedulers from /usr/lib/modules-load.d/lvs-feedbackd.conf"
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
net_bridge || fail "creating br0"
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
# The packaged unit's sandbox (SystemCallFilter=@system-service) and
# Debian's kernel let the master poll its agents with io_uring, its
# default; epoll is only the fallback (FEEDBACKD_POLLER, feedbackd-master(8)).
wait_for 30 "the master polls its agents with io_uring, not the epoll fallback (journal: POLLER=io_uring)" \
  jmore 0 'agent sessions polled' -u "$M" -o cat POLLER=io_uring
evidence "the master's poller (journal)" sh -c "journalctl -q --no-pager -u $M -o cat | grep -E 'agent sessions polled|io_uring'"
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
# The exec command ran under the package's own reaper executable, in the
# agent unit's sandbox, not under the agent's binary started again.
[ "$(jn 'REAPER=/usr/libexec/lvs-feedbackd-agent/feedbackd-monitor-reaper' -u "$(agent rs3)" -o verbose)" -gt 0 ] &&
  pass_note "rs3's agent runs its monitor commands under /usr/libexec/lvs-feedbackd-agent/feedbackd-monitor-reaper (journal: REAPER=)" ||
  fail "rs3's agent does not use the packaged reaper: $(journalctl -q --no-pager -u "$(agent rs3)" -o verbose 2>/dev/null | grep -m1 'REAPER=')"
# Where the kernel gives every process transparent huge pages ("always"),
# the agent starts itself again without them (internal/hugepages); the
# start line's small_pages says which.
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
case $thp in *"[always]"*) want_small=true ;; *) want_small=false ;; esac
[ "$(jn "SMALL_PAGES=$want_small" -u "$(agent rs3)" -o verbose)" -gt 0 ] &&
  pass_note "THP mode '$thp': rs3's agent runs with small_pages=$want_small (journal: SMALL_PAGES=)" ||
  fail "THP mode '$thp': rs3's agent does not say small_pages=$want_small: $(journalctl -q --no-pager -u "$(agent rs3)" -o verbose 2>/dev/null | grep -m1 'SMALL_PAGES=')"
# 30 s after its start the agent unmaps the executable's pages that its
# start touched (internal/execpages): madvise must pass the unit's
# SystemCallFilter, and /proc/self/smaps be readable under ProtectProc.
# A failure is logged as "cannot unmap ...".
wait_for 90 "rs3's agent unmapped its executable's unused pages (journal)" \
  jmore 0 "unmapped the executable's pages" -u "$(agent rs3)" -o cat
jfield() { journalctl -q --no-pager -u "$(agent rs3)" -o verbose 2>/dev/null | sed -n "s/^ *$1=//p" | head -n 1; }
rb=$(jfield RESIDENT_BEFORE_KB) ra=$(jfield RESIDENT_AFTER_KB)
[ -n "$rb" ] && [ -n "$ra" ] && [ "$ra" -lt "$rb" ] &&
  pass_note "rs3's agent: executable's pages resident $rb kB before the first unmapping, $ra kB right after (journal: RESIDENT_BEFORE_KB, RESIDENT_AFTER_KB)" ||
  fail "rs3's agent: executable's pages resident '$rb' kB before, '$ra' kB after the unmapping; $(journalctl -q --no-pager -u "$(agent rs3)" -o cat 2>/dev/null | grep -m1 'unmap')"
# The first unmapping also gives every page of those mappings a mapping of
# its own (AREAS), so that a page used again comes back alone and not with
# 64 KB around it: the packaged agent has about 1 500 pages there.
ar=$(jfield AREAS)
[ -n "$ar" ] && [ "$ar" -gt 100 ] &&
  pass_note "rs3's agent: its executable's read-only pages in $ar mappings after the first unmapping (journal: AREAS)" ||
  fail "rs3's agent: AREAS='$ar' after the first unmapping, want one mapping per page; $(journalctl -q --no-pager -u "$(agent rs3)" -o cat 2>/dev/null | grep -m1 'areas of their own')"
evidence "rs3's agent: mappings of its executable now (/proc/PID/maps)" sh -c "grep -c feedbackd-agent /proc/$(mainpid "$(agent rs3)")/maps"
# smaps_rollup, not status: Debian 12's kernel (6.1) keeps status's Rss
# counts per thread and adds them up late (SPLIT_RSS_COUNTING, gone in
# 6.2); it showed RssFile 0 here.
evidence "rs3's agent memory now (/proc/PID/smaps_rollup)" sh -c "grep -E '^(Rss|Pss|Anonymous|AnonHugePages):' /proc/$(mainpid "$(agent rs3)")/smaps_rollup"
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
# A master killed mid-run leaves the changes it appended since it last
# wrote the list whole (rs2's return at least): the new one reads them.
log "  state file at the kill: $(grep -c '^[+-] ' $STATE) appended lines; lists $(state_list | paste -sd,)"
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
# Classic LVS-DR on one L2 segment (net.sh says how).
for i in 1 2 3; do
  n=rs$i
  net_dr_vip $n $VIP1 || fail "the VIP on $n"
  # A tiny HTTP server that answers with its realserver's name.
  ip netns exec $n perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 64, ReuseAddr => 1) or die "listen: $!";
    while (my $c = $s->accept) { my $l = <$c>; print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n$ARGV[0]\n"; close $c }
  ' $n >/dev/null 2>&1 &
done
net_client $VIP1 || fail "the client namespace"
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
scenario_start I9 "master frozen with SIGSTOP: systemd's watchdog (packaged WatchdogSec=20s) kills and restarts it; ipvsadm -Sn unchanged during the freeze; the agents come back"
wait_for 60 "master status: 3 agents" agents_are 3
wd=$(prop "$M" WatchdogUSec)
[ "$wd" = 20s ] && pass_note "WatchdogUSec=$wd (the packaged unit, no drop-in)" || fail "WatchdogUSec=$wd, want 20s"
ipvs_evidence "before"
before=$(table)
pid=$(mainpid "$M")
n0=$(prop "$M" NRestarts)
w0=$(jn "$M: Watchdog timeout (limit 20s)!" -u "$M")
t0=$(ms)
kill -STOP "$pid"
log "  SIGSTOP to master $pid"
# Compare the kernel's table with the snapshot as fast as we can until the
# frozen process is replaced (the freeze), then until the agents are back
# (the restart).
phase=freeze freeze_changes=0 restart_changes=0 t_new=
deadline=$((SECONDS + 150))
while :; do
  now=$(table)
  if [ "$now" != "$before" ]; then
    if [ "$phase" = freeze ]; then
      freeze_changes=$((freeze_changes + 1))
      [ $freeze_changes -le 3 ] && { log "  table changed during the freeze, $(secs_since "$t0") s after SIGSTOP:"; diff <(echo "$before") <(echo "$now") | sed 's/^/    /' >>"$REPORT"; }
    else
      restart_changes=$((restart_changes + 1))
      [ $restart_changes -le 3 ] && { log "  (note) table differed during the restart, $(secs_since "$t0") s after SIGSTOP:"; diff <(echo "$before") <(echo "$now") | sed 's/^/    /' >>"$REPORT"; }
    fi
  fi
  p=$(mainpid "$M")
  if [ "$phase" = freeze ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; then
    phase=restart t_new=$(secs_since "$t0")
    log "  new master process $p $t_new s after SIGSTOP"
  fi
  if [ "$phase" = restart ] && agents_are 3; then break; fi
  [ $SECONDS -lt $deadline ] || { fail "timed out after 150 s: phase $phase, master state $(prop "$M" ActiveState), status '$(prop "$M" StatusText)'"; break; }
  sleep 0.1
done
[ "$phase" = restart ] && log "  3 agents back $(secs_since "$t0") s after SIGSTOP"
[ $freeze_changes = 0 ] && pass_note "ipvsadm -Sn never changed while the master was frozen" ||
  fail "the kernel's table changed $freeze_changes times while the master was frozen"
# The watchdog, not anything else, ended it: not before WatchdogSec.
# The watchdog, not anything else, ended it: the master pings every
# WatchdogSec/2 = 10 s, so systemd's timer expires 10 to 20 s after the
# SIGSTOP; then RestartSec=1 and the start.
[ -n "$t_new" ] && awk -v t="$t_new" 'BEGIN { exit !(t >= 9.5) }' &&
  pass_note "the frozen master was replaced after $t_new s (WatchdogSec=20s, pinged every 10 s)" || fail "master replaced after '${t_new:-never}' s, want >= 10 s (WatchdogSec=20s, pinged every 10 s)"
wait_for 30 "systemd's journal: \"$M: Watchdog timeout (limit 20s)!\" (one more than before)" jmore "$w0" "$M: Watchdog timeout (limit 20s)!" -u "$M"
wait_for 30 "systemd's journal: it killed $pid with the watchdog signal (SIGABRT)" jmore 0 "$M: Killing process $pid (.*) with signal SIGABRT" -u "$M"
! kill -0 "$pid" 2>/dev/null && pass_note "the frozen process $pid is gone" || fail "process $pid still exists"
[ "$(prop "$M" NRestarts)" -gt "$n0" ] && pass_note "systemd restarted the master (NRestarts $n0 -> $(prop "$M" NRestarts))" ||
  fail "NRestarts did not increase ($n0 -> $(prop "$M" NRestarts))"
is_active "$SOCK" && pass_note "$SOCK stayed active" || fail "$SOCK not active"
wait_for 60 "the table after the restart equals the one before the freeze (ipvsadm -Sn)" table_is "$before" ||
  diff <(echo "$before") <(table) | sed 's/^/    /' >>"$REPORT"
log "  restart phase: $restart_changes samples differed from the snapshot (grace for agents is (1+retries) x timeout = 4 s)"
evidence "systemd and the master about the watchdog" sh -c "journalctl -q --no-pager -u $M -n 400 | grep -E 'Watchdog|SIGABRT|Main process exited|Scheduled restart|Started|adopted' | tail -20"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
VIP3=192.0.2.30 # added by reload in I10, scheduler sed, max-weight 100
scenario_start I10 "reload: an added [virtual-service] appears with its scheduler and the agents join it; a broken master.conf: systemctl reload refuses, kill -HUP keeps the old configuration, file:line in the journal, IPVS unchanged"
wait_for 60 "master status: 3 agents" agents_are 3
ipvs_evidence "before"
before=$(table)
pid=$(mainpid "$M")
r0=$(jn 'configuration reloaded' -u "$M")
cat >>/etc/feedbackd/master.conf <<CONF

[virtual-service]
name = web-sed
address = $VIP3
protocol = tcp
port = 80
scheduler = sed
CONF
t0=$(ms)
out=$(systemctl reload "$M" 2>&1) && pass_note "systemctl reload returned 0" || fail "systemctl reload failed: $out"
# sed is in no modules-load.d file: the kernel loads ip_vs_sed on demand.
wait_for 60 "virtual service tcp $VIP3:80 scheduler sed in the kernel" sched_is $VIP3 sed &&
  log "  $VIP3 in the kernel $(secs_since "$t0") s after systemctl reload"
wait_for 60 "$VIP3: the three agents joined, Route 80/40/10" weights_are $VIP3 "$RS1:80 Route 80, $RS2:80 Route 40, $RS3:80 Route 10" &&
  log "  agents joined $VIP3 $(secs_since "$t0") s after systemctl reload"
[ "$(mainpid "$M")" = "$pid" ] && pass_note "same master process $pid (reload, not restart)" || fail "master process changed ($pid -> $(mainpid "$M"))"
[ "$(table | grep -v "$VIP3:80")" = "$before" ] && pass_note "$VIP1 and $VIP2 unchanged by the reload" ||
  { fail "the other services changed"; diff <(echo "$before") <(table | grep -v "$VIP3:80") | sed 's/^/    /' >>"$REPORT"; }
wait_for 30 "journal: configuration reloaded" jmore "$r0" 'configuration reloaded' -u "$M"
ipvs_evidence "after the good reload"
# A broken file: an unknown scheduler in the new block.
good=$(table)
cp /etc/feedbackd/master.conf /tmp/master.conf.good
sed -i 's/^scheduler = sed$/scheduler = fastest/' /etc/feedbackd/master.conf
line=$(grep -n '^scheduler = fastest' /etc/feedbackd/master.conf | cut -d: -f1)
e0=$(jn "master.conf:$line: scheduler" -u "$M")
if systemctl reload "$M" >/tmp/reload.txt 2>&1; then
  fail "systemctl reload succeeded on a broken file"
else
  pass_note "systemctl reload refused the broken file (ExecReload= feedbackd-master -t)"
fi
evidence "systemctl reload output" cat /tmp/reload.txt
wait_for 30 "journal names master.conf:$line: scheduler (from the -t check)" jmore "$e0" "master.conf:$line: scheduler" -u "$M"
evidence "journal of the refused reload" sh -c "journalctl -q --no-pager -u $M -n 6"
[ "$(mainpid "$M")" = "$pid" ] && is_active "$M" && pass_note "same master process, active" || fail "master restarted or stopped by the refused reload"
# A bare SIGHUP reaches the master itself, which keeps what it runs.
k0=$(jn "keeping the running configuration.*master.conf:$line:" -u "$M")
kill -HUP "$pid"
wait_for 30 "journal: reload failed; keeping the running configuration, with master.conf:$line" jmore "$k0" "keeping the running configuration.*master.conf:$line:" -u "$M"
wait_for 30 "status: last reload failed: ...master.conf:$line" sh -c "systemctl show -p StatusText --value $M | grep -q 'last reload failed: .*master.conf:$line'"
[ "$(mainpid "$M")" = "$pid" ] && is_active "$M" && pass_note "same master process still running after kill -HUP" || fail "master restarted or stopped on a broken reload"
evidence "journal after kill -HUP" journalctl -q --no-pager -u "$M" -n 3
# Watch the table for a few keepalive intervals: nothing may move.
stays_for 5 "ipvsadm -Sn unchanged after the broken reloads (5 s of samples)" table_is "$good"
sched_is $VIP3 sed && pass_note "$VIP3 still scheduler sed" || fail "$VIP3 scheduler is '$(scheduler $VIP3)'"
cp /tmp/master.conf.good /etc/feedbackd/master.conf
out=$(systemctl reload "$M" 2>&1) && pass_note "the good file reloads again" || fail "reload of the good file failed: $out"
wait_for 30 "status clean after the good reload" sh -c "! systemctl show -p StatusText --value $M | grep -q 'reload failed'" ||
  evidence "master state after the good reload" systemctl show -p ActiveState,SubState,StatusText,MainPID "$M"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I11 "journald: journalctl -u feedbackd-master REALSERVER=$RS2 returns that realserver's events only, and they agree with the kernel"
journalctl -q --no-pager -u "$M" -o cat REALSERVER=$RS2 >/tmp/rs2.txt
journalctl -q --no-pager -u "$M" -o cat >/tmp/all.txt
n=$(wc -l </tmp/rs2.txt)
[ "$n" -ge 1 ] && pass_note "$n lines for REALSERVER=$RS2 (of $(wc -l </tmp/all.txt) in the master's journal)" || fail "no line for REALSERVER=$RS2"
others=$(grep -vc "$RS2" /tmp/rs2.txt || true)
[ "$others" = 0 ] && pass_note "every selected line is about $RS2" || { fail "$others selected lines do not mention $RS2"; evidence "those lines" grep -v "$RS2" /tmp/rs2.txt; }
foreign=$(grep -cE '10\.0\.0\.1[134]([^0-9]|$)' /tmp/rs2.txt || true)
[ "$foreign" = 0 ] && pass_note "no selected line mentions another realserver" || fail "$foreign selected lines mention another realserver"
# The filter selects: the unfiltered journal has other realservers' lines.
grep -qE "$RS1([^0-9]|\$)" /tmp/all.txt && ! grep -qE "$RS1([^0-9]|\$)" /tmp/rs2.txt &&
  pass_note "the unfiltered journal has $RS1's lines, the filtered one has none" || fail "no $RS1 lines to filter out"
# The events of I4 (systemctl stop), I7 (link cut) and I2 (joined).
for ev in "realserver joined" "agent sent STOP" "keepalives unanswered" "weight changed"; do
  grep -q "$ev" /tmp/rs2.txt && pass_note "event for $RS2: $ev" || fail "no '$ev' line for $RS2"
done
jr=$(journalctl -q --no-pager -u "$M" -o cat REALSERVER=$RS2 "REASON=agent sent STOP" | wc -l)
[ "$jr" -ge 1 ] && pass_note "REASON= is a field too: REALSERVER=$RS2 REASON='agent sent STOP' gives $jr line(s)" || fail "no REALSERVER=$RS2 REASON='agent sent STOP' entry"
# The last weight journald has for RS2 on each service is the kernel's.
for vs in web:$VIP1 web-wlc:$VIP2 web-sed:$VIP3; do
  jw=$(journalctl -q --no-pager -u "$M" -o verbose REALSERVER=$RS2 VIRTUAL_SERVICE=${vs%%:*} | awk -F= '/^ +WEIGHT=/ { w = $2 } END { print w }')
  kw=$(dest "${vs#*:}" $RS2 | awk '{ print $2 }')
  [ -n "$jw" ] && [ "$jw" = "$kw" ] && pass_note "VIRTUAL_SERVICE=${vs%%:*}: last WEIGHT=$jw in the journal = kernel weight $kw" ||
    fail "VIRTUAL_SERVICE=${vs%%:*}: journal's last WEIGHT='$jw', kernel weight '$kw'"
done
evidence "journalctl -u $M REALSERVER=$RS2 (last 25)" journalctl -q --no-pager -u "$M" REALSERVER=$RS2 -n 25
end

# ---------------------------------------------------------------------------
RS4=10.0.0.14
scenario_start I12 "agent.d drop-in: a new file starts feedbackd-agent@rs4 through feedbackd-agent-sync ($RS4 in IPVS, non-root agent); removing the file stops it (weight 0, then deleted)"
for i in 1 2 3; do eval "inv$i=\$(prop \"\$(agent rs$i)\" InvocationID)"; done
ipvs_evidence "before"
before=$(table)
f0=$(jn 'Finished feedbackd-agent-sync.service' -u feedbackd-agent-sync.service)
out=$(systemctl enable --now feedbackd-agent-sync.path feedbackd-agent-sync.service 2>&1) ||
  fail "systemctl enable --now feedbackd-agent-sync.path feedbackd-agent-sync.service: $out"
wait_for 30 "feedbackd-agent-sync.path active" is_active feedbackd-agent-sync.path
# Its first run finds rs1-rs3 running, started by hand: adopted, not restarted.
wait_for 60 "first feedbackd-agent-sync run finished" jmore "$f0" 'Finished feedbackd-agent-sync.service' -u feedbackd-agent-sync.service
for i in 1 2 3; do
  [ "$(prop "$(agent rs$i)" InvocationID)" = "$(eval echo \$inv$i)" ] || fail "$(agent rs$i) was restarted by the first sync run"
done
[ "$SCEN_OK" = 1 ] && pass_note "rs1-rs3 kept running (same InvocationID): adopted, not restarted"
# rs4's namespace and its drop-in first, then the file.
realserver 4 || fail "creating realserver rs4"
systemctl daemon-reload
t0=$(ms)
agent_file rs4 "monitor = constant" "value = 25"
wait_for 60 "$(agent rs4) active (started by feedbackd-agent-sync)" is_active "$(agent rs4)" &&
  log "  active $(secs_since "$t0") s after the file was written"
# By identifier, not -u: journald finds _SYSTEMD_UNIT from the sender's
# process, and a sync run may have exited before journald reads its line
# (seen once in CI: the line was there, without the unit).
wait_for 30 "feedbackd-agent-sync logged starting $(agent rs4)" jmore 0 'started unit=feedbackd-agent@rs4.service' -t feedbackd-agent-sync
wait_for 60 "$VIP1: $RS4 Route 25" dest_is $VIP1 $RS4 25 && log "  in the kernel $(secs_since "$t0") s after the file was written"
wait_for 30 "$VIP2: $RS4 Route 50, $VIP3: $RS4 Route 25" sh -c "[ \"\$(ipvsadm -Ln -t $VIP2:80 | awk '\$2 == \"$RS4:80\" { print \$3, \$4 }')\" = 'Route 50' ] && [ \"\$(ipvsadm -Ln -t $VIP3:80 | awk '\$2 == \"$RS4:80\" { print \$3, \$4 }')\" = 'Route 25' ]"
apid=$(mainpid "$(agent rs4)")
auid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' /proc/"$apid"/status 2>/dev/null)
acap=$(awk '/^CapEff:/ { print $2 }' /proc/"$apid"/status 2>/dev/null)
case $auid in
  "" | 0\ * | *\ 0\ * | *\ 0) fail "agent rs4 (pid $apid) Uid '$auid'" ;;
  *) pass_note "agent rs4 (pid $apid) runs as a non-root user: Uid $auid, CapEff $acap" ;;
esac
[ "$acap" = 0000000000000000 ] || fail "agent rs4 CapEff $acap, want none"
[ "$(readlink /proc/"$apid"/ns/net)" = "$(ip netns exec rs4 readlink /proc/self/ns/net)" ] &&
  pass_note "agent rs4 runs in network namespace rs4 (its drop-in)" || fail "agent rs4 is not in namespace rs4"
ipvs_evidence "rs4 joined"
t0=$(ms)
rm "$AD/rs4.conf"
wait_for 60 "$(agent rs4) stopped (file removed)" is_inactive "$(agent rs4)" && log "  stopped $(secs_since "$t0") s after the file was removed"
# Watch rs4's destination under $VIP1 until it is gone: it must go
# through weight 0 (quiesced by the agent's STOP) before the deletion.
seen0=no deadline=$((SECONDS + 60))
while :; do
  d=$(dest $VIP1 $RS4)
  [ "$d" = "Route 0" ] && [ $seen0 = no ] && { seen0=yes; log "  weight 0 $(secs_since "$t0") s after the file was removed"; }
  [ -z "$d" ] && break
  [ $SECONDS -lt $deadline ] || break
  sleep 0.1
done
[ $seen0 = yes ] && pass_note "$VIP1: $RS4 went to weight 0" ||
  { fail "weight 0 never observed for $RS4 on $VIP1"; evidence "master journal for $RS4" journalctl -q --no-pager -u "$M" REALSERVER=$RS4; }
dest_gone $VIP1 $RS4 && dest_gone $VIP2 $RS4 && dest_gone $VIP3 $RS4 &&
  pass_note "$RS4 deleted from $VIP1, $VIP2 and $VIP3 ($(secs_since "$t0") s after the file was removed)" || fail "$RS4 still in the table"
jr=$(journalctl -q --no-pager -u "$M" -o cat REALSERVER=$RS4 "REASON=agent sent STOP" | wc -l)
[ "$jr" -ge 1 ] && pass_note "journal: $RS4 quiesced, REASON=agent sent STOP" || fail "no REALSERVER=$RS4 REASON='agent sent STOP' entry"
for i in 1 2 3; do
  [ "$(prop "$(agent rs$i)" InvocationID)" = "$(eval echo \$inv$i)" ] || fail "$(agent rs$i) was restarted"
done
[ "$(table)" = "$before" ] && pass_note "rs1-rs3 untouched throughout: table equal to before (ipvsadm -Sn)" ||
  { fail "table differs from before"; diff <(echo "$before") <(table) | sed 's/^/    /' >>"$REPORT"; }
evidence "feedbackd-agent-sync journal" journalctl -q --no-pager -t feedbackd-agent-sync -n 30
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I13 "access control on the real system: the shared secret handed to the DynamicUser master and agents as a systemd credential (LoadCredential=, secret-file = necp-secret), allow = 10.0.0.0/24; an agent without the secret and one from outside allow are refused, logged with REASON=, and never reach IPVS"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
ipvs_evidence "before"
install -m 600 /dev/null /etc/feedbackd/necp.secret
head -c 32 /dev/urandom | base64 >/etc/feedbackd/necp.secret
for u in feedbackd-agent@ feedbackd-master; do
  mkdir -p /etc/systemd/system/$u.service.d
  printf '[Service]\nLoadCredential=necp-secret:/etc/feedbackd/necp.secret\n' >/etc/systemd/system/$u.service.d/secret.conf
done
systemctl daemon-reload
# Agents first, as an operator would: an agent with a secret works with a
# master that does not ask. feedbackd-agent-sync restarts every instance
# when agent.conf changes.
inv1=$(prop "$(agent rs1)" InvocationID)
t0=$(ms)
echo 'secret-file = necp-secret' >>/etc/feedbackd/agent.conf
wait_for 90 "feedbackd-agent-sync restarted the instances for the new agent.conf" sh -c "[ \"\$(systemctl show -p InvocationID --value $(agent rs1))\" != '$inv1' ] && systemctl -q is-active $(agent rs1)"
wait_for 90 "the table as before: agents with the secret, master not asking yet" table_is "$before" &&
  log "  agents restarted with the secret and back $(secs_since "$t0") s after agent.conf changed"
# Then the master: the credential is loaded when the service starts, so a
# restart (which leaves IPVS as it is), not a reload.
cp /etc/feedbackd/master.conf /tmp/master.conf.open
sed -i '1i allow = 10.0.0.0/24\nsecret-file = necp-secret' /etc/feedbackd/master.conf
evidence "feedbackd-master -t from a shell (no credentials here: a warning, not an error)" /usr/sbin/feedbackd-master -t
pid=$(mainpid "$M")
na0=$(jn 'not authenticated' -u "$M")
t0=$(ms)
out=$(systemctl restart "$M" 2>&1) || fail "systemctl restart $M: $out"
wait_for 60 "a new master process, active" sh -c "[ \"\$(systemctl show -p MainPID --value $M)\" != '$pid' ] && systemctl -q is-active $M"
wait_for 90 "master status: 3 agents (each proved the secret)" agents_are 3
wait_for 60 "the table as before, with authentication on" table_is "$before" &&
  log "  agents authenticated and weights as before $(secs_since "$t0") s after the master restart"
[ "$(jn 'not authenticated' -u "$M")" = "$na0" ] && pass_note "no agent of rs1-rs3 was refused" || fail "an agent was refused: $(journalctl -q --no-pager -u $M | grep 'not authenticated' | tail -2)"
mpid=$(mainpid "$M")
evidence "the master's credentials (readable by its transient user only)" sh -c "ls -ln /run/credentials/$M/; grep -E '^(Uid|CapEff)' /proc/$mpid/status"
# An agent without the secret, inside allow: rs5 runs the agent binary
# itself (every templated instance shares agent.conf, which now names the
# secret), as root in its namespace.
realserver 5 || fail "creating realserver rs5"
printf 'director = 10.0.0.1\nmaster-timeout = 10\n[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 50\n' >/tmp/plain.conf
ip netns exec rs5 /usr/sbin/feedbackd-agent -d -c /tmp/plain.conf >/tmp/plain.txt 2>&1 &
plain=$!
wait_for 60 "the agent without the secret says the master requires one" grep -q 'master requires a shared secret' /tmp/plain.txt
wait_for 30 "master journal: AGENT=10.0.0.15 refused with REASON=not authenticated" sh -c "journalctl -q --no-pager -u $M -o verbose 'REASON=not authenticated' | grep -q 'AGENT=10.0.0.15:'"
# An agent with the secret, from outside allow: rs9 at 10.0.9.9 on the same
# bridge (the director answers on 10.0.9.1 too).
ip addr add 10.0.9.1/24 dev br0 &&
  net_ns rs9 10.0.9.9/24 || fail "creating rs9"
printf 'director = 10.0.9.1\nmaster-timeout = 10\nsecret-file = /etc/feedbackd/necp.secret\n[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 50\n' >/tmp/outside.conf
ip netns exec rs9 /usr/sbin/feedbackd-agent -d -c /tmp/outside.conf >/tmp/outside.txt 2>&1 &
outside=$!
wait_for 30 "master journal: AGENT=10.0.9.9 refused at accept with REASON=address not in allow" sh -c "journalctl -q --no-pager -u $M -o verbose 'REASON=address not in allow' | grep -q 'AGENT=10.0.9.9:'"
stays_for 5 "nothing of theirs reaches IPVS: ipvsadm -Sn as before (5 s of samples)" table_is "$before"
for a in 10.0.0.15 10.0.9.9; do
  ipvsadm -Sn | grep -q "$a" && fail "$a is in the IPVS table" || pass_note "$a is not in the IPVS table"
done
kill "$plain" "$outside" 2>/dev/null
wait "$plain" "$outside" 2>/dev/null
evidence "the agent without the secret" tail -3 /tmp/plain.txt
evidence "the agent outside allow" tail -3 /tmp/outside.txt
evidence "journalctl -u $M REASON=... (refusals)" sh -c "journalctl -q --no-pager -u $M 'REASON=not authenticated' 'REASON=address not in allow' | tail -6"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
# I14-I17: issue 13's interleavings on the real kernel, each one a sequence
# of events that works alone (a reload during a takeover, a tightened
# policy, a foreign write between two resyncs, a service absent for one
# reload). What must hold is asserted against ipvsadm -Sn, sampled in the
# background while the events happen, and against the state file and the
# journal.
MCONF=/etc/feedbackd/master.conf
# rs_lines RIP: RIP:80's lines in ipvsadm -Sn, sorted; rs_is RIP WANT: they
# are WANT, joined with "|".
rs_lines() { ipvsadm -Sn | grep -F -- "-r $1:80 " | sort; }
rs_is() { [ "$(rs_lines "$1" | paste -sd'|')" = "$2" ]; }
# rs_want RIP W1 W2 W3: what rs_is wants for DR weights W1/W2/W3 under
# VIP1/VIP2/VIP3.
rs_want() { printf -- '-a -t %s:80 -r %s:80 -g -w %s\n' $VIP1 "$1" "$2" $VIP2 "$1" "$3" $VIP3 "$1" "$4" | sort | paste -sd'|'; }
# reload_ok WHAT: systemctl reload, then the master's "configuration
# reloaded" line (the master has applied it: systemctl only sends SIGHUP).
reload_ok() {
  local r0 out
  r0=$(jn 'configuration reloaded' -u "$M")
  out=$(systemctl reload "$M" 2>&1) || {
    fail "systemctl reload ($1): $out"
    evidence "why (ExecReload= runs feedbackd-master -t)" journalctl -q --no-pager -u "$M" -n 6
    return 1
  }
  wait_for 30 "journal: configuration reloaded ($1)" jmore "$r0" 'configuration reloaded' -u "$M"
}
# sample_start FILE CMD...: in the background, every 0.1 s, one line
# "MS VALUE" with CMD's output lines joined by "|"; sample_stop ends it.
# The scenario's own steps (systemctl reload, waits) block; the sampler
# watches the kernel while they do.
sample_start() {
  local f=$1
  shift
  (while :; do printf '%s %s\n' "$(ms)" "$("$@" 2>&1 | paste -sd'|')"; sleep 0.1; done) >"$f" &
  SAMPLER=$!
}
sample_stop() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; }
# samples_all FILE WANT DESCRIPTION: every sample in FILE is WANT.
samples_all() {
  local f=$1 want=$2 what=$3 n bad span
  n=$(wc -l <"$f")
  bad=$(awk -v w="$want" '{ v = $0; sub(/^[0-9]+ /, "", v) } v != w { c++ } END { print c + 0 }' "$f")
  span=$(awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%.1f", (b - a) / 1000 }' "$f")
  if [ "$n" -ge 2 ] && [ "$bad" = 0 ]; then
    pass_note "$what ($n samples over $span s)"
  else
    fail "$what: $bad of $n samples (over $span s) differ from '$want'"
    evidence "the first differing samples (epoch ms, value)" sh -c "awk -v w='$want' '{ v = \$0; sub(/^[0-9]+ /, \"\", v) } v != w' '$f' | head -5"
  fi
}

# ---------------------------------------------------------------------------
scenario_start I14 "issue 13 defect 1, a reload during an agent's restart: a second instance feedbackd-agent@rs1b in rs1's namespace (health 55) takes $RS1 over, rs1's first agent is frozen with SIGSTOP (TCP connection open), systemctl reload, then the frozen one is declared dead by the keepalive timers: ipvsadm -Sn keeps $RS1 at the new instance's 55/110/55 throughout, never 0 or deleted; after SIGCONT and rs1b's removal it is at 80/160/80 again, never 0 in between"
wait_for 60 "master status: 3 agents" agents_are 3
wait_for 30 "$VIP1: $RS1 Route 80" dest_is $VIP1 $RS1 80
before=$(table)
rs1_before=$(rs_lines $RS1 | paste -sd'|')
ipvs_evidence "before"
# The frozen agent is declared dead (1 + keepalive-retries) x
# keepalive-timeout after its first unanswered KEEPALIVE: 4 s with the
# test's timers, which the reload under test must fit in for defect 1's
# interleaving (a reload while the silent session is still open). A
# session takes the timers in force at each KEEPALIVE it answers, so a
# reload to a longer keepalive-timeout first widens the window for rs1's
# agent; the reload under test restores 2 s, which the frozen agent,
# answering nothing, never takes. The window is 8 s (keepalive-timeout 4),
# about six reloads on an idle host; where a reload takes longer (a loaded
# host under emulation: 8 s were seen), a second reload makes it six of
# the measured reload. weight-law = direct for the scenario: the weights
# follow each session's health at once, not through the smoothing filter,
# so each change of owner is seen without waiting for the filter.
cp $MCONF /tmp/master.conf.i14
sed '1i weight-law = direct' /tmp/master.conf.i14 >/tmp/master.conf.i14-direct
ka=4
sed "s/^keepalive-timeout = 2\$/keepalive-timeout = $ka/" /tmp/master.conf.i14-direct >$MCONF
grep -q "^keepalive-timeout = $ka\$" $MCONF || fail "could not set keepalive-timeout = $ka in $MCONF"
t0=$(ms)
reload_ok "keepalive-timeout = $ka, weight-law = direct"
d=$(secs_since "$t0")
log "  that reload took $d s"
if awk -v d="$d" 'BEGIN { exit !(d > 1.3) }'; then
  ka=$(awk -v d="$d" 'BEGIN { printf "%d", 3 * d + 1 }')
  sed "s/^keepalive-timeout = 2\$/keepalive-timeout = $ka/" /tmp/master.conf.i14-direct >$MCONF
  reload_ok "keepalive-timeout = $ka: a window of six such reloads"
fi
apid=$(mainpid "$(agent rs1)")
# The first agent's connection, to tell its lines in the journal (AGENT=)
# from the second instance's: same address, another port.
aport=$(ip netns exec rs1 ss -Htnp state established '( dport = :3262 )' | grep -F "pid=$apid," |
  awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^10\.0\.0\.11:/) { sub(/.*:/, "", $i); print $i; exit } }')
[ -n "$aport" ] && pass_note "rs1's agent (pid $apid) is connected from $RS1:$aport" ||
  fail "no connection of rs1's agent (pid $apid) to port 3262 in namespace rs1"
a_dead() { journalctl -q --no-pager -u "$M" -o cat "AGENT=$RS1:$aport" | grep -q 'declared dead: keepalives unanswered'; }
# The second instance: the packaged template in rs1's namespace, started
# by feedbackd-agent-sync (enabled in I12) when its file appears. Started
# before the freeze, so that the freeze-to-death window holds only the
# reload: to the master a frozen agent is a live one until its timers run
# out, so the state at the reload is defect 1's either way.
mkdir -p "/etc/systemd/system/$(agent rs1b).d"
printf '[Service]\nNetworkNamespacePath=/run/netns/rs1\n' >"/etc/systemd/system/$(agent rs1b).d/netns.conf"
systemctl daemon-reload
q0=$(jn 'realserver quiesced' -u "$M" REALSERVER=$RS1)
want_b=$(rs_want $RS1 55 110 55)
t0=$(ms)
agent_file rs1b "monitor = constant" "value = 55"
wait_for 60 "$(agent rs1b) active (feedbackd-agent-sync started it)" is_active "$(agent rs1b)"
wait_for 30 "the second instance took $RS1 over: 55/110/55 under $VIP1/$VIP2/$VIP3 (ipvsadm -Sn)" rs_is $RS1 "$want_b" &&
  log "  $(secs_since "$t0") s after its file was written"
sample_start /tmp/i14.samples rs_lines $RS1
kill -STOP "$apid"
t0=$(ms)
log "  SIGSTOP to rs1's first agent $apid"
cp /tmp/master.conf.i14-direct $MCONF
reload_ok "the test's keepalive-timeout = 2 again"
if a_dead; then
  fail "the reload was applied only after the frozen agent was declared dead ($(secs_since "$t0") s after SIGSTOP): defect 1's interleaving was not produced"
else
  pass_note "the reload was applied while the frozen agent's session was open, $(secs_since "$t0") s after SIGSTOP"
fi
wait_for $((2 * ka + 30)) "journal: the frozen session (AGENT=$RS1:$aport) declared dead: keepalives unanswered" a_dead &&
  log "  $(secs_since "$t0") s after SIGSTOP"
sleep 2 # owner passes after the death: nothing may move
sample_stop
samples_all /tmp/i14.samples "$want_b" "ipvsadm -Sn: $RS1 at 55/110/55 through the reload and the frozen agent's death"
[ "$(jn 'realserver quiesced' -u "$M" REALSERVER=$RS1)" = "$q0" ] && pass_note "journal: no 'realserver quiesced' for $RS1" ||
  fail "journal: $RS1 was quiesced"
evidence "journalctl -u $M REALSERVER=$RS1 (last 6)" journalctl -q --no-pager -u "$M" REALSERVER=$RS1 -n 6
evidence "journalctl -u $M AGENT=$RS1:$aport (the frozen session)" journalctl -q --no-pager -u "$M" "AGENT=$RS1:$aport" -n 4
# Back to three agents: the frozen one resumes, finds its connection
# closed, reconnects (the newest session of $RS1 again); then the second
# instance goes, and its STOP must leave $RS1 to the first, not to 0.
t1=$(ms)
kill -CONT "$apid"
wait_for 60 "rs1's agent back after SIGCONT: $RS1 at 80/160/80 again" rs_is $RS1 "$rs1_before" &&
  log "  $(secs_since "$t1") s after SIGCONT"
sample_start /tmp/i14b.samples rs_lines $RS1
rm "$AD/rs1b.conf"
wait_for 60 "$(agent rs1b) stopped (file removed)" is_inactive "$(agent rs1b)"
sleep 1 # an owner pass after its STOP
sample_stop
samples_all /tmp/i14b.samples "$rs1_before" "ipvsadm -Sn: $RS1 at 80/160/80 while the second instance stopped"
cp /tmp/master.conf.i14 $MCONF
reload_ok "the test's configuration again"
wait_for 30 "the table as before the scenario (ipvsadm -Sn)" table_is "$before"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I15 "issue 13 defect 3, access tightened by reload: systemctl reload with allow narrowed to $RS1 and $RS2 closes rs3's connected agent (journal: closing line with REASON=address not in allow) and $RS3 goes to weight 0 under $VIP1/$VIP2/$VIP3 in one owner pass (deadline 5 s after the reload returned), then is deleted, its reconnects refused; rs1 and rs2 keep their weights throughout (ipvsadm -Sn sampled); allow restored afterwards"
wait_for 60 "master status: 3 agents" agents_are 3
wait_for 30 "$VIP1: weights 80/40/10" weights_are $VIP1 "$RS1:80 Route 80, $RS2:80 Route 40, $RS3:80 Route 10"
before=$(table)
others_lines() { table | grep -vF -- "-r $RS3:80 "; }
others0=$(others_lines | paste -sd'|')
want0=$(rs_want $RS3 0 0 0)
ipvs_evidence "before"
cp $MCONF /tmp/master.conf.i15
sed -i "s|^allow = 10.0.0.0/24\$|allow = $RS1, $RS2|" $MCONF
grep -q "^allow = $RS1, $RS2\$" $MCONF || fail "could not narrow allow in $MCONF"
c0=$(jn "reloaded access policy does not admit it.*agent=$RS3:" -u "$M" 'REASON=address not in allow')
q0=$(jn 'realserver quiesced' -u "$M" REALSERVER=$RS3 'REASON=address not in allow')
a0=$(jn "agent connection refused.*agent=$RS3:" -u "$M" 'REASON=address not in allow')
sample_start /tmp/i15.samples others_lines
t0=$(ms)
out=$(systemctl reload "$M" 2>&1) || fail "systemctl reload: $out"
tr=$(ms)
log "  systemctl reload returned after $(secs_since "$t0") s"
# Watch $RS3 until it is deleted: weight 0 first (quiesced), then gone
# after removal-interval (3 s, no connections).
seen0='' gone='' deadline=$((SECONDS + 30))
while :; do
  l=$(rs_lines $RS3 | paste -sd'|')
  [ -z "$seen0" ] && [ "$l" = "$want0" ] && seen0=$(secs_since "$tr")
  [ -z "$l" ] && { gone=$(secs_since "$tr"); break; }
  [ $SECONDS -lt $deadline ] || break
  sleep 0.1
done
sample_stop
if [ -z "$seen0" ]; then
  fail "$RS3 never seen at weight 0 under the three services (deleted at '${gone:-never}' s)"
elif awk -v t="$seen0" 'BEGIN { exit !(t <= 5) }'; then
  pass_note "$RS3 at weight 0 under $VIP1/$VIP2/$VIP3 $seen0 s after systemctl reload returned"
else
  fail "$RS3 at weight 0 only $seen0 s after systemctl reload returned (want one owner pass, deadline 5 s)"
fi
# Deleted once its active connections are 0: a destination that still
# has some (I8's traffic through the first service leaves them) stays at
# weight 0, which is what the master must do.
if [ -n "$gone" ]; then
  pass_note "$RS3 deleted $gone s after the reload (removal-interval 3 s)"
else
  left_ok=1
  while read -r _ _ vs _ rs _ _ w; do
    [ -n "$vs" ] || continue
    ac=$(ipvsadm -Ln -t "$vs" | awk -v r="$rs" '$2 == r { print $5 }')
    if [ "$w" = 0 ] && [ "${ac:-0}" -gt 0 ]; then
      pass_note "$RS3 kept at weight 0 under $vs with $ac active connections (deleted at 0)"
    else
      left_ok=0
    fi
  done <<EOF2
$(rs_lines $RS3)
EOF2
  [ $left_ok = 1 ] || fail "$RS3 not deleted within 30 s, without active connections to wait for: $(rs_lines $RS3 | paste -sd'|')"
fi
samples_all /tmp/i15.samples "$others0" "ipvsadm -Sn: rs1 and rs2 unchanged through the reload"
wait_for 10 "journal: rs3's session closed, 'the reloaded access policy does not admit it', REASON=address not in allow" \
  jmore "$c0" "reloaded access policy does not admit it.*agent=$RS3:" -u "$M" 'REASON=address not in allow'
wait_for 10 "journal: REALSERVER=$RS3 quiesced with REASON=address not in allow" \
  jmore "$q0" 'realserver quiesced' -u "$M" REALSERVER=$RS3 'REASON=address not in allow'
wait_for 10 "journal: rs3's agent reconnected and was refused at accept (REASON=address not in allow)" \
  jmore "$a0" "agent connection refused.*agent=$RS3:" -u "$M" 'REASON=address not in allow'
if rs_lines $RS3 | grep -qv ' -w 0$'; then
  fail "$RS3 back in IPVS with a weight while refused: $(rs_lines $RS3 | paste -sd'|')"
else
  pass_note "$RS3 not back in IPVS while refused (at most at weight 0, awaiting 0 connections)"
fi
evidence "journalctl -u $M REASON='address not in allow' (last 4)" journalctl -q --no-pager -u "$M" 'REASON=address not in allow' -n 4
cp /tmp/master.conf.i15 $MCONF
reload_ok "allow = 10.0.0.0/24 again"
# Its reconnect backoff grew while it was refused: a restart brings it
# back at once.
systemctl restart "$(agent rs3)" || fail "systemctl restart $(agent rs3)"
wait_for 60 "the table as before the scenario, rs3 back (ipvsadm -Sn)" table_is "$before"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
RS6=10.0.0.16
scenario_start I16 "issue 13 defect 4, another tool's destination: ipvsadm -a of $RS6 under $VIP1 (masq, weight 33) while the master runs, then an agent for $RS6 (health 70) before the next resync: that ipvsadm -Sn line stays unchanged through the agent's reports, its stop and past removal-interval; the journal shows the refusal of the add that met it (REASON=foreign destination), the state file does not keep it; the agent's $VIP2 and $VIP3 destinations come and go as usual"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
ipvs_evidence "before"
realserver 6 || fail "creating realserver rs6"
# Root, in rs6's namespace, with the secret (I13): the agent binary itself
# starts faster than a unit.
printf 'director = 10.0.0.1\nmaster-timeout = 10\nsecret-file = /etc/feedbackd/necp.secret\n[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 70\n' >/tmp/rs6.conf
# The master resyncs with the kernel every removal-interval (3 s), and a
# resync would see the new line before the agent's START: both refuse it,
# but the START must come first for defect 4's path (the master's own add
# meeting EEXIST). removal-interval = 20 defers the next resync.
cp $MCONF /tmp/master.conf.i16
sed -i 's/^removal-interval = 3$/removal-interval = 20/' $MCONF
grep -q '^removal-interval = 20$' $MCONF || fail "could not set removal-interval = 20 in $MCONF"
reload_ok "removal-interval = 20"
f0=$(jn 'not created by feedbackd.*added to IPVS by someone else' -u "$M" REALSERVER=$RS6 'REASON=foreign destination' VIRTUAL_SERVICE=web)
foreign="-a -t $VIP1:80 -r $RS6:80 -m -w 33"
foreign_line() { ipvsadm -Sn | grep -F -- "-t $VIP1:80 -r $RS6:80 "; }
ipvsadm -a -t $VIP1:80 -r $RS6:80 -m -w 33 || fail "ipvsadm -a"
[ "$(foreign_line)" = "$foreign" ] && pass_note "ipvsadm -Sn: $foreign" || fail "ipvsadm -Sn has '$(foreign_line)'"
sample_start /tmp/i16.samples foreign_line
t0=$(ms)
ip netns exec rs6 /usr/sbin/feedbackd-agent -d -c /tmp/rs6.conf >/tmp/rs6.txt 2>&1 &
ag=$!
rs6_in() { dest_is $VIP2 $RS6 140 && dest_is $VIP3 $RS6 70; }
wait_for 30 "the agent's reports reach the kernel: $RS6 Route 140 under $VIP2, Route 70 under $VIP3" rs6_in &&
  log "  $(secs_since "$t0") s after the agent started"
wait_for 10 "journal: the add under $VIP1 met the line: refused, 'not created by feedbackd', it was added to IPVS by someone else, REASON=foreign destination" \
  jmore "$f0" 'not created by feedbackd.*added to IPVS by someone else' -u "$M" REALSERVER=$RS6 'REASON=foreign destination' VIRTUAL_SERVICE=web
i16_state() { state_list | grep -qx "tcp $VIP2:80 $RS6:80" && ! state_list | grep -q "^tcp $VIP1:80 $RS6:80"; }
wait_for 10 "the state file lists $RS6 under $VIP2, not under $VIP1" i16_state
sleep 2 # two more reports (keepalive-interval 1 s)
cp /tmp/master.conf.i16 $MCONF
# (This reload's resync sees the line: foreign already.)
reload_ok "removal-interval = 3 again"
t1=$(ms)
kill "$ag"
wait "$ag"
log "  agent stopped (SIGTERM: STOP) $(secs_since "$t1") s after the kill"
wait_for 20 "$RS6 deleted from $VIP2 and $VIP3 (weight 0, then removal-interval 3 s)" sh -c "! ipvsadm -Sn | grep -qE -- '-t ($VIP2|$VIP3):80 -r $RS6:80 '" &&
  log "  $(secs_since "$t1") s after the agent's stop"
sleep 1 # past removal-interval
sample_stop
samples_all /tmp/i16.samples "$foreign" "ipvsadm -Sn: '$foreign' unchanged through the agent's START, reports and stop"
evidence "journalctl -u $M REALSERVER=$RS6" journalctl -q --no-pager -u "$M" REALSERVER=$RS6 -n 8
ipvsadm -d -t $VIP1:80 -r $RS6:80 || fail "ipvsadm -d"
wait_for 10 "after ipvsadm -d: the table as before the scenario (ipvsadm -Sn)" table_is "$before"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start I17 "issue 13 defect 5, ownership across a configuration gap: rs2's agent stopped ($RS2 quiesced), [virtual-service] web-sed ($VIP3) removed by reload, then reloaded back in: $VIP3's lines in ipvsadm -Sn and in the state file stay as they were throughout; rs2's agent back: its weight follows it under $VIP3 too; no 'not created by feedbackd' in the journal"
wait_for 60 "master status: 3 agents" agents_are 3
wait_for 30 "$RS2 at 40/80/40" rs_is $RS2 "$(rs_want $RS2 40 80 40)"
before=$(table)
rs2_before=$(rs_lines $RS2 | paste -sd'|')
ipvs_evidence "before"
evidence "state file $STATE" cat $STATE
state_list | grep -qx "tcp $VIP3:80 $RS2:80" && pass_note "the state file lists $RS2 under $VIP3" || fail "$STATE does not list tcp $VIP3:80 $RS2:80"
n0=$(jn 'not created by feedbackd' -u "$M")
# removal-interval = 20 for the scenario: the quiesced $RS2 must still be
# in IPVS when web-sed leaves the configuration (3 s would race the
# reload under emulation).
cp $MCONF /tmp/master.conf.i17
sed 's/^removal-interval = 3$/removal-interval = 20/' /tmp/master.conf.i17 >/tmp/master.conf.i17-20
awk 'BEGIN { RS = ""; ORS = "\n\n" } !/\nname = web-sed\n/' /tmp/master.conf.i17-20 >/tmp/master.conf.i17-gap
grep -q '^removal-interval = 20$' /tmp/master.conf.i17-20 && grep -q web-sed /tmp/master.conf.i17-20 &&
  ! grep -q web-sed /tmp/master.conf.i17-gap && grep -q "^address = $VIP2\$" /tmp/master.conf.i17-gap ||
  fail "could not write the configurations of the gap"
cp /tmp/master.conf.i17-20 $MCONF
reload_ok "removal-interval = 20"
systemctl stop "$(agent rs2)" || fail "systemctl stop $(agent rs2)"
wait_for 15 "$RS2 at 0 under $VIP1, $VIP2 and $VIP3 (quiesced by its STOP)" rs_is $RS2 "$(rs_want $RS2 0 0 0)"
vip3_view() {
  echo "kernel: $(ipvsadm -Sn | grep -F -- "-t $VIP3:80 " | sort | paste -sd,)"
  echo "state: $(state_list | grep -F "tcp $VIP3:80 " | paste -sd,)"
}
want=$(vip3_view | paste -sd'|')
[ "$(state_list | grep -cF "tcp $VIP3:80 ")" = 3 ] && pass_note "before the gap: $want" || fail "the state file does not list three destinations under $VIP3: $want"
sample_start /tmp/i17.samples vip3_view
cp /tmp/master.conf.i17-gap $MCONF
reload_ok "web-sed removed"
sched_is $VIP3 sed && pass_note "$VIP3 is left in IPVS (scheduler sed)" || fail "$VIP3 gone from IPVS"
sleep 1.5 # keepalives and owner passes in the gap
cp /tmp/master.conf.i17-20 $MCONF
reload_ok "web-sed back"
sleep 1.5 # rs1 and rs3 offer $VIP3 again; $RS2 waits for its agent
sample_stop
samples_all /tmp/i17.samples "$want" "$VIP3's destinations unchanged in ipvsadm -Sn and in the state file through the gap"
evidence "journal of the gap" sh -c "journalctl -q --no-pager -u $M -n 40 | grep -E 'no longer configured|adopted|reloaded|rejoined|refused' | tail -12"
t0=$(ms)
systemctl start "$(agent rs2)" || fail "systemctl start $(agent rs2)"
wait_for 60 "rs2's agent back: $RS2 at 40/80/40 under $VIP1/$VIP2/$VIP3, web-sed's destination still the master's" rs_is $RS2 "$rs2_before" &&
  log "  $(secs_since "$t0") s after systemctl start"
[ "$(jn 'not created by feedbackd' -u "$M")" = "$n0" ] && pass_note "journal: no 'not created by feedbackd' refusal during the scenario" ||
  fail "journal: $(journalctl -q --no-pager -u $M | grep 'not created by feedbackd' | tail -1)"
cp /tmp/master.conf.i17 $MCONF
reload_ok "the test's configuration again"
wait_for 30 "the table as before the scenario (ipvsadm -Sn)" table_is "$before"
state_list | grep -qx "tcp $VIP3:80 $RS2:80" && pass_note "the state file still lists $RS2 under $VIP3" || fail "$STATE lost tcp $VIP3:80 $RS2:80"
ipvs_evidence "after"
end

# O1-O5, issue 16's operator tools (feedbackctl, admin states, metrics),
# on the state the scenarios above leave.
. /usr/local/lib/e2e/ops-scenarios.sh

# V1-V4, issue 18's virtual-service options (persistence, firewall marks,
# scheduler flags, services made with ipvsadm), on the same state.
. /usr/local/lib/e2e/vsopts-scenarios.sh

# A1-A2, issue 19 under the agent unit's sandbox (an http monitor on a
# real web server, HAProxy's agent-check, the local admin file), with an
# agent instance, web server and virtual service of their own.
. /usr/local/lib/e2e/agent-scenarios.sh

# ---------------------------------------------------------------------------
NETLINK=/usr/local/lib/e2e/realipvs.test
if [ -x $NETLINK ] || [ -e /usr/local/lib/e2e/realipvs.build-failed ]; then
  # The speed of real netlink is printed as figures (figure:, goal:), for
  # docs/benchmarks.md, and never checked here: a time measured in a TCG
  # guest on a shared machine is not a defect (the same build gave 2129
  # and 795 ms). What is checked is what the tests assert: every weight
  # written, no write when nothing changed.
  scenario_start I-netlink "real netlink (test/realipvs as root, master stopped): every TestRealIPVS* test passes (all weights written, none when nothing changed), no test service left; timings printed, not checked"
  if [ -e /usr/local/lib/e2e/realipvs.build-failed ]; then
    fail "the host could not build test/realipvs"
    evidence "go test -c output" cat /usr/local/lib/e2e/realipvs.build-failed
  else
    out=$(systemctl stop "$SOCK" "$M" 2>&1) || fail "systemctl stop $SOCK $M: $out"
    wait_for 60 "$SOCK and $M stopped" sh -c "! systemctl -q is-active $SOCK && ! systemctl -q is-active $M"
    [ -z "$(ipvsadm -Ln | grep '198\.51\.100\.')" ] && pass_note "no 198.51.100.0/24 service before the test" || fail "198.51.100.0/24 services exist before the test"
    t0=$(ms)
    (cd /tmp && timeout -k 10 480 $NETLINK -test.v) >/tmp/realipvs.txt 2>&1
    rc=$?
    log "  $NETLINK -test.v: exit status $rc after $(secs_since "$t0") s"
    [ $rc = 0 ] && pass_note "the test binary exited 0" || fail "the test binary exited $rc$([ $rc = 124 ] && echo ' (killed at 480 s)')"
    # Every top-level TestRealIPVS* test that ran must have passed: a binary
    # that ran none would exit 0 having shown nothing, and a skip is not a
    # pass. (Subtests are indented; these lines are not.)
    nrun=$(grep -cE '^=== RUN   TestRealIPVS[A-Za-z0-9_]*$' /tmp/realipvs.txt || true)
    npass=$(grep -cE '^--- PASS: TestRealIPVS' /tmp/realipvs.txt || true)
    nfail=$(grep -cE '^--- FAIL: TestRealIPVS' /tmp/realipvs.txt || true)
    nskip=$(grep -cE '^--- SKIP: TestRealIPVS' /tmp/realipvs.txt || true)
    failed_names=$(grep -E '^--- (FAIL|SKIP): TestRealIPVS' /tmp/realipvs.txt | awk '{ print $3 }' | paste -sd' ' || true)
    if [ "$nrun" -ge 1 ] && [ "$npass" = "$nrun" ]; then
      pass_note "$nrun TestRealIPVS* tests ran, all passed"
    elif [ "$nrun" = 0 ]; then
      fail "no TestRealIPVS* test ran"
    else
      fail "$nrun TestRealIPVS* tests ran: $npass passed, $nfail failed, $nskip skipped, $((nrun - npass - nfail - nskip)) unfinished${failed_names:+ ($failed_names)}"
    fi
    left=$(ipvsadm -Ln | grep -c '198\.51\.100\.' || true)
    [ "$left" = 0 ] && pass_note "no 198.51.100.0/24 service left behind" || fail "$left 198.51.100.0/24 lines left in the table"
    evidence "timings (figures, not checked; see docs/benchmarks.md)" grep -E 'figure:|goal:' /tmp/realipvs.txt
    evidence "full output" cat /tmp/realipvs.txt
  fi
  end
else
  log ""
  log "=== I-netlink: not run (no test/realipvs in this checkout); not counted"
fi

# ---------------------------------------------------------------------------
# I18, issue 17 item 4: IPv6 end to end on the real kernel. The same
# namespaces and bridge get IPv6 addresses (nodad: no 1-2 s duplicate
# address detection to wait for); a second agent instance per realserver,
# feedbackd-agent@rsNv6 in rsN's namespace, connects to the master over
# IPv6 (its agent.d file sets director = [2001:db8:1::1]:3262), so the
# master sees 2001:db8:1::1N as the peer and joins it to the IPv6 VIP
# only. LVS-DR over IPv6: $VIP6 on the director's lo and on each
# realserver's lo (IPv6 neighbour discovery answers only for addresses of
# the receiving interface, so lo needs no arp_ignore counterpart).
# Written for issue 17; not run yet when it was added.
VIP6=2001:db8::80
D6=2001:db8:1::1
scenario_start I18 "IPv6: agents connected over IPv6 (director = [$D6]:3262) register 2001:db8:1::11-13 under the IPv6 VIP [$VIP6]:80 (DR, weights 60/30/10), none under the IPv4 VIPs; real HTTP over IPv6 through the VIP is spread as the weights say; journal REALSERVER= and feedbackctl show the IPv6 addresses"
# w6: "[RIP]:PORT FORWARDING WEIGHT" of every destination of [VIP6]:80.
w6() {
  ipvsadm -Ln -t "[$VIP6]:80" 2>/dev/null | awk '$1 == "->" && $2 ~ /^\[/ { print $2, $3, $4 }' | sort | paste -sd, | sed 's/,/, /g'
}
w6_are() { [ "$(w6)" = "$1" ]; }
ok=1
ip -6 addr add $D6/64 dev br0 nodad 2>>"$REPORT" || ok=0
ip -6 addr add $VIP6/128 dev lo 2>>"$REPORT" || ok=0
for i in 1 2 3; do
  n=rs$i
  ip -n $n -6 addr add 2001:db8:1::1$i/64 dev eth0 nodad 2>>"$REPORT" || ok=0
  ip -n $n -6 addr add $VIP6/128 dev lo 2>>"$REPORT" || ok=0
  # An IPv6-only HTTP server next to I8's IPv4 one (V6Only: both own port 80).
  ip netns exec $n perl -MIO::Socket::IP -e '
    my $s = IO::Socket::IP->new(LocalHost => "::", LocalPort => 80, Listen => 64, ReuseAddr => 1, V6Only => 1) or die "listen: $!";
    while (my $c = $s->accept) { my $l = <$c>; print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n$ARGV[0]-v6\n"; close $c }
  ' $n >/dev/null 2>&1 &
done
ip -n client -6 addr add 2001:db8:1::100/64 dev eth0 nodad 2>>"$REPORT" || ok=0
ip -n client -6 route add $VIP6/128 via $D6 2>>"$REPORT" || ok=0
[ $ok = 1 ] && pass_note "IPv6 addresses on br0, rs1-rs3, client; $VIP6 on the director's and the realservers' lo" || fail "could not set up the IPv6 addresses"
evidence "IPv6 network" sh -c "ip -6 -br addr show br0; ip -6 -br addr show lo; for n in rs1 rs2 rs3 client; do ip -n \$n -6 -br addr show; done"
# The IPv6 virtual service, and the agents' prefix in allow (I13 set it).
cp $MCONF /tmp/master.conf.i18
sed -i "s|^allow = 10.0.0.0/24\$|allow = 10.0.0.0/24, 2001:db8:1::/64|" $MCONF
printf '\n[virtual-service]\nname = web6\naddress = %s\nprotocol = tcp\nport = 80\nscheduler = wrr\n' $VIP6 >>$MCONF
grep -q '^allow = 10.0.0.0/24, 2001:db8:1::/64$' $MCONF || fail "could not add 2001:db8:1::/64 to allow in $MCONF"
feedbackd-master -t -c $MCONF >/tmp/i18-t.txt 2>&1 && pass_note "feedbackd-master -t accepts the IPv6 virtual service and allow prefix" ||
  { fail "feedbackd-master -t refuses the IPv6 configuration"; evidence "-t" cat /tmp/i18-t.txt; }
# I-netlink (when it ran) stopped the socket and the master.
if is_active "$M"; then
  reload_ok "web6 added"
else
  systemctl start "$SOCK" 2>>"$REPORT" || fail "systemctl start $SOCK"
  wait_for 120 "master started again by a reconnecting agent" is_active "$M"
fi
wait_for 60 "virtual service tcp [$VIP6]:80 in the kernel" sh -c "ipvsadm -Ln -t '[$VIP6]:80' >/dev/null 2>&1"
h=([1]=60 [2]=30 [3]=10)
for i in 1 2 3; do
  u=$(agent rs${i}v6)
  mkdir -p "/etc/systemd/system/$u.d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/rs%s\n' $i >"/etc/systemd/system/$u.d/netns.conf"
done
systemctl daemon-reload
for i in 1 2 3; do
  # The drop-in exists before the file that makes feedbackd-agent-sync
  # start the instance: outside the namespace it would register the
  # director's own address.
  {
    printf 'director = [%s]:3262\n' $D6
    printf '[service]\nname = www6\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = %s\n' "${h[$i]}"
  } >"$AD/rs${i}v6.conf"
  chmod 644 "$AD/rs${i}v6.conf"
  systemctl start "$(agent rs${i}v6)" 2>>"$REPORT" || fail "systemctl start $(agent rs${i}v6)"
done
for i in 1 2 3; do wait_for 60 "$(agent rs${i}v6) active" is_active "$(agent rs${i}v6)"; done
W6="[2001:db8:1::11]:80 Route 60, [2001:db8:1::12]:80 Route 30, [2001:db8:1::13]:80 Route 10"
wait_for 90 "[$VIP6]:80: $W6" w6_are "$W6"
for i in 1 2 3; do
  ip netns exec rs$i ss -Htn state established dst "[$D6]:3262" | grep -q . &&
    pass_note "rs${i}v6's NECP session runs over IPv6 (rs$i -> [$D6]:3262 established)" ||
    fail "no established IPv6 connection from rs$i to [$D6]:3262"
done
v4=$(ipvsadm -Ln | grep -c '2001:db8:1::' || true)
[ "$v4" = 3 ] && pass_note "the IPv6 realservers are only under the IPv6 VIP (3 lines in ipvsadm -Ln)" ||
  fail "$v4 IPv6 destination lines in ipvsadm -Ln, want 3 (under [$VIP6]:80 only)"
ipvs_evidence "IPv6 service"
# Journal and feedbackctl name the IPv6 realservers as such.
[ "$(jn 'realserver joined' -u "$M" REALSERVER=2001:db8:1::11)" -ge 1 ] &&
  pass_note "journalctl -u $M REALSERVER=2001:db8:1::11 shows its join" || fail "no 'realserver joined' line with REALSERVER=2001:db8:1::11"
/usr/bin/feedbackctl status 2001:db8:1::12 >/tmp/i18-ctl.txt 2>&1 && grep -q '2001:db8:1::12' /tmp/i18-ctl.txt &&
  pass_note "feedbackctl status 2001:db8:1::12 shows it" || fail "feedbackctl status 2001:db8:1::12"
evidence "feedbackctl status 2001:db8:1::12" cat /tmp/i18-ctl.txt
# Traffic: wrr over 60/30/10 is cycles of 6:3:1, so 200 connections are
# 20 whole cycles. Tolerance: 3 percentage points, as in I8.
# get6.pl VIP N: N HTTP/1.0 requests, one connection each; prints the
# answers' "rsN-v6" lines.
cat >/tmp/get6.pl <<'PERL'
use IO::Socket::IP;
for (1 .. $ARGV[1]) {
  my $c = IO::Socket::IP->new(PeerHost => $ARGV[0], PeerPort => 80, Timeout => 5) or next;
  print $c "GET / HTTP/1.0\r\n\r\n";
  while (my $l = <$c>) { print $l if $l =~ /^rs/ }
}
PERL
wait_for 30 "an HTTP answer through [$VIP6]:80" sh -c "ip netns exec client perl /tmp/get6.pl $VIP6 1 | grep -q -- '-v6\$'"
N=200
t0=$(ms)
ip netns exec client perl /tmp/get6.pl $VIP6 $N >/tmp/answers6.txt 2>/dev/null
got=$(grep -c -- '-v6$' /tmp/answers6.txt || true)
log "  $got answers to $N IPv6 requests in $(secs_since "$t0") s"
[ "$got" -ge $((N * 95 / 100)) ] && pass_note "$got of $N IPv6 requests answered" || fail "only $got of $N IPv6 requests answered"
for i in 1 2 3; do
  c=$(grep -c "^rs$i-v6\$" /tmp/answers6.txt || true)
  share=$(awk -v c="$c" -v n="$got" 'BEGIN { printf "%.1f", 100 * c / (n ? n : 1) }')
  want=$(awk -v w="${h[$i]}" 'BEGIN { printf "%.1f", w }') # the weights add up to 100
  log "  rs$i: weight ${h[$i]}, $c answers = $share % (weights say $want %)"
  awk -v a="$share" -v b="$want" 'BEGIN { d = a - b; exit !(d <= 3 && d >= -3) }' &&
    pass_note "rs$i share $share % within 3 points of $want %" || fail "rs$i share $share %, weights say $want %"
done
evidence "kernel counters after the IPv6 traffic" ipvsadm -Ln --stats -t "[$VIP6]:80"
for i in 1 2 3; do rm -f "$AD/rs${i}v6.conf"; systemctl stop "$(agent rs${i}v6)" 2>/dev/null; done
end

# I19, issue 17's gap: mixed address families. The kernel takes an IPv6
# realserver under an IPv4 virtual service only by tunnel and only when the
# destination's family is sent, which the master's own netlink piece does.
# Control plane only: configuration, join, kernel table, refusal; no
# traffic (the guest kernel has no ip6_tunnel to decapsulate it).
MVIP=192.0.2.90
scenario_start I19 "mixed families: the IPv4 VIP $MVIP:8090 with mixed-family = yes takes rs1's IPv6 address 2001:db8:1::11 as a Tunnel realserver (agent over IPv6, weight 40); rs2 asking DR across families is refused with REASON=address family mismatch; -t refuses mixed-family with forwarding = DR"
wm() { ipvsadm -Ln -t "$MVIP:8090" 2>/dev/null | awk '$1 == "->" && $2 ~ /^\[/ { print $2, $3, $4 }' | sort | paste -sd, | sed 's/,/, /g'; }
wm_are() { [ "$(wm)" = "$1" ]; }
printf '[virtual-service]\nname = bad\naddress = %s\nprotocol = tcp\nport = 8091\nforwarding = DR\nmixed-family = yes\n' $MVIP >/tmp/i19-bad.conf
if feedbackd-master -t -c /tmp/i19-bad.conf >/tmp/i19-t.txt 2>&1; then
  fail "feedbackd-master -t accepts mixed-family = yes with forwarding = DR"
else
  grep -q 'i19-bad.conf:7: mixed-family' /tmp/i19-t.txt && pass_note "-t refuses mixed-family with forwarding = DR, naming file:line:key" ||
    { fail "-t's error does not name i19-bad.conf:7: mixed-family"; evidence "-t" cat /tmp/i19-t.txt; }
fi
printf '\n[virtual-service]\nname = mixed4\naddress = %s\nprotocol = tcp\nport = 8090\nscheduler = wrr\nmixed-family = yes\n' $MVIP >>$MCONF
reload_ok "mixed4 added"
wait_for 60 "virtual service tcp $MVIP:8090 in the kernel" sh -c "ipvsadm -Ln -t '$MVIP:8090' >/dev/null 2>&1"
r0=$(jn 'refused service' -u "$M" "REASON=address family mismatch")
for i in 1 2; do
  u=$(agent rs${i}mix)
  mkdir -p "/etc/systemd/system/$u.d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/rs%s\n' $i >"/etc/systemd/system/$u.d/netns.conf"
done
systemctl daemon-reload
fwd=([1]=TUN [2]=DR)
for i in 1 2; do
  {
    printf 'director = [%s]:3262\n' $D6
    printf '[service]\nname = mix\nprotocol = tcp\nport = 8090\nforwarding = %s\nmonitor = constant\nvalue = 40\n' "${fwd[$i]}"
  } >"$AD/rs${i}mix.conf"
  chmod 644 "$AD/rs${i}mix.conf"
  systemctl start "$(agent rs${i}mix)" 2>>"$REPORT" || fail "systemctl start $(agent rs${i}mix)"
done
WM="[2001:db8:1::11]:8090 Tunnel 40"
wait_for 90 "$MVIP:8090: $WM" wm_are "$WM"
wait_for 60 "journal: rs2's DR claim across families refused (REASON=address family mismatch)" jmore "$r0" 'refused service' -u "$M" "REASON=address family mismatch"
stays_for 4 "only the tunnel realserver under $MVIP:8090" wm_are "$WM"
ipvs_evidence "mixed families"
evidence "the refusal" journalctl -q --no-pager -u "$M" "REASON=address family mismatch" -n 3
for i in 1 2; do rm -f "$AD/rs${i}mix.conf"; systemctl stop "$(agent rs${i}mix)" 2>/dev/null; done
end

# ---------------------------------------------------------------------------
log ""
evidence "master warnings and errors (whole run)" journalctl -q -u "$M" -p warning --no-pager
evidence "units" systemctl list-units --no-pager --all 'feedbackd*'
evidence "failed units" systemctl list-units --no-pager --failed
journalctl --no-pager -o short-monotonic >/mnt/out/journal.txt 2>&1
{
  printf 'boot_s=%s\nscenarios_s=%s\n' "$BOOT_S" "$(awk -v a="${T_START/./}" -v b="${EPOCHREALTIME/./}" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')"
  for t in "${SCEN_TIMES[@]}"; do echo "scenario_${t% *}_s=${t#* }"; done
} >/mnt/out/timings.txt
echo DONE >>"$RESULTS"
progress "done"
systemctl --no-block poweroff
