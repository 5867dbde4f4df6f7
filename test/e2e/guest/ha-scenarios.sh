#!/bin/bash
# HA director pair scenarios (issue 17, items 2 and 3), run inside the QEMU
# guest by test/e2e/ha.sh: Debian 12's own kernel, systemd as PID 1,
# Debian's keepalived in the image. The guest boots without feedbackd; H0
# installs the packages built from this checkout with apt.
#
# Layout inside the guest, one bridge br0 (the root namespace only holds
# it; its 10.0.0.1 is unused):
#   dir1, dir2  the two directors, network namespaces (IPVS tables are per
#               namespace): eth0 10.0.0.2 and 10.0.0.3. Each runs its own
#               feedbackd-master (feedbackd-master-dirN.socket/.service,
#               copies of the packaged units with NetworkNamespacePath=,
#               a state directory and control socket of their own) and its
#               own keepalived (VRRP only, keepalived-dirN.service) for the
#               VIP 10.0.0.10, and the kernel's IPVS connection sync
#               daemons (master and backup in both).
#   rs1..rs3    realservers 10.0.0.11-13, the VIP on lo (LVS-DR), a tiny
#               HTTP server, and feedbackd-agent@rsN reporting to BOTH
#               directors (director = 10.0.0.2, 10.0.0.3) from an exec
#               monitor that reads /etc/feedbackd/rsN.health.
#   client      10.0.0.100, on the same segment: it finds the VIP by ARP,
#               so whichever director holds it (and sent the gratuitous
#               ARPs) gets the traffic.
#
# Why LVS-DR: the realservers answer the client directly, so the return
# path does not depend on which director is active; only the way in moves
# with the VIP (keepalived's gratuitous ARP). With LVS-NAT the replies
# must go back through the active director, so the realservers' default
# gateway would have to be a second VRRP address that moves together with
# the VIP (a vrrp_sync_group), and a failover would also break the NAT
# state of every connection the sync daemon had not yet copied.
#
# Every weight is read from the kernel (ipvsadm in each namespace), every
# VIP move from ip addr, every answer from the client itself. Failover
# times and failed requests are figures (figures.txt and the report), not
# pass/fail limits: the guest runs under software emulation. Every wait
# has a deadline.
set -u

for _ in $(seq 150); do
  mountpoint -q /mnt/out && break
  mount /mnt/out 2>/dev/null || sleep 0.2
done
mountpoint -q /mnt/out || { echo "e2e-ha: the 9p share /mnt/out is not mounted"; exit 1; }
. /usr/local/lib/e2e/lib.sh
. /usr/local/lib/e2e/net.sh
read -r BOOT_S _ </proc/uptime
T_START=$EPOCHREALTIME
FIGURES=/mnt/out/figures.txt
: >"$FIGURES"

VIP=10.0.0.10
DIRS="dir1 dir2"
declare -A DIP=([dir1]=10.0.0.2 [dir2]=10.0.0.3)
RS1=10.0.0.11 RS2=10.0.0.12 RS3=10.0.0.13
AD=/etc/feedbackd/agent.d
STAGED=/usr/local/lib/e2e/etc
DEBDIR=/usr/local/lib/e2e/debs
SYNCID=17

