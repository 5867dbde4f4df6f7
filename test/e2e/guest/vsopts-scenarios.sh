# Issue 18's virtual-service options on the real kernel: a persistent
# service and a firewall-mark service created by the master as its
# master.conf says (ipvsadm -Ln shows it), persistent clients sticking to
# their realserver and leaving it once it is quiesced with
# net.ipv4.vs.expire_quiescent_template = 1 (and not with 0), the sysctl
# warnings, and a service made with ipvsadm left alone with one log line
# across reloads. Sourced by ipvs-scenarios.sh after ops-scenarios.sh, in
# the guest, so it runs with what those left:
#   - three agents offering tcp/80, rs1 (constant 80), rs2 (constant 40),
#     rs3 (exec monitor, 10), and master.conf ($MCONF) with web ($VIP1),
#     web-wlc ($VIP2), web-sed ($VIP3);
#   - I8's LVS-DR set-up: arp_ignore/arp_announce in rs1-rs3, a tiny HTTP
#     server in each answering "rsN" on every address, and the "client"
#     namespace (10.0.0.100) on br0;
#   - ipvs-scenarios.sh's and ops-scenarios.sh's helpers.
# Every setting is asserted against ipvsadm, every event against the
# journal; nft (package nftables, which the guest image must list: VM_ROOT_PACKAGES in
# test/e2e/qemu/vm.sh) marks the packets of the mark service.

VIP4=192.0.2.40 # web-persist: wrr, persistence-timeout 600, netmask /24
VIP5=192.0.2.50 # marked 7 on tcp/80 and tcp/8080: web-marked, sh + sh-fallback
VIP6=192.0.2.60 # web-foreign: made with ipvsadm -A (rr), configured otherwise
MARK=7
SYS=/proc/sys/net/ipv4/vs

# svc_line SPEC: the service's line of ipvsadm -Ln (SPEC: -t VIP:80 or -f N).
svc_line() { ipvsadm -Ln $1 2>/dev/null | awk '$1 == "TCP" || $1 == "UDP" || $1 == "FWM" { print; exit }' | tr -s ' '; }
# fwm_dests: the destinations of the mark service, "RIP:PORT FORWARD WEIGHT", sorted.
fwm_dests() { ipvsadm -Ln -f $MARK 2>/dev/null | awk '$1 == "->" && $2 ~ /^[0-9]/ { print $2, $3, $4 }' | sort | paste -sd'|'; }
# answers VIP N [PORTS]: N new HTTP connections from the client namespace
# to VIP, one answer ("rsN") a line; with PORTS ("LOW HIGH"), from source
# ports in that range only. A phase that must not meet an earlier one's
# connections takes ports of its own: in DR mode IPVS sees only the
# client's half, keeps a connection entry for minutes after it closed, and
# a new connection that reuses its source port follows that entry to its
# realserver before any template or scheduler is asked. That is the likely
# cause of the one answer from the drained rs3 among 19 from rs2 that V2
# saw once, with expire_quiescent_template = 1.
ports() { ip netns exec client sh -c "echo '$1' >/proc/sys/net/ipv4/ip_local_port_range"; }
answers() {
  [ -z "${3:-}" ] || ports "$3" || fail "cannot set the client's source ports to $3"
  ip netns exec client bash -c "
    for i in \$(seq $2); do
      exec 3<>/dev/tcp/$1/80 || continue
      printf 'GET / HTTP/1.0\r\n\r\n' >&3
      grep '^rs' <&3
      exec 3<&-
    done" 2>/dev/null
}
# one_rs FILE: the one realserver that answered every line of FILE, or "".
one_rs() { [ -s "$1" ] && [ "$(sort -u "$1" | wc -l)" = 1 ] && head -1 "$1"; }
# route_vip VIP: the VIP on the director's lo and each realserver's, and
# the client's route to it through the director (I8's set-up).
route_vip() {
  ip addr add "$1/32" dev lo 2>>"$REPORT" || return 1
  for i in 1 2 3; do ip -n rs$i addr add "$1/32" dev lo 2>>"$REPORT" || return 1; done
  ip -n client route add "$1/32" via 10.0.0.1 2>>"$REPORT"
}
unroute_vip() {
  ip -n client route del "$1/32" via 10.0.0.1 2>/dev/null
  for i in 1 2 3; do ip -n rs$i addr del "$1/32" dev lo 2>/dev/null; done
  ip addr del "$1/32" dev lo 2>/dev/null
}

