# Issue 16's operator tools on the real system: feedbackctl's admin states
# (drain, maint, ready) against the kernel's IPVS table, across a master
# restart; feedbackctl status --json and the Prometheus metrics against
# ipvsadm; who may change state. Sourced by ipvs-scenarios.sh after I17,
# in the guest, so it runs with what the earlier scenarios left:
#   - three agents, rs1 (constant 80), rs2 (constant 40), rs3 (exec
#     monitor on $HEALTH, which says 10), under $VIP1 (wrr, max-weight
#     100), $VIP2 (wlc, 200) and $VIP3 (sed, 100, added by I10): the
#     weights 80/160/80, 40/80/40, 10/20/10;
#   - I8's LVS-DR set-up: $VIP1 on each realserver's lo, a tiny HTTP
#     server in rs1-rs3 (on every address), and the "client" namespace
#     routed to $VIP1 through the director; O2 does the same for $VIP3
#     and holds one connection through it;
#   - master.conf with metrics-listen = 127.0.0.1:9262 (qemu.sh writes it)
#     and the shared secret of I13;
#   - ipvs-scenarios.sh's helpers: table, rs_lines, rs_is, rs_want,
#     sample_start/sample_stop/samples_all, reload_ok, jn/jmore, dest_is,
#     dest_gone, agents_are, stays_for, end.
# Like the rest of the tier, every weight is asserted against ipvsadm, and
# every event against systemd and the journal; what feedbackctl and the
# metrics say is compared with those, never taken as the evidence.

CTL=/usr/bin/feedbackctl
ADMIN=/var/lib/lvs-feedbackd/master.admin
METRICS=http://127.0.0.1:9262/metrics

# ctl_json ARGS...: feedbackctl --json ARGS (as root).
ctl_json() { "$CTL" --json "$@"; }
# ctl_rs RIP JQ: JQ (a jq string template) for each of RIP's destinations
# in status --json, one line each, sorted.
ctl_rs() { ctl_json status "$1" | jq -r ".status.destinations[] | $2" | sort; }
# jv PATTERN JOURNALCTL-ARGS...: how many lines of the master's journal,
# in verbose form (one field a line), match PATTERN.
jv() { local pat=$1; shift; journalctl -q --no-pager -o verbose "$@" 2>/dev/null | grep -c -- "$pat"; }
# jn_ge N ARGS... / jv_ge N ARGS...: jn / jv ARGS gives at least N.
jn_ge() { local n=$1; shift; [ "$(jn "$@")" -ge "$n" ]; }
jv_ge() { local n=$1; shift; [ "$(jv "$@")" -ge "$n" ]; }
# run_ctl VAR-RC VAR-OUT [runuser -u USER --] feedbackctl ARGS: run it,
# keep its exit status and its output (stdout and stderr), and log both.
run_ctl() {
  local -n _rc=$1 _out=$2
  shift 2
  _out=$("$@" 2>&1)
  _rc=$?
  log "  \$ $* -> exit $_rc"
  printf '%s\n' "$_out" | sed 's/^/    /' >>"$REPORT"
}