progress() { echo "e2e-ha: $*"; }
figure() { log "  figure: $*"; echo "$SCEN: $*" >>"$FIGURES"; }
us() { echo "${EPOCHREALTIME/./}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'; }

master() { echo "feedbackd-master-$1.service"; }
msock() { echo "feedbackd-master-$1.socket"; }
ka() { echo "keepalived-$1.service"; }
agent() { echo "feedbackd-agent@$1.service"; }
inns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# weights NS: "RIP:PORT FORWARDING WEIGHT" of every destination of the
# VIP's service in NS's IPVS table, sorted, joined by ", ".
weights() {
  inns "$1" ipvsadm -Ln -t "$VIP:80" 2>/dev/null | awk '$1 == "->" && $2 ~ /^[0-9]/ { print $2, $3, $4 }' | sort | paste -sd, | sed 's/,/, /g'
}
weights_are() { local n=$1; shift; [ "$(weights "$n")" = "$*" ]; }
both_are() { weights_are dir1 "$*" && weights_are dir2 "$*"; }
want() { echo "$RS1:80 Route $1, $RS2:80 Route $2, $RS3:80 Route $3"; }
# no_weight NS: every destination in NS at weight 0, or none left.
no_weight() { ! inns "$1" ipvsadm -Ln -t "$VIP:80" | awk '$1 == "->" && $2 ~ /^[0-9]/ && $4 != 0 { bad = 1 } END { exit !bad }'; }
weight_of() { inns "$1" ipvsadm -Ln -t "$VIP:80" | awk -v d="$2:80" '$2 == d { print $4 }'; }
has_vip() { ip -n "$1" -4 addr show dev eth0 | grep -q " $VIP/"; }
vip_holder() { local d h=; for d in $DIRS; do has_vip "$d" && h="$h$d "; done; echo "${h% }"; }
vip_only_on() { [ "$(vip_holder)" = "$1" ]; }
set_health() { echo "$2" >"/etc/feedbackd/$1.health"; }
# conn_on NS PORT: NS's connection table has the client's connection from
# 10.0.0.100:PORT to the VIP, ESTABLISHED.
conn_on() { inns "$1" ipvsadm -Lnc | awk -v c="10.0.0.100:$2" '$3 == "ESTABLISHED" && $4 == c { f = 1 } END { exit !f }'; }
tables_evidence() {
  local d
  for d in $DIRS; do evidence "$d: ipvsadm -Ln --stats ($1)" inns "$d" ipvsadm -Ln --stats; done
}

end() {
  if [ "$SCEN_OK" != 1 ]; then
    local d
    for d in $DIRS; do
      evidence "$d master journal (last 30 lines)" journalctl -q -u "$(master "$d")" -n 30 --no-pager
      evidence "$d keepalived journal (last 15 lines)" journalctl -q -u "$(ka "$d")" -n 15 --no-pager
    done
    evidence "agent journals (last 20 lines)" journalctl -q -u 'feedbackd-agent@*' -n 20 --no-pager
    evidence "VIP holders" vip_holder
    tables_evidence "at the failure"
  fi
  scenario_end
  progress "$SCEN $(tail -1 "$RESULTS" | cut -d' ' -f1) (${SCEN_TIMES[-1]#* } s)"
}

# --- the client's two programs (perl-base: IO::Socket::INET, IO::Select) --
# client_loop LOG STOPFILE: one HTTP/1.0 request to the VIP after another
# (a new connection each; 1 s to connect, 1 s of silence ends a read),
# each result a line "MICROSECONDS ok rsN" or "MICROSECONDS fail WHY",
# until STOPFILE exists. Timestamps are taken by bash as the lines come.
cat >/tmp/client.pl <<'PERL'
use strict; use IO::Socket::INET; use IO::Select;
$| = 1; $SIG{PIPE} = 'IGNORE';
my ($vip, $stop) = @ARGV;
until (-e $stop) {
  my $s = IO::Socket::INET->new(PeerAddr => $vip, PeerPort => 80, Proto => 'tcp', Timeout => 1);
  if (!$s) { print "fail connect\n"; select(undef, undef, undef, 0.05); next }
  print $s "GET / HTTP/1.0\r\n\r\n";
  my $sel = IO::Select->new($s); my $body = '';
  while ($sel->can_read(1)) { my $n = sysread($s, my $b, 4096); last unless $n; $body .= $b }
  close $s;
  print $body =~ /^(rs\d+)\r?$/m ? "ok $1\n" : "fail read\n";
  select(undef, undef, undef, 0.05);
}
PERL
# held_conn LOG STOPFILE: ONE connection to the VIP, held open: "HOLD",
# then a "PING n" every 0.5 s, each echoed by the realserver. Lines:
# "port P", "hold rsN", "ok rsN PING n", or "fail ..." (then it exits).
# A ping may wait 20 s for its echo: TCP retransmits across a failover.
cat >/tmp/held.pl <<'PERL'
use strict; use IO::Socket::INET; use IO::Select;
$| = 1; $SIG{PIPE} = 'IGNORE';
my ($vip, $stop) = @ARGV;
my $s = IO::Socket::INET->new(PeerAddr => $vip, PeerPort => 80, Proto => 'tcp', Timeout => 5) or do { print "fail connect\n"; exit 1 };
print "port ", $s->sockport, "\n";
my $sel = IO::Select->new($s);
sub line { my $t = shift; my $l = ''; while ($sel->can_read($t)) { my $n = sysread($s, my $c, 1); return undef unless $n; return $l if $c eq "\n"; $l .= $c } return undef }
print $s "HOLD\n";
my $a = line(10); defined $a or do { print "fail hold\n"; exit 1 };
print "hold $a\n";
my $i = 0;
until (-e $stop) {
  $i++;
  print $s "PING $i\n" or do { print "fail write $i: $!\n"; exit 1 };
  my $r = line(20); defined $r or do { print "fail ping $i: ", ($! || "closed or timed out"), "\n"; exit 1 };
  print "ok $r\n";
  select(undef, undef, undef, 0.5);
}
PERL
# The realservers' server: an HTTP/1.0 answer with the realserver's name,
# or, after "HOLD", an echo of every line on that connection (in a child,
# so that the accept loop goes on). A client that goes quiet costs it 2 s
# at most.
cat >/tmp/server.pl <<'PERL'
use strict; use IO::Socket::INET;
$SIG{CHLD} = 'IGNORE'; $SIG{PIPE} = 'IGNORE';
my $name = shift;
my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 128, ReuseAddr => 1) or die "listen: $!";
while (1) {
  my $c = $s->accept or next;
  my $l = eval { local $SIG{ALRM} = sub { die "timeout\n" }; alarm 2; my $x = <$c>; alarm 0; $x };
  if (defined $l && $l =~ /^HOLD/) {
    if (!fork) { $c->autoflush(1); print $c "$name\n"; while (my $x = <$c>) { print $c "$name $x" } exit 0 }
    close $c; next;
  }
  print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n$name\n" if defined $l;
  close $c;
}
PERL