cp $MCONF /tmp/master.conf.v0
nodest0=$(cat $SYS/expire_nodest_conn 2>/dev/null)
quiescent0=$(cat $SYS/expire_quiescent_template 2>/dev/null)

# ---------------------------------------------------------------------------
scenario_start V1 "reload adding a persistent service ($VIP4: persistence-timeout 600, netmask 255.255.255.0) and a firewall-mark service (fwmark $MARK, agent-port 80, sh with sh-fallback): ipvsadm -Ln shows both as configured, the three agents' tcp/80 joined both (the mark's realservers on port 0); the master's journal has 'virtual service created' for each, and the expire_quiescent_template warning once, with its fix"
wait_for 60 "master status: 3 agents" agents_are 3
# The kernel defaults, so that the warning is due (restored at the end).
echo 0 >$SYS/expire_quiescent_template 2>>"$REPORT" || fail "cannot write $SYS/expire_quiescent_template"
w0=$(jn 'IPVS sysctl works against quiescing' -u "$M" SYSCTL=net.ipv4.vs.expire_quiescent_template)
c0=$(jn 'virtual service created' -u "$M")
cat >>$MCONF <<CONF

[virtual-service]
name = web-persist
address = $VIP4
protocol = tcp
port = 80
scheduler = wrr
persistence-timeout = 600
persistence-netmask = 255.255.255.0

[virtual-service]
name = web-marked
fwmark = $MARK
protocol = tcp
agent-port = 80
scheduler = sh
scheduler-flags = sh-fallback
CONF
evidence "feedbackd-master -t of the new file" feedbackd-master -t -c $MCONF
reload_ok "web-persist and web-marked added"
wait_for 30 "ipvsadm -Ln: TCP $VIP4:80 wrr persistent 600 mask 255.255.255.0" \
  sh -c "ipvsadm -Ln -t $VIP4:80 2>/dev/null | grep -Eq '^TCP +$VIP4:80 +wrr +persistent 600 mask 255\.255\.255\.0'"
wait_for 30 "ipvsadm -Ln: FWM $MARK sh, with the scheduler flag sh-fallback" \
  sh -c "ipvsadm -Ln -f $MARK 2>/dev/null | grep -E '^FWM +$MARK +sh' | grep -q 'sh-fallback'"
evidence "the two service lines (ipvsadm -Ln, and -Sn)" sh -c "ipvsadm -Ln -t $VIP4:80 | grep ^TCP; ipvsadm -Ln -f $MARK | grep ^FWM; ipvsadm -Sn | grep -E -- '-A (-t $VIP4:80|-f $MARK) '"
wait_for 30 "the three realservers under $VIP4 at 80/40/10" weights_are $VIP4 "$RS1:80 Route 80, $RS2:80 Route 40, $RS3:80 Route 10"
fwm_is() { [ "$(fwm_dests)" = "$RS1:0 Route 80|$RS2:0 Route 40|$RS3:0 Route 10" ]; }
wait_for 30 "the three realservers under FWM $MARK on port 0 at 80/40/10" fwm_is
wait_for 10 "journal: 'virtual service created' for web-persist and web-marked" \
  sh -c "[ \$(journalctl -q --no-pager -u $M | grep -c 'virtual service created') -ge $((c0 + 2)) ]"
wait_for 10 "journal: one WARN 'IPVS sysctl works against quiescing' SYSCTL=net.ipv4.vs.expire_quiescent_template, with the fix" \
  sh -c "[ \$(journalctl -q --no-pager -u $M SYSCTL=net.ipv4.vs.expire_quiescent_template | grep -c 'IPVS sysctl works against quiescing') = $((w0 + 1)) ]"
evidence "the warning, verbose" sh -c "journalctl -q --no-pager -o verbose -u $M SYSCTL=net.ipv4.vs.expire_quiescent_template -n 1 | grep -E 'MESSAGE=|SYSCTL=|FIX=|WHY='"
reload_ok "the same file again"
[ "$(jn 'IPVS sysctl works against quiescing' -u "$M" SYSCTL=net.ipv4.vs.expire_quiescent_template)" = $((w0 + 1)) ] &&
  pass_note "no second expire_quiescent_template warning at the next reload" || fail "the warning was repeated at the next reload"
ipvs_evidence "after V1"
end