# The three views of the weights, each "PROTO VIP:PORT RIP:PORT WEIGHT",
# one line per destination in IPVS, sorted:
#   view_ipvs     the kernel (ipvsadm -Ln)
#   view_ctl      feedbackctl status --json: its "kernel" where not -1
#   view_metrics  feedbackd_realserver_kernel_weight, its vs label turned
#                 into the service by the test's master.conf
view_ipvs() {
  ipvsadm -Ln | awk '$1 == "TCP" || $1 == "UDP" || $1 == "SCTP" { s = $1 " " $2 }
    $1 == "->" && $2 ~ /^[0-9]/ { print s, $2, $4 }' | sort
}
view_ctl() { ctl_json status | jq -r '.status.destinations[] | select(.kernel >= 0) | "\(.service) \(.realserver) \(.kernel)"' | sort; }
metrics() { curl -sf --max-time 10 "$METRICS"; }
view_metrics() {
  metrics | awk -v map="web=TCP $VIP1:80,web-wlc=TCP $VIP2:80,web-sed=TCP $VIP3:80" '
    BEGIN { n = split(map, a, ","); for (i = 1; i <= n; i++) { split(a[i], kv, "="); svc[kv[1]] = kv[2] } }
    index($0, "feedbackd_realserver_kernel_weight{") == 1 {
      vs = $0; sub(/.*[{,]vs="/, "", vs); sub(/".*/, "", vs)
      rs = $0; sub(/.*[{,]realserver="/, "", rs); sub(/".*/, "", rs)
      print (vs in svc ? svc[vs] : "unknown-vs=" vs), rs, $NF
    }' | sort
}
# views_agree: the three are equal and not empty.
views_agree() {
  local k c m
  k=$(view_ipvs) c=$(view_ctl) m=$(view_metrics)
  [ -n "$k" ] && [ "$k" = "$c" ] && [ "$k" = "$m" ]
}
# agreement WHEN: wait (deadline 15 s: the three reads are not one
# snapshot) for the views to agree, and log them; on failure, each view.
agreement() {
  if wait_for 15 "$1: status --json, the metrics and ipvsadm -Ln agree on all $(view_ipvs | wc -l) destinations" views_agree; then
    evidence "the agreed weights (PROTO VIP:PORT RIP:PORT WEIGHT)" view_ipvs
  else
    evidence "ipvsadm -Ln" view_ipvs
    evidence "feedbackctl --json status (kernel)" view_ctl
    evidence "$METRICS feedbackd_realserver_kernel_weight" view_metrics
  fi
}
# gauge NAME LABEL-REGEX: the value of the series of NAME whose labels
# match LABEL-REGEX (an ERE over the text between the braces).
gauge() { metrics | awk -v n="$1{" -v re="$2" 'index($0, n) == 1 { l = $0; sub(/^[^{]*\{/, "", l); sub(/\}.*/, "", l); if (l ~ re) print $NF }'; }

# ---------------------------------------------------------------------------
scenario_start O1 "feedbackctl drain $RS1 (every virtual service): when it returns, ipvsadm -Sn has $RS1 at weight 0 under $VIP1/$VIP2/$VIP3 and the rest unchanged; status --json: health 80, admin drain, kernel 0; master.admin lists it; systemctl restart feedbackd-master: a new process, 3 agents re-registered, the new master's status --json has health 80 (a report of the agent: the new process starts without any), weight 0, admin drain; ipvsadm -Sn sampled from the drain on: $RS1 at 0, the rest unchanged; feedbackctl ready: 80/160/80 returns through slow start; journal: REASON=admin drain and admin ready, BY=uid 0 (root)"
wait_for 60 "master status: 3 agents" agents_are 3
wait_for 30 "$RS1 at 80/160/80 under $VIP1/$VIP2/$VIP3 (constant health 80)" rs_is $RS1 "$(rs_want $RS1 80 160 80)"
before=$(table)
nvs=$(rs_lines $RS1 | wc -l)
# The table with $RS1's weights 0: what drain must give.
drained=$(table | sed "/ -r $RS1:80 /s/ -w [0-9]*\$/ -w 0/")
ipvs_evidence "before"
d0=$(jn 'admin state set' -u "$M" 'REASON=admin drain' REALSERVER=$RS1)
db0=$(jv '^ *BY=uid 0 (root) pid ' -u "$M" 'REASON=admin drain' REALSERVER=$RS1)
run_ctl rc out "$CTL" drain $RS1
[ "$rc" = 0 ] && pass_note "feedbackctl drain $RS1: exit 0" || fail "feedbackctl drain $RS1: exit $rc"
# feedbackctl(8): the master answers once the change is in the kernel.
table_is "$drained" && pass_note "when feedbackctl returned, ipvsadm -Sn had $RS1 at weight 0 under all $nvs services, the rest as before" ||
  { fail "when feedbackctl returned, ipvsadm -Sn was not the drained table"; diff <(echo "$drained") <(table) | sed 's/^/    /' >>"$REPORT"; }
sample_start /tmp/o1.samples table
# drained_80: every one of $RS1's destinations in status --json has
# health 80 from its agent, a target, weight and kernel 0, admin drain.
drained_80() {
  [ "$(ctl_json status $RS1 | jq '.status.destinations | length')" = "$nvs" ] &&
    [ "$(ctl_rs $RS1 '"\(.health) \(.target > 0) \(.weight) \(.kernel) \(.admin) \(.why) \((.agent // "") != "")"' | sort -u)" = "80 true 0 0 drain admin drain true" ]
}
wait_for 10 "status --json: $RS1 under all $nvs services with health 80, target > 0, weight 0, kernel 0, admin drain, why 'admin drain', an agent" drained_80
[ "$(grep -c "^drain tcp [0-9.]*:80 $RS1:80\$" $ADMIN)" = "$nvs" ] && pass_note "$ADMIN lists $RS1 drained under all $nvs services" ||
  { fail "$ADMIN does not list $RS1 drained under $nvs services"; evidence "$ADMIN" cat $ADMIN; }
wait_for 10 "journal: $nvs lines 'admin state set' REALSERVER=$RS1 REASON=admin drain" \
  jn_ge $((d0 + nvs)) 'admin state set' -u "$M" 'REASON=admin drain' REALSERVER=$RS1
[ "$(jv '^ *BY=uid 0 (root) pid ' -u "$M" 'REASON=admin drain' REALSERVER=$RS1)" -ge $((db0 + nvs)) ] &&
  pass_note "journal: each of them has BY=uid 0 (root) pid ... (who asked)" || fail "journal: no BY=uid 0 (root) field on the admin drain lines"
evidence "journalctl -u $M REASON='admin drain' REALSERVER=$RS1 (last $nvs)" journalctl -q --no-pager -u "$M" 'REASON=admin drain' REALSERVER=$RS1 -n $nvs
pid=$(mainpid "$M")
t0=$(ms)
out=$(systemctl restart "$M" 2>&1) && pass_note "systemctl restart $M" || fail "systemctl restart $M: $out"
wait_for 60 "a new master process, active" sh -c "p=\$(systemctl show -p MainPID --value $M); [ \"\$p\" != 0 ] && [ \"\$p\" != '$pid' ] && systemctl -q is-active $M"
wait_for 60 "master status: 3 agents (re-registered with the new master)" agents_are 3 &&
  log "  3 agents back $(secs_since "$t0") s after systemctl restart"
wait_for 30 "the new master's status --json: $RS1 health 80 reported by its agent, weight 0, kernel 0, admin drain (from master.admin)" drained_80
stays_for 2 "ipvsadm -Sn: $RS1 still at 0 with its agent reporting to the new master (2 s of samples)" table_is "$drained"
sample_stop
samples_all /tmp/o1.samples "$(echo "$drained" | paste -sd'|')" "ipvsadm -Sn: $RS1 at 0 and the rest unchanged, from the drain through the master's restart"
evidence "feedbackctl status $RS1" "$CTL" status $RS1
r0=$(jn 'admin state set' -u "$M" 'REASON=admin ready' REALSERVER=$RS1)
t1=$(ms)
run_ctl rc out "$CTL" ready $RS1
[ "$rc" = 0 ] && pass_note "feedbackctl ready $RS1: exit 0" || fail "feedbackctl ready $RS1: exit $rc"
wait_for 30 "ipvsadm -Sn: $RS1 back at 80/160/80 through slow start, the table as before" table_is "$before" &&
  log "  $(secs_since "$t1") s after feedbackctl ready"
wait_for 10 "journal: $nvs lines 'admin state set' REALSERVER=$RS1 REASON=admin ready, BY=uid 0 (root)" \
  jv_ge $((r0 + nvs)) '^ *BY=uid 0 (root) pid ' -u "$M" 'REASON=admin ready' REALSERVER=$RS1
grep -q " $RS1:80\$" $ADMIN && fail "$ADMIN still lists $RS1 after ready" || pass_note "$ADMIN no longer lists $RS1"
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
# O2 holds a connection through $VIP3 (web-sed): I8's traffic through
# $VIP1 leaves ESTABLISHED entries in IPVS there (DR: the director sees
# only the client's half), which count as active connections until the
# kernel's 15-minute timeout.
scenario_start O2 "feedbackctl maint RS web-sed while a connection through $VIP3 is open to RS (ipvsadm ActiveConn 1): weight 0 under $VIP3 when it returns, not deleted while the connection is open; deleted once it is closed (ActiveConn 0); stays out while its agent stays connected and reporting (status --json: health, admin maint, kernel -1) and across a resync; the rest of the table untouched; feedbackctl ready RS web-sed adds it back at its weight; journal: REASON=admin maint and admin ready, BY=uid 0 (root)"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
ipvs_evidence "before"
# I8's LVS-DR set-up, for $VIP3 too: the VIP on the director and on each
# realserver's lo (I8's arp_ignore/arp_announce apply to all addresses),
# and the client's route through the director.
ok=1
ip addr add $VIP3/32 dev lo 2>>"$REPORT" || ok=0
for i in 1 2 3; do ip -n rs$i addr add $VIP3/32 dev lo 2>>"$REPORT" || ok=0; done
ip -n client route add $VIP3/32 via 10.0.0.1 2>>"$REPORT" || ok=0
[ $ok = 1 ] || fail "could not route $VIP3 like I8 routes $VIP1 (client namespace, realservers' lo)"
# active VIP: the destinations of VIP with active connections, "RIP:PORT N".
active() { ipvsadm -Ln -t "$1:80" | awk '$1 == "->" && $2 ~ /^[0-9]/ && $5 > 0 { print $2, $5 }'; }
no_active() { [ -z "$(active $VIP3)" ]; }
wait_for 10 "no active connection under $VIP3 before" no_active
# One connection from the client namespace, held open: bash opens it and
# becomes sleep, so that killing that one process closes it.
ip netns exec client bash -c "exec 3<>/dev/tcp/$VIP3/80 && exec sleep 60" 2>/dev/null &
holder=$!
one_active() { [ "$(active $VIP3 | wc -l)" = 1 ] && [ "$(active $VIP3 | awk '{ print $2 }')" = 1 ]; }
wait_for 15 "one connection open through $VIP3: one destination with ActiveConn 1" one_active
HRS=$(active $VIP3 | awk '{ sub(/:80$/, "", $1); print $1; exit }')
HRS=${HRS:-none}
log "  the connection went to $HRS"
hline=$(table | grep -F -- "-t $VIP3:80 -r $HRS:80 ")
hweight=${hline##* }
# The table without $HRS under $VIP3: what must not move.
rest() { table | grep -vF -- "-t $VIP3:80 -r $HRS:80 "; }
rest0=$(rest)
# The admin lines carry BY= (who asked); the deletion that maint causes
# is logged with REASON=admin maint too, without BY=.
m0=$(jv '^ *BY=uid 0 (root) pid ' -u "$M" 'REASON=admin maint' REALSERVER=$HRS VIRTUAL_SERVICE=web-sed)
x0=$(jn 'realserver removed for maintenance' -u "$M" 'REASON=admin maint' REALSERVER=$HRS VIRTUAL_SERVICE=web-sed)
run_ctl rc out "$CTL" maint $HRS web-sed
[ "$rc" = 0 ] && pass_note "feedbackctl maint $HRS web-sed: exit 0" || fail "feedbackctl maint $HRS web-sed: exit $rc"
t0=$(ms)
held() { dest_is $VIP3 $HRS 0 && [ "$(active $VIP3)" = "$HRS:80 1" ] && [ "$(rest)" = "$rest0" ]; }
held && pass_note "when feedbackctl returned: $HRS Route 0 under $VIP3, still there with ActiveConn 1, the rest unchanged" ||
  fail "when feedbackctl returned: $HRS under $VIP3 is '$(dest $VIP3 $HRS)', active '$(active $VIP3)'"
stays_for 2 "$HRS stays in IPVS at weight 0 while its connection is open (2 s of samples: two maint checks)" held
ipvs_evidence "maint, connection open"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
t1=$(ms)
wait_for 15 "connection closed: $HRS deleted from $VIP3" dest_gone $VIP3 $HRS &&
  log "  deleted $(secs_since "$t1") s after the connection was closed ($(secs_since "$t0") s after maint)"
maint_out() {
  dest_gone $VIP3 $HRS && [ "$(rest)" = "$rest0" ] &&
    [ "$(ctl_json status --vs web-sed $HRS | jq -r '.status.destinations[] | "\(.health >= 0) \((.agent // "") != "") \(.admin) \(.kernel) \(.why)"')" = "true true maint -1 admin maint: removed, kept out until ready" ]
}
wait_for 10 "status --json: $HRS under web-sed with a health from its agent, admin maint, kernel -1, why 'admin maint: removed, kept out until ready'" maint_out
# removal-interval is 3 s: the master resyncs with IPVS every 3 s, and
# its agent answers a keepalive every keepalive-interval (1 s).
maint_stays() { agents_are 3 && maint_out; }
stays_for 3 "$HRS stays out of $VIP3 with its agent connected (master status: 3 agents) and reporting, the rest unchanged (3 s of samples: a resync, three keepalives)" maint_stays
evidence "feedbackctl status $HRS" "$CTL" status $HRS
r0=$(jv '^ *BY=uid 0 (root) pid ' -u "$M" 'REASON=admin ready' REALSERVER=$HRS VIRTUAL_SERVICE=web-sed)
t2=$(ms)
run_ctl rc out "$CTL" ready $HRS web-sed
[ "$rc" = 0 ] && pass_note "feedbackctl ready $HRS web-sed: exit 0" || fail "feedbackctl ready $HRS web-sed: exit $rc"
wait_for 30 "$HRS back under $VIP3 at Route $hweight; the table as before (ipvsadm -Sn)" table_is "$before" &&
  log "  $(secs_since "$t2") s after feedbackctl ready"
for r in maint:$m0 ready:$r0; do
  wait_for 10 "journal: a new REASON=admin ${r%%:*} line for REALSERVER=$HRS VIRTUAL_SERVICE=web-sed with BY=uid 0 (root)" \
    jv_ge $((${r#*:} + 1)) '^ *BY=uid 0 (root) pid ' -u "$M" "REASON=admin ${r%%:*}" REALSERVER=$HRS VIRTUAL_SERVICE=web-sed
done
wait_for 10 "journal: 'realserver removed for maintenance' REALSERVER=$HRS VIRTUAL_SERVICE=web-sed REASON=admin maint" \
  jn_ge $((x0 + 1)) 'realserver removed for maintenance' -u "$M" 'REASON=admin maint' REALSERVER=$HRS VIRTUAL_SERVICE=web-sed
evidence "journalctl -u $M REALSERVER=$HRS VIRTUAL_SERVICE=web-sed (last 4)" journalctl -q --no-pager -u "$M" REALSERVER=$HRS VIRTUAL_SERVICE=web-sed -n 4
ip -n client route del $VIP3/32 via 10.0.0.1 2>/dev/null
for i in 1 2 3; do ip -n rs$i addr del $VIP3/32 dev lo 2>/dev/null; done
ip addr del $VIP3/32 dev lo 2>/dev/null
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start O3 "feedbackctl status --json, the metrics (curl $METRICS, feedbackd_realserver_kernel_weight) and ipvsadm -Ln agree on the weight of every destination, per realserver per virtual service: all ready; then with $RS1 drained and $RS2 in maint under web-wlc (deleted: kernel -1, no series); admin_state gauges 1 for those; status --json weight = kernel for every destination in IPVS"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
evidence "curl $METRICS (the feedbackd_realserver lines)" sh -c "curl -sf --max-time 10 $METRICS | grep '^feedbackd_realserver_'"
agreement "all ready"
want_eq() { [ "$(ctl_json status | jq '[.status.destinations[] | select(.kernel >= 0 and .weight != .kernel)] | length')" = 0 ]; }
want_eq && pass_note "status --json: weight = kernel for every destination in IPVS" || fail "status --json: a destination's weight differs from its kernel weight"
run_ctl rc out "$CTL" drain $RS1
[ "$rc" = 0 ] || fail "feedbackctl drain $RS1: exit $rc"
run_ctl rc out "$CTL" maint $RS2 web-wlc
[ "$rc" = 0 ] || fail "feedbackctl maint $RS2 web-wlc: exit $rc"
o3_state() { rs_is $RS1 "$(rs_want $RS1 0 0 0)" && dest_gone $VIP2 $RS2; }
wait_for 15 "ipvsadm: $RS1 at 0 under $VIP1/$VIP2/$VIP3, $RS2 deleted from $VIP2 (no connections)" o3_state
agreement "$RS1 drained, $RS2 in maint under web-wlc"
ctl_rs $RS2 '"\(.vs) \(.kernel) \(.admin)"' | grep -qx 'web-wlc -1 maint' &&
  pass_note "status --json: $RS2 under web-wlc kernel -1, admin maint" || fail "status --json for $RS2: $(ctl_rs $RS2 '"\(.vs) \(.kernel) \(.admin)"' | paste -sd,)"
want_eq && pass_note "status --json: weight = kernel for every destination in IPVS" || fail "status --json: a destination's weight differs from its kernel weight"
nd=$(gauge feedbackd_realserver_admin_state "realserver=\"$RS1:80\".*state=\"drain\"" | grep -cx 1)
nm=$(gauge feedbackd_realserver_admin_state "realserver=\"$RS2:80\".*state=\"maint\".*vs=\"web-wlc\"" | grep -cx 1)
[ "$nd" = 3 ] && [ "$nm" = 1 ] && pass_note "metrics: feedbackd_realserver_admin_state 1 for $RS1 drain (3 services) and $RS2 maint (web-wlc)" ||
  fail "metrics: admin_state drain=1 for $RS1 in $nd services (want 3), maint=1 for $RS2 web-wlc: $nm (want 1)"
evidence "metrics for $RS1 and $RS2" sh -c "curl -sf --max-time 10 $METRICS | grep -E '^feedbackd_realserver_(kernel_weight|admin_state)\{' | grep -E '$RS1:|$RS2:' | grep -v ' 0\$'"
run_ctl rc out "$CTL" ready $RS1
[ "$rc" = 0 ] || fail "feedbackctl ready $RS1: exit $rc"
run_ctl rc out "$CTL" ready $RS2 web-wlc
[ "$rc" = 0 ] || fail "feedbackctl ready $RS2 web-wlc: exit $rc"
wait_for 30 "ready: the table as before (ipvsadm -Sn)" table_is "$before"
agreement "ready again"
end

# ---------------------------------------------------------------------------
scenario_start O4 "an unprivileged user (nobody): feedbackctl drain/maint/ready are refused with exit status 4 and 'permission denied', the journal has REASON=permission denied with BY=uid 65534 (nobody), ipvsadm -Sn does not change; feedbackctl status and status --json work for that user (exit 0, the same destinations as root's)"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
p0=$(jv '^ *BY=uid 65534 (nobody) pid ' -u "$M" 'REASON=permission denied')
for c in drain maint ready; do
  run_ctl rc out runuser -u nobody -- "$CTL" $c $RS1
  [ "$rc" = 4 ] && case $out in *"permission denied"*) true ;; *) false ;; esac &&
    pass_note "as nobody: feedbackctl $c $RS1 exits 4, 'permission denied'" || fail "as nobody: feedbackctl $c $RS1 exit $rc: $out"
done
wait_for 10 "journal: three refusals, REASON=permission denied, BY=uid 65534 (nobody)" \
  jv_ge $((p0 + 3)) '^ *BY=uid 65534 (nobody) pid ' -u "$M" 'REASON=permission denied'
evidence "journalctl -u $M REASON='permission denied' (last 3)" journalctl -q --no-pager -u "$M" 'REASON=permission denied' -n 3
stays_for 2 "ipvsadm -Sn unchanged (2 s of samples)" table_is "$before"
run_ctl rc out runuser -u nobody -- "$CTL" status
n=$(printf '%s\n' "$out" | grep -c " $RS1:80 ")
[ "$rc" = 0 ] && [ "$n" -ge 1 ] && pass_note "as nobody: feedbackctl status exits 0 and lists $RS1 ($n lines)" || fail "as nobody: feedbackctl status exit $rc, $n lines for $RS1"
mine=$(runuser -u nobody -- "$CTL" --json status | jq -r '.status.destinations[] | "\(.service) \(.realserver) \(.admin) \(.kernel)"' | sort)
root=$(ctl_json status | jq -r '.status.destinations[] | "\(.service) \(.realserver) \(.admin) \(.kernel)"' | sort)
[ -n "$mine" ] && [ "$mine" = "$root" ] && pass_note "as nobody: status --json has the same $(echo "$mine" | wc -l) destinations as root's" ||
  fail "as nobody: status --json differs from root's"
end

# ---------------------------------------------------------------------------
scenario_start O5 "control-group = lvsops (reload): a user with lvsops as a supplementary group may drain $RS1 under web (exit 0, ipvsadm weight 0, journal BY= that uid), one with it as primary group may ready it (exit 0, weight back); nobody is still refused (exit 4)"
wait_for 60 "master status: 3 agents" agents_are 3
before=$(table)
getent group lvsops >/dev/null || groupadd lvsops || fail "groupadd lvsops"
id lvsop-supp >/dev/null 2>&1 || useradd -M -N -g users -G lvsops -s /usr/sbin/nologin lvsop-supp || fail "useradd lvsop-supp"
id lvsop-prim >/dev/null 2>&1 || useradd -M -N -g lvsops -s /usr/sbin/nologin lvsop-prim || fail "useradd lvsop-prim"
evidence "the users" sh -c 'id lvsop-supp; id lvsop-prim'
uid_s=$(id -u lvsop-supp)
cp $MCONF /tmp/master.conf.o5
sed '1i control-group = lvsops' /tmp/master.conf.o5 >$MCONF
reload_ok "control-group = lvsops"
d0=$(jv "^ *BY=uid $uid_s (lvsop-supp) pid " -u "$M" 'REASON=admin drain' REALSERVER=$RS1)
run_ctl rc out runuser -u lvsop-supp -- "$CTL" drain $RS1 web
if [ "$rc" = 0 ]; then
  pass_note "as lvsop-supp (lvsops supplementary): feedbackctl drain $RS1 web exits 0"
else
  fail "as lvsop-supp (lvsops supplementary): feedbackctl drain $RS1 web exit $rc"
  # The master reads a caller's supplementary groups from /proc/PID/status:
  # what a unit with its /proc sandbox sees of a process of that user.
  runuser -u lvsop-supp -- sleep 30 &
  wait_for 5 "a process of lvsop-supp (sleep)" pgrep -u lvsop-supp -x sleep
  sp=$(pgrep -u lvsop-supp -x sleep | head -1)
  evidence "its /proc/$sp/status from DynamicUser=yes ProcSubset=pid ProtectProc=invisible" \
    systemd-run --wait --pipe -q -p DynamicUser=yes -p ProcSubset=pid -p ProtectProc=invisible grep Groups /proc/$sp/status
  evidence "the same without ProtectProc=invisible" \
    systemd-run --wait --pipe -q -p DynamicUser=yes -p ProcSubset=pid grep Groups /proc/$sp/status
  kill $sp 2>/dev/null
fi
wait_for 5 "ipvsadm: $RS1 Route 0 under $VIP1" dest_is $VIP1 $RS1 0
[ "$(jv "^ *BY=uid $uid_s (lvsop-supp) pid " -u "$M" 'REASON=admin drain' REALSERVER=$RS1)" -gt "$d0" ] &&
  pass_note "journal: REASON=admin drain for $RS1, BY=uid $uid_s (lvsop-supp)" || fail "journal: no REASON=admin drain line for $RS1 by uid $uid_s"
run_ctl rc out runuser -u nobody -- "$CTL" ready $RS1 web
[ "$rc" = 4 ] && pass_note "as nobody: still exit 4" || fail "as nobody: feedbackctl ready exit $rc, want 4"
run_ctl rc out runuser -u lvsop-prim -- "$CTL" ready $RS1 web
[ "$rc" = 0 ] && pass_note "as lvsop-prim (lvsops primary): feedbackctl ready $RS1 web exits 0" ||
  fail "as lvsop-prim (lvsops primary): feedbackctl ready $RS1 web exit $rc"
wait_for 30 "ipvsadm: $RS1 back at Route 80 under $VIP1 (slow start)" dest_is $VIP1 $RS1 80
# Whatever was refused above, root puts things back.
"$CTL" ready $RS1 >/dev/null 2>&1
wait_for 30 "the table as before (ipvsadm -Sn)" table_is "$before"
cp /tmp/master.conf.o5 $MCONF
reload_ok "without control-group again"
end