# start_client NAME: client_loop in the client namespace, in the
# background; stop_client NAME ends it (deadline 10 s).
start_client() {
  rm -f "/tmp/$1.stop"
  ip netns exec client perl /tmp/client.pl $VIP "/tmp/$1.stop" 2>/dev/null |
    while IFS= read -r l; do echo "${EPOCHREALTIME/./} $l"; done >"/tmp/$1.log" &
  eval "CLIENT_$1=$!"
}
stop_client() {
  local pid
  eval "pid=\$CLIENT_$1"
  touch "/tmp/$1.stop"
  local end=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { fail "client $1 did not stop within 10 s"; kill "$pid"; }
  return 0
}
start_held() {
  rm -f "/tmp/$1.stop"
  ip netns exec client perl /tmp/held.pl $VIP "/tmp/$1.stop" 2>/dev/null |
    while IFS= read -r l; do echo "${EPOCHREALTIME/./} $l"; done >"/tmp/$1.log" &
}
held_port() { awk '$2 == "port" { print $3 }' "/tmp/$1.log"; }
held_rs() { awk '$2 == "hold" { print $3 }' "/tmp/$1.log"; }
# oks_after LOG T: answers received after T (microseconds).
oks_after() { awk -v t="$2" '$1 > t && $2 == "ok"' "/tmp/$1.log" | wc -l; }
# held_ok_after NAME T: the held connection echoed a ping after T.
held_ok_after() { awk -v t="$2" '$1 > t && $2 == "ok" { f = 1 } END { exit !f }' "/tmp/$1.log"; }

# client_figures NAME T_EVENT: the client's figures around an event:
# requests, answered, failed, the longest time without an answer, and
# when the first answer after the event came.
client_figures() {
  awk -v t="$2" '
    { n++ }
    $2 == "ok" { ok++; if (last && $1 - last > gap) gap = $1 - last; last = $1; if ($1 > t && !first) first = $1 }
    $2 == "fail" { f++; if ($1 > t) fa++; why[$3]++ }
    END {
      w = ""; for (k in why) w = w sprintf("%s%s %d", (w ? ", " : ""), k, why[k])
      printf "%d requests, %d answered, %d failed (%s); longest time without an answer %.2f s; first answer %.2f s after the event\n",
        n, ok, f + 0, (w ? w : "none"), gap / 1e6, (first ? (first - t) / 1e6 : -1)
    }' "/tmp/$1.log"
}