# ---------------------------------------------------------------------------
scenario_start V2 "persistence on the real kernel: 20 connections from one client to $VIP4 all reach one realserver RS; feedbackctl drain RS web-persist (weight 0): with expire_quiescent_template = 0 the client's new connections still all reach RS; with 1, they all reach one other realserver; ready puts RS back"
route_vip $VIP4 || fail "could not route $VIP4 like I8 routes $VIP1"
wait_for 30 "an HTTP answer through $VIP4" ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP4/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs' <&3"
answers $VIP4 20 "20000 24999" >/tmp/v2.a
PRS=$(one_rs /tmp/v2.a)
log "  20 connections: $(sort /tmp/v2.a | uniq -c | paste -sd' ')"
if [ -n "$PRS" ]; then
  pass_note "all $(wc -l </tmp/v2.a) answers from $PRS"
else
  fail "answers from several realservers, or none: persistence did not hold"
  PRS=rs1
fi
PIP=10.0.0.1${PRS#rs}
before=$(table)
run_ctl rc out "$CTL" drain $PIP web-persist
[ "$rc" = 0 ] && pass_note "feedbackctl drain $PIP web-persist: exit 0" || fail "feedbackctl drain $PIP web-persist: exit $rc"
wait_for 10 "ipvsadm: $PIP Route 0 under $VIP4" dest_is $VIP4 $PIP 0
# expire_quiescent_template = 0: the client's template still names RS.
answers $VIP4 10 "25000 29999" >/tmp/v2.b
log "  quiescent_template 0, 10 connections: $(sort /tmp/v2.b | uniq -c | paste -sd' ')"
[ "$(one_rs /tmp/v2.b)" = "$PRS" ] && pass_note "with expire_quiescent_template = 0 the client still reaches the drained $PRS (why the master warns)" ||
  fail "with expire_quiescent_template = 0 the answers were not all from $PRS"
echo 1 >$SYS/expire_quiescent_template 2>>"$REPORT" || fail "cannot write $SYS/expire_quiescent_template"
answers $VIP4 20 "30000 34999" >/tmp/v2.c
ports "32768 60999"
log "  quiescent_template 1, 20 connections: $(sort /tmp/v2.c | uniq -c | paste -sd' ')"
NRS=$(one_rs /tmp/v2.c)
if [ -n "$NRS" ] && [ "$NRS" != "$PRS" ]; then
  pass_note "with expire_quiescent_template = 1 all $(wc -l </tmp/v2.c) answers from $NRS, none from the drained $PRS"
else
  fail "with expire_quiescent_template = 1 the answers were '$(sort -u /tmp/v2.c | paste -sd' ')', want one realserver other than $PRS"
fi
evidence "persistence templates (ipvsadm -Lnc)" sh -c "ipvsadm -Lnc | grep -F $VIP4 | head -8"
run_ctl rc out "$CTL" ready $PIP web-persist
[ "$rc" = 0 ] && pass_note "feedbackctl ready $PIP web-persist: exit 0" || fail "feedbackctl ready $PIP web-persist: exit $rc"
wait_for 30 "the table as before the drain (ipvsadm -Sn)" table_is "$before"
unroute_vip $VIP4
end

# ---------------------------------------------------------------------------
scenario_start V3 "the firewall mark on the real kernel: nft marks tcp/80 and tcp/8080 to $VIP5 with $MARK; connections to both ports go through FWM $MARK (its counters grow), and each reaches the port it asked for"
if ! command -v nft >/dev/null; then
  fail "nft is not in the guest image: add nftables to VM_ROOT_PACKAGES in test/e2e/qemu/vm.sh"
else
  nft -f - <<NFT 2>>"$REPORT" || fail "nft: could not load the marking rule"
table ip fbv3 {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    ip daddr $VIP5 tcp dport { 80, 8080 } meta mark set $MARK
  }
}
NFT
  evidence "the ruleset" nft list table ip fbv3
  route_vip $VIP5 || fail "could not route $VIP5"
  # A second HTTP server on 8080 in each realserver, answering "rsN:8080".
  for i in 1 2 3; do
    ip netns exec rs$i perl -MIO::Socket::INET -e '
      my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 64, ReuseAddr => 1) or die "listen: $!";
      while (my $c = $s->accept) { my $l = <$c>; print $c "HTTP/1.0 200 OK\r\n\r\n$ARGV[0]:8080\n"; close $c }
    ' rs$i >/dev/null 2>&1 &
  done
  conns() { ipvsadm -Ln --stats -f $MARK | awk '$1 == "FWM" { print $3; exit }'; }
  k0=$(conns)
  wait_for 30 "an HTTP answer through $VIP5:80" ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP5/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs' <&3"
  answers $VIP5 6 >/tmp/v3.80
  ip netns exec client bash -c "for i in 1 2 3 4 5 6; do exec 3<>/dev/tcp/$VIP5/8080 || continue; printf 'GET / HTTP/1.0\r\n\r\n' >&3; grep '^rs' <&3; exec 3<&-; done" >/tmp/v3.8080 2>/dev/null
  log "  port 80 answers: $(sort /tmp/v3.80 | uniq -c | paste -sd' '); port 8080 answers: $(sort /tmp/v3.8080 | uniq -c | paste -sd' ')"
  [ "$(wc -l </tmp/v3.80)" = 6 ] && ! grep -qv '^rs[123]$' /tmp/v3.80 &&
    pass_note "6 answers on port 80, all from the realservers' port 80" || fail "port 80: not 6 answers from the realservers' port 80"
  [ "$(wc -l </tmp/v3.8080)" = 6 ] && ! grep -qv '^rs[123]:8080$' /tmp/v3.8080 &&
    pass_note "6 answers on port 8080, all from the realservers' port 8080 (destination port 0 keeps the client's port)" ||
    fail "port 8080: not 6 answers from the realservers' port 8080"
  # Kernel 6.1 sums its per-CPU IPVS counters into what ipvsadm --stats
  # reads only every 2 s (the rate estimator's timer): wait for them.
  conns_grew() { [ "$(conns)" -ge $((${k0:-0} + 12)) ]; }
  wait_for 10 "FWM $MARK counts the 12 new connections (ipvsadm --stats; summed every 2 s)" conns_grew
  k1=$(conns)
  log "  FWM $MARK connections: $k0 -> $k1"
  evidence "FWM $MARK with counters" ipvsadm -Ln --stats -f $MARK
  nft delete table ip fbv3 2>/dev/null
  unroute_vip $VIP5