# spread_check NAME T DIR: the answers after T, per realserver, against
# DIR's weights (the director that served them). wrr is deterministic, so
# the shares are exact up to the one cycle in progress: 5 points allowed.
spread_check() {
  local name=$1 t=$2 d=$3 i w c total share wantp sum=0
  total=$(oks_after "$name" "$t")
  for i in 1 2 3; do sum=$((sum + $(weight_of "$d" 10.0.0.1$i))); done
  [ "$total" -gt 0 ] && [ "$sum" -gt 0 ] || { fail "no answers after the failover ($total) or no weight on $d ($sum)"; return; }
  for i in 1 2 3; do
    w=$(weight_of "$d" 10.0.0.1$i)
    c=$(awk -v t="$t" -v r="rs$i" '$1 > t && $2 == "ok" && $3 == r' "/tmp/$name.log" | wc -l)
    share=$(awk -v c="$c" -v n="$total" 'BEGIN { printf "%.1f", 100 * c / n }')
    wantp=$(awk -v w="$w" -v s="$sum" 'BEGIN { printf "%.1f", 100 * w / s }')
    log "  rs$i: weight $w on $d, $c of $total answers after the failover = $share % (weights say $wantp %)"
    awk -v a="$share" -v b="$wantp" 'BEGIN { d = a - b; exit !(d <= 5 && d >= -5) }' &&
      pass_note "rs$i: $share % of the answers, within 5 points of $wantp % ($d's weights)" ||
      fail "rs$i: $share % of the answers, $d's weights say $wantp %"
  done
}

# failover NAME CUT_CMD FROM TO: the client runs; CUT_CMD fails director
# FROM; TO must take the VIP; then N answers are collected. Sets T_EV and
# T_VIP (microseconds).
N_AFTER=126
failover() {
  local name=$1 cut=$2 from=$3 to=$4 hname=${1}-held port hrs c0 c1
  start_held "$hname"
  wait_for 20 "a connection held open through the VIP on $from (answered)" grep -q ' hold rs' "/tmp/$hname.log" || return
  port=$(held_port "$hname") hrs=$(held_rs "$hname")
  log "  held connection: client port $port, realserver $hrs"
  wait_for 20 "$to knows the held connection (IPVS connection sync): ESTABLISHED 10.0.0.100:$port in its ipvsadm -Lnc" conn_on "$to" "$port"
  evidence "$to: ipvsadm -Lnc (synced from $from)" inns "$to" ipvsadm -Lnc
  evidence "$to: ipvsadm -Ln (ActiveConn with the synced connection)" inns "$to" ipvsadm -Ln
  c0=$(inns "$to" ipvsadm -Ln --stats -t "$VIP:80" | awk '$1 == "TCP" { print $3 }')
  start_client "$name"
  wait_for 30 "the client's answers come through $from" sh -c "[ \$(grep -c ' ok ' /tmp/$name.log) -ge 10 ]" || return
  T_EV=$(us)
  eval "$cut" || fail "$cut"
  log "  $(date -u +%T.%N | cut -c1-12): $cut"
  if wait_for 30 "the VIP only on $to" vip_only_on "$to"; then T_VIP=$(us); else T_VIP=$(us); fi
  figure "VIP on $to $(secs "$T_EV" "$T_VIP") s after: $cut"
  local end=$((SECONDS + 120))
  while [ "$(oks_after "$name" "$T_VIP")" -lt $N_AFTER ] && [ $SECONDS -lt $end ]; do sleep 0.5; done
  [ "$(oks_after "$name" "$T_VIP")" -ge $N_AFTER ] && pass_note "$N_AFTER answers through $to after the VIP moved" ||
    fail "only $(oks_after "$name" "$T_VIP") answers within 120 s after the VIP moved"
  held_ok_after "$hname" "$T_VIP" && pass_note "the held connection ($hrs) still echoes after the failover (synced connection used by $to)" ||
    fail "the held connection did not survive the failover: $(tail -1 "/tmp/$hname.log")"
  touch "/tmp/$hname.stop"
  stop_client "$name"
  # Kernel 6.1 sums its per-CPU IPVS counters into what ipvsadm --stats
  # reads only every 2 s (the rate estimator's timer): wait for them.
  conns_on() { inns "$to" ipvsadm -Ln --stats -t "$VIP:80" | awk '$1 == "TCP" { print $3 }'; }
  counted() { [ $(($(conns_on) - c0)) -ge $N_AFTER ]; }
  wait_for 10 "$to's IPVS counts the $N_AFTER connections (ipvsadm --stats; summed every 2 s)" counted
  c1=$(conns_on)
  [ $((c1 - c0)) -ge $N_AFTER ] && pass_note "$to's IPVS counted $((c1 - c0)) new connections (the traffic went through $to)" ||
    fail "$to's IPVS counted only $((c1 - c0)) new connections"
  figure "client: $(client_figures "$name" "$T_EV")"
  figure "held connection: $(grep -c ' ok ' "/tmp/$hname.log") echoes, $(grep -c ' fail' "/tmp/$hname.log") failures, last: $(tail -1 "/tmp/$hname.log" | cut -d' ' -f2-)"
  spread_check "$name" "$T_VIP" "$to"
  evidence "held connection log" cat "/tmp/$hname.log"
  evidence "client log: failures and the answers around them" awk '$2 == "fail" { print; n++ } END { print n + 0, "failures" }' "/tmp/$name.log"
}

progress "started, guest uptime ${BOOT_S}s"
log "feedbackd HA director pair tier (QEMU TCG), $(date -u +%FT%TZ)"
log "kernel $(uname -r); $(systemctl --version | head -1); $(ipvsadm --version 2>&1 | head -1); $(keepalived --version 2>&1 | sed -n 1p)"
log "guest uptime when the scenarios started: ${BOOT_S} s"

# ---------------------------------------------------------------------------
scenario_start H0 "setup: apt install of the built .deb packages; two director namespaces each with feedbackd-master (the packaged units, copied per namespace) and keepalived (VRRP only), IPVS connection sync both ways; three DR realservers with agents reporting to both directors; a client"
if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600 \
  $DEBDIR/lvs-feedbackd-master_*.deb $DEBDIR/lvs-feedbackd-agent_*.deb </dev/null >/tmp/apt.txt 2>&1; then
  pass_note "apt-get install of $(cd $DEBDIR && echo *.deb)"
else
  fail "apt-get install failed"
  evidence "apt-get install output" cat /tmp/apt.txt
fi
install -m644 $STAGED/master.conf $STAGED/agent.conf /etc/feedbackd/
out=$(/usr/sbin/feedbackd-master -t 2>&1) && pass_note "feedbackd-master -t accepts master.conf" || fail "feedbackd-master -t: $out"
# The modules the packaged modules-load.d file names (the guest booted
# without it); sysctls and the sync daemon need ip_vs before the masters.
systemctl restart systemd-modules-load.service || fail "systemctl restart systemd-modules-load.service"
grep -q '^ip_vs ' /proc/modules && pass_note "ip_vs loaded" || fail "ip_vs not loaded"
net_bridge || fail "creating br0"
for d in $DIRS; do net_ns "$d" "${DIP[$d]}/24" || fail "creating director namespace $d"; done
for i in 1 2 3; do
  n=rs$i
  net_ns $n "10.0.0.1$i/24" || fail "creating realserver $n"
  net_dr_vip $n $VIP || fail "the VIP on $n's lo"
  ip netns exec $n perl /tmp/server.pl $n >/dev/null 2>&1 &
done
net_ns client 10.0.0.100/24 || fail "creating the client namespace"
# Per director: the sysctls the recipe asks for, and the kernel's sync
# daemons. Both directors run a master AND a backup daemon, so connections
# are copied whichever way the VIP goes; keepalived's lvs_sync_daemon
# would do the same tied to the VRRP state (docs/ha.md).
for d in $DIRS; do
  inns "$d" sysctl -qw net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.expire_quiescent_template=1 || fail "$d: sysctl net.ipv4.vs.*"
  [ "$(inns "$d" sysctl -n net.ipv4.vs.expire_nodest_conn)$(inns "$d" sysctl -n net.ipv4.vs.expire_quiescent_template)" = 11 ] &&
    pass_note "$d: net.ipv4.vs.expire_nodest_conn = 1, expire_quiescent_template = 1" || fail "$d: the sysctls did not take"
  inns "$d" ipvsadm --start-daemon master --mcast-interface eth0 --syncid $SYNCID || fail "$d: ipvsadm --start-daemon master"
  inns "$d" ipvsadm --start-daemon backup --mcast-interface eth0 --syncid $SYNCID || fail "$d: ipvsadm --start-daemon backup"
  evidence "$d: ipvsadm -L --daemon" inns "$d" ipvsadm -L --daemon