fi
end

# ---------------------------------------------------------------------------
scenario_start V4 "a service made with ipvsadm (TCP $VIP6:80 rr) and configured otherwise (web-foreign: wlc, persistence 300): the master leaves it as it is, with one WARN 'made outside feedbackd' across three reloads, and still adds its realservers under it"
ipvsadm -A -t $VIP6:80 -s rr || fail "ipvsadm -A -t $VIP6:80 -s rr"
f0=$(jn 'virtual service was made outside feedbackd' -u "$M" VIRTUAL_SERVICE=web-foreign)
cat >>$MCONF <<CONF

[virtual-service]
name = web-foreign
address = $VIP6
protocol = tcp
port = 80
scheduler = wlc
persistence-timeout = 300
CONF
for i in 1 2 3; do reload_ok "web-foreign, reload $i"; done
line=$(svc_line "-t $VIP6:80")
[ "$line" = "TCP $VIP6:80 rr" ] && pass_note "ipvsadm -Ln: '$line', as ipvsadm made it" || fail "ipvsadm -Ln: '$line', want 'TCP $VIP6:80 rr'"
n=$(jn 'virtual service was made outside feedbackd' -u "$M" VIRTUAL_SERVICE=web-foreign)
[ "$n" = $((f0 + 1)) ] && pass_note "journal: one 'made outside feedbackd' line for web-foreign across three reloads" ||
  fail "journal: $((n - f0)) 'made outside feedbackd' lines for web-foreign, want 1"
evidence "the line" sh -c "journalctl -q --no-pager -u $M VIRTUAL_SERVICE=web-foreign | grep 'made outside feedbackd'"
wait_for 30 "the three realservers under $VIP6 at 80/40/10" weights_are $VIP6 "$RS1:80 Route 80, $RS2:80 Route 40, $RS3:80 Route 10"
end

# ---------------------------------------------------------------------------
# Back to what the earlier scenarios left. The master never deletes a
# virtual service: the ones added here stay in IPVS (their destinations
# quiesced, later removed), which nothing after this file looks at.
cp /tmp/master.conf.v0 $MCONF
systemctl reload "$M" 2>>"$REPORT"
[ -z "$nodest0" ] || echo "$nodest0" >$SYS/expire_nodest_conn 2>/dev/null
[ -z "$quiescent0" ] || echo "$quiescent0" >$SYS/expire_quiescent_template 2>/dev/null