done
# Two masters on one kernel: the packaged units, copied under a name per
# director (a unit cannot run twice), with the socket dependency renamed,
# and a drop-in each: the namespace, a state directory and a control
# socket of its own. (On real directors, one per machine, the packaged
# units run unchanged.)
P=/usr/lib/systemd/system
for d in $DIRS; do
  sed "s/feedbackd-master\.socket/$(msock "$d")/g" $P/feedbackd-master.service >"/etc/systemd/system/$(master "$d")"
  cp $P/feedbackd-master.socket "/etc/systemd/system/$(msock "$d")"
  mkdir -p "/etc/systemd/system/$(master "$d").d" "/etc/systemd/system/$(msock "$d").d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/%s\nStateDirectory=\nStateDirectory=lvs-feedbackd-%s\nExecStart=\nExecStart=/usr/sbin/feedbackd-master --state-file /var/lib/lvs-feedbackd-%s/master.state\n' \
    "$d" "$d" "$d" >"/etc/systemd/system/$(master "$d").d/director.conf"
  printf '[Socket]\nNetworkNamespacePath=/run/netns/%s\nListenStream=\nListenStream=3262\nListenStream=/run/feedbackd/%s.sock\n' \
    "$d" "$d" >"/etc/systemd/system/$(msock "$d").d/director.conf"
  grep -q "^Requires=$(msock "$d")$" "/etc/systemd/system/$(master "$d")" || fail "$(master "$d"): the socket dependency was not renamed"
  # keepalived: VRRP only (-P: no checker, no virtual_server), pid files
  # of its own; nopreempt: a director that comes back stays BACKUP.
  prio=150
  [ "$d" = dir2 ] && prio=100
  mkdir -p /etc/keepalived
  cat >"/etc/keepalived/$d.conf" <<CONF
global_defs {
    router_id $d
    vrrp_garp_master_delay 1
}
vrrp_instance web {
    state BACKUP
    interface eth0
    virtual_router_id 17
    priority $prio
    advert_int 1
    nopreempt
    virtual_ipaddress {
        $VIP/32 dev eth0
    }
}
CONF
  cat >"/etc/systemd/system/$(ka "$d")" <<UNIT
[Unit]
Description=keepalived VRRP for director $d
After=network-online.target
[Service]
Type=notify
NetworkNamespacePath=/run/netns/$d
ExecStart=/usr/sbin/keepalived --dont-fork --vrrp --log-detail -f /etc/keepalived/$d.conf -p /run/keepalived-$d.pid -r /run/keepalived-$d-vrrp.pid
ExecReload=/bin/kill -HUP \$MAINPID
UNIT
done
for i in 1 2 3; do
  n=rs$i
  mkdir -p "/etc/systemd/system/$(agent $n).d"
  printf '[Service]\nNetworkNamespacePath=/run/netns/%s\n' $n >"/etc/systemd/system/$(agent $n).d/netns.conf"
  printf '[service]\nname = www\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = exec\ncommand = cat /etc/feedbackd/%s.health\n' $n >"$AD/$n.conf"
  chmod 644 "$AD/$n.conf"
  out=$(/usr/sbin/feedbackd-agent -t --instance=$n 2>&1) && pass_note "feedbackd-agent -t --instance=$n: $out" || fail "feedbackd-agent -t --instance=$n: $out"
done
set_health rs1 80
set_health rs2 40
set_health rs3 20
chmod 644 /etc/feedbackd/rs*.health
systemctl daemon-reload
for d in $DIRS; do
  out=$(systemd-analyze verify --man=no "$(master "$d")" "$(msock "$d")" "$(ka "$d")" 2>&1) && [ -z "$out" ] &&
    pass_note "systemd-analyze verify: $(master "$d"), $(msock "$d"), $(ka "$d")" || fail "systemd-analyze verify ($d): $out"
  systemctl start "$(msock "$d")" || fail "systemctl start $(msock "$d")"
  wait_for 20 "$(msock "$d") listening on 3262 in namespace $d" sh -c "ip netns exec $d ss -Htln | grep -q ':3262 '"
done
# dir1 first, so that it is the one that takes the VIP.
systemctl start "$(ka dir1)" || fail "systemctl start $(ka dir1)"
wait_for 30 "VRRP: the VIP $VIP on dir1" vip_only_on dir1
systemctl start "$(ka dir2)" || fail "systemctl start $(ka dir2)"
wait_for 20 "$(ka dir2) active" is_active "$(ka dir2)"
for n in rs1 rs2 rs3; do systemctl start "$(agent $n)" || fail "systemctl start $(agent $n)"; done
for d in $DIRS; do
  wait_for 60 "$(master "$d") started by the agents (socket activation)" is_active "$(master "$d")"
  pid=$(mainpid "$(master "$d")")
  [ "$(readlink /proc/"$pid"/ns/net)" = "$(inns "$d" readlink /proc/self/ns/net)" ] &&
    pass_note "$(master "$d") (pid $pid) runs in network namespace $d" || fail "$(master "$d") is not in namespace $d"
done
evidence "network" sh -c 'ip -br addr show br0; for n in dir1 dir2 rs1 rs2 rs3 client; do echo "$n: $(ip -n $n -br addr show eth0)"; done'
end

# ---------------------------------------------------------------------------
scenario_start H1 "both directors: the same realservers at the same weights (80/40/20 from the agents' health); the VIP on dir1 only"
wait_for 60 "dir1: $(want 80 40 20)" weights_are dir1 "$(want 80 40 20)"
wait_for 60 "dir2: $(want 80 40 20)" weights_are dir2 "$(want 80 40 20)"
[ "$(inns dir1 ipvsadm -Sn)" = "$(inns dir2 ipvsadm -Sn)" ] && pass_note "ipvsadm -Sn identical in dir1 and dir2" ||
  fail "ipvsadm -Sn differs between dir1 and dir2"
vip_only_on dir1 && pass_note "the VIP on dir1 only" || fail "VIP holders: '$(vip_holder)'"
for d in $DIRS; do
  evidence "$d: feedbackctl status" feedbackctl -s "/run/feedbackd/$d.sock" status
done
tables_evidence "both directors"
evidence "agent rs1's sessions (journal)" journalctl -q -u "$(agent rs1)" --no-pager -n 8
end

# ---------------------------------------------------------------------------
scenario_start H2 "a health change reaches both directors: rs3 20 -> 60"
t0=$(us)
set_health rs3 60
wait_for 60 "dir1: $(want 80 40 60)" weights_are dir1 "$(want 80 40 60)"
t1=$(us)
wait_for 60 "dir2: $(want 80 40 60)" weights_are dir2 "$(want 80 40 60)"
t2=$(us)
figure "rs3's new weight in dir1 $(secs "$t0" "$t1") s and in dir2 $(secs "$t0" "$t2") s after its health file changed (weight-smoothing 2 s)"
both_are "$(want 80 40 60)" && pass_note "both directors at $(want 80 40 60)" || fail "dir1: $(weights dir1); dir2: $(weights dir2)"
end

# ---------------------------------------------------------------------------
scenario_start H3 "failover: systemctl stop keepalived on the active director (dir1): the VIP moves to dir2, client requests go on, spread by dir2's weights (already 80/40/60); a held connection survives (connection sync)"
failover h3 "systemctl stop $(ka dir1)" dir1 dir2
vip_only_on dir2 && pass_note "the VIP on dir2 only" || fail "VIP holders: '$(vip_holder)'"
tables_evidence "after the failover"
end

# ---------------------------------------------------------------------------
scenario_start H4 "the old active director comes back with current weights: while its keepalived is down rs1 goes 80 -> 40 (both masters follow), then its link is cut (its master quiesces) and rs2 goes 40 -> 80; link back and keepalived started: dir1 has the current weights, stays BACKUP (nopreempt), and the VIP stays on dir2"
start_client h4
set_health rs1 40
wait_for 60 "both directors: $(want 40 40 60)" both_are "$(want 40 40 60)"
t_cut=$(us)
ip link set vdir1 down || fail "ip link set vdir1 down"
log "  link of dir1 cut (vdir1 down)"
wait_for 60 "dir1 isolated: its master quiesced every destination (keepalive timeout)" no_weight dir1
figure "dir1's master quiesced its realservers $(secs "$t_cut" "$(us)") s after the cut (keepalive 1 s, timeout 2 s, 1 retry)"
tables_evidence "dir1 cut off"
set_health rs2 80
wait_for 60 "dir2: $(want 40 80 60)" weights_are dir2 "$(want 40 80 60)"
no_weight dir1 && pass_note "dir1 did not get the change while cut off" || fail "dir1 has weights while cut off: $(weights dir1)"
t_back=$(us)
ip link set vdir1 up || fail "ip link set vdir1 up"
systemctl start "$(ka dir1)" || fail "systemctl start $(ka dir1)"
wait_for 90 "dir1 back at the current weights: $(want 40 80 60)" weights_are dir1 "$(want 40 80 60)"
figure "dir1 at the current weights $(secs "$t_back" "$(us)") s after its link came back (the agents' reconnect and slow-start 2 s)"
both_are "$(want 40 80 60)" && pass_note "both directors at $(want 40 80 60)" || fail "dir1: $(weights dir1); dir2: $(weights dir2)"
stays_for 5 "the VIP stays on dir2 (dir1 rejoined as BACKUP)" vip_only_on dir2
stop_client h4
figure "client during the rejoin: $(client_figures h4 "$t_back")"
evidence "dir1 keepalived journal" journalctl -q -u "$(ka dir1)" --no-pager -n 12
tables_evidence "after the rejoin"
end

# ---------------------------------------------------------------------------
scenario_start H5 "failover back by a hard failure: dir2's link cut; the VIP moves to dir1 (VRRP advertisement timeout), client requests go on, spread by dir1's weights (40/80/60, learned while it was BACKUP); a held connection survives"
failover h5 "ip link set vdir2 down" dir2 dir1
vip_only_on dir1 && pass_note "the VIP on dir1 only" || fail "VIP holders: '$(vip_holder)'"
ip link set vdir2 up || fail "ip link set vdir2 up"
wait_for 90 "dir2 back at the current weights: $(want 40 80 60)" weights_are dir2 "$(want 40 80 60)"
stays_for 3 "the VIP stays on dir1" vip_only_on dir1
tables_evidence "at the end"
end

# ---------------------------------------------------------------------------
scenario_start H6 "the recipe's keepalived.conf (docs/ha.md) passes keepalived --config-test, alone and with the recipe's lvs_sync_daemon line in its global_defs"
DOC=/usr/local/lib/e2e/ha.md
awk '/^# \/etc\/keepalived\/keepalived.conf on lvs1/ { f = 1 } f && /^```$/ { exit } f' $DOC >/tmp/doc-ka.conf
sync_line=$(grep -m1 '^lvs_sync_daemon ' $DOC || true)
if grep -q '^vrrp_instance ' /tmp/doc-ka.conf && [ -n "$sync_line" ]; then
  sed "s/^\(    router_id lvs1\)\$/\1\n    $sync_line/" /tmp/doc-ka.conf >/tmp/doc-ka-sync.conf
  evidence "the recipe's keepalived.conf with the sync line" cat /tmp/doc-ka-sync.conf
  grep -q "^    $sync_line\$" /tmp/doc-ka-sync.conf || fail "could not add '$sync_line' to global_defs"
  # In dir1's namespace: keepalived -t wants the interface (eth0) to exist.
  for f in /tmp/doc-ka.conf /tmp/doc-ka-sync.conf; do
    out=$(inns dir1 keepalived --config-test -f $f 2>&1) && [ -z "$out" ] &&
      pass_note "keepalived --config-test -f $f: exit 0, nothing said" || fail "keepalived --config-test -f $f: $out"
  done
else
  fail "docs/ha.md has no keepalived.conf block for lvs1 or no lvs_sync_daemon line"
fi
end

# ---------------------------------------------------------------------------
log ""
for d in $DIRS; do
  evidence "$d master warnings and errors (whole run)" journalctl -q -u "$(master "$d")" -p warning --no-pager
  evidence "$d keepalived (whole run)" journalctl -q -u "$(ka "$d")" --no-pager
done
evidence "failed units" systemctl list-units --no-pager --failed
log ""
log "figures:"
sed 's/^/  /' "$FIGURES" >>"$REPORT"
journalctl --no-pager -o short-monotonic >/mnt/out/journal.txt 2>&1
{
  printf 'boot_s=%s\nscenarios_s=%s\n' "$BOOT_S" "$(awk -v a="${T_START/./}" -v b="${EPOCHREALTIME/./}" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')"
  for t in "${SCEN_TIMES[@]}"; do echo "scenario_${t% *}_s=${t#* }"; done
} >/mnt/out/timings.txt
echo DONE >>"$RESULTS"
progress "done"
systemctl --no-block poweroff
